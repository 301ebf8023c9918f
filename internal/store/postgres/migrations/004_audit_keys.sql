-- The audit log's search keys (patient, account) leave the
-- append path: an append writes only at the end of B-trees (the log and its
-- time index), and store.IndexAudit derives the keys afterwards in large
-- sorted batches (every second, and before every audit search). patients
-- keeps the disclosed patient ids (space-separated) for it.
ALTER TABLE audit_log ADD COLUMN patients TEXT COLLATE "C" NOT NULL DEFAULT '';
DROP INDEX audit_log_account;
CREATE TABLE audit_key (k TEXT COLLATE "C" NOT NULL, idx BIGINT NOT NULL, PRIMARY KEY (k, idx));
INSERT INTO audit_key SELECT 'p ' || patient, idx FROM audit_patient ON CONFLICT DO NOTHING;
INSERT INTO audit_key SELECT 'a ' || account, idx FROM audit_log WHERE account <> '' ON CONFLICT DO NOTHING;
DROP TABLE audit_patient;
-- Entries below upto have their keys.
CREATE TABLE audit_keyed (id INT PRIMARY KEY CHECK (id = 1), upto BIGINT NOT NULL);
INSERT INTO audit_keyed SELECT 1, COALESCE(MAX(idx) + 1, 0) FROM audit_log;
