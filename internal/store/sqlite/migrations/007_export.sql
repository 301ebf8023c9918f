-- Bulk export requests (internal/api/export.go): one account asks, a security
-- officer who is not that account approves, the requester downloads once
-- before expires. watermark_key (32 random bytes) derives the export's
-- fingerprint (internal/incident/watermark.go); it is not patient data.
-- Times are Unix microseconds, 0 for none; since/until bound the resources'
-- lastUpdated (0: open).
CREATE TABLE export_requests (
  id TEXT PRIMARY KEY,
  requester TEXT NOT NULL,
  facility TEXT NOT NULL,
  facility_name TEXT NOT NULL DEFAULT '',
  types TEXT NOT NULL,
  since INTEGER NOT NULL DEFAULT 0,
  until INTEGER NOT NULL DEFAULT 0,
  reason TEXT NOT NULL,
  recipient TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending',
  created INTEGER NOT NULL,
  decided_by TEXT NOT NULL DEFAULT '',
  decided INTEGER NOT NULL DEFAULT 0,
  decision_note TEXT NOT NULL DEFAULT '',
  valid_secs INTEGER NOT NULL,
  expires INTEGER NOT NULL,
  max_patients INTEGER NOT NULL,
  watermark_key BLOB NOT NULL,
  downloaded_at INTEGER NOT NULL DEFAULT 0,
  patient_count INTEGER NOT NULL DEFAULT 0,
  row_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX export_requests_requester ON export_requests (requester, created);
CREATE INDEX export_requests_status ON export_requests (status, created);
