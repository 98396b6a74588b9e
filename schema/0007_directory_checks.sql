-- When the directory last vouched for a directory user: at a password login, or when one of their
-- identity tokens or personal tokens was re-checked by DN (`ldap.revalidate_secs`). Past that
-- age, the next use of such a credential asks the directory again; while it cannot answer, the
-- credential keeps working only up to `ldap.revalidate_grace_secs` past this time. Kept in the
-- database so that every server sees a check another one made. Existing rows start from their
-- last login.
ALTER TABLE directory_accounts ADD COLUMN checked_at INTEGER NOT NULL DEFAULT 0;
UPDATE directory_accounts SET checked_at = last_login;
