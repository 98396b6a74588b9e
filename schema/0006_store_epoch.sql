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
