//! The flood scenario: password guessing at full speed while people work. Attacker connections
//! from one address send wrong passwords for random unknown names as fast as they get answers
//! (reconnecting when the server closes them); meanwhile the warm load runs from another address,
//! and after a few seconds a real user logs in for the first time from a third. What it shows:
//! how long that first login took, the warm latency, what the attackers got, and memory.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::http::{token_request, Connection};
use crate::load::{self, Feed, Outcome, Stop};
use crate::scenarios::QUERY;

/// Where the attack comes from, and where the real user logs in from.
const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const NEWCOMER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// Seconds of attack before the real user's first login.
const FIRST_LOGIN_AFTER: Duration = Duration::from_secs(5);

/// What one flood run saw.
pub struct FloodOutcome {
    pub warm: Outcome,
    /// The attackers' answers by status (0: the connection was closed or refused).
    pub attack: BTreeMap<u16, u64>,
    /// The first login's status and how long it took.
    pub first_login: (u16, Duration),
    pub seconds: f64,
}

/// Runs `attackers` guessing connections and `connections` warm ones for `seconds`.
pub async fn flood(
    address: SocketAddr,
    attackers: usize,
    connections: usize,
    seconds: f64,
    warm: Vec<u8>,
    first_login: Vec<u8>,
) -> FloodOutcome {
    raise_file_limit();
    let origin = Instant::now();
    let duration = Duration::from_secs_f64(seconds);
    let stop = Stop::at(origin + duration);
    let warm_load =
        tokio::spawn(load::drive(address, Feed::Cycle(vec![warm].into()), connections, stop.clone(), origin));
    let done = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let statuses = Arc::new(Mutex::new(BTreeMap::<u16, u64>::new()));
    let host = address.to_string();
    // The attackers get a thread and runtime of their own, so that the warm load's latency is
    // the server's, not the load generator's scheduling behind 2,000 tasks.
    let attack_runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let mut tasks = Vec::new();
    for _ in 0..attackers {
        let (done, counter, statuses, host) = (done.clone(), counter.clone(), statuses.clone(), host.clone());
        tasks.push(attack_runtime.spawn(async move {
            let mut seen: BTreeMap<u16, u64> = BTreeMap::new();
            while !done.load(Ordering::Relaxed) {
                let Ok(mut connection) = Connection::open_from(ATTACKER, address).await else {
                    *seen.entry(0).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                while !done.load(Ordering::Relaxed) {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let request = token_request(&host, QUERY, &format!("nobody-{n}"), "wrong-password");
                    match connection.exchange(&request).await {
                        Ok(status) => *seen.entry(status).or_default() += 1,
                        Err(_) => {
                            *seen.entry(0).or_default() += 1;
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let mut all = statuses.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (status, count) in seen {
                *all.entry(status).or_default() += count;
            }
        }));
    }
    let attack_thread = std::thread::spawn(move || {
        attack_runtime.block_on(async move {
            for task in tasks {
                let _ = task.await;
            }
        })
    });
    tokio::time::sleep(FIRST_LOGIN_AFTER).await;
    let started = Instant::now();
    let first = match Connection::open_from(NEWCOMER, address).await {
        Ok(mut connection) => connection.exchange(&first_login).await.unwrap_or(0),
        Err(_) => 0,
    };
    let first_login = (first, started.elapsed());
    tokio::time::sleep_until((origin + duration).into()).await;
    done.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || attack_thread.join()).await;
    let warm = warm_load.await.unwrap_or_default();
    let attack = statuses.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    FloodOutcome { warm, attack, first_login, seconds }
}

/// Two thousand sockets need more than the usual soft limit of 1,024 descriptors.
fn raise_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
