-- Care relationships derived from Patient, Encounter and CareTeam (fhir.CareLinks):
-- src is the resources.pk that states them; prac '' links a patient to a facility.
-- until: Unix seconds the relationship lasts to (9223372036854775807: ongoing).
CREATE TABLE care_link (prac TEXT NOT NULL, patient TEXT NOT NULL, src INTEGER NOT NULL, facility TEXT NOT NULL, until INTEGER NOT NULL, PRIMARY KEY (prac, patient, src, facility)) WITHOUT ROWID;
CREATE INDEX care_link_src ON care_link (src);
CREATE INDEX care_link_facility ON care_link (facility, patient) WHERE prac = '';
CREATE INDEX resources_patient ON resources (patient, rtype);
-- Staff accounts. roles and facilities are space-separated lists.
CREATE TABLE accounts (
  id TEXT PRIMARY KEY,
  username TEXT NOT NULL UNIQUE,
  practitioner TEXT NOT NULL DEFAULT '',
  display TEXT NOT NULL DEFAULT '',
  roles TEXT NOT NULL DEFAULT '',
  facilities TEXT NOT NULL DEFAULT '',
  pwhash TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL DEFAULT 'active',
  status_reason TEXT NOT NULL DEFAULT '',
  created INTEGER NOT NULL,
  updated INTEGER NOT NULL
);
-- Second factors: one row per authenticator (kind 'totp' now; 'webauthn'
-- credentials fit the same table: secret holds the credential, counter its
-- signature counter).
CREATE TABLE mfa_factors (
  id TEXT PRIMARY KEY,
  account TEXT NOT NULL,
  kind TEXT NOT NULL,
  label TEXT NOT NULL DEFAULT '',
  secret BLOB NOT NULL,
  confirmed INTEGER NOT NULL DEFAULT 0,
  counter INTEGER NOT NULL DEFAULT 0,
  created INTEGER NOT NULL
);
CREATE INDEX mfa_factors_account ON mfa_factors (account);
CREATE TABLE recovery_codes (account TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (account, hash)) WITHOUT ROWID;
-- Bearer tokens, stored as SHA-256 hashes. A session groups an access token
-- and its refresh tokens; revoking one revokes the session.
CREATE TABLE tokens (
  hash TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  account TEXT NOT NULL,
  session TEXT NOT NULL,
  scopes TEXT NOT NULL,
  client TEXT NOT NULL DEFAULT '',
  created INTEGER NOT NULL,
  expires INTEGER NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tokens_session ON tokens (session);
CREATE INDEX tokens_account ON tokens (account);
-- Login throttling: failures and back-off per key ("acct:NAME", "addr:IP").
CREATE TABLE throttle (key TEXT PRIMARY KEY, failures INTEGER NOT NULL, until INTEGER NOT NULL, updated INTEGER NOT NULL);
-- Role changes awaiting a second administrator (four-eyes).
CREATE TABLE role_requests (
  id TEXT PRIMARY KEY,
  account TEXT NOT NULL,
  op TEXT NOT NULL,
  role TEXT NOT NULL,
  facility TEXT NOT NULL DEFAULT '',
  requested_by TEXT NOT NULL,
  created INTEGER NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending',
  decided_by TEXT NOT NULL DEFAULT '',
  decided INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX role_requests_status ON role_requests (status, created);
-- Break-the-glass grants: one account, one patient, until expires.
CREATE TABLE break_glass (
  id TEXT PRIMARY KEY,
  account TEXT NOT NULL,
  patient TEXT NOT NULL,
  reason TEXT NOT NULL,
  detail TEXT NOT NULL DEFAULT '',
  created INTEGER NOT NULL,
  expires INTEGER NOT NULL,
  reviewed_by TEXT NOT NULL DEFAULT '',
  reviewed INTEGER NOT NULL DEFAULT 0,
  review_note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX break_glass_account ON break_glass (account, patient, expires);
CREATE INDEX break_glass_review ON break_glass (reviewed, created);
