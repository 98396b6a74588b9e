//! Limits on one connection, so that no client can hold the server's connection slots: a cap per
//! client address, a deadline for a connection on which no byte moves either way (hyper's own
//! timer runs only while it waits for a request head, never while an answer waits to be written
//! to a client that stopped reading), and an age after which it is closed after its current
//! request.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use super::client::{address_key, is_trusted};

/// Open connections per client address, and the cap.
#[derive(Clone)]
pub struct AddressSlots {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    per_address: usize,
    /// Proxies carry many clients' connections: not capped.
    trusted: Arc<Vec<IpNet>>,
}

/// One connection's place in [`AddressSlots`], given back when dropped.
pub struct Slot {
    slots: AddressSlots,
    address: IpAddr,
}

impl AddressSlots {
    pub fn new(per_address: usize, trusted: Arc<Vec<IpNet>>) -> Self {
        AddressSlots { open: Arc::new(Mutex::new(HashMap::new())), per_address, trusted }
    }

    /// A place for one more connection from `address`, or `None` when it has its share.
    pub fn take(&self, address: IpAddr) -> Option<Slot> {
        // An IPv6 host counts as its /64, which it can rotate through.
        let address = if is_trusted(address, &self.trusted) { address } else { address_key(address) };
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(address).or_insert(0);
        if *count >= self.per_address && !is_trusted(address, &self.trusted) {
            tracing::debug!(%address, "connection refused: too many from this address");
            return None;
        }
        *count += 1;
        Some(Slot { slots: self.clone(), address })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

/// When a connection is closed regardless of what its client does.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// No byte moved either way for this long: dropped.
    pub idle: Duration,
    /// Older than this: closed after the request in progress (graceful).
    pub age: Duration,
}

/// How often a connection's deadlines are looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);

impl Deadlines {
    /// Runs `connection` to its end, a deadline, or a shutdown signal on `stopping` (graceful:
    /// the request in progress is answered; a connection still open after that is dropped when
    /// the idle deadline passes).
    pub async fn drive<I, S>(
        self,
        connection: hyper::server::conn::http1::Connection<I, S>,
        progress: &Progress,
        mut stopping: watch::Receiver<bool>,
    ) where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
        S: hyper::service::HttpService<hyper::body::Incoming, ResBody = http_body_util::Full<bytes::Bytes>>,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        tokio::pin!(connection);
        let born = Instant::now();
        let mut closing = false;
        let mut ticks = tokio::time::interval(CHECK_EVERY);
        loop {
            tokio::select! {
                _ = &mut connection => return,
                changed = stopping.changed(), if !closing => {
                    if changed.is_err() || *stopping.borrow() {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
                _ = ticks.tick() => {
                    if progress.idle_for() >= self.idle {
                        tracing::debug!("connection dropped: nothing moved for {} s", self.idle.as_secs());
                        return;
                    }
                    if !closing && born.elapsed() >= self.age {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        }
    }
}

/// When bytes last moved on a connection.
pub struct Progress {
    start: Instant,
    /// Milliseconds after `start` of the last read or write that moved a byte.
    last: AtomicU64,
}

impl Progress {
    fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

/// A stream that records in [`Progress`] every read and write that moved bytes.
pub struct Watched<S> {
    inner: S,
    progress: Arc<Progress>,
}

impl<S> Watched<S> {
    pub fn new(inner: S) -> (Self, Arc<Progress>) {
        let progress = Arc::new(Progress { start: Instant::now(), last: AtomicU64::new(0) });
        (Watched { inner, progress: progress.clone() }, progress)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.progress.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            self.progress.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, data);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            self.progress.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
