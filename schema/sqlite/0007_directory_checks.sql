-- When the directory last vouched for a directory user: at a password login, or when one of their
-- identity tokens or personal tokens was re-checked by DN (`ldap.revalidate_secs`). Past that
-- age, the next use of such a credential asks the directory again; while it cannot answer, the
-- credential keeps working only up to `ldap.revalidate_grace_secs` past this time. Kept in the
-- database so that every server sees a check another one made. Existing rows start from their
-- last login.
ALTER TABLE directory_accounts ADD COLUMN checked_at INTEGER NOT NULL DEFAULT 0;
UPDATE directory_accounts SET checked_at = last_login;

-- The entry's lasting identifier (OpenLDAP entryUUID, Active Directory objectGUID in hex), which
-- no rename or move changes and no other entry gets: a DN that names another entry later (the
-- user deleted, someone else created or renamed into that DN) is not this user. NULL where the
-- directory gives none, or until the next login or check records it.
ALTER TABLE directory_accounts ADD COLUMN entry_id TEXT;

-- When the entry's password last changed (ppolicy pwdChangedTime, AD pwdLastSet), as last seen:
-- when the directory reports a later change, the identity tokens made before it are revoked (a
-- phished password that was reset must not live on in a docker login).
ALTER TABLE directory_accounts ADD COLUMN password_changed_at INTEGER;

-- A database system admin (the bootstrap admin among them) is never the directory's: a claim a
-- directory login made on one in directory-first order (possible before this version) is
-- released, with the identity tokens those logins made.
DELETE FROM refresh_tokens WHERE user_id IN (
    SELECT d.user_id FROM directory_accounts d JOIN users u ON u.id = d.user_id
     WHERE u.source = 'database' AND u.is_admin = 1);
DELETE FROM user_directory_groups WHERE user_id IN (
    SELECT d.user_id FROM directory_accounts d JOIN users u ON u.id = d.user_id
     WHERE u.source = 'database' AND u.is_admin = 1);
DELETE FROM directory_accounts WHERE user_id IN (
    SELECT id FROM users WHERE source = 'database' AND is_admin = 1);
