//! Password guessing, slowed down: the policy of `[throttle]`, applied only to attempts that would
//! hash a password or bind to the directory (remembered logins, robots, personal tokens and
//! refresh tokens are random or already verified, and are never throttled).
//!
//! - Per (account, client address): after `client_failures` failures, every further attempt from
//!   that pair must wait `client_delay` seconds, doubling with each failure up to
//!   `client_max_delay`; an attempt before then is answered 429 at once, without hashing.
//! - Per account, from all addresses: past `account_failures` failures every attempt for it is
//!   slowed down server-side (up to `account_max_delay_ms`), never refused, so an attacker cycling
//!   addresses cannot lock the real user out. A pair that logged in as that account within
//!   `known_client` seconds keeps its own budget and is not slowed.
//! - Directory binds: at most `directory_failures` failed binds per account per `window` reach the
//!   directory from clients that did not log in as it recently, one more from a client that did
//!   (the real user, whose right password resets the directory's own count); past that the
//!   attempt is answered 429 without binding, so Portcullis never locks an employee out of Active
//!   Directory. A successful directory login starts the count afresh, as the directory does.
//!
//! Failures are forgotten `window` seconds after the last one. Names are compared folded, as
//! accounts are. The counters live in memory, bounded (the oldest entries go first); those of
//! existing accounts are also counted in the store, and [`Throttle::share`] takes in what other
//! processes counted there and what `portcullis user unlock` cleared.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::throttle::ThrottleConfig;
use crate::store::names::fold;
use crate::store::LoginFailures;

/// Most (account, address) pairs and accounts remembered; past it the oldest are dropped.
const MAX_ENTRIES: usize = 100_000;

/// An attempt that must not be made now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub retry_after: Duration,
}

#[derive(Debug, Clone)]
struct PairState {
    failures: u32,
    last_failure: Instant,
    /// No attempt from this pair before this.
    blocked_until: Option<Instant>,
    /// The last successful login of this pair.
    last_success: Option<Instant>,
}

#[derive(Debug, Clone)]
struct AccountState {
    failures: u32,
    last_failure: Instant,
    /// Failed directory binds in the current window.
    directory_failures: u32,
    /// The last `user unlock` of this account taken in (store time).
    cleared_seen: Option<i64>,
}

/// What kind of check an attempt is about to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// argon2 against the database.
    Password,
    /// A bind to the directory.
    DirectoryBind,
}

/// The counters and the policy.
pub struct Throttle {
    config: ThrottleConfig,
    pairs: Mutex<HashMap<(String, IpAddr), PairState>>,
    accounts: Mutex<HashMap<String, AccountState>>,
    /// Per (name, address): when its refusals were last logged, and how many came since.
    logged: Mutex<HashMap<(String, IpAddr), LogState>>,
}

#[derive(Debug, Clone, Copy)]
struct LogState {
    /// `None` until the first line.
    at: Option<Instant>,
    unlogged: u64,
}

impl Throttle {
    pub fn new(config: &ThrottleConfig) -> Self {
        Throttle {
            config: config.clone(),
            pairs: Mutex::default(),
            accounts: Mutex::default(),
            logged: Mutex::default(),
        }
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.config.window)
    }

    pub fn window_secs(&self) -> u64 {
        self.config.window
    }

    /// Whether an attempt for `name` from `client` may make `check` now: `Err` with how long to
    /// wait, or `Ok` with how long to slow it down first.
    pub fn admit(&self, name: &str, client: IpAddr, check: Check) -> Result<Duration, Wait> {
        let now = Instant::now();
        let name = fold(name);
        let known = {
            let pairs = self.pairs.lock().unwrap_or_else(PoisonError::into_inner);
            let pair = pairs.get(&(name.clone(), client));
            if let Some(until) = pair.and_then(|pair| pair.blocked_until).filter(|until| *until > now) {
                return Err(Wait { retry_after: until - now });
            }
            pair.and_then(|pair| pair.last_success)
                .is_some_and(|at| now - at < Duration::from_secs(self.config.known_client))
        };
        let accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(account) = accounts.get(&name).filter(|account| now - account.last_failure < self.window())
        else {
            return Ok(Duration::ZERO);
        };
        if check == Check::DirectoryBind
            && account.directory_failures >= self.config.directory_failures + u32::from(known)
        {
            return Err(Wait {
                retry_after: (account.last_failure + self.window()).saturating_duration_since(now),
            });
        }
        if known || account.failures < self.config.account_failures {
            return Ok(Duration::ZERO);
        }
        let excess = account.failures - self.config.account_failures;
        let delay = Duration::from_millis(100u64.saturating_mul(1 << excess.min(16)));
        Ok(delay.min(Duration::from_millis(self.config.account_max_delay_ms)))
    }

    /// Counts a failed `check` for `name` from `client`.
    pub fn failed(&self, name: &str, client: IpAddr, check: Check) {
        let now = Instant::now();
        let name = fold(name);
        {
            let mut pairs = self.pairs.lock().unwrap_or_else(PoisonError::into_inner);
            bound(&mut pairs, |pair| pair.last_failure);
            let pair = pairs.entry((name.clone(), client)).or_insert(PairState {
                failures: 0,
                last_failure: now,
                blocked_until: None,
                last_success: None,
            });
            if now - pair.last_failure >= self.window() {
                pair.failures = 0;
            }
            pair.failures += 1;
            pair.last_failure = now;
            if pair.failures >= self.config.client_failures {
                let doublings = (pair.failures - self.config.client_failures).min(30);
                let delay = self.config.client_delay.saturating_mul(1u64 << doublings);
                pair.blocked_until = Some(now + Duration::from_secs(delay.min(self.config.client_max_delay)));
            }
        }
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        bound(&mut accounts, |account| account.last_failure);
        let account = accounts.entry(name).or_insert(AccountState {
            failures: 0,
            last_failure: now,
            directory_failures: 0,
            cleared_seen: None,
        });
        if now - account.last_failure >= self.window() {
            account.failures = 0;
            account.directory_failures = 0;
        }
        account.failures += 1;
        account.last_failure = now;
        if check == Check::DirectoryBind {
            account.directory_failures += 1;
        }
    }

    /// Takes in the store's counts of `name` (`stored`, with `now_secs` the store's clock): the
    /// higher of ours and theirs while in the window, and, when `user unlock` cleared them after
    /// we last looked, every count of ours for that account, the per-address waits included.
    pub fn share(&self, name: &str, stored: Option<&LoginFailures>, now_secs: i64) {
        let Some(stored) = stored else { return };
        let name = fold(name);
        let now = Instant::now();
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        let cleared = stored
            .cleared_at
            .filter(|at| accounts.get(&name).is_none_or(|account| account.cleared_seen < Some(*at)));
        if let Some(cleared_at) = cleared {
            accounts.insert(
                name.clone(),
                AccountState {
                    failures: 0,
                    last_failure: now,
                    directory_failures: 0,
                    cleared_seen: Some(cleared_at),
                },
            );
            drop(accounts);
            let mut pairs = self.pairs.lock().unwrap_or_else(PoisonError::into_inner);
            pairs.retain(|(pair_name, _), _| *pair_name != name);
            return;
        }
        let age = Duration::from_secs(u64::try_from(now_secs - stored.last_failure).unwrap_or(0));
        if age >= self.window() {
            return;
        }
        let account = accounts.entry(name).or_insert(AccountState {
            failures: 0,
            last_failure: now,
            directory_failures: 0,
            cleared_seen: stored.cleared_at,
        });
        account.failures = account.failures.max(u32::try_from(stored.failures).unwrap_or(u32::MAX));
        account.directory_failures =
            account.directory_failures.max(u32::try_from(stored.directory_failures).unwrap_or(u32::MAX));
        let stored_at = now.checked_sub(age).unwrap_or(now);
        account.last_failure = account.last_failure.max(stored_at);
    }

    /// Logs a refused login of `name` (clipped) from `client`: at most one line per name and
    /// address per `log_interval`, with the count of refusals since, so that a flood keeps the
    /// counts complete without amplifying into the logs.
    pub fn log_refusal(&self, name: &str, client: IpAddr) {
        let interval = Duration::from_secs(self.config.log_interval);
        let name = crate::text::for_message(name);
        let now = Instant::now();
        let mut logged = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
        bound(&mut logged, |state| state.at.unwrap_or(now));
        let state = logged.entry((name.clone(), client)).or_insert(LogState { at: None, unlogged: 0 });
        state.unlogged += 1;
        if state.at.is_none_or(|at| now - at >= interval) {
            tracing::info!(user = %name, %client, refusals = state.unlogged, "authentication failed");
            *state = LogState { at: Some(now), unlogged: 0 };
        }
    }

    /// A successful directory login of `name`: the directory's own failure count starts afresh,
    /// and so does ours.
    pub fn directory_succeeded(&self, name: &str) {
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(account) = accounts.get_mut(&fold(name)) {
            account.directory_failures = 0;
        }
    }

    /// A successful login of `name` from `client`: the pair starts afresh and becomes known.
    pub fn succeeded(&self, name: &str, client: IpAddr) {
        let now = Instant::now();
        let mut pairs = self.pairs.lock().unwrap_or_else(PoisonError::into_inner);
        bound(&mut pairs, |pair| pair.last_failure);
        pairs.insert(
            (fold(name), client),
            PairState { failures: 0, last_failure: now, blocked_until: None, last_success: Some(now) },
        );
    }
}

/// Keeps `map` below [`MAX_ENTRIES`] by dropping the entries whose `time` is oldest (a tenth of
/// them at once, so the cost is spread).
fn bound<K: Clone + Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>, time: impl Fn(&V) -> Instant) {
    if map.len() < MAX_ENTRIES {
        return;
    }
    let mut times: Vec<(Instant, K)> = map.iter().map(|(key, value)| (time(value), key.clone())).collect();
    times.sort_by_key(|(time, _)| *time);
    for (_, key) in times.into_iter().take(MAX_ENTRIES / 10) {
        map.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn a_pair_waits_after_its_failures_and_others_are_only_slowed() {
        let config = ThrottleConfig { client_failures: 3, account_failures: 5, ..Default::default() };
        let throttle = Throttle::new(&config);
        for _ in 0..3 {
            assert_eq!(throttle.admit("alice", ip(3), Check::Password), Ok(Duration::ZERO));
            throttle.failed("Alice", ip(3), Check::Password);
        }
        let wait = throttle.admit("alice", ip(3), Check::Password).unwrap_err();
        assert!(wait.retry_after > Duration::from_secs(1) && wait.retry_after <= Duration::from_secs(2));
        assert_eq!(throttle.admit("alice", ip(4), Check::Password), Ok(Duration::ZERO), "another address");
        for last in 10..20 {
            throttle.failed("alice", ip(last), Check::Password);
        }
        let slowed = throttle.admit("alice", ip(4), Check::Password).unwrap();
        assert!(slowed > Duration::ZERO && slowed <= Duration::from_millis(config.account_max_delay_ms));
        throttle.succeeded("alice", ip(5));
        assert_eq!(throttle.admit("alice", ip(5), Check::Password), Ok(Duration::ZERO), "a known client");
    }

    #[test]
    fn directory_binds_stop_before_a_lockout() {
        let throttle = Throttle::new(&ThrottleConfig::default());
        throttle.succeeded("carol", ip(2));
        for last in 10..12 {
            assert!(throttle.admit("carol", ip(last), Check::DirectoryBind).is_ok());
            throttle.failed("carol", ip(last), Check::DirectoryBind);
        }
        assert!(throttle.admit("carol", ip(20), Check::DirectoryBind).is_err(), "no third failed bind");
        assert!(
            throttle.admit("carol", ip(2), Check::DirectoryBind).is_ok(),
            "the known client may try once"
        );
        throttle.failed("carol", ip(2), Check::DirectoryBind);
        assert!(throttle.admit("carol", ip(2), Check::DirectoryBind).is_err());
        throttle.directory_succeeded("carol");
        assert!(throttle.admit("carol", ip(21), Check::DirectoryBind).is_ok(), "a success starts afresh");
    }
}
