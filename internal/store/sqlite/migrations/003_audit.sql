-- The audit log: one row per request, in append order (idx from 0). entry is
-- the canonical JSON the Merkle tree hashes; the other columns are copies
-- for searching. Patients disclosed by an entry are in audit_patient.
CREATE TABLE audit_log (idx INTEGER PRIMARY KEY, at INTEGER NOT NULL, account TEXT NOT NULL, action TEXT NOT NULL, client TEXT NOT NULL, session TEXT NOT NULL, entry BLOB NOT NULL);
CREATE INDEX audit_log_account ON audit_log (account, at);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE TABLE audit_patient (patient TEXT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (patient, idx)) WITHOUT ROWID;
-- Signed checkpoints (tree size, root hash, signed note), also kept in the witness directory.
CREATE TABLE audit_checkpoints (size INTEGER PRIMARY KEY, root BLOB NOT NULL, note TEXT NOT NULL, created INTEGER NOT NULL);
