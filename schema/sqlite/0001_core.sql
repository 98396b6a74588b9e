-- Users, projects and project membership: the core of Harbor's model.
-- Migrations are applied in order at start and recorded in schema_migrations;
-- never edit a released migration, add the next number instead.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    -- argon2id PHC string; NULL for accounts that authenticate elsewhere (a directory).
    password_hash TEXT,
    is_admin      INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    -- Where the account comes from: 'database' here; later sources add their own names.
    source        TEXT    NOT NULL DEFAULT 'database',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE projects (
    id         INTEGER PRIMARY KEY,
    -- The first path component of every repository in the project.
    name       TEXT    NOT NULL UNIQUE,
    -- Public projects may be pulled by anyone, anonymous clients included.
    public     INTEGER NOT NULL DEFAULT 0 CHECK (public IN (0, 1)),
    created_at INTEGER NOT NULL
);

CREATE TABLE project_members (
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT    NOT NULL
               CHECK (role IN ('project_admin', 'maintainer', 'developer', 'guest', 'limited_guest')),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (project_id, user_id)
);

CREATE INDEX project_members_by_user ON project_members (user_id);
