//! The PostgreSQL backend, for several replicas sharing one database: the URL and its TLS
//! settings, a bounded connection pool, the `schema/postgres` migrations (applied under an
//! advisory lock, so replicas starting together are safe), [`Db`] for a PostgreSQL
//! connection, and [`follower`], which tells a running server of every commit anyone makes.
//!
//! Crate choice: `tokio-postgres` (the maintained client the synchronous `postgres` crate wraps),
//! driven from the store's blocking calls with `Handle::block_on` on a small runtime owned by
//! this backend. Owning the futures is what gives every query a deadline
//! (`postgres.max_staleness_secs`): a hung server (stopped, or a network that drops packets
//! silently) answers 503 within that time instead of holding a request forever, which the
//! synchronous wrapper cannot do. The pool is ours (a few lines over a mutex), not
//! deadpool's, since deadpool's interface is async and every caller here is blocking.

pub mod follower;
mod tls;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::{pin_mut, StreamExt};
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{Client, Statement};

use super::names::NameRules;
use super::sql::{query_value, Backend, Db, Dialect, Row, SqlStore, TransactionKind, Value};
use super::sqlite::OpenMode;
use super::StoreError;
use crate::config::postgres::PostgresConfig;
use follower::Follower;

/// The store on a PostgreSQL database.
pub type PostgresStore = SqlStore<PostgresBackend>;

/// The numbered migrations under `schema/postgres`, in order: a baseline equal to SQLite's 1 to
/// 9, then pairs with SQLite's. Append; never edit a released one.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (9, "baseline", include_str!("../../../schema/postgres/0009_baseline.sql")),
    (10, "imported_passwords", include_str!("../../../schema/postgres/0010_imported_passwords.sql")),
];

/// The advisory lock every writing transaction takes first (and the change log's trigger
/// again): see `schema/postgres/0009_baseline.sql`.
const WRITERS_LOCK: i64 = 1_349_481_076;

/// Past this many rows in one result, a connection is closed after use (see `PgDb::query`).
const LARGE_RESULT_ROWS: usize = 100_000;

/// The advisory lock held while migrations run, so that replicas starting together apply each
/// one once.
const MIGRATIONS_LOCK: i64 = 1_349_481_077;

/// The PostgreSQL connections of one process.
pub struct PostgresBackend {
    shared: Arc<Shared>,
}

/// What the pool, the connections and the follower share.
pub(crate) struct Shared {
    config: tokio_postgres::Config,
    /// `None` with `sslmode=disable`.
    tls: Option<tls::MakeRustls>,
    /// The URL without its password, for messages.
    location: String,
    /// The runtime that drives the connections' sockets (callers block on their own futures);
    /// shut down without waiting when the store goes, which may be inside async code.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    idle: Mutex<Vec<PgDb>>,
    /// Connections handed out now; at most `pool_size`.
    busy: Mutex<usize>,
    returned: Condvar,
    pool_size: usize,
    /// The deadline of every query and of every wait for a connection.
    deadline: Duration,
    follower: Follower,
}

impl SqlStore<PostgresBackend> {
    /// Connects to the database at `url`, and applies pending migrations (`mode` says whether
    /// an empty database may be given the schema).
    pub fn open_url(
        url: &str,
        settings: &PostgresConfig,
        rules: NameRules,
        mode: OpenMode,
    ) -> Result<PostgresStore, StoreError> {
        let (config, tls, location) = parse_url(url, settings)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("portcullis-postgres")
            .enable_all()
            .build()
            .map_err(|error| StoreError::Open { path: location.clone().into(), reason: error.to_string() })?;
        let deadline = Duration::from_secs(settings.max_staleness_secs);
        let shared = Arc::new(Shared {
            config,
            tls,
            location,
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            idle: Mutex::new(Vec::new()),
            busy: Mutex::new(0),
            returned: Condvar::new(),
            pool_size: settings.pool_size,
            deadline,
            follower: Follower::new(deadline),
        });
        let mut db = shared.take()?;
        let migrated = migrate(&mut db, mode);
        shared.give_back(Some(db));
        migrated?;
        Ok(SqlStore::new(PostgresBackend { shared }, rules))
    }
}

impl Shared {
    /// A new connection, within the deadline.
    pub(crate) fn connect(&self) -> Result<Client, StoreError> {
        // Inside `block_on` the connection's task is spawned on this backend's runtime.
        let connecting = follower::connect(&self.config, self.tls.clone(), None);
        match self.handle.block_on(async { tokio::time::timeout(self.deadline, connecting).await }) {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(error)) => Err(self.unreachable(&describe(&error))),
            Err(_) => Err(self.unreachable("no answer within the deadline")),
        }
    }

    fn unreachable(&self, reason: &str) -> StoreError {
        StoreError::Unavailable(format!("database {}: {reason}", self.location))
    }

    /// A connection of the pool, waiting (at most the deadline) while all are busy.
    fn take(&self) -> Result<PgDb, StoreError> {
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        let started = Instant::now();
        while *busy >= self.pool_size {
            let left = self.deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(StoreError::Unavailable(format!(
                    "all {} database connections stayed busy for {} s",
                    self.pool_size,
                    self.deadline.as_secs()
                )));
            }
            busy = self.returned.wait_timeout(busy, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        *busy += 1;
        drop(busy);
        let pooled = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match pooled.filter(|db| !db.is_closed()) {
            Some(db) => Ok(db),
            None => match self.connect() {
                Ok(client) => Ok(PgDb::new(client, self)),
                Err(error) => {
                    self.give_back(None);
                    Err(error)
                }
            },
        }
    }

    /// Returns a slot, and the connection unless it is broken or still inside a transaction.
    fn give_back(&self, db: Option<PgDb>) {
        if let Some(db) = db.filter(|db| !db.broken && !db.discard && !db.in_transaction && !db.is_closed()) {
            self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(db);
        }
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        *busy = busy.saturating_sub(1);
        self.returned.notify_one();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Backend for PostgresBackend {
    fn location(&self) -> String {
        self.shared.location.clone()
    }

    fn with_db<T>(&self, work: impl FnOnce(&mut dyn Db) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut db = self.shared.take()?;
        let result = work(&mut db);
        self.shared.give_back(Some(db));
        result
    }

    /// PostgreSQL locks rows, not the database: a write that may be skipped waits for no other
    /// writer, so the usual deadline is its bound.
    fn with_db_waiting<T>(
        &self,
        _wait: Duration,
        work: impl FnOnce(&mut dyn Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_db(work)
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.shared.follower.check_current()?;
        self.with_db(|db| query_value::<i64>(db, "SELECT COUNT(*) FROM schema_migrations", &[]).map(drop))
    }

    /// The change log's head as the follower last confirmed it (two atomic loads), moved on by
    /// every reconnect; [`StoreError::Unavailable`] once that confirmation is older than
    /// `max_staleness_secs`. The first call starts the follower and waits for its first answer.
    fn commit_counter(&self) -> Result<i64, StoreError> {
        self.shared.follower.commit_counter(&self.shared)
    }
}

/// One PostgreSQL connection and the statements prepared on it.
pub(crate) struct PgDb {
    connection: Connection,
    statements: HashMap<String, Statement>,
    in_transaction: bool,
    /// The open transaction is a writing one: its commit tells the follower the new head.
    writing: bool,
    follower: Arc<follower::State>,
    /// A query ran past its deadline or the connection failed: not reused.
    broken: bool,
    /// A result so large that the connection's buffers stay large: not reused either.
    discard: bool,
}

/// The client and how to wait for it.
struct Connection {
    client: Client,
    handle: tokio::runtime::Handle,
    deadline: Duration,
}

impl Connection {
    /// Waits for `work` within the deadline; a timeout or a lost connection sets `broken`.
    fn block<T>(
        &self,
        broken: &mut bool,
        work: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        match self.handle.block_on(async { tokio::time::timeout(self.deadline, work).await }) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                if self.client.is_closed() || error.is_closed() {
                    *broken = true;
                    return Err(StoreError::Unavailable(format!(
                        "the database connection was lost: {}",
                        describe(&error)
                    )));
                }
                Err(StoreError::Database(describe(&error).into()))
            }
            Err(_) => {
                *broken = true;
                Err(StoreError::Unavailable(format!(
                    "the database did not answer within {} s",
                    self.deadline.as_secs()
                )))
            }
        }
    }
}

impl PgDb {
    fn new(client: Client, shared: &Shared) -> PgDb {
        PgDb {
            connection: Connection { client, handle: shared.handle.clone(), deadline: shared.deadline },
            statements: HashMap::new(),
            in_transaction: false,
            writing: false,
            follower: shared.follower.state.clone(),
            broken: false,
            discard: false,
        }
    }

    fn is_closed(&self) -> bool {
        self.connection.client.is_closed()
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let numbered = dollar_placeholders(sql);
        let connection = &self.connection;
        let statement = connection.block(&mut self.broken, connection.client.prepare(&numbered))?;
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    /// Runs statements without parameters (transaction control, a migration script).
    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        let connection = &self.connection;
        connection.block(&mut self.broken, connection.client.batch_execute(sql))
    }
}

/// What went wrong, in words: the server's own message for an error it sent (tokio-postgres's
/// `Display` says only "db error"), else the error and its causes (a TLS handshake's reason).
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(server) = error.as_db_error() {
        let mut text = format!("{}: {}", server.severity(), server.message());
        if let Some(detail) = server.detail() {
            text.push_str(&format!(" ({detail})"));
        }
        return text;
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// `?N` placeholders (the shared queries' form, SQLite's) as PostgreSQL's `$N`. The queries hold
/// no `?` in string literals.
fn dollar_placeholders(sql: &str) -> String {
    let mut numbered = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            numbered.push('$');
        } else {
            numbered.push(c);
        }
    }
    numbered
}

impl ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Value::Int(value) => match *ty {
                Type::INT8 => value.to_sql(ty, out),
                Type::INT4 => i32::try_from(value)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(value)?.to_sql(ty, out),
                _ => Err(format!("an integer given for a {ty} parameter").into()),
            },
            Value::Text(text) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    text.to_sql(ty, out)
                }
                _ => Err(format!("text given for a {ty} parameter").into()),
            },
            Value::Bool(value) => match *ty {
                Type::BOOL => value.to_sql(ty, out),
                _ => Err(format!("a boolean given for a {ty} parameter").into()),
            },
            Value::Null => Ok(IsNull::Yes),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

fn as_params<'a>(params: &'a [Value<'a>]) -> impl ExactSizeIterator<Item = &'a (dyn ToSql + Sync)> {
    params.iter().map(|value| value as &(dyn ToSql + Sync))
}

impl Db for PgDb {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<usize, StoreError> {
        let statement = self.statement(sql)?;
        let connection = &self.connection;
        let changed = connection
            .block(&mut self.broken, connection.client.execute_raw(&statement, as_params(params)))?;
        Ok(usize::try_from(changed).unwrap_or(usize::MAX))
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        each: &mut dyn FnMut(&Row<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let statement = self.statement(sql)?;
        let connection = &self.connection;
        let client = &connection.client;
        // Rows are handed on as they arrive; an error of `each` stops the reading.
        let mut failed = None;
        let mut rows_read = 0usize;
        let reading = async {
            let rows = client.query_raw(&statement, as_params(params)).await?;
            pin_mut!(rows);
            while let Some(row) = rows.next().await {
                rows_read += 1;
                if let Err(error) = each(&Row::Postgres(&row?)) {
                    failed = Some(error);
                    break;
                }
            }
            Ok(())
        };
        connection.block(&mut self.broken, reading)?;
        // The connection's read buffer grew to hold what arrived faster than it was handled
        // (a million memberships at start: 40 MiB) and never shrinks: such a connection is not
        // kept (the pool opens a fresh one when it needs one).
        if rows_read > LARGE_RESULT_ROWS {
            self.discard = true;
        }
        match failed {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        PgDb::batch(self, sql)
    }

    /// A writing transaction takes the writers' lock first (see the module header of
    /// `store::sql`); a read one sees one snapshot of the whole database.
    fn begin(&mut self, kind: TransactionKind) -> Result<bool, StoreError> {
        if self.in_transaction {
            return Ok(false);
        }
        let begin = match kind {
            TransactionKind::Write => format!("BEGIN; SELECT pg_advisory_xact_lock({WRITERS_LOCK})"),
            TransactionKind::Batch => "BEGIN".to_string(),
            TransactionKind::Read => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY".to_string(),
        };
        self.in_transaction = true;
        self.writing = kind == TransactionKind::Write;
        self.batch(&begin)?;
        Ok(true)
    }

    /// A writing transaction reads the log's head first (under the writers' lock: its own last
    /// entry), so that this process's snapshot follows its own change at once.
    fn commit(&mut self) -> Result<(), StoreError> {
        let head = match self.writing {
            true => Some(query_value::<i64>(self, "SELECT COALESCE(MAX(seq), 0) FROM access_changes", &[])?),
            false => None,
        };
        self.batch("COMMIT")?;
        self.in_transaction = false;
        self.writing = false;
        if let Some(head) = head {
            self.follower.own_commit(head);
        }
        Ok(())
    }

    fn rollback(&mut self) {
        self.writing = false;
        if self.batch("ROLLBACK").is_ok() {
            self.in_transaction = false;
        } else {
            self.broken = true;
        }
    }
}

/// Applies every migration the database lacks, under [`MIGRATIONS_LOCK`].
fn migrate(db: &mut PgDb, mode: OpenMode) -> Result<(), StoreError> {
    db.batch(&format!("SELECT pg_advisory_lock({MIGRATIONS_LOCK})"))?;
    let result = migrate_locked(db, mode);
    let unlocked = db.batch(&format!("SELECT pg_advisory_unlock({MIGRATIONS_LOCK})"));
    result.and(unlocked)
}

fn migrate_locked(db: &mut PgDb, mode: OpenMode) -> Result<(), StoreError> {
    let exists: bool = query_value(db, "SELECT to_regclass('schema_migrations') IS NOT NULL", &[])?;
    if !exists && mode == OpenMode::Existing {
        return Err(StoreError::Invalid(
            "the PostgreSQL database holds no Portcullis data yet: start `portcullis serve` once or run \
             `portcullis init` with this database to create it"
                .into(),
        ));
    }
    if !exists {
        db.batch(
            "CREATE TABLE schema_migrations (
                 version    BIGINT PRIMARY KEY,
                 name       TEXT   NOT NULL,
                 applied_at BIGINT NOT NULL
             )",
        )?;
    }
    super::sql::migrate(db, MIGRATIONS)
}

/// The connection settings `url` and `settings` give, the TLS they ask for, and the URL as it
/// may be shown (no password). libpq's `sslmode` and `sslrootcert` are read here, since
/// tokio-postgres knows only some of the modes and no root file.
fn parse_url(
    url: &str,
    settings: &PostgresConfig,
) -> Result<(tokio_postgres::Config, Option<tls::MakeRustls>, String), StoreError> {
    let invalid = |message: String| StoreError::Invalid(format!("database URL: {message}"));
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut sslmode = "prefer".to_string();
    let mut root_file = None;
    let mut kept = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "sslmode" => sslmode = value.into_owned(),
            "sslrootcert" => root_file = Some(std::path::PathBuf::from(value.as_ref())),
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" => {
                return Err(invalid(format!("{key} is not supported (client certificates)")));
            }
            _ => {
                kept.append_pair(&key, &value);
            }
        }
    }
    let kept = kept.finish();
    let rebuilt = if kept.is_empty() { base.to_string() } else { format!("{base}?{kept}") };
    // tokio-postgres's messages name the option, never its value.
    let mut config =
        tokio_postgres::Config::from_str(&rebuilt).map_err(|error| invalid(error.to_string()))?;
    let (mode, verify) = match sslmode.as_str() {
        "disable" => (tokio_postgres::config::SslMode::Disable, None),
        "allow" | "prefer" => (tokio_postgres::config::SslMode::Prefer, Some(tls::Verify::Nothing)),
        // libpq: with a root certificate given, `require` checks the chain like `verify-ca`.
        "require" if root_file.is_some() => {
            (tokio_postgres::config::SslMode::Require, Some(tls::Verify::Chain))
        }
        "require" => (tokio_postgres::config::SslMode::Require, Some(tls::Verify::Nothing)),
        "verify-ca" => (tokio_postgres::config::SslMode::Require, Some(tls::Verify::Chain)),
        "verify-full" => (tokio_postgres::config::SslMode::Require, Some(tls::Verify::Full)),
        other => {
            return Err(invalid(format!(
                "sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
            )))
        }
    };
    config.ssl_mode(mode);
    let tls = match verify {
        Some(verify) => Some(tls::MakeRustls::new(verify, root_file.as_deref()).map_err(invalid)?),
        None => None,
    };
    if let Some(path) = &settings.password_file {
        let text = std::fs::read_to_string(path).map_err(|error| {
            StoreError::Invalid(format!("postgres.password_file {}: {error}", path.display()))
        })?;
        config.password(text.lines().next().unwrap_or_default());
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(settings.max_staleness_secs));
    }
    // A peer that stops acknowledging (a dead host, a cut network) ends the connection.
    config.tcp_user_timeout(Duration::from_secs(settings.max_staleness_secs));
    if config.get_application_name().is_none() {
        config.application_name("portcullis");
    }
    let location = location(&config);
    Ok((config, tls, location))
}

/// `postgres://user@host:port,host:port/db`, without the password.
fn location(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let host = match host {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(index).or(config.get_ports().first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    let user = config.get_user().map(|user| format!("{user}@")).unwrap_or_default();
    format!("postgres://{user}{}/{}", hosts.join(","), config.get_dbname().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_migration_is_the_schema_version_of_both_dialects() {
        assert_eq!(MIGRATIONS.last().map(|m| m.0), Some(crate::store::sql::SCHEMA_VERSION));
    }

    #[test]
    fn placeholders_are_numbered_the_postgres_way() {
        assert_eq!(dollar_placeholders("a = ?1 AND b = ?12 OR ?"), "a = $1 AND b = $12 OR ?");
    }

    #[test]
    fn the_location_never_shows_the_password() {
        let settings = PostgresConfig::default();
        let (_, tls, location) = parse_url(
            "postgres://app:s3cret@db1:5432,db2:5433/auth?target_session_attrs=read-write",
            &settings,
        )
        .unwrap();
        assert_eq!(location, "postgres://app@db1:5432,db2:5433/auth");
        assert!(tls.is_some(), "prefer, as libpq");
        let (_, tls, _) = parse_url("postgres://db/auth?sslmode=disable", &settings).unwrap();
        assert!(tls.is_none());
        for refused in ["postgres://db/x?sslmode=maybe", "postgres://db/x?sslcert=/a", "postgres://db:port/x"]
        {
            let error = parse_url(refused, &settings).map(drop).unwrap_err().to_string();
            assert!(error.starts_with("database URL"), "{refused}: {error}");
        }
    }
}
