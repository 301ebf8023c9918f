-- Care relationships derived from Patient, Encounter and CareTeam (fhir.CareLinks):
-- src is the resources.pk that states them; prac '' links a patient to a facility.
-- until: Unix seconds the relationship lasts to (9223372036854775807: ongoing).
CREATE TABLE care_link (prac TEXT COLLATE "C" NOT NULL, patient TEXT COLLATE "C" NOT NULL, src BIGINT NOT NULL, facility TEXT COLLATE "C" NOT NULL, until BIGINT NOT NULL, PRIMARY KEY (prac, patient, src, facility));
CREATE INDEX care_link_src ON care_link (src);
CREATE INDEX care_link_facility ON care_link (facility, patient) WHERE prac = '';
CREATE INDEX resources_patient ON resources (patient, rtype);
-- Staff accounts. roles and facilities are space-separated lists.
CREATE TABLE accounts (
  id TEXT PRIMARY KEY,
  username TEXT COLLATE "C" NOT NULL UNIQUE,
  practitioner TEXT COLLATE "C" NOT NULL DEFAULT '',
  display TEXT COLLATE "C" NOT NULL DEFAULT '',
  roles TEXT COLLATE "C" NOT NULL DEFAULT '',
  facilities TEXT COLLATE "C" NOT NULL DEFAULT '',
  pwhash TEXT COLLATE "C" NOT NULL DEFAULT '',
  status TEXT COLLATE "C" NOT NULL DEFAULT 'active',
  status_reason TEXT COLLATE "C" NOT NULL DEFAULT '',
  created BIGINT NOT NULL,
  updated BIGINT NOT NULL
);
-- Second factors: one row per authenticator (kind 'totp' now; 'webauthn'
-- credentials fit the same table: secret holds the credential, counter its
-- signature counter).
CREATE TABLE mfa_factors (
  id TEXT PRIMARY KEY,
  account TEXT COLLATE "C" NOT NULL,
  kind TEXT COLLATE "C" NOT NULL,
  label TEXT COLLATE "C" NOT NULL DEFAULT '',
  secret BYTEA NOT NULL,
  confirmed BIGINT NOT NULL DEFAULT 0,
  counter BIGINT NOT NULL DEFAULT 0,
  created BIGINT NOT NULL
);
CREATE INDEX mfa_factors_account ON mfa_factors (account);
CREATE TABLE recovery_codes (account TEXT COLLATE "C" NOT NULL, hash TEXT COLLATE "C" NOT NULL, PRIMARY KEY (account, hash));
-- Bearer tokens, stored as SHA-256 hashes. A session groups an access token
-- and its refresh tokens; revoking one revokes the session.
CREATE TABLE tokens (
  hash TEXT PRIMARY KEY,
  kind TEXT COLLATE "C" NOT NULL,
  account TEXT COLLATE "C" NOT NULL,
  session TEXT COLLATE "C" NOT NULL,
  scopes TEXT COLLATE "C" NOT NULL,
  client TEXT COLLATE "C" NOT NULL DEFAULT '',
  created BIGINT NOT NULL,
  expires BIGINT NOT NULL,
  revoked BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX tokens_session ON tokens (session);
CREATE INDEX tokens_account ON tokens (account);
-- Login throttling: failures and back-off per key ("acct:NAME", "addr:IP").
CREATE TABLE throttle (key TEXT PRIMARY KEY, failures BIGINT NOT NULL, until BIGINT NOT NULL, updated BIGINT NOT NULL);
-- Role changes awaiting a second administrator (four-eyes).
CREATE TABLE role_requests (
  id TEXT PRIMARY KEY,
  account TEXT COLLATE "C" NOT NULL,
  op TEXT COLLATE "C" NOT NULL,
  role TEXT COLLATE "C" NOT NULL,
  facility TEXT COLLATE "C" NOT NULL DEFAULT '',
  requested_by TEXT COLLATE "C" NOT NULL,
  created BIGINT NOT NULL,
  status TEXT COLLATE "C" NOT NULL DEFAULT 'pending',
  decided_by TEXT COLLATE "C" NOT NULL DEFAULT '',
  decided BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX role_requests_status ON role_requests (status, created);
-- Break-the-glass grants: one account, one patient, until expires.
CREATE TABLE break_glass (
  id TEXT PRIMARY KEY,
  account TEXT COLLATE "C" NOT NULL,
  patient TEXT COLLATE "C" NOT NULL,
  reason TEXT COLLATE "C" NOT NULL,
  detail TEXT COLLATE "C" NOT NULL DEFAULT '',
  created BIGINT NOT NULL,
  expires BIGINT NOT NULL,
  reviewed_by TEXT COLLATE "C" NOT NULL DEFAULT '',
  reviewed BIGINT NOT NULL DEFAULT 0,
  review_note TEXT COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX break_glass_account ON break_glass (account, patient, expires);
CREATE INDEX break_glass_review ON break_glass (reviewed, created);
