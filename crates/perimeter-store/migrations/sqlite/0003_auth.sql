-- Staff authentication: MFA, recovery codes, sessions, throttling, API tokens, emergency
-- access and the notification outbox. Secrets are stored only as hashes or ciphertext.

-- One TOTP secret per staff user, sealed under its own data key (wrapped by the KEK).
CREATE TABLE staff_mfa (
    staff_id     TEXT    PRIMARY KEY REFERENCES staff_user(id),
    kek_version  BIGINT  NOT NULL,
    dek_id       BLOB    NOT NULL,
    wrapped_dek  BLOB    NOT NULL,
    secret_ct    BLOB    NOT NULL,
    confirmed_at BIGINT,                    -- NULL while enrolment is pending
    last_step    BIGINT,                    -- last accepted TOTP step (replay refusal)
    created_at   BIGINT  NOT NULL
);
CREATE INDEX staff_mfa_kek ON staff_mfa (kek_version, staff_id);

-- Single-use recovery codes: SHA-256 of each code; using one deletes its row.
CREATE TABLE staff_recovery_code (
    staff_id   TEXT    NOT NULL REFERENCES staff_user(id),
    code_hash  BLOB    NOT NULL,
    created_at BIGINT  NOT NULL,
    PRIMARY KEY (staff_id, code_hash)
);

-- Console sessions, keyed by SHA-256 of the cookie token (the token is never stored).
CREATE TABLE auth_session (
    token_hash   BLOB    PRIMARY KEY,
    staff_id     TEXT    NOT NULL REFERENCES staff_user(id),
    stage        TEXT    NOT NULL,          -- mfa_pending, mfa_enrolment_pending, authenticated
    csrf_token   TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    last_seen_at BIGINT  NOT NULL
);
CREATE INDEX auth_session_staff ON auth_session (staff_id);

-- Log-in throttling per account ('account', staff id) and per client address ('address', ip).
CREATE TABLE auth_throttle (
    scope           TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    failures        BIGINT  NOT NULL,
    last_failure_at BIGINT,
    locked_until    BIGINT,
    lockouts        BIGINT  NOT NULL,
    PRIMARY KEY (scope, subject)
);
CREATE INDEX auth_throttle_locked ON auth_throttle (locked_until);

-- API tokens for service clients, keyed by SHA-256 of the token.
CREATE TABLE api_token (
    id          TEXT    PRIMARY KEY,
    token_hash  BLOB    NOT NULL UNIQUE,
    client_id   TEXT    NOT NULL REFERENCES staff_user(id),
    label       TEXT    NOT NULL,
    permissions TEXT    NOT NULL,           -- comma-separated Permission names
    purposes    TEXT    NOT NULL,           -- comma-separated PurposeOfUse names
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    revoked_at  BIGINT
);

-- Emergency access grants; the justification is sealed under the patient's data key.
CREATE TABLE break_glass_grant (
    id          TEXT    PRIMARY KEY,
    staff_id    TEXT    NOT NULL REFERENCES staff_user(id),
    patient_id  TEXT    NOT NULL REFERENCES patient(id),
    reason_code TEXT    NOT NULL,
    reason_ct   BLOB    NOT NULL,
    granted_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL
);
CREATE INDEX break_glass_grant_active ON break_glass_grant (staff_id, patient_id, expires_at);

-- Notifications to deliver (to the privacy officer, ...): ids and codes only, never PHI.
CREATE TABLE notification_outbox (
    id           TEXT    PRIMARY KEY,
    kind         TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX notification_outbox_pending ON notification_outbox (delivered_at, created_at);
