-- The human side of conversations (issue 7): work state per conversation (queue, intent,
-- urgency, assignee, status, service-level due time, escalation), internal notes, reply drafts
-- and their approval, practice-approved versioned templates, appointment reminders, and the
-- outbound replies waiting for the channel sender. PHI only in *_ct columns (ciphertext under
-- the patient's data key); templates are practice text, not PHI.

CREATE TABLE conversation_work (
    conversation_id TEXT    PRIMARY KEY REFERENCES conversation(id),
    practice_id     TEXT    NOT NULL REFERENCES practice(id),
    patient_id      TEXT    NOT NULL REFERENCES patient(id),
    queue           TEXT    NOT NULL,
    intent          TEXT,                   -- NULL until classified or triaged
    urgency         TEXT    NOT NULL,
    priority        BIGINT  NOT NULL,       -- 0 emergency, 1 urgent, 2 routine (queue order)
    assignee_id     TEXT    REFERENCES staff_user(id),
    status          TEXT    NOT NULL,       -- open, waiting_on_patient, closed
    sla_due_at      BIGINT,
    escalated_at    BIGINT,
    escalated_from  TEXT,                   -- the queue it was escalated out of
    queued_at       BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);
CREATE INDEX conversation_work_queue ON conversation_work (practice_id, queue, status, priority, sla_due_at);
CREATE INDEX conversation_work_due ON conversation_work (status, escalated_at, sla_due_at);
CREATE INDEX conversation_work_assignee ON conversation_work (assignee_id, status);

CREATE TABLE conversation_note (
    id              TEXT    PRIMARY KEY,
    conversation_id TEXT    NOT NULL REFERENCES conversation(id),
    patient_id      TEXT    NOT NULL REFERENCES patient(id),
    practice_id     TEXT    NOT NULL REFERENCES practice(id),
    author_id       TEXT    NOT NULL REFERENCES staff_user(id),
    category        TEXT    NOT NULL,       -- internal_note or clinical_message
    body_ct         BYTEA    NOT NULL,
    created_at      BIGINT  NOT NULL
);
CREATE INDEX conversation_note_conversation ON conversation_note (conversation_id, id);

CREATE TABLE reply_template (
    id                TEXT    PRIMARY KEY,
    practice_id       TEXT    NOT NULL REFERENCES practice(id),
    name              TEXT    NOT NULL,
    version           BIGINT  NOT NULL,
    kind              TEXT    NOT NULL,     -- reply or reminder
    body              TEXT    NOT NULL,     -- practice text with {{placeholders}}; never PHI
    auto_send_intents TEXT    NOT NULL,     -- comma-separated intents; '' = always approve
    created_by        TEXT    NOT NULL REFERENCES staff_user(id),
    created_at        BIGINT  NOT NULL,
    approved_by       TEXT    REFERENCES staff_user(id),
    approved_at       BIGINT,
    active            BIGINT  NOT NULL DEFAULT 0,
    CONSTRAINT reply_template_version UNIQUE (practice_id, name, version)
);

CREATE TABLE reply_draft (
    id               TEXT    PRIMARY KEY,
    conversation_id  TEXT    NOT NULL REFERENCES conversation(id),
    patient_id       TEXT    NOT NULL REFERENCES patient(id),
    practice_id      TEXT    NOT NULL REFERENCES practice(id),
    intent           TEXT    NOT NULL,
    source           TEXT    NOT NULL,      -- ai, template
    template_id      TEXT    REFERENCES reply_template(id),
    body_ct          BYTEA    NOT NULL,
    status           TEXT    NOT NULL,      -- pending, approved, rejected, sent
    requested_by     TEXT    REFERENCES staff_user(id),
    decided_by       TEXT    REFERENCES staff_user(id),   -- NULL with status sent: auto-sent
    decided_at       BIGINT,
    reject_reason    TEXT,                  -- a code, never free text
    sent_message_id  TEXT    REFERENCES message(id),
    created_at       BIGINT  NOT NULL
);
CREATE INDEX reply_draft_conversation ON reply_draft (conversation_id, created_at);

CREATE TABLE appointment_reminder (
    id               TEXT    PRIMARY KEY,
    practice_id      TEXT    NOT NULL REFERENCES practice(id),
    patient_id       TEXT    NOT NULL REFERENCES patient(id),
    conversation_id  TEXT    REFERENCES conversation(id),
    template_id      TEXT    NOT NULL REFERENCES reply_template(id),
    appointment_ct   BYTEA    NOT NULL,      -- the appointment time, sealed
    tier             TEXT    NOT NULL,      -- first_visit, returning, overdue
    send_at          BIGINT  NOT NULL,
    status           TEXT    NOT NULL,      -- scheduled, sent, confirmed, reschedule_requested, cancelled
    sent_message_id  TEXT    REFERENCES message(id),
    replied_at       BIGINT,
    created_by       TEXT    REFERENCES staff_user(id),
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);
CREATE INDEX appointment_reminder_due ON appointment_reminder (status, send_at);
CREATE INDEX appointment_reminder_patient ON appointment_reminder (patient_id, status);

-- Replies approved (or auto-sent) and waiting for the channel's sender. The body is the
-- message row's; this row says who approved it and where delivery stands.
CREATE TABLE outbound_reply (
    message_id      TEXT    PRIMARY KEY REFERENCES message(id),
    conversation_id TEXT    NOT NULL REFERENCES conversation(id),
    patient_id      TEXT    NOT NULL REFERENCES patient(id),
    practice_id     TEXT    NOT NULL REFERENCES practice(id),
    source          TEXT    NOT NULL,       -- draft, reminder
    source_id       TEXT    NOT NULL,
    approved_by     TEXT    REFERENCES staff_user(id),   -- NULL: auto-sent by template rule
    template_id     TEXT    REFERENCES reply_template(id),
    status          TEXT    NOT NULL,       -- queued, sent, failed
    queued_at       BIGINT  NOT NULL
);
CREATE INDEX outbound_reply_status ON outbound_reply (status, queued_at);
