//! The `portcullis` binary: parses the command line, runs it, and turns errors into one line on
//! standard error with exit status 1 (clap uses 2 for usage errors).

use clap::Parser;

fn main() {
    let cli = portcullis::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(error) = portcullis::cli::run(cli) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
