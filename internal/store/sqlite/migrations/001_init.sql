-- Resources: the current version of each resource, stored whole.
CREATE TABLE resources (
  pk INTEGER PRIMARY KEY,
  rtype TEXT NOT NULL,
  id TEXT NOT NULL,
  ver INTEGER NOT NULL,
  updated INTEGER NOT NULL,          -- Unix microseconds
  deleted INTEGER NOT NULL DEFAULT 0,
  patient TEXT,                      -- compartment patient id
  data BLOB                          -- canonical JSON; NULL when deleted
);
CREATE UNIQUE INDEX resources_type_id ON resources (rtype, id);
CREATE INDEX resources_updated ON resources (rtype, updated);
-- Earlier versions (the current one stays in resources).
CREATE TABLE history (
  pk INTEGER NOT NULL,
  ver INTEGER NOT NULL,
  updated INTEGER NOT NULL,
  deleted INTEGER NOT NULL,
  data BLOB,
  PRIMARY KEY (pk, ver)
);
-- Search index: one table per parameter type; p is fhir.Param.ID.
CREATE TABLE idx_str (p INTEGER NOT NULL, v TEXT NOT NULL, pk INTEGER NOT NULL, PRIMARY KEY (p, v, pk)) WITHOUT ROWID;
CREATE INDEX idx_str_pk ON idx_str (pk, p);
CREATE TABLE idx_tok (p INTEGER NOT NULL, code TEXT NOT NULL, sys TEXT NOT NULL, pk INTEGER NOT NULL, PRIMARY KEY (p, code, sys, pk)) WITHOUT ROWID;
CREATE TABLE idx_date (p INTEGER NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL, pk INTEGER NOT NULL, PRIMARY KEY (p, lo, hi, pk)) WITHOUT ROWID;
CREATE INDEX idx_date_pk ON idx_date (pk, p);
CREATE TABLE idx_ref (p INTEGER NOT NULL, v TEXT NOT NULL, pk INTEGER NOT NULL, PRIMARY KEY (p, v, pk)) WITHOUT ROWID;
