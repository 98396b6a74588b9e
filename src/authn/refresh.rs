//! OAuth2 refresh tokens: docker's identity token, issued at login and redeemed for every later
//! access token.
//!
//! A refresh token is an opaque random string, stored only as a digest, bound to one user and one
//! service. It is reusable and never rotated: docker keeps the one it got at login and ignores a
//! new one (moby#39718), so the refresh grant answers with the same token. It ends after an idle
//! lifetime without use, after a maximum lifetime whatever the use, on `portcullis token revoke`,
//! and at once when its user is disabled, removed or given a new password (database triggers and
//! cascades, see `schema/sqlite/0002_credentials.sql`).
//!
//! What the store keeps and prunes is decided here: lifetimes and [`MAX_PER_USER`]. Whether the
//! person may still have a token, and whether they are an admin, is decided with the account
//! snapshot when the token is granted ([`super::Identity::subject`]), as for every credential.
//!
//! Only people get refresh tokens. A robot's secret or a personal access token already is a
//! revocable machine credential, and a refresh token for one would need to carry its limits too.

use super::secret::{digest, generate, SecretKind};
use super::Identity;
use crate::config::RefreshTokenConfig;
use crate::store::{NewRefreshToken, Store, StoreError};

/// The start of every refresh token, so people and secret scanners can tell what one is.
pub const PREFIX: &str = "prt_";

/// Use is recorded at most this often: often enough for an idle lifetime counted in days, rare
/// enough that the token path stays read-only almost always.
const LAST_USED_GRANULARITY_SECS: i64 = 60;

/// How many refresh tokens one user keeps: each `docker login` makes one, and CI jobs log in
/// on every run. Past this, the least recently used go first.
pub const MAX_PER_USER: i64 = 200;

/// Most refresh tokens one user is given per [`ISSUE_WINDOW_SECS`]: each is a database write
/// that every server catches up on, so a client looping on `offline_token=true` with a
/// remembered login must not turn into a write storm (review likely defect 7). A `docker login`
/// needs one; past the limit the answer simply carries none, and docker keeps the password
/// instead.
pub const MAX_ISSUED_PER_WINDOW: u32 = 20;
/// The window of [`MAX_ISSUED_PER_WINDOW`].
pub const ISSUE_WINDOW_SECS: i64 = 60;

/// How many refresh tokens each user was given in the current window, in memory (each server
/// counts its own: the bound is on the write rate one server causes).
#[derive(Default)]
pub struct IssueLimit {
    /// User id to (window start, tokens issued in it).
    issued: std::sync::Mutex<std::collections::HashMap<i64, (i64, u32)>>,
}

impl IssueLimit {
    /// Whether `user_id` may be given one more refresh token at `now`; counts it if so.
    pub fn allow(&self, user_id: i64, now: i64) -> bool {
        let mut issued = self.issued.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if issued.len() > 100_000 {
            issued.retain(|_, (start, _)| now - *start < ISSUE_WINDOW_SECS);
        }
        let (start, count) = issued.entry(user_id).or_insert((now, 0));
        if now - *start >= ISSUE_WINDOW_SECS {
            (*start, *count) = (now, 0);
        }
        if *count >= MAX_ISSUED_PER_WINDOW {
            return false;
        }
        *count += 1;
        true
    }
}

/// When refresh tokens end.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub idle_secs: i64,
    pub max_secs: i64,
}

impl From<&RefreshTokenConfig> for Lifetimes {
    fn from(config: &RefreshTokenConfig) -> Self {
        let secs = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        Lifetimes { idle_secs: secs(config.idle_lifetime), max_secs: secs(config.max_lifetime) }
    }
}

impl Lifetimes {
    /// When a token created at `created_at` and last used at `last_used_at` ends.
    pub fn expires_at(&self, created_at: i64, last_used_at: i64) -> i64 {
        last_used_at.saturating_add(self.idle_secs).min(created_at.saturating_add(self.max_secs))
    }
}

/// Makes a refresh token for `user_id` at `service` and returns it, the only time it exists in
/// the clear. Expired tokens of the same user are dropped on the way.
pub fn issue(
    store: &dyn Store,
    user_id: i64,
    service: &str,
    client_id: &str,
    lifetimes: Lifetimes,
    now: i64,
) -> Result<String, StoreError> {
    let token = generate(PREFIX);
    let new = NewRefreshToken {
        digest: &digest(SecretKind::RefreshToken, &token),
        user_id,
        service,
        client_id,
        created_at: now,
        idle_before: now.saturating_sub(lifetimes.idle_secs),
        created_before: now.saturating_sub(lifetimes.max_secs),
        keep_at_most: MAX_PER_USER,
    };
    store.create_refresh_token(&new)?;
    Ok(token)
}

/// The user a refresh token stands for, if it is valid for `service` now; `None` for a token
/// that is unknown, revoked, expired, or for another service. (A disabled user's tokens are
/// deleted with the disable.)
pub fn redeem(
    store: &dyn Store,
    token: &str,
    service: &str,
    lifetimes: Lifetimes,
    now: i64,
) -> Result<Option<Identity>, StoreError> {
    let Some(found) = store.refresh_token_login(&digest(SecretKind::RefreshToken, token))? else {
        return Ok(None);
    };
    if found.service != service {
        return Ok(None);
    }
    if lifetimes.expires_at(found.created_at, found.last_used_at) <= now {
        tracing::info!(user = %found.user, token = found.id, "refresh token has expired");
        return Ok(None);
    }
    if now - found.last_used_at >= LAST_USED_GRANULARITY_SECS {
        // Best effort: a busy writer elsewhere must not fail a valid request.
        if let Err(error) = store.touch_refresh_token(found.id, now) {
            tracing::warn!(%error, token = found.id, "could not record the use of a refresh token");
        }
    }
    Ok(Some(Identity::User { id: found.user_id, name: found.user }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::{test_store, SqliteStore};
    use crate::store::{NewUser, Source};

    const LIFETIMES: Lifetimes = Lifetimes { idle_secs: 100, max_secs: 1000 };

    fn last_used(store: &SqliteStore) -> i64 {
        store
            .with_connection(|c| {
                Ok(c.query_row("SELECT last_used_at FROM refresh_tokens", [], |row| row.get(0))?)
            })
            .unwrap()
    }

    fn alice(store: &SqliteStore) -> i64 {
        let new = NewUser {
            name: "alice",
            password_hash: Some("$argon2id$a"),
            is_admin: true,
            source: Source::Database,
        };
        store.create_user(&new).unwrap().id
    }

    #[test]
    fn token_is_reusable_until_idle_or_max_lifetime() {
        let (_dir, store) = test_store();
        let alice = alice(&store);
        let start = crate::store::now();
        let token = issue(&store, alice, "registry", "docker", LIFETIMES, start).unwrap();
        assert!(token.starts_with(PREFIX));
        let stored: String = store
            .with_connection(|c| Ok(c.query_row("SELECT digest FROM refresh_tokens", [], |row| row.get(0))?))
            .unwrap();
        assert!(!stored.contains(&token[PREFIX.len()..]), "only the digest is stored");
        for _ in 0..3 {
            let identity = redeem(&store, &token, "registry", LIFETIMES, start + 10).unwrap();
            assert_eq!(identity, Some(Identity::User { id: alice, name: "alice".into() }));
        }
        assert_eq!(last_used(&store), start, "uses within a minute are not written");
        assert!(redeem(&store, &token, "registry", LIFETIMES, start + 90).unwrap().is_some());
        assert_eq!(last_used(&store), start + 90, "a use after a minute is recorded");
        assert!(
            redeem(&store, &token, "registry", LIFETIMES, start + 189).unwrap().is_some(),
            "idle time restarts"
        );
        assert!(
            redeem(&store, &token, "registry", LIFETIMES, start + 400).unwrap().is_none(),
            "idle too long"
        );
    }

    #[test]
    fn token_ends_at_max_lifetime_even_when_used() {
        let (_dir, store) = test_store();
        let alice = alice(&store);
        let token = issue(&store, alice, "registry", "docker", LIFETIMES, 0).unwrap();
        let mut now = 0;
        while now < 990 {
            now += 90;
            assert!(redeem(&store, &token, "registry", LIFETIMES, now).unwrap().is_some(), "at {now}");
        }
        assert!(redeem(&store, &token, "registry", LIFETIMES, 1000).unwrap().is_none());
    }

    #[test]
    fn issuing_is_limited_per_user_and_window() {
        let limit = IssueLimit::default();
        assert!((0..MAX_ISSUED_PER_WINDOW).all(|_| limit.allow(1, 100)));
        assert!(!limit.allow(1, 159), "the window is full");
        assert!(limit.allow(2, 159), "another user has their own");
        assert!(limit.allow(1, 160), "a new window");
    }

    #[test]
    fn token_is_bound_to_its_service_and_user() {
        let (_dir, store) = test_store();
        let alice = alice(&store);
        let token = issue(&store, alice, "registry", "docker", LIFETIMES, 0).unwrap();
        assert!(redeem(&store, &token, "other-registry", LIFETIMES, 1).unwrap().is_none());
        assert!(redeem(&store, "prt_unknown", "registry", LIFETIMES, 1).unwrap().is_none());
        store.set_user_disabled("alice", true).unwrap();
        assert!(redeem(&store, &token, "registry", LIFETIMES, 1).unwrap().is_none());
    }
}
