-- Token signing keys, with their states, in the database: every process (the CLI, each server,
-- each replica on a shared database) reads the same keys in the same states, a rotation step is
-- one transaction, and a backup restores keys and states together. The registries' files
-- (`token.pem`, the certificate bundle; `jwks.json`) are written from this table.
--
-- States: 'next' (trusted by registries, not signing yet), 'current' (signing; one at a time),
-- 'retired' (no longer signing, still trusted until every token it signed has expired).
CREATE TABLE signing_keys (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('next', 'current', 'retired')),
    algorithm TEXT NOT NULL CHECK (algorithm IN ('ES256', 'RS256')),
    -- PKCS#8 PEM. The database file is 0600, as it was for the key file it replaces.
    private_key TEXT NOT NULL,
    -- The key's self-signed certificate, PEM: what the bundle holds.
    certificate TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    -- When it began signing, and when it stopped.
    activated_at INTEGER,
    retired_at INTEGER,
    -- The longest token lifetime (expires_in) of any server that signed with it: how long its
    -- tokens may outlive its retirement, whatever the configuration of the CLI that finishes.
    max_lifetime INTEGER
);
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (state) WHERE state = 'current';
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys (state) WHERE state = 'next';

-- A running server signs with the current key from its next request on: key changes reach it
-- through the change log, like every other change it follows.
ALTER TABLE access_changes ADD COLUMN key_id INTEGER;

CREATE TRIGGER access_changes_key_inserted AFTER INSERT ON signing_keys
BEGIN
    INSERT INTO access_changes (key_id) VALUES (NEW.id);
END;

CREATE TRIGGER access_changes_key_updated AFTER UPDATE ON signing_keys
BEGIN
    INSERT INTO access_changes (key_id) VALUES (NEW.id);
END;

CREATE TRIGGER access_changes_key_deleted AFTER DELETE ON signing_keys
BEGIN
    INSERT INTO access_changes (key_id) VALUES (OLD.id);
END;
