-- A log of changes to who may do what, written by triggers so that every writer (the CLI in
-- another process, the server itself, a later directory sync) records them without knowing.
-- A running server keeps users, projects and memberships in memory; when SQLite tells it that
-- the file changed (PRAGMA data_version), it reads the entries after the last one it saw and
-- reloads just the users and projects they name, instead of everything.
--
-- Robots and personal access tokens are logged too: a remembered robot or token login holds
-- only while its row and permission list stay as they were. A table whose changes must reach
-- remembered logins at once (a credential that can be revoked) adds triggers writing here.

CREATE TABLE access_changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The user whose account or memberships changed, or NULL.
    user_id    INTEGER,
    -- The project that was created, changed or removed (or whose member changed), or NULL.
    project_id INTEGER,
    -- The robot, or the personal access token, that changed (or whose project list did), or NULL.
    robot_id   INTEGER,
    token_id   INTEGER
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

CREATE TRIGGER access_changes_robot_inserted AFTER INSERT ON robots
BEGIN
    INSERT INTO access_changes (robot_id) VALUES (NEW.id);
END;

CREATE TRIGGER access_changes_robot_updated AFTER UPDATE ON robots
BEGIN
    INSERT INTO access_changes (robot_id) VALUES (OLD.id);
END;

CREATE TRIGGER access_changes_robot_deleted AFTER DELETE ON robots
BEGIN
    INSERT INTO access_changes (robot_id) VALUES (OLD.id);
END;

CREATE TRIGGER access_changes_robot_project_inserted AFTER INSERT ON robot_projects
BEGIN
    INSERT INTO access_changes (robot_id) VALUES (NEW.robot_id);
END;

CREATE TRIGGER access_changes_robot_project_deleted AFTER DELETE ON robot_projects
BEGIN
    INSERT INTO access_changes (robot_id) VALUES (OLD.robot_id);
END;

CREATE TRIGGER access_changes_token_inserted AFTER INSERT ON access_tokens
BEGIN
    INSERT INTO access_changes (token_id) VALUES (NEW.id);
END;

CREATE TRIGGER access_changes_token_updated AFTER UPDATE ON access_tokens
BEGIN
    INSERT INTO access_changes (token_id) VALUES (OLD.id);
END;

CREATE TRIGGER access_changes_token_deleted AFTER DELETE ON access_tokens
BEGIN
    INSERT INTO access_changes (token_id) VALUES (OLD.id);
END;

CREATE TRIGGER access_changes_token_project_inserted AFTER INSERT ON access_token_projects
BEGIN
    INSERT INTO access_changes (token_id) VALUES (NEW.token_id);
END;

CREATE TRIGGER access_changes_token_project_deleted AFTER DELETE ON access_token_projects
BEGIN
    INSERT INTO access_changes (token_id) VALUES (OLD.token_id);
END;

-- Directory users: the groups recorded at their last directory login change their roles.
CREATE TRIGGER access_changes_directory_group_inserted AFTER INSERT ON user_directory_groups
BEGIN
    INSERT INTO access_changes (user_id) VALUES (NEW.user_id);
END;

CREATE TRIGGER access_changes_directory_group_deleted AFTER DELETE ON user_directory_groups
BEGIN
    INSERT INTO access_changes (user_id) VALUES (OLD.user_id);
END;

-- A role granted to a directory group reaches every user in it: an entry naming nothing,
-- which makes a server reload everything (an admin's rare act).
CREATE TRIGGER access_changes_group_grant_inserted AFTER INSERT ON project_group_members
BEGIN
    INSERT INTO access_changes (user_id) VALUES (NULL);
END;

CREATE TRIGGER access_changes_group_grant_updated AFTER UPDATE ON project_group_members
BEGIN
    INSERT INTO access_changes (user_id) VALUES (NULL);
END;

CREATE TRIGGER access_changes_group_grant_deleted AFTER DELETE ON project_group_members
BEGIN
    INSERT INTO access_changes (user_id) VALUES (NULL);
END;

-- Keeps the log short: every 1000th entry drops those 1000 or more older. A server that had not
-- read the dropped entries sees the gap in the sequence and reloads everything instead.
CREATE TRIGGER access_changes_pruned AFTER INSERT ON access_changes
WHEN NEW.seq % 1000 = 0
BEGIN
    DELETE FROM access_changes WHERE seq <= NEW.seq - 1000;
END;
