-- Passwords carried over from another server keep their old hash until the first login replaces
-- it with argon2id, which is no password change: identity tokens end when the password epoch
-- moves (`user passwd`), not the hash (SQLite 0010).
ALTER TABLE users ADD COLUMN password_epoch BIGINT NOT NULL DEFAULT 0;

DROP TRIGGER refresh_tokens_end_on_password_change ON users;

CREATE TRIGGER refresh_tokens_end_on_password_change
    AFTER UPDATE OF password_epoch ON users FOR EACH ROW
    WHEN (NEW.password_epoch IS DISTINCT FROM OLD.password_epoch)
    EXECUTE FUNCTION portcullis_end_refresh_tokens();
