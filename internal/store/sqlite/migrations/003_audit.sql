-- The audit log's tables live in a separate database file (audit.db),
-- attached to every connection and created at open (see sqlite.go).
SELECT 1;
