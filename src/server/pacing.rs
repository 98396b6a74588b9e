//! Pacing of client addresses whose token requests keep being refused: past
//! `throttle.address_refusals` refusals a second, every request from that address first waits
//! `throttle.address_delay_ms`. Throttling per account (`authn::throttle`) stops guessing one
//! account; this stops one address from spending the server's CPU on refusals (random names,
//! a full verifier queue), which would otherwise delay everyone's cached logins. A waiting
//! request costs no CPU, and a client that is answered later asks again later.
//!
//! Counts live in memory per server: an address is one server's problem.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::StatusCode;

use crate::config::throttle::ThrottleConfig;

/// Most addresses counted at once; past it, those not seen in the last second are dropped.
const MAX_ADDRESSES: usize = 100_000;

/// Refusals per client address, by second.
pub struct Pacing {
    refusals_per_second: u32,
    delay: Duration,
    addresses: Mutex<HashMap<IpAddr, Window>>,
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
            refusals_per_second: config.address_refusals,
            delay: Duration::from_millis(config.address_delay_ms),
            addresses: Mutex::new(HashMap::new()),
        }
    }

    /// How long a request from `client` waits before it is looked at (zero for most).
    pub fn delay_for(&self, client: IpAddr) -> Duration {
        let mut addresses = self.addresses.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(window) = addresses.get_mut(&client) else { return Duration::ZERO };
        window.advance(Instant::now());
        match window.current.max(window.previous) > self.refusals_per_second {
            true => self.delay,
            false => Duration::ZERO,
        }
    }

    /// Counts the answer `status` given to `client`: refusals only.
    pub fn record(&self, client: IpAddr, status: StatusCode) {
        let refused = matches!(
            status,
            StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        );
        if !refused {
            return;
        }
        let now = Instant::now();
        let mut addresses = self.addresses.lock().unwrap_or_else(PoisonError::into_inner);
        if addresses.len() >= MAX_ADDRESSES {
            addresses
                .retain(|_, window| now.saturating_duration_since(window.started) < Duration::from_secs(1));
        }
        let window = addresses.entry(client).or_insert(Window { started: now, current: 0, previous: 0 });
        window.advance(now);
        window.current = window.current.saturating_add(1);
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
            pacing.record(flood, StatusCode::SERVICE_UNAVAILABLE);
        }
        assert_eq!(pacing.delay_for(flood), Duration::ZERO, "at the limit, not past it");
        pacing.record(flood, StatusCode::UNAUTHORIZED);
        assert_eq!(pacing.delay_for(flood), Duration::from_millis(100));
        for _ in 0..100 {
            pacing.record(user, StatusCode::OK);
        }
        assert_eq!(pacing.delay_for(user), Duration::ZERO, "successes never count");
    }
}
