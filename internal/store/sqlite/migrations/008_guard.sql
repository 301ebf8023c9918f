-- The exfiltration guard's shared state (internal/guard): every instance on
-- one database counts the same touches, so a walk split across instances is
-- stopped at the same total as on one.
-- guard_touch: the patients an account was given, each counted once per
-- freshness period; at is when it was last counted (Unix microseconds).
CREATE TABLE guard_touch (account TEXT  NOT NULL, patient TEXT  NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (account, patient));
CREATE INDEX guard_touch_at ON guard_touch (account, at);
-- guard_event: other counted events (break-the-glass, denied, step-up refused).
CREATE TABLE guard_event (account TEXT  NOT NULL, kind TEXT  NOT NULL, at INTEGER NOT NULL);
CREATE INDEX guard_event_at ON guard_event (account, kind, at);
-- Sessions that proved a fresh second factor (step-up), and when.
CREATE TABLE step_ups (session TEXT  PRIMARY KEY, account TEXT  NOT NULL, at INTEGER NOT NULL);
-- Alerts for the security officer.
CREATE TABLE guard_alerts (
  id TEXT  PRIMARY KEY,
  at INTEGER NOT NULL,
  account TEXT  NOT NULL,
  username TEXT  NOT NULL DEFAULT '',
  severity TEXT  NOT NULL,
  action TEXT  NOT NULL,
  reason TEXT  NOT NULL,
  detail TEXT  NOT NULL DEFAULT '',
  status TEXT  NOT NULL DEFAULT 'open',
  reviewed_by TEXT  NOT NULL DEFAULT '',
  reviewed INTEGER NOT NULL DEFAULT 0,
  note TEXT  NOT NULL DEFAULT ''
);
CREATE INDEX guard_alerts_status ON guard_alerts (status, at);
-- Canary patients: generated records no legitimate workflow reaches.
CREATE TABLE canaries (patient TEXT  PRIMARY KEY, facility TEXT  NOT NULL)
;
-- Patients counted per account and day (UTC): the account's own baseline.
CREATE TABLE guard_daily (account TEXT  NOT NULL, day INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (account, day))
