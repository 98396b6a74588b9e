-- A log of changes to who may do what, written by triggers so that every writer (the CLI in
-- another process, the server itself, a later directory sync) records them without knowing.
-- A running server keeps users, projects and memberships in memory; when SQLite tells it that
-- the file changed (PRAGMA data_version), it reads the entries after the last one it saw and
-- reloads just the users and projects they name, instead of everything.
--
-- A table whose changes must reach cached logins at once (a credential that can be revoked)
-- adds its own triggers writing here.

CREATE TABLE access_changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The user whose account or memberships changed, or NULL.
    user_id    INTEGER,
    -- The project that was created, changed or removed (or whose member changed), or NULL.
    project_id INTEGER
);

CREATE TRIGGER access_changes_user_inserted AFTER INSERT ON users
BEGIN
    INSERT INTO access_changes (user_id) VALUES (NEW.id);
END;

-- Any column: a password, the admin or disabled flag, or a column a later version adds.
CREATE TRIGGER access_changes_user_updated AFTER UPDATE ON users
BEGIN
    INSERT INTO access_changes (user_id) VALUES (OLD.id);
    INSERT INTO access_changes (user_id) SELECT NEW.id WHERE NEW.id IS NOT OLD.id;
END;

CREATE TRIGGER access_changes_user_deleted AFTER DELETE ON users
BEGIN
    INSERT INTO access_changes (user_id) VALUES (OLD.id);
END;

CREATE TRIGGER access_changes_project_inserted AFTER INSERT ON projects
BEGIN
    INSERT INTO access_changes (project_id) VALUES (NEW.id);
END;

CREATE TRIGGER access_changes_project_updated AFTER UPDATE ON projects
BEGIN
    INSERT INTO access_changes (project_id) VALUES (OLD.id);
    INSERT INTO access_changes (project_id) SELECT NEW.id WHERE NEW.id IS NOT OLD.id;
END;

CREATE TRIGGER access_changes_project_deleted AFTER DELETE ON projects
BEGIN
    INSERT INTO access_changes (project_id) VALUES (OLD.id);
END;

CREATE TRIGGER access_changes_member_inserted AFTER INSERT ON project_members
BEGIN
    INSERT INTO access_changes (user_id, project_id) VALUES (NEW.user_id, NEW.project_id);
END;

CREATE TRIGGER access_changes_member_updated AFTER UPDATE ON project_members
BEGIN
    INSERT INTO access_changes (user_id, project_id) VALUES (OLD.user_id, OLD.project_id);
    INSERT INTO access_changes (user_id, project_id)
        SELECT NEW.user_id, NEW.project_id WHERE NEW.user_id IS NOT OLD.user_id;
END;

CREATE TRIGGER access_changes_member_deleted AFTER DELETE ON project_members
BEGIN
    INSERT INTO access_changes (user_id, project_id) VALUES (OLD.user_id, OLD.project_id);
END;

-- Keeps the log short: every 1000th entry drops those 1000 or more older. A server that had not
-- read the dropped entries sees the gap in the sequence and reloads everything instead.
CREATE TRIGGER access_changes_pruned AFTER INSERT ON access_changes
WHEN NEW.seq % 1000 = 0
BEGIN
    DELETE FROM access_changes WHERE seq <= NEW.seq - 1000;
END;
