-- Credentials that are not a person's password: refresh tokens (docker login's identity token),
-- robot accounts and personal access tokens. Every secret is stored only as a digest
-- (HMAC-SHA256, see src/authn/secret.rs); the secret itself is shown once and never again.

CREATE TABLE refresh_tokens (
    id           INTEGER PRIMARY KEY,
    -- Digest of the opaque token; the lookup key, since the token carries no ID of its own.
    digest       TEXT    NOT NULL UNIQUE,
    -- Removing the user removes their refresh tokens.
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The audience the token was issued for; it refreshes only for that service.
    service      TEXT    NOT NULL,
    -- The client's own name for itself (docker, containerd-client); shown by `token list`.
    client_id    TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    -- Updated at most once a minute (not per request) and checked against the idle lifetime.
    last_used_at INTEGER NOT NULL
);

CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_id);

-- A new password or a disabled account ends every refresh token of the user at once, in the
-- same statement, whichever process (server, CLI, directory sync) made the change.
CREATE TRIGGER refresh_tokens_end_on_password_change
AFTER UPDATE OF password_hash ON users
WHEN NEW.password_hash IS NOT OLD.password_hash
BEGIN
    DELETE FROM refresh_tokens WHERE user_id = NEW.id;
END;

CREATE TRIGGER refresh_tokens_end_on_disable
AFTER UPDATE OF disabled ON users
WHEN NEW.disabled = 1
BEGIN
    DELETE FROM refresh_tokens WHERE user_id = NEW.id;
END;

CREATE TABLE robots (
    id            INTEGER PRIMARY KEY,
    -- The full login name, prefix included (robot_team+ci); kept as created even if the
    -- configured prefix changes later, so CI secrets do not break.
    name          TEXT    NOT NULL UNIQUE,
    -- Set for a project robot, which goes when its project goes; NULL for a system robot.
    project_id    INTEGER REFERENCES projects (id) ON DELETE CASCADE,
    -- A system robot on every project (1) or on the projects listed in robot_projects (0).
    all_projects  INTEGER NOT NULL DEFAULT 0 CHECK (all_projects IN (0, 1)),
    -- Comma-separated subset of pull, push, delete.
    actions       TEXT    NOT NULL,
    secret_digest TEXT    NOT NULL,
    description   TEXT    NOT NULL DEFAULT '',
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    -- Seconds since the epoch; NULL never expires.
    expires_at    INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- The project list of a system robot. A removed project drops out of every list.
CREATE TABLE robot_projects (
    robot_id   INTEGER NOT NULL REFERENCES robots (id) ON DELETE CASCADE,
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    PRIMARY KEY (robot_id, project_id)
);

CREATE TABLE access_tokens (
    id           INTEGER PRIMARY KEY,
    -- The person whose rights the token carries (at most); database and directory users alike.
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The person's own label for it (laptop, gitlab-ci), unique per person.
    name         TEXT    NOT NULL,
    -- Digest of the token, the lookup key: the token is the password in docker login.
    digest       TEXT    NOT NULL UNIQUE,
    -- Comma-separated subset of pull, push, delete: a ceiling on the person's rights.
    actions      TEXT    NOT NULL,
    -- Every project the person may use (1) or only those in access_token_projects (0).
    all_projects INTEGER NOT NULL DEFAULT 1 CHECK (all_projects IN (0, 1)),
    expires_at   INTEGER,
    created_at   INTEGER NOT NULL,
    UNIQUE (user_id, name)
);

CREATE TABLE access_token_projects (
    token_id   INTEGER NOT NULL REFERENCES access_tokens (id) ON DELETE CASCADE,
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    PRIMARY KEY (token_id, project_id)
);
