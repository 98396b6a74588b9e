//! Personal access tokens logging in: the person's user name, the token as the password.
//!
//! The token carries the person's rights cut down to its own list. It is recognised by its
//! shape (`pat_` and 32 letters and digits) so that ordinary passwords never cost a token
//! lookup and tokens never cost an argon2 verification. It works for any row of `users`, so a
//! directory user has tokens too, without a directory round trip per request. Whether the token
//! is still unexpired and its person enabled, and whether that person is an admin, is decided
//! with the account snapshot when the token is granted ([`super::Identity::subject`]).

use super::secret::{digest, looks_generated, SecretKind};
use super::{Identity, Verdict};
use crate::store::{Store, StoreError};

/// The start of every personal access token.
pub const PREFIX: &str = "pat_";

/// Whether `text` has a personal access token's shape (a password may happen to have it too).
pub fn looks_like_one(text: &str) -> bool {
    looks_generated(PREFIX, text)
}

/// Checks `token` as a personal access token of `user`. `Unknown` when it is not one, which
/// sends the caller on to the password: a password may happen to look like a token.
pub fn check(store: &dyn Store, user: &str, token: &str) -> Result<Verdict, StoreError> {
    if !looks_like_one(token) {
        return Ok(Verdict::Unknown);
    }
    let Some(login) = store.personal_token_login(user, &digest(SecretKind::PersonalToken, token))? else {
        return Ok(Verdict::Unknown);
    };
    // Best effort: a busy writer elsewhere must not fail a valid login.
    if let Err(error) = store.record_personal_token_use(login.token.id, crate::store::now()) {
        tracing::debug!(%error, "could not record the personal token's use");
    }
    Ok(Verdict::Accepted(Identity::of_personal_token(login.token, login.user_id)))
}

impl Identity {
    /// Who presents `token`, a personal token of user `user_id` (also `access check --pat`).
    pub fn of_personal_token(token: crate::store::PersonalToken, user_id: i64) -> Identity {
        let ceiling = token.ceiling();
        Identity::PersonalToken { token_id: token.id, user_id, name: token.user, ceiling }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::secret::generate;
    use crate::store::sqlite::fixtures::database_user;
    use crate::store::sqlite::test_store;
    use crate::store::NewPersonalToken;

    #[test]
    fn only_a_token_of_that_user_is_accepted() {
        let (_dir, store) = test_store();
        let alice = database_user("alice");
        store.create_user(&alice).unwrap();
        let token = generate(PREFIX);
        let stored = digest(SecretKind::PersonalToken, &token);
        let new = NewPersonalToken {
            user: "alice",
            label: "ci",
            digest: &stored,
            actions: "pull",
            projects: None,
            expires_at: Some(2000),
        };
        store.create_personal_token(&new).unwrap();
        let accepted = check(&store, "alice", &token).unwrap();
        assert!(
            matches!(accepted, Verdict::Accepted(Identity::PersonalToken { ref name, .. }) if name == "alice")
        );
        assert!(matches!(check(&store, "bob", &token).unwrap(), Verdict::Unknown), "someone else's name");
        assert!(matches!(check(&store, "alice", "password").unwrap(), Verdict::Unknown));
        assert!(matches!(check(&store, "alice", &generate(PREFIX)).unwrap(), Verdict::Unknown));
    }
}
