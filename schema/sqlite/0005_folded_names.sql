-- Login names are compared with ASCII case folding (directories treat `Alice` and `alice` as one
-- account): lookups fall back to the folded name, and a new account whose folded name is taken
-- is refused. These indexes keep both an index lookup. They are not UNIQUE: databases made before
-- folding may hold names that differ only in case, and every such account keeps working.
CREATE INDEX users_name_folded ON users (name COLLATE NOCASE);
CREATE INDEX robots_name_folded ON robots (name COLLATE NOCASE);

-- An admin group's say (directory_accounts.group_admin) is part of what the server holds in
-- memory about a user, so a change of it is logged like any other change of the user.
CREATE TRIGGER access_changes_directory_admin_inserted AFTER INSERT ON directory_accounts
WHEN NEW.group_admin = 1
BEGIN
    INSERT INTO access_changes (user_id) VALUES (NEW.user_id);
END;

CREATE TRIGGER access_changes_directory_admin_updated AFTER UPDATE OF group_admin ON directory_accounts
WHEN NEW.group_admin IS NOT OLD.group_admin
BEGIN
    INSERT INTO access_changes (user_id) VALUES (NEW.user_id);
END;

CREATE TRIGGER access_changes_directory_admin_deleted AFTER DELETE ON directory_accounts
WHEN OLD.group_admin = 1
BEGIN
    INSERT INTO access_changes (user_id) VALUES (OLD.user_id);
END;
