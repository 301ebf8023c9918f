-- Audit search keys name blocks of entries: in audit.db, see auditSchema step 3 in sqlite.go.
SELECT 1;
