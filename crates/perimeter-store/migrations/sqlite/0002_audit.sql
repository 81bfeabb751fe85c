-- The audit trail: an append-only hash chain that is also an RFC 6962 Merkle tree.

CREATE TABLE audit_head (
    id             BIGINT  PRIMARY KEY CHECK (id = 1),
    size           BIGINT  NOT NULL,
    last_leaf_hash BLOB,
    frontier       BLOB    NOT NULL
);
INSERT INTO audit_head (id, size, last_leaf_hash, frontier) VALUES (1, 0, NULL, X'0000000000000000');

CREATE TABLE audit_log (
    seq        BIGINT  PRIMARY KEY,
    prev_hash  BLOB    NOT NULL,
    at_millis  BIGINT  NOT NULL,
    event      BLOB    NOT NULL,
    leaf_hash  BLOB    NOT NULL,
    patient_id TEXT,
    actor_id   TEXT,
    action     TEXT    NOT NULL
);
CREATE INDEX audit_log_patient ON audit_log (patient_id, seq);
CREATE INDEX audit_log_actor ON audit_log (actor_id, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_at ON audit_log (at_millis, seq);

CREATE TABLE audit_node (
    level BIGINT NOT NULL,
    idx   BIGINT NOT NULL,
    hash  BLOB   NOT NULL,
    PRIMARY KEY (level, idx)
);

CREATE TABLE audit_checkpoint (
    tree_size BIGINT PRIMARY KEY,
    at_millis BIGINT NOT NULL,
    signed    BLOB   NOT NULL
);

-- Retention: audit rows cannot be changed or removed, not even by mistake.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_node_no_update BEFORE UPDATE ON audit_node
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER audit_node_no_delete BEFORE DELETE ON audit_node
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
