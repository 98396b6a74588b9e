//! Prometheus metrics: what every part of a token request counts, and `/metrics`.
//!
//! One process-wide [`Metrics`] ([`metrics()`]), because the counting happens in every layer
//! (the accept loop, the hasher pool, the directory client, the snapshot) and threading a handle
//! through each would tie them all to this module's types. Recording must stay cheap on the
//! warm path (the operations issue allows 3 % of warm tokens/s): the token-request counters for
//! every label combination are made once, up front, and a request adds to one by index (an
//! atomic add), with no label hashing or lock; the histograms are lock-free too.
//!
//! Names follow Prometheus conventions: `portcullis_` prefix, `_total` for counters (added by
//! the encoder), `_seconds` for durations. The text is OpenMetrics 1.0, which Prometheus reads.

use std::sync::OnceLock;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

mod histogram;
use histogram::{AtomicHistogram, SharedHistogram};

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A label's values as an enum: the variants are the values as written (snake case), with
/// `ALL` (every value, in order) and `as_str` (the value, as the audit trail spells it too).
macro_rules! label_values {
    ($(#[$meta:meta])* $visibility:vis enum $type:ident { $($(#[$doc:meta])* $variant:ident,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
        #[allow(non_camel_case_types)]
        $visibility enum $type { $($(#[$doc])* $variant,)* }

        impl $type {
            pub const ALL: &'static [$type] = &[$($type::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($type::$variant => stringify!($variant),)*
                }
            }
        }
    };
}

label_values! {
    /// How a token request ended, as counted.
    pub enum Outcome {
        /// Everything asked for (or a login, which asks for nothing).
        granted,
        /// Some of the scopes asked for.
        partially_granted,
        /// A token without any of the scopes asked for.
        denied,
        /// 401: unknown or wrong credentials.
        unauthorized,
        /// Refused by the throttle or the full hashing queue (429, 503 with Retry-After).
        throttled,
        /// A bad request or a server-side fault.
        error,
    }
}

label_values! {
    /// How the token was asked for.
    pub enum FlowLabel {
        get,
        password_grant,
        refresh_grant,
        /// A `POST /token` whose form could not be read.
        unknown,
    }
}

label_values! {
    /// What proved who the caller is.
    pub enum CredentialKind {
        /// A database user's password, verified with argon2id.
        password,
        /// A login remembered from an earlier verification.
        cached,
        robot,
        personal_token,
        refresh_token,
        anonymous,
        /// A directory user's password, checked by a bind.
        directory,
        /// Not known: the request failed before its credential was identified.
        none,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TokenLabels {
    outcome: Outcome,
    flow: FlowLabel,
    credential: CredentialKind,
}

label_values! {
    /// What a remembered-login lookup found.
    pub enum CacheResult {
        hit,
        miss,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CacheLabels {
    result: CacheResult,
}

label_values! {
    /// A directory operation, as timed.
    pub enum DirectoryOperation {
        /// Opening a connection (TCP, TLS).
        connect,
        /// A search: a user's entry, their groups, the re-check of an entry.
        search,
        /// A bind, as the search account or as a user with their password.
        bind,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DirectoryLabels {
    operation: DirectoryOperation,
}

label_values! {
    /// What became of an event the registry notified (`POST /events`).
    pub enum EventResult {
        /// Stored in the audit log.
        stored,
        /// Already stored: the registry sent it again.
        duplicate,
        /// Not audited: a blob's push, pull or mount, or not an event at all.
        skipped,
        /// The batch came without the right secret (counted per batch).
        unauthorized,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EventLabels {
    result: EventResult,
}

/// Every metric Portcullis keeps.
pub struct Metrics {
    registry: Registry,
    /// One counter per (outcome, flow, credential), indexed by [`token_index`].
    token_requests: Vec<Counter>,
    token_seconds: std::sync::Arc<AtomicHistogram>,
    hash_queue_depth: Gauge,
    hash_wait_seconds: std::sync::Arc<AtomicHistogram>,
    cache_hit: Counter,
    cache_miss: Counter,
    directory_seconds: Family<DirectoryLabels, Histogram>,
    directory_failures: Family<DirectoryLabels, Counter>,
    /// 1 while the last connection to the directory succeeded, 0 after one failed (or before
    /// any), -1 without a directory.
    directory_up: Gauge,
    snapshot_catch_ups: Counter,
    open_connections: Gauge,
    tls_not_after: Gauge,
    /// When the signing key's certificate expires: registries verify `x5c` against the bundle
    /// with its validity, so an expired one fails every token (rotate before).
    signing_not_after: Gauge,
    /// One counter per [`EventResult`], in its order.
    registry_events: Vec<Counter>,
    /// Rows in the stored audit log, as the last trim counted them.
    audit_log_entries: Gauge,
    /// PostgreSQL: the change log's newest entry as this replica last confirmed it, and when.
    change_log_head: Gauge,
    change_log_confirmed: Gauge,
}

fn token_index(outcome: Outcome, flow: FlowLabel, credential: CredentialKind) -> usize {
    (outcome as usize * FlowLabel::ALL.len() + flow as usize) * CredentialKind::ALL.len()
        + credential as usize
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Buckets from 0.5 ms to about 16 s, doubling: a warm token takes well under a millisecond, a
/// login a few hundred, a stuck directory its timeout.
fn duration_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 16)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("portcullis");
        let token_family = Family::<TokenLabels, Counter>::default();
        let mut token_requests =
            Vec::with_capacity(Outcome::ALL.len() * FlowLabel::ALL.len() * CredentialKind::ALL.len());
        for &outcome in Outcome::ALL {
            for &flow in FlowLabel::ALL {
                for &credential in CredentialKind::ALL {
                    debug_assert_eq!(token_requests.len(), token_index(outcome, flow, credential));
                    token_requests.push(token_family.get_or_create_owned(&TokenLabels {
                        outcome,
                        flow,
                        credential,
                    }));
                }
            }
        }
        registry.register(
            "token_requests",
            "Token requests by outcome, flow (get, password_grant, refresh_grant, unknown) and credential kind",
            token_family,
        );
        let token_seconds = std::sync::Arc::new(AtomicHistogram::new(duration_buckets()));
        registry.register_with_unit(
            "token_request_duration",
            "Time from a token request's arrival to its answer",
            Unit::Seconds,
            SharedHistogram(token_seconds.clone()),
        );
        let hash_queue_depth = Gauge::default();
        registry.register(
            "password_hash_queue_depth",
            "Password verifications waiting for a hashing thread",
            hash_queue_depth.clone(),
        );
        let hash_wait_seconds = std::sync::Arc::new(AtomicHistogram::new(duration_buckets()));
        registry.register_with_unit(
            "password_hash_wait",
            "Time a password verification waited for a hashing thread",
            Unit::Seconds,
            SharedHistogram(hash_wait_seconds.clone()),
        );
        let cache = Family::<CacheLabels, Counter>::default();
        let cache_hit = cache.get_or_create_owned(&CacheLabels { result: CacheResult::hit });
        let cache_miss = cache.get_or_create_owned(&CacheLabels { result: CacheResult::miss });
        registry.register(
            "credential_cache_lookups",
            "Password logins looked up among remembered logins, by result (hit, miss)",
            cache,
        );
        let directory_seconds =
            Family::<DirectoryLabels, Histogram>::new_with_constructor(|| Histogram::new(duration_buckets()));
        registry.register_with_unit(
            "directory_operation_duration",
            "Time of LDAP operations, by operation",
            Unit::Seconds,
            directory_seconds.clone(),
        );
        let directory_failures = Family::<DirectoryLabels, Counter>::default();
        registry.register(
            "directory_operation_failures",
            "LDAP operations that failed (unreachable, timed out, refused the search account)",
            directory_failures.clone(),
        );
        let directory_up = Gauge::default();
        directory_up.set(-1);
        registry.register(
            "directory_up",
            "1 while the last connection to the directory succeeded, 0 after one failed, -1 without [ldap]",
            directory_up.clone(),
        );
        let snapshot_catch_ups = Counter::default();
        registry.register(
            "snapshot_catch_ups",
            "Times the in-memory account snapshot applied changes committed by any process",
            snapshot_catch_ups.clone(),
        );
        let open_connections = Gauge::default();
        registry.register("open_connections", "Client connections open now", open_connections.clone());
        let tls_not_after = Gauge::default();
        registry.register_with_unit(
            "tls_certificate_expiry_timestamp",
            "When the TLS certificate being served expires, in seconds since the Unix epoch (0 without TLS)",
            Unit::Seconds,
            tls_not_after.clone(),
        );
        let signing_not_after = Gauge::default();
        registry.register_with_unit(
            "signing_key_expiry_timestamp",
            "When the certificate of the key that signs expires, in seconds since the Unix epoch",
            Unit::Seconds,
            signing_not_after.clone(),
        );
        let events = Family::<EventLabels, Counter>::default();
        let registry_events = EventResult::ALL
            .iter()
            .map(|&result| events.get_or_create_owned(&EventLabels { result }))
            .collect();
        registry.register(
            "registry_events",
            "Events the registry notified to /events, by result (stored, duplicate, skipped; unauthorized counts batches)",
            events,
        );
        let audit_log_entries = Gauge::default();
        registry.register(
            "audit_log_entries",
            "Changes and registry events stored in the database, as last counted (every 10 minutes)",
            audit_log_entries.clone(),
        );
        let change_log_head = Gauge::default();
        registry.register(
            "change_log_head",
            "PostgreSQL: the newest change-log entry this replica has confirmed with the database (compare replicas)",
            change_log_head.clone(),
        );
        let change_log_confirmed = Gauge::default();
        registry.register(
            "change_log_confirmed_timestamp_seconds",
            "PostgreSQL: when this replica last confirmed the change log with a round trip; past postgres.max_staleness_secs it answers 503",
            change_log_confirmed.clone(),
        );
        Metrics {
            change_log_head,
            change_log_confirmed,
            audit_log_entries,
            registry_events,
            registry,
            token_requests,
            token_seconds,
            hash_queue_depth,
            hash_wait_seconds,
            cache_hit,
            cache_miss,
            directory_seconds,
            directory_failures,
            directory_up,
            snapshot_catch_ups,
            open_connections,
            tls_not_after,
            signing_not_after,
        }
    }

    /// The metrics as OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// One token request answered after `seconds`.
    pub fn token_request(&self, outcome: Outcome, flow: FlowLabel, credential: CredentialKind, seconds: f64) {
        self.token_requests[token_index(outcome, flow, credential)].inc();
        self.token_seconds.observe(seconds);
    }

    /// A verification joined (`+1`) or left (`-1`) the hashing queue.
    pub fn hash_queue_changed(&self, delta: i64) {
        self.hash_queue_depth.inc_by(delta);
    }

    /// A verification waited `seconds` for its hashing thread.
    pub fn hash_waited(&self, seconds: f64) {
        self.hash_wait_seconds.observe(seconds);
    }

    /// A login was (`true`) or was not found among the remembered ones.
    pub fn cache_lookup(&self, hit: bool) {
        if hit { &self.cache_hit } else { &self.cache_miss }.inc();
    }

    /// A directory operation took `seconds` and succeeded or failed.
    fn directory_operation(&self, operation: DirectoryOperation, seconds: f64, failed: bool) {
        let labels = DirectoryLabels { operation };
        self.directory_seconds.get_or_create(&labels).observe(seconds);
        if failed {
            self.directory_failures.get_or_create(&labels).inc();
        }
    }

    /// Runs one directory operation, timing it and counting it failed when it errs.
    pub async fn time_directory<T, E>(
        &self,
        operation: DirectoryOperation,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let started = std::time::Instant::now();
        let result = work.await;
        self.directory_operation(operation, started.elapsed().as_secs_f64(), result.is_err());
        if operation == DirectoryOperation::connect {
            self.directory_up.set(i64::from(result.is_ok()));
        }
        result
    }

    /// Whether a directory is configured (at start and at each reload): without one the state
    /// is -1; with one it is 0 until a connection succeeds.
    pub fn directory_configured(&self, configured: bool) {
        if !configured {
            self.directory_up.set(-1);
        } else if self.directory_up.get() < 0 {
            self.directory_up.set(0);
        }
    }

    /// The snapshot applied changes from the change log.
    pub fn snapshot_caught_up(&self) {
        self.snapshot_catch_ups.inc();
    }

    /// A connection opened (`+1`) or closed (`-1`).
    pub fn connections_changed(&self, delta: i64) {
        self.open_connections.inc_by(delta);
    }

    /// A batch of registry events came to this many stored, duplicate and skipped.
    pub fn registry_events(&self, stored: usize, duplicates: usize, skipped: usize) {
        for (result, count) in [
            (EventResult::stored, stored),
            (EventResult::duplicate, duplicates),
            (EventResult::skipped, skipped),
        ] {
            self.registry_events[result as usize].inc_by(count as u64);
        }
    }

    /// The stored audit log holds `count` entries.
    pub fn audit_log_entries(&self, count: u64) {
        self.audit_log_entries.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The follower confirmed the change log's head `head` just now.
    pub fn change_log_confirmed(&self, head: i64) {
        self.change_log_head.set(head);
        self.change_log_confirmed.set(crate::store::now());
    }

    /// A batch of registry events came without the right secret.
    pub fn registry_events_refused(&self) {
        self.registry_events[EventResult::unauthorized as usize].inc();
    }

    /// The key that signs now has a certificate expiring at `unix` seconds.
    pub fn signing_key_taken_up(&self, unix: i64) {
        self.signing_not_after.set(unix);
    }

    /// The TLS certificate now served expires at `unix` seconds.
    pub fn tls_certificate_served(&self, unix: i64) {
        self.tls_not_after.set(unix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lock-free histogram encodes as prometheus-client's does: cumulative buckets, `+Inf`,
    /// count and sum.
    #[test]
    fn the_atomic_histogram_encodes_cumulative_buckets() {
        let histogram = AtomicHistogram::new([0.001, 0.01].into_iter());
        for seconds in [0.0005, 0.001, 0.005, 3.0] {
            histogram.observe(seconds);
        }
        let mut registry = Registry::default();
        registry.register_with_unit("wait", "test", Unit::Seconds, histogram);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "wait_seconds_bucket{le=\"0.001\"} 2",
            "wait_seconds_bucket{le=\"0.01\"} 3",
            "wait_seconds_bucket{le=\"+Inf\"} 4",
            "wait_seconds_count 4",
            "wait_seconds_sum 3.0065",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn every_label_combination_has_its_own_counter() {
        let mut seen = std::collections::HashSet::new();
        for &outcome in Outcome::ALL {
            for &flow in FlowLabel::ALL {
                for &credential in CredentialKind::ALL {
                    assert!(seen.insert(token_index(outcome, flow, credential)));
                }
            }
        }
        assert_eq!(seen.len(), metrics().token_requests.len());
        assert_eq!(seen.iter().max(), Some(&(seen.len() - 1)));
    }

    #[test]
    fn the_text_names_follow_prometheus_conventions() {
        let metrics = metrics();
        metrics.token_request(
            Outcome::partially_granted,
            FlowLabel::refresh_grant,
            CredentialKind::refresh_token,
            0.001,
        );
        let text = metrics.encode();
        assert!(text.contains(
            "portcullis_token_requests_total{outcome=\"partially_granted\",flow=\"refresh_grant\",credential=\"refresh_token\"} 1"
        ), "{text}");
        assert!(text.contains("# TYPE portcullis_token_request_duration_seconds histogram"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
