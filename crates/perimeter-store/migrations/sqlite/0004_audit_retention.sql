-- Retention of the audit trail (kept at least six years, HIPAA 45 CFR 164.316(b)(2)): nothing
-- in Perimeter deletes audit data, and the database refuses it. 0002 guards the records and
-- the tree nodes; this guards the checkpoints (append-only) and the head (it may only advance:
-- a larger size, never a smaller or equal one, never removed).

CREATE TRIGGER audit_checkpoint_no_update BEFORE UPDATE ON audit_checkpoint
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;

CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
BEGIN SELECT RAISE(ABORT, 'the audit head cannot be removed'); END;
CREATE TRIGGER audit_head_only_advances BEFORE UPDATE ON audit_head
WHEN NEW.id <> OLD.id OR NEW.size <= OLD.size
BEGIN SELECT RAISE(ABORT, 'the audit head may only advance'); END;
