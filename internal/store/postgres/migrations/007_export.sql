-- Bulk export requests (internal/api/export.go): one account asks, a security
-- officer who is not that account approves, the requester downloads once
-- before expires. watermark_key (32 random bytes) derives the export's
-- fingerprint (internal/incident/watermark.go); it is not patient data.
-- Times are Unix microseconds, 0 for none; since/until bound the resources'
-- lastUpdated (0: open).
CREATE TABLE export_requests (
  id TEXT PRIMARY KEY,
  requester TEXT COLLATE "C" NOT NULL,
  facility TEXT COLLATE "C" NOT NULL,
  facility_name TEXT COLLATE "C" NOT NULL DEFAULT '',
  types TEXT COLLATE "C" NOT NULL,
  since BIGINT NOT NULL DEFAULT 0,
  until BIGINT NOT NULL DEFAULT 0,
  reason TEXT COLLATE "C" NOT NULL,
  recipient TEXT COLLATE "C" NOT NULL,
  status TEXT COLLATE "C" NOT NULL DEFAULT 'pending',
  created BIGINT NOT NULL,
  decided_by TEXT COLLATE "C" NOT NULL DEFAULT '',
  decided BIGINT NOT NULL DEFAULT 0,
  decision_note TEXT COLLATE "C" NOT NULL DEFAULT '',
  valid_secs BIGINT NOT NULL,
  expires BIGINT NOT NULL,
  max_patients BIGINT NOT NULL,
  watermark_key BYTEA NOT NULL,
  downloaded_at BIGINT NOT NULL DEFAULT 0,
  patient_count BIGINT NOT NULL DEFAULT 0,
  row_count BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX export_requests_requester ON export_requests (requester, created);
CREATE INDEX export_requests_status ON export_requests (status, created);
