//! Pacing of client addresses whose token requests keep being refused: past
//! `throttle.address_refusals` refusals a second (an anonymous answer counts a tenth of one),
//! every request from that address (an IPv6 /64) first waits `throttle.address_delay_ms`.
//! Trusted proxies, which carry many clients, are never paced themselves.
//!
//! Throttling per account (`authn::throttle`) stops guessing one account; this stops one
//! address from spending the server's CPU on refusals (random names, a full verifier queue),
//! which would otherwise delay everyone's cached logins. A waiting request costs no CPU, and a
//! client that is answered later asks again later. Behind a shared address (NAT, a CI egress)
//! one noisy client slows the others too, by the delay, never refusing them.
//!
//! Counts live in memory per server: an address is one server's problem.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::StatusCode;

use super::client::address_key;
use crate::config::throttle::ThrottleConfig;

/// Most addresses counted at once; past it, those not seen in the last second are dropped.
const MAX_ADDRESSES: usize = 100_000;

/// Refusals per client address, by second.
pub struct Pacing {
    /// `throttle.address_refusals`, in tenths (see [`REFUSAL_WEIGHT`]).
    limit: u32,
    delay: Duration,
    addresses: Mutex<Addresses>,
}

/// A refused request counts this many tenths; an anonymous answer (a signature for nobody in
/// particular, which costs the CPU the same) counts one tenth, so an address may fetch ten times
/// as many anonymous tokens a second as it may be refused.
const REFUSAL_WEIGHT: u32 = 10;
const ANONYMOUS_WEIGHT: u32 = 1;

/// The counts, and when stale ones were last dropped.
struct Addresses {
    windows: HashMap<IpAddr, Window>,
    pruned: Instant,
}

/// One address's refusals in the current second and the one before.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    current: u32,
    previous: u32,
}

impl Window {
    /// Moves the window to `now`: the current second becomes the previous one when it ended.
    fn advance(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed >= Duration::from_secs(2) {
            *self = Window { started: now, current: 0, previous: 0 };
        } else if elapsed >= Duration::from_secs(1) {
            *self = Window { started: now, current: 0, previous: self.current };
        }
    }
}

impl Pacing {
    pub fn new(config: &ThrottleConfig) -> Pacing {
        Pacing {
            limit: config.address_refusals.saturating_mul(REFUSAL_WEIGHT),
            delay: Duration::from_millis(config.address_delay_ms),
            addresses: Mutex::new(Addresses { windows: HashMap::new(), pruned: Instant::now() }),
        }
    }

    /// How long a request from `client` (counted by [`address_key`]) waits before it is looked
    /// at (zero for most).
    pub fn delay_for(&self, client: IpAddr) -> Duration {
        let mut addresses = self.addresses.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(window) = addresses.windows.get_mut(&address_key(client)) else { return Duration::ZERO };
        window.advance(Instant::now());
        match window.current.max(window.previous) > self.limit {
            true => self.delay,
            false => Duration::ZERO,
        }
    }

    /// Counts the answer `status` given to `client`: a refusal, or an anonymous answer at a
    /// tenth of one; successes of authenticated callers never count.
    pub fn record(&self, client: IpAddr, status: StatusCode, anonymous: bool) {
        let refused = matches!(
            status,
            StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        );
        let weight = match (refused, anonymous) {
            (true, _) => REFUSAL_WEIGHT,
            (false, true) => ANONYMOUS_WEIGHT,
            (false, false) => return,
        };
        let now = Instant::now();
        let mut addresses = self.addresses.lock().unwrap_or_else(PoisonError::into_inner);
        let key = address_key(client);
        if !addresses.windows.contains_key(&key) && addresses.windows.len() >= MAX_ADDRESSES {
            // Stale counts are dropped at most once a second (a scan of the whole map); when
            // that leaves no room, a new address is not counted until there is.
            if now.saturating_duration_since(addresses.pruned) >= Duration::from_secs(1) {
                addresses.pruned = now;
                addresses.windows.retain(|_, window| {
                    now.saturating_duration_since(window.started) < Duration::from_secs(2)
                });
            }
            if addresses.windows.len() >= MAX_ADDRESSES {
                return;
            }
        }
        let window = addresses.windows.entry(key).or_insert(Window { started: now, current: 0, previous: 0 });
        window.advance(now);
        window.current = window.current.saturating_add(weight);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_paced_past_its_refusals_and_others_are_not() {
        let config =
            ThrottleConfig { address_refusals: 3, address_delay_ms: 100, ..ThrottleConfig::default() };
        let pacing = Pacing::new(&config);
        let (flood, user) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        for _ in 0..3 {
            pacing.record(flood, StatusCode::SERVICE_UNAVAILABLE, false);
        }
        assert_eq!(pacing.delay_for(flood), Duration::ZERO, "at the limit, not past it");
        pacing.record(flood, StatusCode::UNAUTHORIZED, false);
        assert_eq!(pacing.delay_for(flood), Duration::from_millis(100));
        for _ in 0..100 {
            pacing.record(user, StatusCode::OK, false);
        }
        assert_eq!(pacing.delay_for(user), Duration::ZERO, "successes never count");
        for _ in 0..30 {
            pacing.record(user, StatusCode::OK, true);
        }
        assert_eq!(pacing.delay_for(user), Duration::ZERO, "30 anonymous answers weigh 3 refusals");
        pacing.record(user, StatusCode::OK, true);
        assert_eq!(pacing.delay_for(user), Duration::from_millis(100), "the 31st is past the limit");
        let (one, other) = ("2001:db8::1".parse().unwrap(), "2001:db8::ffff:2".parse().unwrap());
        for _ in 0..4 {
            pacing.record(one, StatusCode::UNAUTHORIZED, false);
        }
        assert_eq!(pacing.delay_for(other), Duration::from_millis(100), "one /64, one client");
    }
}
