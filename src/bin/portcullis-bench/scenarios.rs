//! The four scenarios: what each sends, what it measures, and the lines it prints.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::runtime::Runtime;

use crate::http;
use crate::load::{self, Feed, Outcome, Stop};
use crate::report::{print_row, Meter};
use crate::seed::Logins;
use crate::server::Server;

/// The scope every benchmark request asks for: a role lookup on every request.
pub const QUERY: &str = "service=registry&scope=repository%3Abench%2Fapp%3Apull%2Cpush";

/// New logins in the burst scenario.
pub const BURST: usize = 200;

/// Everything a scenario needs.
pub struct Bench<'a> {
    pub runtime: &'a Runtime,
    pub server: &'a Server,
    pub logins: &'a Logins,
    pub connections: usize,
    pub seconds: f64,
    /// Logins per second the cores can hash: what cold throughput is compared with.
    pub limit: f64,
}

impl Bench<'_> {
    fn request(&self, user: &str, password: &str) -> Vec<u8> {
        http::token_request(&self.server.address.to_string(), QUERY, user, password)
    }

    fn measured(&self) -> Duration {
        Duration::from_secs_f64(self.seconds)
    }

    fn window(&self) -> u64 {
        micros(self.seconds)
    }

    /// One user, repeated: every request after the first is a remembered login.
    pub fn warm(&self) -> anyhow::Result<()> {
        let requests = vec![self.request(&self.logins.warm.0, &self.logins.warm.1)];
        self.runtime.block_on(check_token(self.server.address, &requests[0]))?;
        self.measure_cycling("warm (1 user)", requests);
        Ok(())
    }

    /// Many users cycling, each logged in once beforehand (at a trivial hash cost).
    pub fn many(&self) -> anyhow::Result<()> {
        let password = &self.logins.many_password;
        let requests: Vec<Vec<u8>> =
            self.logins.many.iter().map(|name| self.request(name, password)).collect();
        let warm_up = self.runtime.block_on(timed(
            self.server.address,
            Feed::once(requests.clone()),
            self.connections,
            Duration::from_secs(600),
        ));
        if warm_up.errors > 0 {
            bail!(
                "{} of {} logins failed while warming up the many-users scenario",
                warm_up.errors,
                requests.len()
            );
        }
        self.measure_cycling(&format!("many ({} users)", self.logins.many.len()), requests);
        Ok(())
    }

    /// Cycles through `requests` on every connection for the measured time and prints one row:
    /// the warm scenarios differ only in who logs in.
    fn measure_cycling(&self, label: &str, requests: Vec<Vec<u8>>) {
        self.server.reset_peak_memory();
        let meter = Meter::start(self.server);
        let feed = Feed::Cycle(requests.into());
        let outcome =
            self.runtime.block_on(timed(self.server.address, feed, self.connections, self.measured()));
        let figures = outcome.figures(0, self.window());
        let peak = self.server.peak_memory_mib();
        print_row(label, self.connections, self.seconds, &figures, outcome.errors, peak);
        meter.print(outcome.samples.len());
    }

    /// Every request a user never seen before: each pays a full argon2id verification.
    pub fn cold(&self) -> anyhow::Result<()> {
        let users = &self.logins.cold[BURST.min(self.logins.cold.len())..];
        let password = &self.logins.cold_password;
        let requests: Vec<Vec<u8>> = users.iter().map(|name| self.request(name, password)).collect();
        let available = requests.len();
        self.server.reset_peak_memory();
        let meter = Meter::start(self.server);
        let outcome = self.runtime.block_on(timed(
            self.server.address,
            Feed::once(requests),
            self.connections,
            self.measured(),
        ));
        let figures = outcome.figures(0, self.window());
        let peak = self.server.peak_memory_mib();
        print_row("cold (new user each)", self.connections, self.seconds, &figures, outcome.errors, peak);
        let ran_out = figures.count + self.connections >= available;
        println!(
            "    {:.1}% of the hashing limit ({:.1}/s){}",
            100.0 * figures.per_second / self.limit,
            self.limit,
            if ran_out { "; ran out of users: the figure is low" } else { "" }
        );
        meter.print(outcome.samples.len());
        Ok(())
    }

    /// Warm latency while 200 new logins arrive at once, on connections of their own.
    pub fn burst(&self) -> anyhow::Result<()> {
        let users = &self.logins.cold[..BURST.min(self.logins.cold.len())];
        let password = &self.logins.cold_password;
        let burst: Vec<Vec<u8>> = users.iter().map(|name| self.request(name, password)).collect();
        let warm = vec![self.request(&self.logins.warm.0, &self.logins.warm.1)];
        self.runtime.block_on(check_token(self.server.address, &warm[0]))?;
        self.server.reset_peak_memory();
        let meter = Meter::start(self.server);
        let (warm_outcome, burst_outcome, from, to) =
            self.runtime.block_on(warm_during_burst(self.server.address, warm, burst, self.connections));
        let seconds = (to - from) as f64 / 1e6;
        let figures = warm_outcome.figures(from, to);
        let label = format!("warm during {BURST} logins");
        let peak = self.server.peak_memory_mib();
        print_row(&label, self.connections, seconds, &figures, warm_outcome.errors, peak);
        let logins_per_second = burst_outcome.samples.len() as f64 / seconds;
        println!(
            "    the {} logins took {seconds:.2} s: {logins_per_second:.1}/s, {:.1}% of the hashing limit; {} failed",
            burst_outcome.samples.len(),
            100.0 * logins_per_second / self.limit,
            burst_outcome.errors
        );
        meter.print(warm_outcome.samples.len() + burst_outcome.samples.len());
        Ok(())
    }
}

impl Bench<'_> {
    /// Password guessing from 2,000 connections of one address while the warm load runs from
    /// another and a new user logs in from a third.
    pub fn flood(&self) -> anyhow::Result<()> {
        const ATTACKERS: usize = 2_000;
        let warm = self.request(&self.logins.warm.0, &self.logins.warm.1);
        self.runtime.block_on(check_token(self.server.address, &warm))?;
        let newcomer = self.logins.cold.last().ok_or_else(|| anyhow::anyhow!("no cold user seeded"))?;
        let first_login = self.request(newcomer, &self.logins.cold_password);
        self.server.reset_peak_memory();
        let meter = Meter::start(self.server);
        let outcome = self.runtime.block_on(crate::flood::flood(
            self.server.address,
            ATTACKERS,
            self.connections,
            self.seconds,
            warm,
            first_login,
        ));
        let figures = outcome.warm.figures(0, micros(outcome.seconds));
        let peak = self.server.peak_memory_mib();
        let label = format!("warm during {ATTACKERS} guessers");
        print_row(&label, self.connections, outcome.seconds, &figures, outcome.warm.errors, peak);
        let (status, took) = outcome.first_login;
        println!(
            "    a new user's first login, from another address: {status} in {:.0} ms",
            took.as_secs_f64() * 1e3
        );
        let answers: Vec<String> = outcome
            .attack
            .iter()
            .map(|(status, count)| match status {
                0 => format!("{count} closed or refused connections"),
                status => format!("{:.0}/s {status}", *count as f64 / outcome.seconds),
            })
            .collect();
        println!("    the guessers got: {}", answers.join(", "));
        meter.print(outcome.warm.samples.len());
        Ok(())
    }
}

/// One scenario: `connections` connections for `duration` (requests in flight at the end finish).
pub async fn timed(address: SocketAddr, feed: Feed, connections: usize, duration: Duration) -> Outcome {
    let origin = Instant::now();
    load::drive(address, feed, connections, Stop::at(origin + duration), origin).await
}

/// Warm load on `connections` connections; after a second, `burst` new logins at once. Returns
/// the warm and burst outcomes and the burst's window (µs from the origin).
async fn warm_during_burst(
    address: SocketAddr,
    warm: Vec<Vec<u8>>,
    burst: Vec<Vec<u8>>,
    connections: usize,
) -> (Outcome, Outcome, u64, u64) {
    let origin = Instant::now();
    let stop = Stop::at(origin + Duration::from_secs(600));
    let warm_load =
        tokio::spawn(load::drive(address, Feed::Cycle(warm.into()), connections, stop.clone(), origin));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let from = origin.elapsed().as_micros() as u64;
    let burst_outcome = load::burst(address, burst, origin).await;
    let to = origin.elapsed().as_micros() as u64;
    stop.flag.store(true, Ordering::Relaxed);
    let warm_outcome = warm_load.await.unwrap_or_default();
    (warm_outcome, burst_outcome, from, to)
}

/// Fails unless the request gets a token: a benchmark of refusals would measure nothing.
pub async fn check_token(address: SocketAddr, request: &[u8]) -> anyhow::Result<()> {
    let mut connection = http::Connection::open(address).await?;
    let status = connection.exchange(request).await?;
    let body = String::from_utf8_lossy(connection.last_body()).to_string();
    if status != 200 || !body.contains("\"access_token\"") {
        bail!("the benchmark user got {status}: {body}");
    }
    Ok(())
}

/// A measuring window in microseconds, the unit the figures take.
pub fn micros(seconds: f64) -> u64 {
    (seconds * 1e6) as u64
}
