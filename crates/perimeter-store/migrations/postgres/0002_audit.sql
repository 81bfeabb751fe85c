-- The audit trail: an append-only hash chain that is also an RFC 6962 Merkle tree.

CREATE TABLE audit_head (
    id             BIGINT  PRIMARY KEY CHECK (id = 1),
    size           BIGINT  NOT NULL,
    last_leaf_hash BYTEA,
    frontier       BYTEA   NOT NULL
);
INSERT INTO audit_head (id, size, last_leaf_hash, frontier) VALUES (1, 0, NULL, '\x0000000000000000'::bytea);

CREATE TABLE audit_log (
    seq        BIGINT  PRIMARY KEY,
    prev_hash  BYTEA   NOT NULL,
    at_millis  BIGINT  NOT NULL,
    event      BYTEA   NOT NULL,
    leaf_hash  BYTEA   NOT NULL,
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
    hash  BYTEA  NOT NULL,
    PRIMARY KEY (level, idx)
);

CREATE TABLE audit_checkpoint (
    tree_size BIGINT PRIMARY KEY,
    at_millis BIGINT NOT NULL,
    signed    BYTEA  NOT NULL
);

-- Retention: audit rows cannot be changed or removed, not even by mistake.
CREATE FUNCTION perimeter_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit records are append-only';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION perimeter_audit_append_only();
CREATE TRIGGER audit_node_append_only BEFORE UPDATE OR DELETE ON audit_node
    FOR EACH ROW EXECUTE FUNCTION perimeter_audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION perimeter_audit_append_only();
