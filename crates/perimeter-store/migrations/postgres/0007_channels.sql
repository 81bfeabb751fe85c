-- Patient channels (issue 7): inbound receipts, the outbound SMS outbox, opt-outs, unverified
-- contacts and authorised representatives. PHI lives only in *_ct columns, sealed under the
-- patient's data key or, for a sender not (yet) tied to one patient, the contact's own data key
-- (wrapped by the KEK like a patient's). Phone numbers are found by keyed blind index only.

-- A phone number writing in that is not exactly one patient's: an unknown sender (unverified), a
-- number several patients share, or a representative's number. One row per practice and number.
CREATE TABLE channel_contact (
    id            TEXT    PRIMARY KEY,
    practice_id   TEXT    NOT NULL REFERENCES practice(id),
    phone_digest  BYTEA   NOT NULL,          -- blind index (kind phone) of the number
    kek_version   BIGINT  NOT NULL,
    dek_id        BYTEA   NOT NULL,
    wrapped_dek   BYTEA   NOT NULL,
    phone_ct      BYTEA   NOT NULL,
    verified_patient_id TEXT REFERENCES patient(id), -- set when staff link it to a record
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    CONSTRAINT channel_contact_phone UNIQUE (practice_id, phone_digest)
);

-- Family members and caregivers on a patient's record, sealed under the patient's data key.
CREATE TABLE channel_representative (
    id            TEXT    PRIMARY KEY,
    practice_id   TEXT    NOT NULL REFERENCES practice(id),
    patient_id    TEXT    NOT NULL REFERENCES patient(id),
    phone_digest  BYTEA   NOT NULL,
    name_ct       BYTEA   NOT NULL,
    phone_ct      BYTEA   NOT NULL,
    relationship  TEXT    NOT NULL,          -- parent, guardian, spouse, child, caregiver, other
    verified_at   BIGINT,
    verified_by   TEXT    REFERENCES staff_user(id),
    created_at    BIGINT  NOT NULL,
    revoked_at    BIGINT
);
CREATE INDEX channel_representative_phone ON channel_representative (practice_id, phone_digest);
CREATE INDEX channel_representative_patient ON channel_representative (patient_id);

-- One row per inbound message or call transcript, keyed by the provider's id: a repeated
-- delivery finds its row and gets the same answer. The body is in `message` (single patient)
-- or here, sealed under the contact's key (anyone else).
CREATE TABLE channel_inbound (
    id              TEXT    PRIMARY KEY,
    practice_id     TEXT    NOT NULL REFERENCES practice(id),
    channel         TEXT    NOT NULL,        -- sms, voice
    provider_id     TEXT    NOT NULL,        -- Twilio MessageSid, voice provider call id
    sender_digest   BYTEA   NOT NULL,
    match_kind      TEXT    NOT NULL,        -- patient, shared_number, representative, unknown
    patient_id      TEXT    REFERENCES patient(id),
    contact_id      TEXT    REFERENCES channel_contact(id),
    conversation_id TEXT    REFERENCES conversation(id),
    message_id      TEXT    REFERENCES message(id),
    body_ct         BYTEA,
    keyword         TEXT,                    -- stop, start, help (carrier keywords)
    intent          TEXT,
    urgency         TEXT,
    queue           TEXT,
    priority        BIGINT  NOT NULL,        -- 0 is the top (emergencies)
    due_at          BIGINT,
    emergency       BIGINT  NOT NULL,        -- 1: the emergency fast path ran
    route_status    TEXT    NOT NULL,        -- routed, fallback (classification failed), keyword
    failure         TEXT,                    -- a code, never text
    reply_outbox_id TEXT,
    needs_patient   BIGINT  NOT NULL,        -- 1: staff must pick the patient
    received_at     BIGINT  NOT NULL,
    resolved_at     BIGINT,
    CONSTRAINT channel_inbound_provider UNIQUE (channel, provider_id)
);
CREATE INDEX channel_inbound_queue ON channel_inbound (practice_id, resolved_at, priority, due_at);

-- Outbound messages. `to` and `body` sealed under the recipient's key (patient or contact).
CREATE TABLE channel_outbox (
    id              TEXT    PRIMARY KEY,
    practice_id     TEXT    NOT NULL REFERENCES practice(id),
    channel         TEXT    NOT NULL,
    to_digest       BYTEA   NOT NULL,
    patient_id      TEXT    REFERENCES patient(id),
    contact_id      TEXT    REFERENCES channel_contact(id),
    conversation_id TEXT    REFERENCES conversation(id),
    to_ct           BYTEA   NOT NULL,
    body_ct         BYTEA   NOT NULL,
    purpose         TEXT    NOT NULL,        -- emergency, reply, reminder, notice
    status          TEXT    NOT NULL,        -- queued, sending, sent, delivered, failed, undelivered, refused
    provider_sid    TEXT,
    attempts        BIGINT  NOT NULL,
    next_attempt_at BIGINT,
    last_error      TEXT,                    -- a code, never text
    approved_by     TEXT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);
CREATE INDEX channel_outbox_due ON channel_outbox (status, next_attempt_at);
CREATE UNIQUE INDEX channel_outbox_sid ON channel_outbox (provider_sid);

-- STOP / START state per practice and number (blind index only: the number itself is not kept).
CREATE TABLE channel_opt_out (
    practice_id   TEXT    NOT NULL REFERENCES practice(id),
    phone_digest  BYTEA   NOT NULL,
    opted_out     BIGINT  NOT NULL,          -- 1 opted out, 0 opted back in
    keyword       TEXT    NOT NULL,          -- the keyword that set it
    changed_at    BIGINT  NOT NULL,
    PRIMARY KEY (practice_id, phone_digest)
);
