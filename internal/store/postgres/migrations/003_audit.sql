-- The audit log: one row per request, in append order (idx from 0). entry is
-- the canonical JSON the Merkle tree hashes; the other columns are copies
-- for searching. Patients disclosed by an entry are in audit_patient.
CREATE TABLE audit_log (idx BIGINT PRIMARY KEY, at BIGINT NOT NULL, account TEXT COLLATE "C" NOT NULL, action TEXT COLLATE "C" NOT NULL, client TEXT COLLATE "C" NOT NULL, session TEXT COLLATE "C" NOT NULL, entry BYTEA NOT NULL);
CREATE INDEX audit_log_account ON audit_log (account, at);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE TABLE audit_patient (patient TEXT COLLATE "C" NOT NULL, idx BIGINT NOT NULL, PRIMARY KEY (patient, idx));
-- Signed checkpoints (tree size, root hash, signed note), also kept in the witness directory.
CREATE TABLE audit_checkpoints (size BIGINT PRIMARY KEY, root BYTEA NOT NULL, note TEXT COLLATE "C" NOT NULL, created BIGINT NOT NULL);
