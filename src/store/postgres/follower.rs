//! How a replica learns that anyone (the CLI, another replica) committed a change: one
//! connection that `LISTEN`s to the change log's notifications and confirms its head.
//!
//! The log's trigger notifies `portcullis_changes` at every commit that adds an entry. On each
//! notification, and at least once a second as a heartbeat, the follower asks the database for
//! the log's head (one round trip) and stores it with the time of the answer. Token requests read
//! both from atomics ([`Follower::commit_counter`]): a new head makes the snapshot catch up, and
//! a confirmation older than `postgres.max_staleness_secs` makes every request 503, since a
//! LISTEN socket to a hung server stays open and says nothing. After any reconnect the counter
//! moves on even if the head did not, so that the snapshot reads the log again: notifications
//! sent while the follower was away are lost, the log is not.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use super::tls::MakeRustls;
use super::Shared;
use crate::store::StoreError;

/// The channel the change log's trigger notifies.
const CHANNEL: &str = "portcullis_changes";

/// The follower of one process; started by the first [`Follower::commit_counter`] (the CLI,
/// which never asks, never starts one).
pub struct Follower {
    pub(super) state: Arc<State>,
    started: Once,
}

/// What the follower task writes and requests read.
pub(super) struct State {
    /// The change log's head as last confirmed.
    head: AtomicI64,
    /// Moved on by every (re)connect of the follower.
    generation: AtomicI64,
    /// When the head was last confirmed, in milliseconds since `origin`; 0: never.
    confirmed_ms: AtomicU64,
    origin: Instant,
    max_staleness: Duration,
}

impl State {
    fn confirm(&self, head: i64) {
        crate::metrics::metrics().change_log_confirmed(head);
        self.head.store(head, Ordering::Release);
        let elapsed = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX).max(1);
        self.confirmed_ms.store(elapsed, Ordering::Release);
    }

    /// This process committed a change whose log entries end at `head`: its own requests see it
    /// from the next one on, without waiting for the notification (a directory login's new
    /// account is checked right after it is stored).
    pub(super) fn own_commit(&self, head: i64) {
        self.head.fetch_max(head, Ordering::AcqRel);
    }

    /// How long ago the head was last confirmed; `None`: never.
    fn age(&self) -> Option<Duration> {
        match self.confirmed_ms.load(Ordering::Acquire) {
            0 => None,
            confirmed => Some(self.origin.elapsed().saturating_sub(Duration::from_millis(confirmed))),
        }
    }
}

impl Follower {
    pub fn new(max_staleness: Duration) -> Follower {
        Follower {
            state: Arc::new(State {
                head: AtomicI64::new(0),
                generation: AtomicI64::new(0),
                confirmed_ms: AtomicU64::new(0),
                origin: Instant::now(),
                max_staleness,
            }),
            started: Once::new(),
        }
    }

    /// A number that changes whenever the change log's head does (and at every reconnect), or
    /// [`StoreError::Unavailable`] when the head was not confirmed within the staleness bound.
    /// The first call starts the follower and waits (blocking) for its first confirmation.
    pub(super) fn commit_counter(&self, shared: &Shared) -> Result<i64, StoreError> {
        self.started.call_once(|| {
            shared.handle.spawn(follow(
                self.state.clone(),
                shared.config.clone(),
                shared.tls.clone(),
                shared.deadline,
            ));
            let started = Instant::now();
            while self.state.age().is_none() && started.elapsed() < self.state.max_staleness {
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        self.check_current()?;
        let generation = self.state.generation.load(Ordering::Acquire);
        Ok((generation << 40) + self.state.head.load(Ordering::Acquire))
    }

    /// [`StoreError::Unavailable`] when the follower runs and has not confirmed the head within
    /// the staleness bound.
    pub fn check_current(&self) -> Result<(), StoreError> {
        if !self.started.is_completed() {
            return Ok(());
        }
        match self.state.age() {
            Some(age) if age <= self.state.max_staleness => Ok(()),
            age => Err(StoreError::Unavailable(format!(
                "the database has not confirmed the change log for {} (postgres.max_staleness_secs is {}); \
                 answering from data that may be old is refused",
                age.map_or("ever".to_string(), |age| format!("{} s", age.as_secs())),
                self.state.max_staleness.as_secs()
            ))),
        }
    }
}

/// The follower task: connect, LISTEN, confirm the head at every notification and heartbeat;
/// on any failure, connect again.
async fn follow(
    state: Arc<State>,
    config: tokio_postgres::Config,
    tls: Option<MakeRustls>,
    deadline: Duration,
) {
    let heartbeat = (state.max_staleness / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut last_failure = String::new();
    loop {
        let (notified, mut notifications) = mpsc::unbounded_channel();
        let connected = tokio::time::timeout(deadline, connect(&config, tls.clone(), Some(notified))).await;
        let client = match connected {
            Ok(Ok(client)) => client,
            failed => {
                let reason = match failed {
                    Ok(Err(error)) => super::describe(&error),
                    _ => "no answer within the deadline".to_string(),
                };
                if reason != last_failure {
                    tracing::warn!(%reason, "cannot follow the change log; trying again");
                    last_failure = reason;
                }
                tokio::time::sleep(heartbeat).await;
                continue;
            }
        };
        let listened =
            tokio::time::timeout(deadline, client.batch_execute(&format!("LISTEN {CHANNEL}"))).await;
        if !matches!(listened, Ok(Ok(()))) {
            tokio::time::sleep(heartbeat).await;
            continue;
        }
        // Whatever was notified while away is lost: the snapshot reads the log again.
        state.generation.fetch_add(1, Ordering::AcqRel);
        if !last_failure.is_empty() {
            tracing::info!("following the change log again");
            last_failure.clear();
        }
        loop {
            match confirm_head(&client, deadline).await {
                Ok(head) => state.confirm(head),
                Err(reason) => {
                    tracing::warn!(%reason, "lost the change log; connecting again");
                    last_failure = reason;
                    break;
                }
            }
            tokio::select! {
                message = notifications.recv() => if message.is_none() { break },
                _ = tokio::time::sleep(heartbeat) => {}
            }
            // A burst of commits needs one look at the head.
            while notifications.try_recv().is_ok() {}
        }
    }
}

/// The change log's head, asked within the deadline.
async fn confirm_head(client: &Client, deadline: Duration) -> Result<i64, String> {
    let asked = client.query_one("SELECT COALESCE(MAX(seq), 0) FROM access_changes", &[]);
    match tokio::time::timeout(deadline, asked).await {
        Ok(Ok(row)) => row.try_get(0).map_err(|error| error.to_string()),
        Ok(Err(error)) => Err(super::describe(&error)),
        Err(_) => Err(format!("no answer within {} s", deadline.as_secs())),
    }
}

/// A connection of `config` (over TLS when `tls` is given), driven by a task of the current
/// runtime until it ends; its notifications go to `notified`, if given. The one way this backend
/// connects: the pool's connections and the follower's.
pub(super) async fn connect(
    config: &tokio_postgres::Config,
    tls: Option<MakeRustls>,
    notified: Option<mpsc::UnboundedSender<()>>,
) -> Result<Client, tokio_postgres::Error> {
    match tls {
        Some(tls) => {
            let (client, connection) = config.connect(tls).await?;
            tokio::spawn(drive(connection, notified));
            Ok(client)
        }
        None => {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(drive(connection, notified));
            Ok(client)
        }
    }
}

/// Runs a connection, passing on its notifications, until it ends (when its client is dropped
/// or the server goes).
async fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    notified: Option<mpsc::UnboundedSender<()>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
        match message {
            Ok(AsyncMessage::Notification(_)) => {
                if let Some(notified) = &notified {
                    // A follower that went away drops this client too: the connection then ends.
                    let _ = notified.send(());
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}
