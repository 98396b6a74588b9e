//! Tests of the store written once and run on both backends: [`on_both_backends!`] turns one
//! test body into a SQLite test (a file in a temp dir) and a PostgreSQL test (a fresh database
//! on a private PostgreSQL cluster, the integration tests' own harness, started once per test
//! binary and stopped when it exits).

use std::ops::Deref;

use super::Db;
use crate::config::postgres::PostgresConfig;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::{test_rules, OpenMode, SqliteStore};
use crate::store::{Store, StoreError};

#[allow(dead_code)]
#[path = "../../../tests/it/support/process.rs"]
mod process;

#[allow(dead_code)]
#[path = "../../../tests/it/support/postgres.rs"]
mod postgres;

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A store on a fresh database of one backend, and what keeps that database alive.
pub struct TestStore {
    store: Box<dyn WithDb>,
    /// The SQLite file, or the PostgreSQL URL.
    location: Location,
}

enum Location {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

/// [`Store`] and raw SQL on its connections.
pub trait WithDb: Store {
    fn with_test_db(
        &self,
        work: &mut dyn FnMut(&mut dyn Db) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
}

impl<B: super::Backend> WithDb for super::SqlStore<B> {
    fn with_test_db(
        &self,
        work: &mut dyn FnMut(&mut dyn Db) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.with_db(|db| work(db))
    }
}

impl TestStore {
    pub fn new(backend: Backend) -> TestStore {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let store = SqliteStore::open(&dir.path().join("test.db"), test_rules()).expect("open store");
                TestStore { store: Box::new(store), location: Location::Sqlite(dir) }
            }
            Backend::Postgres => {
                let url = fresh_postgres_database();
                let store =
                    PostgresStore::open_url(&url, &PostgresConfig::default(), test_rules(), OpenMode::Create)
                        .expect("open the PostgreSQL store");
                TestStore { store: Box::new(store), location: Location::Postgres(url) }
            }
        }
    }

    /// Another store on the same database, as another process (a CLI, a replica) opens it.
    pub fn open_again(&self) -> crate::store::SharedStore {
        match &self.location {
            Location::Sqlite(dir) => std::sync::Arc::new(
                SqliteStore::open(&dir.path().join("test.db"), test_rules()).expect("open store"),
            ),
            Location::Postgres(url) => std::sync::Arc::new(
                PostgresStore::open_url(url, &PostgresConfig::default(), test_rules(), OpenMode::Existing)
                    .expect("open the PostgreSQL store"),
            ),
        }
    }

    /// Runs `work` on a connection of the store (SQL the tests need of their own).
    pub fn with_db<T>(
        &self,
        work: impl FnOnce(&mut dyn Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut work = Some(work);
        let mut answer = None;
        self.store.with_test_db(&mut |db| {
            if let Some(work) = work.take() {
                answer = Some(work(db)?);
            }
            Ok(())
        })?;
        Ok(answer.expect("the work ran"))
    }
}

impl Deref for TestStore {
    type Target = dyn Store;

    fn deref(&self) -> &(dyn Store + 'static) {
        let store: &dyn WithDb = self.store.as_ref();
        store
    }
}

/// The URL of a new, empty database on the test binary's cluster.
fn fresh_postgres_database() -> String {
    postgres::shared_database()
}

/// One test body (`fn name(store) { ... }`, `store` a [`TestStore`]) as a test on each backend:
/// `name::sqlite` and `name::postgres`.
macro_rules! on_both_backends {
    ($(fn $name:ident($store:ident) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                use $crate::store::sql::testing::{Backend, TestStore};

                fn body($store: &TestStore) $body

                #[test]
                fn sqlite() {
                    body(&TestStore::new(Backend::Sqlite));
                }

                #[test]
                fn postgres() {
                    body(&TestStore::new(Backend::Postgres));
                }
            }
        )*
    };
}
pub(crate) use on_both_backends;
