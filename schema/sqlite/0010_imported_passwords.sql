-- Passwords carried over from htpasswd, docker_auth or Harbor (`portcullis import`) are stored
-- with their old hash (bcrypt, PBKDF2, ...) and replaced by an argon2id hash of the same password
-- at the user's first login. That replacement is not a password change, so "the password
-- changed" can no longer be read off the hash: it is this counter, moved only when a password is
-- set (`user passwd`). Identity tokens end when it moves (it replaces 0002's trigger on the
-- hash), and remembered logins rest on it.
ALTER TABLE users ADD COLUMN password_epoch INTEGER NOT NULL DEFAULT 0;

DROP TRIGGER refresh_tokens_end_on_password_change;

CREATE TRIGGER refresh_tokens_end_on_password_change
AFTER UPDATE OF password_epoch ON users
WHEN NEW.password_epoch IS NOT OLD.password_epoch
BEGIN
    DELETE FROM refresh_tokens WHERE user_id = NEW.id;
END;
