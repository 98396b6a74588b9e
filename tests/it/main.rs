//! Portcullis' integration tests: one test binary (`cargo test --test it`), so the harness in
//! `support/` is compiled once and every helper in it is used by some test. One module per area;
//! run one with `cargo test --test it AREA`, e.g. `cargo test --test it credentials_http`.
//!
//! Every test drives the compiled `portcullis` binary (server and CLI) and real tools, never the
//! library: what is tested is what users run. The one exception is `fuzz_corpus`, which replays
//! the fuzz targets' corpus through the library's parsers.

mod support;

mod access_check;
mod audit;
mod audit_log;
mod credentials_cli;
mod credentials_http;
mod e2e_credentials;
mod e2e_docker;
mod e2e_skopeo;
mod fuzz_corpus;
mod hardening;
mod http_token;
mod import;
mod keys;
mod ldap;
mod ldap_lockout;
mod live_changes;
mod metrics;
mod operations;
mod replicas;
mod stack_smoke;
mod throttle;
mod tls;
