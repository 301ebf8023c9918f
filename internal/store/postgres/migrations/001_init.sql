-- Resources: the current version of each resource, stored whole.
CREATE TABLE resources (
  pk BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  rtype TEXT COLLATE "C" NOT NULL,
  id TEXT COLLATE "C" NOT NULL,
  ver INTEGER NOT NULL,
  updated BIGINT NOT NULL,           -- Unix microseconds
  deleted SMALLINT NOT NULL DEFAULT 0,
  patient TEXT COLLATE "C",          -- compartment patient id
  data BYTEA                         -- canonical JSON; NULL when deleted
);
CREATE UNIQUE INDEX resources_type_id ON resources (rtype, id);
CREATE INDEX resources_updated ON resources (rtype, updated);
-- Earlier versions (the current one stays in resources).
CREATE TABLE history (
  pk BIGINT NOT NULL,
  ver INTEGER NOT NULL,
  updated BIGINT NOT NULL,
  deleted SMALLINT NOT NULL,
  data BYTEA,
  PRIMARY KEY (pk, ver)
);
-- Search index: one table per parameter type; p is fhir.Param.ID.
CREATE TABLE idx_str (p INTEGER NOT NULL, v TEXT COLLATE "C" NOT NULL, pk BIGINT NOT NULL, PRIMARY KEY (p, v, pk));
CREATE INDEX idx_str_pk ON idx_str (pk, p);
CREATE TABLE idx_tok (p INTEGER NOT NULL, code TEXT COLLATE "C" NOT NULL, sys TEXT COLLATE "C" NOT NULL, pk BIGINT NOT NULL, PRIMARY KEY (p, code, sys, pk));
CREATE TABLE idx_date (p INTEGER NOT NULL, lo BIGINT NOT NULL, hi BIGINT NOT NULL, pk BIGINT NOT NULL, PRIMARY KEY (p, lo, hi, pk));
CREATE INDEX idx_date_pk ON idx_date (pk, p);
CREATE TABLE idx_ref (p INTEGER NOT NULL, v TEXT COLLATE "C" NOT NULL, pk BIGINT NOT NULL, PRIMARY KEY (p, v, pk));
