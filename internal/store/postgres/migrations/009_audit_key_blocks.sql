-- Audit search keys name blocks of 64 entries (store.auditKeyBlock), and a
-- search checks each entry of a block against its columns: the patients
-- column of entries logged before migration 004 is filled from their keys.
UPDATE audit_log l SET patients = g.ps
FROM (SELECT idx, string_agg(substr(k, 3), ' ' ORDER BY k) AS ps FROM audit_key WHERE k >= 'p ' AND k < 'p!' GROUP BY idx) g
WHERE l.idx = g.idx AND l.patients = '';
