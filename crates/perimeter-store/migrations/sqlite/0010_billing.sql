-- Insurance and billing data (issue 4, minimum necessary for billing staff): a patient's
-- insurance coverages (several allowed, at most one primary) and one billing account per
-- patient. Every PHI field is ciphertext under the patient's data key, bound to
-- (table, row id, field); member ids and account numbers are found through keyed blind
-- indexes in their own columns (NULL once the patient is crypto-shredded), never in clear.
-- Coverages are ended (effective_to, ended_at), never deleted: a trigger refuses DELETE.

CREATE TABLE insurance_coverage (
    id                  TEXT    PRIMARY KEY,
    practice_id         TEXT    NOT NULL REFERENCES practice(id),
    patient_id          TEXT    NOT NULL REFERENCES patient(id),
    payer_ct            BLOB    NOT NULL,
    plan_ct             BLOB,
    member_id_ct        BLOB    NOT NULL,
    group_number_ct     BLOB,
    relationship_ct     BLOB    NOT NULL,   -- self, spouse, child, other (sealed)
    effective_from_ct   BLOB,
    effective_to_ct     BLOB,
    member_id_bidx      BLOB,               -- blind index of the member id
    is_primary          BIGINT  NOT NULL DEFAULT 0,
    ended_at            BIGINT,
    created_by          TEXT    REFERENCES staff_user(id),
    created_at          BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL
);
CREATE INDEX insurance_coverage_patient ON insurance_coverage (patient_id, created_at);
CREATE INDEX insurance_coverage_member ON insurance_coverage (member_id_bidx);
CREATE UNIQUE INDEX insurance_coverage_one_primary ON insurance_coverage (patient_id)
    WHERE is_primary = 1;

CREATE TRIGGER insurance_coverage_no_delete BEFORE DELETE ON insurance_coverage
BEGIN
    SELECT RAISE(ABORT, 'insurance coverages are ended, not deleted');
END;

CREATE TABLE billing_account (
    patient_id          TEXT    PRIMARY KEY REFERENCES patient(id),
    practice_id         TEXT    NOT NULL REFERENCES practice(id),
    account_number_ct   BLOB    NOT NULL,
    balance_ct          BLOB    NOT NULL,   -- balance in cents, sealed
    last_statement_ct   BLOB,               -- YYYY-MM-DD, sealed
    account_number_bidx BLOB,               -- blind index of the account number
    updated_by          TEXT    REFERENCES staff_user(id),
    created_at          BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL
);
CREATE INDEX billing_account_number ON billing_account (account_number_bidx);
