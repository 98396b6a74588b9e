-- A random value drawn when the database is made. A server holding the database in memory keeps
-- the value it loaded under: a database restored from a backup, or replaced by another file,
-- carries another value, and the server reloads everything instead of trusting its change log.
CREATE TABLE store_epoch (
    epoch TEXT NOT NULL
);
INSERT INTO store_epoch (epoch) VALUES (lower(hex(randomblob(16))));

-- When a robot's secret or a personal access token last logged in (coarse: written at most
-- once a minute, and not while a login is remembered), so stale machine credentials are found.
ALTER TABLE robots ADD COLUMN last_used_at INTEGER;
ALTER TABLE access_tokens ADD COLUMN last_used_at INTEGER;

-- Recording a use is not a change of the credential: a remembered login of it keeps holding.
DROP TRIGGER access_changes_robot_updated;
CREATE TRIGGER access_changes_robot_updated
AFTER UPDATE OF name, project_id, all_projects, actions, secret_digest, description, disabled, expires_at
ON robots
BEGIN
    INSERT INTO access_changes (robot_id) VALUES (OLD.id);
END;

DROP TRIGGER access_changes_token_updated;
CREATE TRIGGER access_changes_token_updated
AFTER UPDATE OF user_id, name, digest, actions, all_projects, expires_at ON access_tokens
BEGIN
    INSERT INTO access_changes (token_id) VALUES (OLD.id);
END;

-- Failed password logins (and directory binds) per account, folded name, so that every server
-- and the CLI see the same counts: `portcullis throttle list` shows them, `portcullis user unlock`
-- clears them (`cleared_at` tells running servers to forget their own counts of that account).
CREATE TABLE login_failures (
    name               TEXT    PRIMARY KEY,
    failures           INTEGER NOT NULL,
    directory_failures INTEGER NOT NULL,
    first_failure      INTEGER NOT NULL,
    last_failure       INTEGER NOT NULL,
    last_address       TEXT    NOT NULL,
    cleared_at         INTEGER
);
