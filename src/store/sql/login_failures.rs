//! The `login_failures` table (schema 0006): failed password logins per account, shared by every
//! process, for the throttle's per-account counts, `portcullis throttle list` and `user unlock`.

use super::{params, query_opt, query_vec, Db, Row};
use crate::store::names::fold;
use crate::store::{LoginFailures, StoreError};

const COLUMNS: &str =
    "name, failures, directory_failures, first_failure, last_failure, last_address, cleared_at";

fn from_row(row: &Row<'_>) -> Result<LoginFailures, StoreError> {
    Ok(LoginFailures {
        name: row.get(0)?,
        failures: row.get(1)?,
        directory_failures: row.get(2)?,
        first_failure: row.get(3)?,
        last_failure: row.get(4)?,
        last_address: row.get(5)?,
        cleared_at: row.get(6)?,
    })
}

/// Counts one failure of `name` from `address` at `now`; counts older than `window` seconds
/// since the last failure start again.
pub fn record(
    db: &mut dyn Db,
    name: &str,
    address: &str,
    directory: bool,
    now: i64,
    window: i64,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO login_failures AS f (name, failures, directory_failures, first_failure, last_failure, last_address)
         VALUES (?1, 1, ?2, ?3, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET
            failures = CASE WHEN f.last_failure < ?3 - ?5 THEN 1 ELSE f.failures + 1 END,
            directory_failures = CASE WHEN f.last_failure < ?3 - ?5 THEN ?2 ELSE f.directory_failures + ?2 END,
            first_failure = CASE WHEN f.last_failure < ?3 - ?5 THEN ?3 ELSE f.first_failure END,
            last_failure = ?3,
            last_address = ?4",
        params![&fold(name), i64::from(directory), now, address, window],
    )?;
    Ok(())
}

pub fn find(db: &mut dyn Db, name: &str) -> Result<Option<LoginFailures>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM login_failures WHERE name = ?1");
    query_opt(db, &sql, params![&fold(name)], from_row)
}

/// Accounts with failures, the most recent first.
pub fn list(db: &mut dyn Db) -> Result<Vec<LoginFailures>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM login_failures WHERE failures > 0 ORDER BY last_failure DESC");
    query_vec(db, &sql, &[], from_row)
}

/// Starts the failed-bind count of `name` afresh.
pub fn reset_directory(db: &mut dyn Db, name: &str) -> Result<(), StoreError> {
    db.execute(
        "UPDATE login_failures SET directory_failures = 0 WHERE name = ?1 AND directory_failures > 0",
        params![&fold(name)],
    )?;
    Ok(())
}

/// Forgets the failures of `name`; `false` when there were none.
pub fn clear(db: &mut dyn Db, name: &str, now: i64) -> Result<bool, StoreError> {
    let changed = db.execute(
        "UPDATE login_failures SET failures = 0, directory_failures = 0, cleared_at = ?2 WHERE name = ?1",
        params![&fold(name), now],
    )?;
    Ok(changed > 0)
}

#[cfg(test)]
mod tests {
    use crate::store::sql::testing::on_both_backends;

    on_both_backends! {
        fn failures_count_within_the_window_and_clear(store) {
            store.record_login_failure("Alice", "127.0.0.3", false, 900).unwrap();
            store.record_login_failure("alice", "127.0.0.4", true, 900).unwrap();
            let counted = store.login_failures("ALICE").unwrap().expect("counted");
            assert_eq!((counted.failures, counted.directory_failures), (2, 1));
            assert_eq!(counted.last_address, "127.0.0.4");
            assert_eq!(store.list_login_failures().unwrap().len(), 1);
            assert!(store.clear_login_failures("alice").unwrap());
            let cleared = store.login_failures("alice").unwrap().expect("kept, cleared");
            assert_eq!(cleared.failures, 0);
            assert!(cleared.cleared_at.is_some());
            assert!(store.list_login_failures().unwrap().is_empty());
        }
    }
}
