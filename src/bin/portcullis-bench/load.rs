//! Driving the token endpoint: N connections, each sending its next request as soon as the last
//! answer is in, until a deadline or a stop signal; every answer's latency recorded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::http::Connection;

/// One answered request, in microseconds from the run's origin.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub started: u64,
    pub latency: u64,
}

/// Which request each connection sends next.
#[derive(Clone)]
pub enum Feed {
    /// Connection k sends requests k, k + N, k + 2N, ... of the list, round and round.
    Cycle(Arc<Vec<Vec<u8>>>),
    /// Every request of the list once, in order, whichever connection is free; then stop.
    Once(Arc<Vec<Vec<u8>>>, Arc<AtomicUsize>),
}

impl Feed {
    pub fn once(requests: Vec<Vec<u8>>) -> Feed {
        Feed::Once(Arc::new(requests), Arc::new(AtomicUsize::new(0)))
    }
}

/// When to stop sending (requests in flight still finish and count).
#[derive(Clone)]
pub struct Stop {
    pub deadline: Instant,
    pub flag: Arc<AtomicBool>,
}

impl Stop {
    pub fn at(deadline: Instant) -> Stop {
        Stop { deadline, flag: Arc::new(AtomicBool::new(false)) }
    }

    fn reached(&self) -> bool {
        Instant::now() >= self.deadline || self.flag.load(Ordering::Relaxed)
    }
}

/// Every answer of a run: 200s as samples, anything else (or a broken connection) as errors.
#[derive(Debug, Default)]
pub struct Outcome {
    pub samples: Vec<Sample>,
    pub errors: u64,
}

/// Figures for one window of a run.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    /// Answers completed inside the window, per second.
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub count: usize,
}

impl Outcome {
    /// Throughput of answers completed in `[from, to)` µs; latencies of requests started in it.
    pub fn figures(&self, from: u64, to: u64) -> Figures {
        let completed = self
            .samples
            .iter()
            .filter(|s| s.started + s.latency >= from && s.started + s.latency < to)
            .count();
        let mut latencies: Vec<u64> =
            self.samples.iter().filter(|s| s.started >= from && s.started < to).map(|s| s.latency).collect();
        latencies.sort_unstable();
        let percentile = |p: f64| -> f64 {
            if latencies.is_empty() {
                return f64::NAN;
            }
            let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
            latencies[index] as f64 / 1000.0
        };
        Figures {
            per_second: completed as f64 / ((to - from) as f64 / 1e6),
            p50_ms: percentile(0.50),
            p99_ms: percentile(0.99),
            max_ms: latencies.last().map(|&l| l as f64 / 1000.0).unwrap_or(f64::NAN),
            count: completed,
        }
    }

    fn merge(&mut self, other: Outcome) {
        self.samples.extend(other.samples);
        self.errors += other.errors;
    }
}

/// Runs `connections` connections against `address` until `stop`; times are from `origin`.
pub async fn drive(
    address: SocketAddr,
    feed: Feed,
    connections: usize,
    stop: Stop,
    origin: Instant,
) -> Outcome {
    let tasks: Vec<_> = (0..connections)
        .map(|k| tokio::spawn(connection_loop(address, feed.clone(), k, connections, stop.clone(), origin)))
        .collect();
    gather(tasks).await
}

async fn connection_loop(
    address: SocketAddr,
    feed: Feed,
    first: usize,
    step: usize,
    stop: Stop,
    origin: Instant,
) -> Outcome {
    let mut outcome = Outcome { samples: Vec::with_capacity(1 << 14), errors: 0 };
    let mut connection: Option<Connection> = None;
    let mut next = first;
    while !stop.reached() {
        let request = match &feed {
            Feed::Cycle(list) => {
                let request = &list[next % list.len()];
                next += step;
                request
            }
            Feed::Once(list, cursor) => match list.get(cursor.fetch_add(1, Ordering::Relaxed)) {
                Some(request) => request,
                None => break,
            },
        };
        let open = match connection.as_mut() {
            Some(open) => open,
            None => match Connection::open(address).await {
                Ok(open) => connection.insert(open),
                Err(_) => {
                    outcome.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let started = Instant::now();
        match open.exchange(request).await {
            Ok(200) => outcome.samples.push(Sample {
                started: (started - origin).as_micros() as u64,
                latency: started.elapsed().as_micros() as u64,
            }),
            Ok(_) => outcome.errors += 1,
            Err(_) => {
                outcome.errors += 1;
                connection = None;
            }
        }
    }
    outcome
}

/// Sends each request once on a connection of its own, all at the same moment (a login burst).
pub async fn burst(address: SocketAddr, requests: Vec<Vec<u8>>, origin: Instant) -> Outcome {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|request| {
            tokio::spawn(async move {
                let mut outcome = Outcome::default();
                let started = Instant::now();
                let answer = match Connection::open(address).await {
                    Ok(mut connection) => connection.exchange(&request).await.ok(),
                    Err(_) => None,
                };
                match answer {
                    Some(200) => outcome.samples.push(Sample {
                        started: (started - origin).as_micros() as u64,
                        latency: started.elapsed().as_micros() as u64,
                    }),
                    _ => outcome.errors += 1,
                }
                outcome
            })
        })
        .collect();
    gather(tasks).await
}

/// Waits for every task and merges their outcomes; a task that panicked counts as an error.
async fn gather(tasks: Vec<tokio::task::JoinHandle<Outcome>>) -> Outcome {
    let mut outcome = Outcome::default();
    for task in tasks {
        match task.await {
            Ok(part) => outcome.merge(part),
            Err(_) => outcome.errors += 1,
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_count_completions_and_rank_latencies_in_the_window() {
        // 100 requests started at 0..100 ms, each taking (i + 1) ms.
        let samples =
            (0..100).map(|i| Sample { started: i * 1000, latency: (i + 1) * 1000 }).collect::<Vec<_>>();
        let outcome = Outcome { samples, errors: 0 };
        let all = outcome.figures(0, 1_000_000);
        assert_eq!(all.count, 100);
        assert_eq!((all.p50_ms, all.p99_ms, all.max_ms), (50.0, 99.0, 100.0));
        assert!((all.per_second - 100.0).abs() < 1e-9, "100 answers in one second");
        // Latencies of the requests started in the first 10 ms; answers completed by then.
        let early = outcome.figures(0, 10_000);
        assert_eq!(early.max_ms, 10.0);
        assert_eq!(early.count, 5, "started at 0..4 ms, done by 10 ms");
    }
}
