//! The `signing_keys` table (schema 0009): token signing keys and their rotation states. Each
//! step of a rotation is one transaction, so no reader ever sees two current keys or none.

use rusqlite::{params, Connection, Row};

use crate::store::{KeyState, NewSigningKey, StoreError, StoredKey};

const COLUMNS: &str = "id, state, algorithm, private_key, certificate, created_at, activated_at, retired_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<StoredKey> {
    let state: String = row.get(1)?;
    Ok(StoredKey {
        id: row.get(0)?,
        // The table's CHECK admits only the three states.
        state: KeyState::from_stored(&state).unwrap_or(KeyState::Retired),
        algorithm: row.get(2)?,
        private_key: row.get(3)?,
        certificate: row.get(4)?,
        created_at: row.get(5)?,
        activated_at: row.get(6)?,
        retired_at: row.get(7)?,
    })
}

pub fn list(connection: &Connection) -> Result<Vec<StoredKey>, StoreError> {
    let mut statement = connection.prepare(&format!("SELECT {COLUMNS} FROM signing_keys ORDER BY id"))?;
    let keys = statement.query_map([], from_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(keys)
}

pub fn add(connection: &Connection, new: &NewSigningKey<'_>, now: i64) -> Result<i64, StoreError> {
    let activated = (new.state == KeyState::Current).then_some(now);
    let inserted = connection.execute(
        "INSERT INTO signing_keys (state, algorithm, private_key, certificate, created_at, activated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        params![new.state.as_str(), new.algorithm, new.private_key, new.certificate, now, activated],
    )?;
    if inserted == 0 {
        return Err(StoreError::AlreadyExists { kind: "signing key", name: new.state.as_str().to_string() });
    }
    Ok(connection.last_insert_rowid())
}

/// [`StoreError::NotFound`] unless a next key is stored.
fn require_next(connection: &Connection) -> Result<(), StoreError> {
    let has_next: bool = connection.query_row(
        "SELECT EXISTS (SELECT 1 FROM signing_keys WHERE state = 'next')",
        [],
        |row| row.get(0),
    )?;
    match has_next {
        true => Ok(()),
        false => Err(StoreError::NotFound { kind: "signing key", name: "next".into() }),
    }
}

/// The next key signs; the current one is retired.
pub fn promote(connection: &mut Connection, now: i64) -> Result<(), StoreError> {
    activate_next(connection, now, |transaction| {
        transaction.execute(
            "UPDATE signing_keys SET state = 'retired', retired_at = ?1 WHERE state = 'current'",
            [now],
        )
    })
}

/// The next key signs; every other key is gone.
pub fn replace(connection: &mut Connection, now: i64) -> Result<(), StoreError> {
    activate_next(connection, now, |transaction| {
        transaction.execute("DELETE FROM signing_keys WHERE state <> 'next'", [])
    })
}

/// In one transaction: `set_aside` moves or removes the other keys, then the next key becomes
/// current at `now`.
fn activate_next(
    connection: &mut Connection,
    now: i64,
    set_aside: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<usize>,
) -> Result<(), StoreError> {
    let transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    require_next(&transaction)?;
    set_aside(&transaction)?;
    transaction.execute(
        "UPDATE signing_keys SET state = 'current', activated_at = ?1 WHERE state = 'next'",
        [now],
    )?;
    transaction.commit()?;
    Ok(())
}

pub fn remove(connection: &mut Connection, ids: &[i64]) -> Result<usize, StoreError> {
    let transaction = connection.transaction()?;
    let mut removed = 0;
    for id in ids {
        removed +=
            transaction.execute("DELETE FROM signing_keys WHERE id = ?1 AND state = 'retired'", [id])?;
    }
    transaction.commit()?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use crate::store::sqlite::test_store;
    use crate::store::{KeyState, NewSigningKey, Store, StoreError};

    fn new(state: KeyState) -> NewSigningKey<'static> {
        NewSigningKey { state, algorithm: "ES256", private_key: "key", certificate: "cert" }
    }

    fn states(store: &dyn Store) -> Vec<(i64, KeyState)> {
        store.signing_keys().unwrap().into_iter().map(|key| (key.id, key.state)).collect()
    }

    #[test]
    fn a_rotation_moves_states_one_transaction_at_a_time() {
        let (_dir, store) = test_store();
        let first = store.add_signing_key(&new(KeyState::Current), 10).unwrap();
        assert!(matches!(
            store.add_signing_key(&new(KeyState::Current), 11),
            Err(StoreError::AlreadyExists { .. })
        ));
        assert!(matches!(store.promote_signing_key(12), Err(StoreError::NotFound { .. })), "no next key");
        let second = store.add_signing_key(&new(KeyState::Next), 13).unwrap();
        assert!(matches!(
            store.add_signing_key(&new(KeyState::Next), 14),
            Err(StoreError::AlreadyExists { .. })
        ));
        store.promote_signing_key(15).unwrap();
        assert_eq!(states(&store), [(first, KeyState::Retired), (second, KeyState::Current)]);
        let keys = store.signing_keys().unwrap();
        assert_eq!((keys[0].retired_at, keys[1].activated_at), (Some(15), Some(15)));
        assert_eq!(store.remove_signing_keys(&[first, second]).unwrap(), 1, "only retired keys go");
        assert_eq!(states(&store), [(second, KeyState::Current)]);

        // An emergency: the next key signs and every other key is gone, at once.
        store.add_signing_key(&new(KeyState::Retired), 16).unwrap();
        let third = store.add_signing_key(&new(KeyState::Next), 17).unwrap();
        store.replace_signing_keys(18).unwrap();
        assert_eq!(states(&store), [(third, KeyState::Current)]);
    }
}
