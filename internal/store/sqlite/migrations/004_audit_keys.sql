-- The audit log's search keys: in audit.db, see auditSchema step 2 in sqlite.go.
SELECT 1;
