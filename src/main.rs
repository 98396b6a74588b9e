//! The `portcullis` binary: parses the command line, runs it, and turns errors into one line on
//! standard error with exit status 1 (clap uses 2 for usage errors).

use clap::Parser;

fn main() {
    // Everything Portcullis writes (database, key, logs it creates) is for this user alone.
    // SAFETY: umask only sets the process's file creation mask.
    unsafe {
        libc::umask(0o077);
    }
    let cli = portcullis::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: a log file or journald gets plain text that
        // grep and log shippers read as written.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(error) = portcullis::cli::run(cli) {
        eprintln!("error: {}", describe(&error));
        std::process::exit(1);
    }
}

/// The error and its causes on one line, leaving out causes its message already quotes.
fn describe(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}
