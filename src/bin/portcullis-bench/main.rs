//! `portcullis-bench`: the load benchmark of the token endpoint, and the data generator for scale
//! runs. A separate binary, so the server ships without it.
//!
//! `run` starts the real `portcullis serve` (the binary next to this one) on a data directory it
//! seeds, drives `GET /token` over loopback HTTP/1.1 keep-alive connections, and prints tokens/s,
//! p50/p99/max latency, errors and the server's peak RSS for each scenario:
//! - `warm`: one user, repeated (every request after the first is served from the cache);
//! - `many`: 10,000 users cycling, each logged in once beforehand;
//! - `cold`: every request a user never seen before (each pays a full argon2id verification);
//! - `burst`: warm latency while 200 new logins arrive at once.
//!
//! It first measures one argon2id verification at the default cost, in this process, and prints
//! the hashing limit (cores / that time) that the cold scenarios are compared with.
//!
//! - [`http`]: the minimal client; [`load`]: connections, deadlines and figures;
//! - [`seed`]: the benchmark's users and the generated large database; [`server`]: the process.

mod http;
mod load;
mod seed;
mod server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use portcullis::authn::password::{verify_blocking, PasswordHasher};
use portcullis::config::PasswordConfig;

use load::{Feed, Figures, Outcome, Stop};

/// The scope every benchmark request asks for: a role lookup on every request.
const QUERY: &str = "service=registry&scope=repository%3Abench%2Fapp%3Apull%2Cpush";

/// New logins in the burst scenario.
const BURST: usize = 200;

#[derive(Debug, Parser)]
#[command(name = "portcullis-bench", about = "Load benchmark for the portcullis token endpoint")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a server on a seeded database and measure the scenarios.
    Run(RunArgs),
    /// Fill a data directory's database for scale runs (then: run --data-dir DIR).
    Generate {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        #[arg(long, default_value_t = 10_000)]
        projects: usize,
        #[arg(long, default_value_t = 1_000_000)]
        memberships: usize,
    },
    /// Drive an already running server with one user's credentials (the warm scenario only).
    Target {
        /// The server's base URL, e.g. http://127.0.0.1:5001 (plain HTTP).
        #[arg(long)]
        url: String,
        #[arg(long)]
        user: String,
        #[arg(long, env = "PORTCULLIS_BENCH_PASSWORD")]
        password: String,
        /// The query of each request.
        #[arg(long, default_value = QUERY)]
        query: String,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Scenarios to run, in order.
    #[arg(long, value_delimiter = ',', default_values_t = [Scenario::Warm, Scenario::Many, Scenario::Cold, Scenario::Burst])]
    scenarios: Vec<Scenario>,
    /// Concurrent keep-alive connections of the warm, many and cold scenarios (and of the warm
    /// load during the burst).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured seconds per scenario.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// The data directory (database, key). Default: a fresh temporary one, removed afterwards.
    /// Give the directory of `generate` for a scale run.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The server binary. Default: `portcullis` next to this program.
    #[arg(long)]
    portcullis: Option<PathBuf>,
    /// Extra environment for the server, e.g. PORTCULLIS_CACHE__MAX_ENTRIES=20000 (repeatable).
    #[arg(long = "server-env", value_parser = parse_pair)]
    server_env: Vec<(String, String)>,
    /// Users of the `many` scenario.
    #[arg(long, default_value_t = 10_000)]
    many_users: usize,
    /// Threads of the load generator (it shares the machine with the server).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Warm,
    Many,
    Cold,
    Burst,
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.to_possible_value().map(|v| v.get_name().to_string()).as_deref().unwrap_or("?"))
    }
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))
}

fn main() {
    if let Err(error) = run(Cli::parse()) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Generate { data_dir, users, projects, memberships } => {
            let database = data_dir.join("portcullis.db");
            let started = Instant::now();
            seed::generate(&database, users, projects, memberships)?;
            let (users, projects, memberships) = seed::counts(&database)?;
            println!(
                "generated {} in {:.1} s: {users} users, {projects} projects, {memberships} memberships",
                database.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Target { url, user, password, query, connections, seconds } => {
            let address = url
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .parse::<SocketAddr>()
                .with_context(|| format!("--url must be http://IP:PORT, got {url:?}"))?;
            let request = http::token_request(&address.to_string(), &query, &user, &password);
            let runtime = client_runtime(1)?;
            let outcome = runtime.block_on(async {
                let origin = Instant::now();
                let feed = Feed::Cycle(std::sync::Arc::new(vec![request]));
                let stop = Stop::at(origin + Duration::from_secs_f64(seconds));
                load::drive(address, feed, connections, stop, origin).await
            });
            print_header();
            print_row(
                "warm (target)",
                connections,
                seconds,
                &outcome.figures(0, secs_us(seconds)),
                outcome.errors,
                None,
            );
            Ok(())
        }
        Command::Run(args) => run_scenarios(args),
    }
}

fn run_scenarios(args: RunArgs) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("machine: {cores} cores, {}; load average at start: {}", cpu_model(), load_average());

    let verify = argon2_verify_time();
    let limit = cores as f64 / verify.as_secs_f64();
    let defaults = PasswordConfig::default();
    println!(
        "argon2id verify at the default cost (m={} KiB, t={}, p={}): {:.1} ms; hashing limit {:.1} logins/s on {cores} cores",
        defaults.memory_kib,
        defaults.iterations,
        defaults.parallelism,
        verify.as_secs_f64() * 1000.0,
        limit
    );

    let temporary;
    let data_dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => {
            temporary = TemporaryDirectory::new()?;
            temporary.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&data_dir)?;
    let database = data_dir.join("portcullis.db");
    let many = if args.scenarios.contains(&Scenario::Many) { args.many_users } else { 0 };
    let mut cold = 0;
    if args.scenarios.contains(&Scenario::Cold) {
        // Enough for the whole run at the hashing limit, with a margin, plus the requests in flight.
        cold += (limit * args.seconds * 1.5) as usize + args.connections;
    }
    if args.scenarios.contains(&Scenario::Burst) {
        cold += BURST;
    }
    let seeding = Instant::now();
    let logins = seed::add_logins(&database, many, cold)?;
    let (users, projects, memberships) = seed::counts(&database)?;
    println!(
        "database: {users} users, {projects} projects, {memberships} memberships (benchmark users added in {:.1} s)",
        seeding.elapsed().as_secs_f64()
    );

    let binary = match &args.portcullis {
        Some(path) => path.clone(),
        None => sibling_binary("portcullis")?,
    };
    let server = server::Server::start(&binary, &data_dir, &args.server_env)?;
    println!(
        "server: {} pid {}, started in {:.3} s, RSS after start {:.1} MiB",
        server.address,
        server.pid(),
        server.start_time.as_secs_f64(),
        server.memory_mib().unwrap_or(f64::NAN)
    );

    let runtime = client_runtime(args.client_threads)?;
    let address = server.address;
    let host = address.to_string();
    let request = |user: &str, password: &str| http::token_request(&host, QUERY, user, password);
    let measured = Duration::from_secs_f64(args.seconds);
    print_header();
    for scenario in &args.scenarios {
        match scenario {
            Scenario::Warm => {
                let requests = vec![request(&logins.warm.0, &logins.warm.1)];
                runtime.block_on(check_token(address, &requests[0]))?;
                server.reset_peak_memory();
                let outcome = runtime.block_on(timed(
                    address,
                    Feed::Cycle(requests.into()),
                    args.connections,
                    measured,
                ));
                let figures = outcome.figures(0, secs_us(args.seconds));
                print_row(
                    "warm (1 user)",
                    args.connections,
                    args.seconds,
                    &figures,
                    outcome.errors,
                    server.peak_memory_mib(),
                );
            }
            Scenario::Many => {
                let requests: Vec<Vec<u8>> =
                    logins.many.iter().map(|name| request(name, &logins.many_password)).collect();
                // Each user's first login verifies its (cheap) hash; only what follows is measured.
                let warm_up = runtime.block_on(timed(
                    address,
                    Feed::once(requests.clone()),
                    args.connections,
                    Duration::from_secs(600),
                ));
                if warm_up.errors > 0 {
                    bail!(
                        "{} of {} logins failed while warming up the many-users scenario",
                        warm_up.errors,
                        requests.len()
                    );
                }
                server.reset_peak_memory();
                let outcome = runtime.block_on(timed(
                    address,
                    Feed::Cycle(requests.into()),
                    args.connections,
                    measured,
                ));
                let figures = outcome.figures(0, secs_us(args.seconds));
                let label = format!("many ({} users)", logins.many.len());
                print_row(
                    &label,
                    args.connections,
                    args.seconds,
                    &figures,
                    outcome.errors,
                    server.peak_memory_mib(),
                );
            }
            Scenario::Cold => {
                let users = &logins.cold[BURST.min(logins.cold.len())..];
                let requests: Vec<Vec<u8>> =
                    users.iter().map(|name| request(name, &logins.cold_password)).collect();
                let available = requests.len();
                server.reset_peak_memory();
                let outcome =
                    runtime.block_on(timed(address, Feed::once(requests), args.connections, measured));
                let figures = outcome.figures(0, secs_us(args.seconds));
                print_row(
                    "cold (new user each)",
                    args.connections,
                    args.seconds,
                    &figures,
                    outcome.errors,
                    server.peak_memory_mib(),
                );
                println!(
                    "    {:.1}% of the hashing limit ({:.1}/s){}",
                    100.0 * figures.per_second / limit,
                    limit,
                    if figures.count + args.connections >= available {
                        "; ran out of users, raise --seconds margin"
                    } else {
                        ""
                    }
                );
            }
            Scenario::Burst => {
                let users = &logins.cold[..BURST.min(logins.cold.len())];
                let burst: Vec<Vec<u8>> =
                    users.iter().map(|name| request(name, &logins.cold_password)).collect();
                let warm = vec![request(&logins.warm.0, &logins.warm.1)];
                runtime.block_on(check_token(address, &warm[0]))?;
                server.reset_peak_memory();
                let (warm_outcome, burst_outcome, from, to) =
                    runtime.block_on(warm_during_burst(address, warm, burst, args.connections));
                let seconds = (to - from) as f64 / 1e6;
                let figures = warm_outcome.figures(from, to);
                let label = format!("warm during {BURST} logins");
                print_row(
                    &label,
                    args.connections,
                    seconds,
                    &figures,
                    warm_outcome.errors,
                    server.peak_memory_mib(),
                );
                let logins_per_second = burst_outcome.samples.len() as f64 / seconds;
                println!(
                    "    the {} logins took {seconds:.2} s: {logins_per_second:.1}/s, {:.1}% of the hashing limit; {} failed",
                    burst_outcome.samples.len(),
                    100.0 * logins_per_second / limit,
                    burst_outcome.errors
                );
            }
        }
    }
    println!("load average at end: {}", load_average());
    drop(server);
    Ok(())
}

/// One scenario: `connections` connections for `duration` (requests in flight at the end finish).
async fn timed(address: SocketAddr, feed: Feed, connections: usize, duration: Duration) -> Outcome {
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
async fn check_token(address: SocketAddr, request: &[u8]) -> anyhow::Result<()> {
    let mut connection = http::Connection::open(address).await?;
    let status = connection.exchange(request).await?;
    let body = String::from_utf8_lossy(connection.last_body()).to_string();
    if status != 200 || !body.contains("\"access_token\"") {
        bail!("the benchmark user got {status}: {body}");
    }
    Ok(())
}

fn client_runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?
    };
    Ok(runtime)
}

/// The median of a few argon2id verifications at the default cost, in this process.
fn argon2_verify_time() -> Duration {
    let hasher = match PasswordHasher::new(&PasswordConfig::default(), 1) {
        Ok(hasher) => hasher,
        Err(_) => return Duration::from_secs(1),
    };
    let Ok(hash) = hasher.hash_blocking("benchmark password") else { return Duration::from_secs(1) };
    let mut times: Vec<Duration> = (0..7)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(verify_blocking("benchmark password", &hash));
            started.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name(name);
    if !path.exists() {
        bail!("{} not found; build it (cargo build --release) or pass --portcullis PATH", path.display());
    }
    Ok(path)
}

fn secs_us(seconds: f64) -> u64 {
    (seconds * 1e6) as u64
}

fn print_header() {
    println!(
        "{:<26} {:>5} {:>6} {:>10} {:>8} {:>8} {:>8} {:>7} {:>13}",
        "scenario", "conns", "secs", "tokens/s", "p50 ms", "p99 ms", "max ms", "errors", "peak RSS MiB"
    );
}

fn print_row(
    label: &str,
    connections: usize,
    seconds: f64,
    figures: &Figures,
    errors: u64,
    peak: Option<f64>,
) {
    println!(
        "{:<26} {:>5} {:>6.1} {:>10.1} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>13}",
        label,
        connections,
        seconds,
        figures.per_second,
        figures.p50_ms,
        figures.p99_ms,
        figures.max_ms,
        errors,
        peak.map(|p| format!("{p:.1}")).unwrap_or_else(|| "-".into())
    );
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// A fresh directory under the system's temporary directory, removed when dropped.
struct TemporaryDirectory(PathBuf);

impl TemporaryDirectory {
    fn new() -> anyhow::Result<TemporaryDirectory> {
        let name = format!(
            "portcullis-bench-{}-{}",
            std::process::id(),
            portcullis::authn::password::random_password()
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(TemporaryDirectory(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TemporaryDirectory {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
