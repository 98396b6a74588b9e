//! What the benchmark prints: the table rows, the CPU each side used, and the machine.

use std::time::Instant;

use crate::load::Figures;
use crate::server;

/// CPU used by the server and by this load generator over one scenario.
pub struct Meter {
    server: String,
    started: Instant,
    server_cpu: f64,
    client_cpu: f64,
}

impl Meter {
    pub fn start(server: &server::Server) -> Meter {
        let server = server.pid().to_string();
        Meter {
            server_cpu: server::cpu_seconds(&server).unwrap_or(f64::NAN),
            client_cpu: server::cpu_seconds("self").unwrap_or(f64::NAN),
            server,
            started: Instant::now(),
        }
    }

    /// Prints the cores each side used on average, and the server's CPU time per answer.
    pub fn print(&self, answers: usize) {
        let wall = self.started.elapsed().as_secs_f64();
        let server = server::cpu_seconds(&self.server).unwrap_or(f64::NAN) - self.server_cpu;
        let client = server::cpu_seconds("self").unwrap_or(f64::NAN) - self.client_cpu;
        println!(
            "    CPU: server {:.2} cores ({:.1} us per answer), load generator {:.2} cores",
            server / wall,
            server * 1e6 / answers.max(1) as f64,
            client / wall
        );
    }
}

pub fn print_header() {
    println!(
        "{:<26} {:>5} {:>6} {:>10} {:>8} {:>8} {:>8} {:>7} {:>13}",
        "scenario", "conns", "secs", "tokens/s", "p50 ms", "p99 ms", "max ms", "errors", "peak RSS MiB"
    );
}

pub fn print_row(
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

pub fn cpu_model() -> String {
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

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
