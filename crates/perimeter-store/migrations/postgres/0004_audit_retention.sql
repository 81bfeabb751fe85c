-- Retention of the audit trail (kept at least six years, HIPAA 45 CFR 164.316(b)(2)): nothing
-- in Perimeter deletes audit data, and the database refuses it. 0002 guards the records and
-- the tree nodes (and TRUNCATE of the records); this guards the checkpoints (append-only), the
-- head (it may only advance: a larger size, never a smaller or equal one, never removed) and
-- TRUNCATE of every other audit table.

CREATE TRIGGER audit_checkpoint_append_only BEFORE UPDATE OR DELETE ON audit_checkpoint
    FOR EACH ROW EXECUTE FUNCTION perimeter_audit_append_only();

CREATE FUNCTION perimeter_audit_head_advances() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'the audit head cannot be removed';
    END IF;
    IF NEW.id <> OLD.id OR NEW.size <= OLD.size THEN
        RAISE EXCEPTION 'the audit head may only advance';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER audit_head_only_advances BEFORE UPDATE OR DELETE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION perimeter_audit_head_advances();

CREATE TRIGGER audit_node_no_truncate BEFORE TRUNCATE ON audit_node
    FOR EACH STATEMENT EXECUTE FUNCTION perimeter_audit_append_only();
CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON audit_checkpoint
    FOR EACH STATEMENT EXECUTE FUNCTION perimeter_audit_append_only();
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION perimeter_audit_append_only();
