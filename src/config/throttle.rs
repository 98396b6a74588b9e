//! The `[throttle]` section: how password guessing is slowed, and how far the directory is
//! spared. Every number of the policy is here; `src/authn/throttle.rs` applies it.

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Failed password logins for one account from one client address before every further
    /// attempt from that pair must wait (and is answered 429 at once until then).
    pub client_failures: u32,
    /// The first such wait, in seconds; it doubles with each further failure.
    pub client_delay: u64,
    /// The longest such wait, in seconds.
    pub client_max_delay: u64,
    /// Failed logins for one account from all addresses together past which every attempt for
    /// it is slowed down server-side (never refused), except from a client that logged in as it
    /// recently.
    pub account_failures: u32,
    /// The longest server-side slowdown of one attempt, in milliseconds.
    pub account_max_delay_ms: u64,
    /// Seconds after the last failure at which an account's or a client's failures are
    /// forgotten.
    pub window: u64,
    /// Seconds a client address that logged in as an account keeps its own budget for it,
    /// untouched by other addresses' failures.
    pub known_client: u64,
    /// Failed directory binds for one account per `window` that may reach the directory, from all
    /// clients together: keep it below the directory's own lockout threshold (a directory that
    /// locks after 3 failures needs 2 here; Active Directory sites commonly lock after 5 or 10),
    /// so that guessing through Portcullis never locks an employee out.
    pub directory_failures: u32,
    /// Directory operations (searches and binds) in flight at once.
    pub directory_concurrency: usize,
    /// Seconds between log lines about one account and address's failures: under a flood, one
    /// line per interval with the count instead of one per attempt.
    pub log_interval: u64,
    /// Refused token requests (401, 429, 503) from one client address per second past which
    /// every request from that address waits `address_delay_ms` before it is looked at: a
    /// guessing flood then runs at the pace of its connections, not of the CPU, and cached
    /// logins from other addresses keep their latency. Successful requests never count.
    pub address_refusals: u32,
    /// That wait, in milliseconds.
    pub address_delay_ms: u64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            client_failures: 5,
            client_delay: 2,
            client_max_delay: 900,
            account_failures: 20,
            account_max_delay_ms: 3000,
            window: 900,
            known_client: 7 * 86400,
            directory_failures: 2,
            directory_concurrency: 32,
            log_interval: 60,
            address_refusals: 50,
            address_delay_ms: 250,
        }
    }
}

impl ThrottleConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.client_failures == 0 || self.account_failures == 0 || self.directory_failures == 0 {
            return Err(ConfigError::Invalid(
                "throttle: client_failures, account_failures and directory_failures must be at least 1"
                    .into(),
            ));
        }
        if self.client_delay == 0 || self.client_max_delay < self.client_delay || self.window == 0 {
            return Err(ConfigError::Invalid(
                "throttle: client_delay and window must be positive and client_max_delay at least client_delay"
                    .into(),
            ));
        }
        if self.address_refusals == 0 || self.address_delay_ms > 10_000 {
            return Err(ConfigError::Invalid(
                "throttle: address_refusals must be at least 1 and address_delay_ms at most 10000".into(),
            ));
        }
        if self.directory_concurrency == 0 || self.log_interval == 0 {
            return Err(ConfigError::Invalid(
                "throttle: directory_concurrency and log_interval must be positive".into(),
            ));
        }
        Ok(())
    }
}
