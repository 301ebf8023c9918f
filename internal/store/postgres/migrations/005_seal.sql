-- Data keys, wrapped by the key-encryption key (which is never stored here).
CREATE TABLE seal_keys (num BIGINT PRIMARY KEY, scope TEXT COLLATE "C" NOT NULL, kek TEXT COLLATE "C" NOT NULL, wrapped BYTEA NOT NULL, created BIGINT NOT NULL, retired INT NOT NULL DEFAULT 0);
