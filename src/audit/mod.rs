//! The audit trail: what was decided and by whom, for the security team rather than for
//! debugging (that is the log's job).
//!
//! - [`decisions`]: one JSON line per token request, to standard output, a file or syslog,
//!   refusal floods aggregated.

pub mod decisions;
