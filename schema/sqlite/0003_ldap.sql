-- Directory (LDAP / Active Directory) groups: project roles granted to groups, and the groups
-- each directory user was in at their last directory login.
-- Users from the directory live in `users` with source = 'ldap' and no password hash.
-- Groups are compared by key: 'dn:' + the normalized DN, or 'name:' + the lower-case name.

CREATE TABLE project_group_members (
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    -- The comparable key of the group the role is granted to.
    group_key  TEXT    NOT NULL,
    -- The group as the admin typed it (a name or a DN), for listings.
    group_name TEXT    NOT NULL,
    role       TEXT    NOT NULL
               CHECK (role IN ('project_admin', 'maintainer', 'developer', 'guest', 'limited_guest')),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (project_id, group_key)
);

CREATE INDEX project_group_members_by_group ON project_group_members (group_key);

-- Two rows per group (its DN key and its name key), so a grant by either matches. Kept in the
-- database rather than in memory so that every way a user proves who they are (password,
-- refresh token, personal token) gets the same group roles.
CREATE TABLE user_directory_groups (
    user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    group_key TEXT    NOT NULL,
    -- The group's DN or name as the directory returned it, for `portcullis ldap test` and listings.
    group_name TEXT   NOT NULL,
    PRIMARY KEY (user_id, group_key)
);

CREATE INDEX user_directory_groups_by_group ON user_directory_groups (group_key);

-- What the directory said about a user at their last directory login: their entry's DN and
-- whether an admin group made them a system admin (kept apart from users.is_admin, which is
-- the admin's own decision). Credentials that do not go to the directory (refresh tokens,
-- personal tokens) read the admin flag from here.
CREATE TABLE directory_accounts (
    user_id    INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    dn         TEXT    NOT NULL,
    group_admin INTEGER NOT NULL DEFAULT 0 CHECK (group_admin IN (0, 1)),
    last_login INTEGER NOT NULL
);
