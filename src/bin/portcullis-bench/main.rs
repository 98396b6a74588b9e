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
//! `run --database postgres://...` measures the same on PostgreSQL; `propagation` times a
//! change's way to every replica of one PostgreSQL database.
//!
//! It first measures one argon2id verification at the default cost, in this process, and prints
//! the hashing limit (cores / that time) that the cold scenarios are compared with.
//!
//! - [`http`]: the minimal client; [`load`]: connections, deadlines and figures;
//! - [`seed`]: the benchmark's users and the generated large database; [`server`]: the process;
//! - [`scenarios`]: what each scenario sends and prints; [`report`]: the printed table.

mod flood;
mod http;
mod load;
mod propagation;
mod report;
mod scenarios;
mod seed;
mod server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use portcullis::authn::password::PasswordHasher;
use portcullis::authn::verifier_pool::verify_in;
use portcullis::config::PasswordConfig;

use load::{Feed, Stop};
use report::{cpu_model, load_average, print_header, print_row};
use scenarios::{BURST, QUERY};

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
        /// A PostgreSQL URL to fill instead of the data dir's SQLite file.
        #[arg(long)]
        database: Option<String>,
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        #[arg(long, default_value_t = 10_000)]
        projects: usize,
        #[arg(long, default_value_t = 1_000_000)]
        memberships: usize,
    },
    /// Start replicas on one PostgreSQL database and time how long a committed role change
    /// takes to apply on all of them (p50, p99, max).
    Propagation {
        /// The PostgreSQL URL (an empty or benchmark database).
        #[arg(long)]
        database: String,
        #[arg(long, default_value_t = 3)]
        replicas: usize,
        #[arg(long, default_value_t = 200)]
        changes: usize,
        /// The server binary. Default: `portcullis` next to this program.
        #[arg(long)]
        portcullis: Option<PathBuf>,
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
    /// A PostgreSQL URL the server uses instead of the data dir's SQLite file (`generate
    /// --database` fills it for a scale run).
    #[arg(long)]
    database: Option<String>,
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
    /// Password guessing from 2,000 connections while the warm load runs and a new user logs
    /// in (not run by default: `--scenarios flood --seconds 30`).
    Flood,
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
        Command::Generate { data_dir, database, users, projects, memberships } => {
            std::fs::create_dir_all(&data_dir)?;
            let database = match database {
                Some(url) => seed::Database::Postgres(url),
                None => seed::Database::Sqlite(data_dir.join("portcullis.db")),
            };
            let started = Instant::now();
            seed::generate(&database, users, projects, memberships)?;
            let (users, projects, memberships) = seed::counts(&database)?;
            println!(
                "generated {} in {:.1} s: {users} users, {projects} projects, {memberships} memberships",
                database.describe(),
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
            // The first login is verified (argon2); only what follows is measured.
            runtime.block_on(scenarios::check_token(address, &request))?;
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
                &outcome.figures(0, scenarios::micros(seconds)),
                outcome.errors,
                None,
            );
            Ok(())
        }
        Command::Run(args) => run_scenarios(args),
        Command::Propagation { database, replicas, changes, portcullis } => {
            let binary = match portcullis {
                Some(path) => path,
                None => sibling_binary("portcullis")?,
            };
            let root = TemporaryDirectory::new()?;
            propagation::measure(&binary, &database, replicas, changes, root.path())
        }
    }
}

fn run_scenarios(args: RunArgs) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("machine: {cores} cores, {}; load average at start: {}", cpu_model(), load_average());

    let verify = argon2_verify_time()?;
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
    if args.scenarios.contains(&Scenario::Cold) {
        println!(
            "argon2id on {cores} threads at once, without a server: {:.1} verifications/s",
            argon2_parallel_rate(cores)?
        );
    }

    let temporary;
    let data_dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => {
            temporary = TemporaryDirectory::new()?;
            temporary.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&data_dir)?;
    let database = match &args.database {
        Some(url) => seed::Database::Postgres(url.clone()),
        None => seed::Database::Sqlite(data_dir.join("portcullis.db")),
    };
    let many = if args.scenarios.contains(&Scenario::Many) { args.many_users } else { 0 };
    let mut cold = 0;
    if args.scenarios.contains(&Scenario::Cold) {
        // Enough for the whole run at the hashing limit, with a margin, plus the requests in flight.
        cold += (limit * args.seconds * 1.5) as usize + args.connections;
    }
    if args.scenarios.contains(&Scenario::Burst) {
        cold += BURST;
    }
    if args.scenarios.contains(&Scenario::Flood) {
        cold += 1;
    }
    let seeding = Instant::now();
    let logins = seed::add_logins(&database, many, cold)?;
    let (users, projects, memberships) = seed::counts(&database)?;
    println!(
        "database: {}, {users} users, {projects} projects, {memberships} memberships (benchmark users added in {:.1} s)",
        database.describe(),
        seeding.elapsed().as_secs_f64()
    );

    let binary = match &args.portcullis {
        Some(path) => path.clone(),
        None => sibling_binary("portcullis")?,
    };
    let mut server_env = args.server_env.clone();
    server_env.extend(database.server_env());
    let server = server::Server::start(&binary, &data_dir, &server_env)?;
    println!(
        "server: {} pid {}, started in {:.3} s, RSS after start {:.1} MiB",
        server.address,
        server.pid(),
        server.start_time.as_secs_f64(),
        server.memory_mib().unwrap_or(f64::NAN)
    );

    let runtime = client_runtime(args.client_threads)?;
    let bench = scenarios::Bench {
        runtime: &runtime,
        server: &server,
        logins: &logins,
        connections: args.connections,
        seconds: args.seconds,
        limit,
    };
    print_header();
    for scenario in &args.scenarios {
        match scenario {
            Scenario::Warm => bench.warm()?,
            Scenario::Many => bench.many()?,
            Scenario::Cold => bench.cold()?,
            Scenario::Burst => bench.burst()?,
            Scenario::Flood => bench.flood()?,
        }
    }
    println!("load average at end: {}", load_average());
    drop(server);
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

/// The median of a few argon2id verifications at the default cost, in this process, the way the
/// server verifies (in a reused buffer, so the figure is the hashing alone). An error is fatal:
/// without this figure the cold results mean nothing.
fn argon2_verify_time() -> anyhow::Result<Duration> {
    let (hash, blocks) = argon2_fixture()?;
    let mut memory = Vec::new();
    let mut times = Vec::new();
    for _ in 0..15 {
        let started = Instant::now();
        if !verify_in(&mut memory, blocks, b"benchmark password", &hash) {
            bail!("argon2id verification of a fresh hash failed");
        }
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// Verifications per second with one thread per core hashing at once, for about two seconds:
/// what the machine can really do, which is less than cores / one verification when the
/// threads compete for the shared cache and memory bandwidth.
fn argon2_parallel_rate(threads: usize) -> anyhow::Result<f64> {
    let (hash, blocks) = argon2_fixture()?;
    let started = Instant::now();
    let counts = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut memory = Vec::new();
                    let mut count = 0usize;
                    while started.elapsed() < Duration::from_secs(2) {
                        count += usize::from(verify_in(&mut memory, blocks, b"benchmark password", &hash));
                    }
                    count
                })
            })
            .collect();
        workers.into_iter().map(|worker| worker.join().unwrap_or(0)).sum::<usize>()
    });
    Ok(counts as f64 / started.elapsed().as_secs_f64())
}

/// A hash of the benchmark password at the default cost, and its block count.
fn argon2_fixture() -> anyhow::Result<(String, usize)> {
    let config = PasswordConfig::default();
    let hash = PasswordHasher::new(&config, 1)?.hash_blocking("benchmark password")?;
    Ok((hash, (config.memory_kib as usize).max(1)))
}

fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name(name);
    if !path.exists() {
        bail!("{} not found; build it (cargo build --release) or pass --portcullis PATH", path.display());
    }
    Ok(path)
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
