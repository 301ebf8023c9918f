-- Data keys, wrapped by the key-encryption key (which is never stored here).
CREATE TABLE seal_keys (num INTEGER PRIMARY KEY, scope TEXT NOT NULL, kek TEXT NOT NULL, wrapped BLOB NOT NULL, created INTEGER NOT NULL, retired INTEGER NOT NULL DEFAULT 0);
