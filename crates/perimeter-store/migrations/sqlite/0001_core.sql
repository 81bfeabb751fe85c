-- Core tables. PHI lives only in the *_ct columns, as ciphertext under the patient's data key.

CREATE TABLE key_ring (
    purpose     TEXT    NOT NULL,           -- 'kek', 'index', 'audit_signing'
    version     BIGINT  NOT NULL,
    check_value BLOB    NOT NULL,           -- HMAC check value or public key, never key bytes
    created_at  BIGINT  NOT NULL,
    retired_at  BIGINT,
    PRIMARY KEY (purpose, version)
);

CREATE TABLE practice (
    id          TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);

CREATE TABLE staff_user (
    id            TEXT    PRIMARY KEY,
    practice_id   TEXT    NOT NULL REFERENCES practice(id),
    username      TEXT    NOT NULL,
    display_name  TEXT    NOT NULL,
    roles         TEXT    NOT NULL,         -- comma-separated Role names
    password_hash TEXT,                     -- argon2id PHC string
    disabled_at   BIGINT,
    created_at    BIGINT  NOT NULL,
    CONSTRAINT staff_user_username UNIQUE (practice_id, username)
);

CREATE TABLE patient (
    id             TEXT    PRIMARY KEY,
    practice_id    TEXT    NOT NULL REFERENCES practice(id),
    given_name_ct  BLOB    NOT NULL,
    family_name_ct BLOB    NOT NULL,
    birth_date_ct  BLOB,
    phone_ct       BLOB,
    email_ct       BLOB,
    address_ct     BLOB,
    mrn_ct         BLOB,
    notes_ct       BLOB,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    shredded_at    BIGINT
);
CREATE INDEX patient_practice ON patient (practice_id, id);

-- One data key per patient, wrapped by a KEK version. Deleting the row crypto-shreds.
CREATE TABLE patient_key (
    patient_id   TEXT    PRIMARY KEY REFERENCES patient(id),
    dek_id       BLOB    NOT NULL,
    kek_version  BIGINT  NOT NULL,
    wrapped      BLOB    NOT NULL,
    created_at   BIGINT  NOT NULL,
    rewrapped_at BIGINT
);
CREATE INDEX patient_key_kek ON patient_key (kek_version, patient_id);

-- Keyed blind indexes (HMAC-SHA256 of normalised values) for equality lookups.
CREATE TABLE patient_index (
    kind       TEXT  NOT NULL,
    digest     BLOB  NOT NULL,
    patient_id TEXT  NOT NULL REFERENCES patient(id),
    PRIMARY KEY (kind, digest, patient_id)
);
CREATE INDEX patient_index_patient ON patient_index (patient_id);

CREATE TABLE conversation (
    id          TEXT    PRIMARY KEY,
    practice_id TEXT    NOT NULL REFERENCES practice(id),
    patient_id  TEXT    NOT NULL REFERENCES patient(id),
    channel     TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    subject_ct  BLOB,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);
CREATE INDEX conversation_patient ON conversation (patient_id, created_at);
CREATE INDEX conversation_practice ON conversation (practice_id, updated_at);

CREATE TABLE message (
    id              TEXT    PRIMARY KEY,
    conversation_id TEXT    NOT NULL REFERENCES conversation(id),
    patient_id      TEXT    NOT NULL REFERENCES patient(id),
    direction       TEXT    NOT NULL,
    author_id       TEXT    REFERENCES staff_user(id),
    category        TEXT    NOT NULL,
    body_ct         BLOB    NOT NULL,
    created_at      BIGINT  NOT NULL
);
CREATE INDEX message_conversation ON message (conversation_id, created_at, id);
CREATE INDEX message_patient ON message (patient_id);
