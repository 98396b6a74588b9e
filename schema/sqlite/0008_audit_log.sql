-- The stored audit trail (`portcullis audit list`): changes made with the CLI (kind 'change')
-- and the registry's notifications of pushes, pulls and deletes (kind 'event'). Token decisions
-- are not here: they go to the decision sink (`[audit] decisions`), one line per request.
-- Rows are only ever added, and removed when older than `[audit] keep_days`. Nothing here is
-- read to decide access, so no trigger feeds the access change log.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('change', 'event')),
    -- Seconds since the epoch: when the change committed, or when the registry says the event
    -- happened.
    time INTEGER NOT NULL,
    -- Who: the OS user that ran the CLI (with the sudo user, if any), or the token's `sub` the
    -- registry reports for an event ('' for an anonymous pull).
    actor TEXT NOT NULL,
    -- What: `user.add`, `member.remove`, `key.generate`, ...; or the registry's `push`, `pull`,
    -- `delete`.
    action TEXT NOT NULL,
    -- The project the entry concerns, if any (an event's repository's first path segment).
    project TEXT,
    -- The user or robot a change is about (`--user` also finds these).
    subject TEXT,
    -- A change's object and arguments as text, never a secret; an event's repository.
    target TEXT NOT NULL DEFAULT '',
    -- Events only: the tag and digest, the client address and user agent the registry saw, and
    -- the registry's event id (it retries a delivery until answered 2xx, so ids dedupe).
    tag TEXT,
    digest TEXT,
    address TEXT,
    user_agent TEXT,
    event_id TEXT UNIQUE
);
CREATE INDEX audit_log_time ON audit_log (time);
