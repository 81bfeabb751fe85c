-- Patient web chat (issue 7): chat sessions, the one-time codes sent to a patient's phone on
-- file, and the verification throttle. Session tokens and codes are stored only as SHA-256
-- hashes; a session is bound to a patient only after the patient proved who they are (name and
-- birth date, or a code sent by SMS). Messages themselves live in `message` / `channel_inbound`
-- like SMS (channel 'web_chat'); nothing here holds PHI in clear.

CREATE TABLE web_chat_session (
    id               TEXT    PRIMARY KEY,
    practice_id      TEXT    NOT NULL REFERENCES practice(id),
    token_hash       BYTEA   NOT NULL,
    patient_id       TEXT    REFERENCES patient(id),   -- set once verified
    contact_id       TEXT    REFERENCES channel_contact(id), -- the unverified writer's contact
    verified_at      BIGINT,
    verified_by      TEXT,                   -- name_birth_date, sms_code
    failed_attempts  BIGINT  NOT NULL,
    created_at       BIGINT  NOT NULL,
    last_seen_at     BIGINT  NOT NULL,
    ended_at         BIGINT,
    end_reason       TEXT,                   -- idle, absolute, locked, ended
    CONSTRAINT web_chat_session_token UNIQUE (token_hash)
);
CREATE INDEX web_chat_session_patient ON web_chat_session (patient_id);

-- At most one live code per session; a new request replaces it.
CREATE TABLE web_chat_code (
    session_id   TEXT    PRIMARY KEY REFERENCES web_chat_session(id),
    patient_id   TEXT    NOT NULL REFERENCES patient(id),
    code_hash    BYTEA   NOT NULL,
    expires_at   BIGINT  NOT NULL,
    attempts     BIGINT  NOT NULL,
    sends        BIGINT  NOT NULL,
    used_at      BIGINT,
    created_at   BIGINT  NOT NULL
);

-- Failed verifications per client address (a SHA-256 of it, never the address) in a window.
CREATE TABLE web_chat_throttle (
    subject      BYTEA   PRIMARY KEY,
    window_start BIGINT  NOT NULL,
    failures     BIGINT  NOT NULL
);
