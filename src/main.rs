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
    if !matches!(cli.command, portcullis::cli::Command::Serve) {
        // A command whose output goes to `head` ends quietly when it stops reading, as Unix
        // tools do, instead of panicking on the broken pipe. (The server keeps SIGPIPE ignored:
        // a client that goes away must not kill it.)
        // SAFETY: signal only sets this process's disposition of SIGPIPE.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // The configuration says how to log, so it is read first; an error in it is reported once
    // logging is up (as text).
    let config = portcullis::config::Config::load(cli.config.as_deref(), std::env::vars());
    let format = config.as_ref().map(|config| config.log_format).unwrap_or_default();
    let configured_filter = config.as_ref().ok().and_then(|config| config.log_filter.as_deref());
    let filter = portcullis::logging::filter_text(configured_filter);
    portcullis::logging::init(format, &filter);
    if let Err(error) = portcullis::logging::check_filter(&filter) {
        tracing::warn!(%error, "logging at info instead");
    }
    if let (portcullis::cli::Command::CheckConfig, Err(error)) = (&cli.command, &config) {
        // The one check that keeps the others from running.
        println!("{:<14}FAILED: {error}", "configuration");
        eprintln!("error: 1 check(s) failed: configuration");
        std::process::exit(1);
    }
    let outcome = config.map_err(anyhow::Error::from).and_then(|config| {
        for variable in &config.ignored_variables {
            tracing::debug!(%variable, "ignoring a variable that is not configuration");
        }
        portcullis::cli::run(cli, config)
    });
    if let Err(error) = outcome {
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
