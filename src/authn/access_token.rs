//! Personal access tokens logging in: the person's user name, the token as the password.
//!
//! The token carries the person's rights cut down to its own list. It is recognised by its
//! shape (`pat_` and 32 letters and digits) so that ordinary passwords never cost a token
//! lookup and tokens never cost an argon2 verification. It works for any row of `users`, so a
//! directory user has tokens too, without a directory round trip per request.

use rusqlite::Connection;

use super::secret::{digest, looks_generated, SecretKind, Verdict};
use super::Identity;
use crate::store::{access_tokens, StoreError};

/// The start of every personal access token.
pub const PREFIX: &str = "pat_";

/// Checks `token` as a personal access token of `user`. `NotMine` when it is not one, which
/// sends the caller on to the password: a password may happen to look like a token.
pub fn check(connection: &Connection, user: &str, token: &str, now: i64) -> Result<Verdict, StoreError> {
    if !looks_generated(PREFIX, token) {
        return Ok(Verdict::NotMine);
    }
    let Some(login) = access_tokens::login(connection, user, &digest(SecretKind::PersonalToken, token))?
    else {
        return Ok(Verdict::NotMine);
    };
    if login.disabled {
        return Ok(Verdict::Refused);
    }
    if login.token.expires_at.is_some_and(|at| at <= now) {
        let (user, token) = (&login.token.user, &login.token.name);
        tracing::info!(%user, %token, "personal access token has expired");
        return Ok(Verdict::Refused);
    }
    let ceiling = login.token.ceiling();
    // A directory user may be an admin through an admin group, as recorded at their last login.
    let is_admin = login.is_admin || crate::store::directory::group_admin(connection, login.user_id)?;
    Ok(Verdict::Accepted(Identity::PersonalToken {
        token_id: login.token.id,
        user_id: login.user_id,
        name: login.token.user,
        is_admin,
        ceiling,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::secret::generate;
    use crate::store::{test_store, users};

    #[test]
    fn token_of_a_live_user_is_accepted_until_it_expires() {
        let (_dir, store) = test_store();
        store
            .with_connection(|c| {
                users::create(c, "alice", Some("$argon2id$a"), false)?;
                let token = generate(PREFIX);
                let stored = digest(SecretKind::PersonalToken, &token);
                access_tokens::create(c, "alice", "ci", &stored, "pull", None, Some(2000))?;
                assert!(matches!(
                    check(c, "alice", &token, 1000)?,
                    Verdict::Accepted(Identity::PersonalToken { .. })
                ));
                assert!(matches!(check(c, "alice", &token, 2000)?, Verdict::Refused), "expired");
                assert!(matches!(check(c, "bob", &token, 1000)?, Verdict::NotMine), "someone else's name");
                assert!(matches!(check(c, "alice", "password", 1000)?, Verdict::NotMine));
                assert!(matches!(check(c, "alice", &generate(PREFIX), 1000)?, Verdict::NotMine));
                users::set_disabled(c, "alice", true)?;
                assert!(matches!(check(c, "alice", &token, 1000)?, Verdict::Refused), "disabled user");
                Ok(())
            })
            .unwrap();
    }
}
