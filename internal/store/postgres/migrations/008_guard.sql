-- The exfiltration guard's shared state (internal/guard): every instance on
-- one database counts the same touches, so a walk split across instances is
-- stopped at the same total as on one.
-- guard_touch: the patients an account was given, each counted once per
-- freshness period; at is when it was last counted (Unix microseconds).
CREATE TABLE guard_touch (account TEXT COLLATE "C" NOT NULL, patient TEXT COLLATE "C" NOT NULL, at BIGINT NOT NULL, PRIMARY KEY (account, patient));
CREATE INDEX guard_touch_at ON guard_touch (account, at);
-- guard_event: other counted events (break-the-glass, denied, step-up refused).
CREATE TABLE guard_event (account TEXT COLLATE "C" NOT NULL, kind TEXT COLLATE "C" NOT NULL, at BIGINT NOT NULL);
CREATE INDEX guard_event_at ON guard_event (account, kind, at);
-- Sessions that proved a fresh second factor (step-up), and when.
CREATE TABLE step_ups (session TEXT COLLATE "C" PRIMARY KEY, account TEXT COLLATE "C" NOT NULL, at BIGINT NOT NULL);
-- Alerts for the security officer.
CREATE TABLE guard_alerts (
  id TEXT COLLATE "C" PRIMARY KEY,
  at BIGINT NOT NULL,
  account TEXT COLLATE "C" NOT NULL,
  username TEXT COLLATE "C" NOT NULL DEFAULT '',
  severity TEXT COLLATE "C" NOT NULL,
  action TEXT COLLATE "C" NOT NULL,
  reason TEXT COLLATE "C" NOT NULL,
  detail TEXT COLLATE "C" NOT NULL DEFAULT '',
  status TEXT COLLATE "C" NOT NULL DEFAULT 'open',
  reviewed_by TEXT COLLATE "C" NOT NULL DEFAULT '',
  reviewed BIGINT NOT NULL DEFAULT 0,
  note TEXT COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX guard_alerts_status ON guard_alerts (status, at);
-- Canary patients: generated records no legitimate workflow reaches.
CREATE TABLE canaries (patient TEXT COLLATE "C" PRIMARY KEY, facility TEXT COLLATE "C" NOT NULL)
;
-- Patients counted per account and day (UTC): the account's own baseline.
CREATE TABLE guard_daily (account TEXT COLLATE "C" NOT NULL, day BIGINT NOT NULL, n BIGINT NOT NULL, PRIMARY KEY (account, day))
