//! The audit trail: what was decided and by whom, for the security team rather than for
//! debugging (that is the log's job).
//!
//! - [`decisions`]: one JSON line per token request, to standard output, a file or syslog,
//!   refusal floods aggregated;
//! - [`changes`]: every change made with the CLI, stored in the database with who and when;
//! - [`events`]: the registry's notifications of pushes, pulls and deletes (`POST /events`),
//!   stored beside the changes.
//!
//! Changes and events are listed by `portcullis audit list` and trimmed by `[audit] keep_days`
//! and `max_entries` ([`retention`]).

pub mod changes;
pub mod decisions;
pub mod events;
pub mod retention;
