//! [`VerifierPool`]: a fixed set of threads that verify password hashes (argon2id, and the kinds
//! `portcullis import` carries over, see [`super::carried_hash`]), each reusing one block of
//! argon2 memory. A carried-over hash that matches is re-made as argon2id on the same thread.
//!
//! Why not `spawn_blocking` per verification: tokio's blocking pool grows to as many threads as
//! there are waiting logins (up to 512), and each verification allocated and freed its own
//! `memory_kib`. Measured during a cold-login run with 64 connections: 64 threads and a resident
//! size that grew past 3 GiB, as the allocator kept the freed hash memory in per-thread arenas.
//! Here the number of threads is the concurrency limit itself, and each thread hashes in the same
//! buffer every time (argon2 overwrites it; no zeroing, no page faults after the first login): the
//! hashing memory is at most `threads x memory_kib`, whatever the burst. Logins beyond the
//! threads wait in the queue holding only their password and hash string, and one whose client
//! has gone is skipped instead of hashed.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use argon2::password_hash::{rand_core::OsRng, Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::oneshot;

use super::carried_hash::{self, Scheme};
use crate::metrics::metrics;

/// One verification waiting for a thread.
struct Job {
    password: String,
    phc: Arc<str>,
    /// Where the answer goes; closed when the request was abandoned.
    reply: oneshot::Sender<Checked>,
    /// When it joined the queue, for the wait metric.
    queued: std::time::Instant,
}

/// Waiting jobs, one line per client address, served in turn: a client that sends a thousand
/// logins waits behind its own, not in front of everyone else's.
#[derive(Default)]
struct Queue {
    lines: HashMap<IpAddr, VecDeque<Job>>,
    /// Addresses with waiting jobs, in the order they are served next.
    turns: VecDeque<IpAddr>,
    waiting: usize,
    /// Set when the pool is dropped: the threads end.
    closed: bool,
}

/// What a verifier thread found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub matched: bool,
    /// For a carried-over hash that matched: an argon2id hash of the same password at the
    /// configured cost, to be stored in its place.
    pub upgraded: Option<String>,
    /// How long the verification itself took (not the upgrade), for the refusal floor.
    pub took: std::time::Duration,
}

/// The threads and the queue that feeds them. Dropping it ends the threads.
pub struct VerifierPool {
    shared: Arc<(Mutex<Queue>, Condvar)>,
    /// Jobs waiting at most, and per client address at most.
    max_waiting: usize,
    max_per_client: usize,
}

/// No verifier thread took the job or answered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the password verifier threads have stopped")]
pub struct PoolStopped;

/// Why a verification was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotVerified {
    /// The queue (or this client's share of it) is full: answer at once, try again shortly.
    Busy,
    Stopped(PoolStopped),
}

impl VerifierPool {
    /// Starts `threads` verifier threads that hash at the configured cost `params` and keep
    /// buffers of that size (a stored hash that needs more gets a buffer for that one
    /// verification), with at most `max_waiting` jobs waiting, a quarter of them (at least one)
    /// per client.
    pub fn start(threads: usize, params: Params, max_waiting: usize) -> std::io::Result<VerifierPool> {
        let shared = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
        for index in 0..threads.max(1) {
            let (shared, params) = (shared.clone(), params.clone());
            std::thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || work(&shared, &params))?;
        }
        Ok(VerifierPool { shared, max_waiting: max_waiting.max(1), max_per_client: (max_waiting / 4).max(1) })
    }

    /// Whether a job of `client` would find a place now (it may still not, a moment later).
    pub fn has_room(&self, client: IpAddr) -> bool {
        let queue = self.shared.0.lock().unwrap_or_else(PoisonError::into_inner);
        let line_length = queue.lines.get(&client).map_or(0, VecDeque::len);
        queue.waiting < self.max_waiting && line_length < self.max_per_client
    }

    /// Whether `password` matches the stored hash `phc`, computed on a pool thread in `client`'s
    /// turn. `Busy` at once when the queue or the client's share of it is full; `Stopped` when no
    /// thread is left to answer (they panicked): the server's fault, never a wrong password.
    pub async fn verify(
        &self,
        password: String,
        phc: Arc<str>,
        client: IpAddr,
    ) -> Result<Checked, NotVerified> {
        let (reply, answer) = oneshot::channel();
        {
            let (queue, wake) = &*self.shared;
            let mut queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
            let line_length = queue.lines.get(&client).map_or(0, VecDeque::len);
            if queue.waiting >= self.max_waiting || line_length >= self.max_per_client {
                return Err(NotVerified::Busy);
            }
            if line_length == 0 {
                queue.turns.push_back(client);
            }
            let queued = std::time::Instant::now();
            queue.lines.entry(client).or_default().push_back(Job { password, phc, reply, queued });
            queue.waiting += 1;
            metrics().hash_queue_changed(1);
            wake.notify_one();
        }
        answer.await.map_err(|_| NotVerified::Stopped(PoolStopped))
    }
}

impl Drop for VerifierPool {
    fn drop(&mut self) {
        let (queue, wake) = &*self.shared;
        queue.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
        wake.notify_all();
    }
}

/// How much lower than the async workers the verifier threads run (a nice value). With both
/// cores hashing a login burst, workers at the same priority wait their turn behind the hashes;
/// at nice 10 (a tenth of the weight) they run first, while a burst still gets whatever cached
/// requests leave, and all of the cores when nothing else runs. Measured with `portcullis-bench`
/// (warm load on 64 connections while 200 new logins arrive, 2 cores): nice 0 gave a warm p99
/// of 18 ms and the burst took 3.4 s; nice 5, 15 ms and 4.9 s; nice 10, 8 ms and 7.0 s.
const NICENESS: i32 = 10;

/// Runs the calling thread at [`NICENESS`]. Best effort: without it only latency suffers.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority take plain integers and touch no memory of ours.
    unsafe {
        let thread = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, thread, NICENESS);
    }
}

/// The next job in turn: the first of the next address's line, that address going to the back
/// of the turns if it has more. `None` once the pool is closed.
fn next_job(shared: &(Mutex<Queue>, Condvar)) -> Option<Job> {
    let (queue, wake) = shared;
    let mut queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if queue.closed {
            return None;
        }
        if let Some(client) = queue.turns.pop_front() {
            let line = queue.lines.get_mut(&client)?;
            let job = line.pop_front();
            if line.is_empty() {
                queue.lines.remove(&client);
            } else {
                queue.turns.push_back(client);
            }
            queue.waiting -= 1;
            metrics().hash_queue_changed(-1);
            if let Some(job) = job {
                metrics().hash_waited(job.queued.elapsed().as_secs_f64());
                return Some(job);
            }
            continue;
        }
        queue = wake.wait(queue).unwrap_or_else(PoisonError::into_inner);
    }
}

/// A verifier thread: takes jobs until the pool is dropped.
fn work(shared: &(Mutex<Queue>, Condvar), params: &Params) {
    lower_priority();
    let mut memory: Vec<Block> = Vec::new();
    let kept_blocks = params.block_count();
    while let Some(job) = next_job(shared) {
        if job.reply.is_closed() {
            continue;
        }
        let started = std::time::Instant::now();
        let password = job.password.as_bytes();
        let carried = Scheme::of(&job.phc) != Scheme::Argon2;
        let matched = match carried {
            false => verify_in(&mut memory, kept_blocks, password, &job.phc),
            true => carried_hash::verify(password, &job.phc),
        };
        let took = started.elapsed();
        let upgrade = matched && carried && carried_hash::match_is_exact(password, &job.phc);
        let upgraded = upgrade.then(|| hash_in(&mut memory, params, password)).flatten();
        let _ = job.reply.send(Checked { matched, upgraded, took });
    }
}

/// An argon2id hash of `password` at `params` with a new salt, made in `memory` (grown to the
/// cost if need be), as a PHC string: every argon2id hash Portcullis stores is made here.
pub fn hash_in(memory: &mut Vec<Block>, params: &Params, password: &[u8]) -> Option<String> {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_buffer = [0u8; 64];
    let raw_salt = salt.as_salt().decode_b64(&mut salt_buffer).ok()?;
    let blocks = params.block_count();
    if memory.len() < blocks {
        *memory = vec![Block::default(); blocks];
    }
    let mut output = [0u8; Output::MAX_LENGTH];
    let output = &mut output[..params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)];
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    argon2.hash_password_into_with_memory(password, raw_salt, output, &mut memory[..blocks]).ok()?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: params.try_into().ok()?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(output).ok()?),
    };
    Some(phc.to_string())
}

/// The most memory (KiB) and passes of an argon2 hash that is verified at all: 1 GiB, 64 passes
/// (OWASP's recommendation is 19 MiB and 2).
const MAX_STORED_MEMORY_KIB: u32 = 1 << 20;
const MAX_STORED_PASSES: u32 = 64;

/// Verifies `password` against `phc` in `memory`, growing it to the hash's cost if that is at
/// most `kept_blocks`. The same checks as `argon2`'s `verify_password`: algorithm, version and
/// parameters from the PHC string, constant-time comparison of the output. A malformed hash
/// never matches.
pub fn verify_in(memory: &mut Vec<Block>, kept_blocks: usize, password: &[u8], phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else { return false };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else { return false };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else { return false };
    // A stored hash is made by this server at the configured cost; one far beyond any sane cost
    // (edited into the database) would take the server's memory or a thread for minutes.
    if params.m_cost() > MAX_STORED_MEMORY_KIB || params.t_cost() > MAX_STORED_PASSES {
        return false;
    }
    let mut salt_buffer = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buffer) else { return false };
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut output = [0u8; Output::MAX_LENGTH];
    let output = &mut output[..expected.len()];
    let hashed = if blocks <= kept_blocks.max(memory.len()) {
        if memory.len() < blocks {
            *memory = vec![Block::default(); blocks];
        }
        argon2.hash_password_into_with_memory(password, salt, output, &mut memory[..])
    } else {
        argon2.hash_password_into(password, salt, output)
    };
    // `Output`'s equality is constant-time.
    hashed.is_ok() && Output::new(output).is_ok_and(|computed| computed == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::password::verify_blocking;
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher as _, SaltString};

    fn hash(password: &str, m: u32, t: u32, p: u32) -> String {
        let params = Params::new(m, t, p, None).unwrap();
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        argon2.hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng)).unwrap().to_string()
    }

    #[test]
    fn agrees_with_the_argon2_crate_in_a_reused_buffer() {
        let mut memory = Vec::new();
        for (m, t, p) in [(64, 1, 1), (256, 2, 2), (128, 3, 1), (64, 1, 1)] {
            let phc = hash("right", m, t, p);
            for attempt in ["right", "wrong", "", "righ", "right "] {
                assert_eq!(
                    verify_in(&mut memory, 256, attempt.as_bytes(), &phc),
                    verify_blocking(attempt, &phc),
                    "{attempt:?} against m={m} t={t} p={p}"
                );
            }
            assert!(verify_in(&mut memory, 256, b"right", &phc));
        }
        assert_eq!(memory.len(), 256, "the buffer grows to the largest kept cost and stays");
        // A cost above what is kept is hashed in memory of its own.
        let phc = hash("right", 512, 1, 1);
        assert!(verify_in(&mut memory, 256, b"right", &phc));
        assert_eq!(memory.len(), 256);
        let huge = "$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA";
        let slow = "$argon2id$v=19$m=8,t=10000000,p=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA";
        for malformed in
            ["", "$argon2id$", "not a hash", "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ", huge, slow]
        {
            assert!(!verify_in(&mut memory, 256, b"right", malformed), "{malformed:?}");
        }
    }

    #[tokio::test]
    async fn one_client_cannot_fill_the_queue() {
        // A pool without threads: every job stays queued.
        let shared = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
        let pool = VerifierPool { shared, max_waiting: 8, max_per_client: 2 };
        let phc: Arc<str> = hash("pw", 64, 1, 1).into();
        let attacker = IpAddr::from([127, 0, 0, 9]);
        let mut waiting = Vec::new();
        for _ in 0..2 {
            let (pool_phc, password) = (phc.clone(), "no".to_string());
            waiting.push(Box::pin(pool.verify(password, pool_phc, attacker)));
        }
        for job in &mut waiting {
            assert!(futures_poll_once(job).is_none(), "queued");
        }
        let refused = pool.verify("no".into(), phc.clone(), attacker).await;
        assert_eq!(refused, Err(NotVerified::Busy), "past its share of 8 / 4");
        let mut other = Box::pin(pool.verify("pw".into(), phc, IpAddr::from([127, 0, 0, 2])));
        assert!(futures_poll_once(&mut other).is_none(), "another client still gets a place");
    }

    /// Polls a future once with a no-op waker.
    fn futures_poll_once<F: std::future::Future + Unpin>(future: &mut F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut context = std::task::Context::from_waker(waker);
        match std::pin::Pin::new(future).poll(&mut context) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        }
    }

    #[tokio::test]
    async fn the_pool_answers_every_request() {
        let pool = Arc::new(VerifierPool::start(2, Params::new(64, 1, 1, None).unwrap(), 100).unwrap());
        let phc: Arc<str> = hash("pw", 64, 1, 1).into();
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let (pool, phc) = (pool.clone(), phc.clone());
                let password = if i % 2 == 0 { "pw" } else { "no" };
                tokio::spawn(
                    async move { pool.verify(password.into(), phc, IpAddr::from([127, 0, 0, i])).await },
                )
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            let checked = task.await.unwrap().unwrap();
            assert_eq!(checked.matched, i % 2 == 0);
            assert_eq!(checked.upgraded, None, "argon2id hashes stay");
        }
    }

    #[tokio::test]
    async fn a_carried_over_hash_that_matches_comes_back_as_argon2id() {
        let params = Params::new(64, 1, 1, None).unwrap();
        let pool = VerifierPool::start(1, params, 10).unwrap();
        let bcrypt: Arc<str> = bcrypt::hash("old password", 4).unwrap().into();
        let client = IpAddr::from([127, 0, 0, 1]);
        let wrong = pool.verify("other".into(), bcrypt.clone(), client).await.unwrap();
        assert_eq!((wrong.matched, wrong.upgraded), (false, None));
        let right = pool.verify("old password".into(), bcrypt, client).await.unwrap();
        let upgraded = right.upgraded.expect("a matching bcrypt hash is re-made");
        assert!(upgraded.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{upgraded}");
        assert!(verify_blocking("old password", &upgraded), "the argon2 crate reads it");
        assert!(!verify_blocking("other", &upgraded));
        // A match that proves only a prefix of the password is not upgraded.
        let truncating: Arc<str> = bcrypt::hash("y".repeat(80), 4).unwrap().into();
        let prefix = pool.verify("y".repeat(75), truncating, client).await.unwrap();
        assert_eq!((prefix.matched, prefix.upgraded), (true, None));
    }
}
