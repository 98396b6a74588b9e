//! The `signing_keys` table (schema 0009): token signing keys and their rotation states. Each
//! step of a rotation is one transaction, so no reader ever sees two current keys or none.

use super::{params, query_opt, query_value, query_vec, write, Db, Row};
use crate::store::{KeyState, NewSigningKey, StoreError, StoredKey};

const COLUMNS: &str =
    "id, state, algorithm, private_key, certificate, created_at, activated_at, retired_at, max_lifetime";

fn from_row(row: &Row<'_>) -> Result<StoredKey, StoreError> {
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
        max_lifetime: row.get(8)?,
    })
}

pub fn list(db: &mut dyn Db) -> Result<Vec<StoredKey>, StoreError> {
    query_vec(db, &format!("SELECT {COLUMNS} FROM signing_keys ORDER BY id"), &[], from_row)
}

pub fn add(db: &mut dyn Db, new: &NewSigningKey<'_>, now: i64) -> Result<i64, StoreError> {
    let activated = (new.state == KeyState::Current).then_some(now);
    let inserted: Option<i64> = write(db, |db| {
        query_opt(
            db,
            "INSERT INTO signing_keys (state, algorithm, private_key, certificate, created_at, activated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING RETURNING id",
            params![new.state.as_str(), new.algorithm, new.private_key, new.certificate, now, activated],
            |row| row.get(0),
        )
    })?;
    inserted.ok_or_else(|| StoreError::AlreadyExists {
        kind: "signing key",
        name: new.state.as_str().to_string(),
    })
}

/// [`StoreError::NotFound`] unless a next key (the key `expected`, if given) is stored.
fn require_next(db: &mut dyn Db, expected: Option<i64>) -> Result<(), StoreError> {
    let has_next: bool = query_value(
        db,
        "SELECT EXISTS (SELECT 1 FROM signing_keys WHERE state = 'next' AND (CAST(?1 AS BIGINT) IS NULL OR id = ?1))",
        params![expected],
    )?;
    match has_next {
        true => Ok(()),
        false => Err(StoreError::NotFound { kind: "signing key", name: "next".into() }),
    }
}

/// The next key signs; the current one is retired.
pub fn promote(db: &mut dyn Db, now: i64) -> Result<(), StoreError> {
    activate_next(db, now, None, |db| {
        db.execute(
            "UPDATE signing_keys SET state = 'retired', retired_at = ?1 WHERE state = 'current'",
            params![now],
        )
    })
}

/// The next key, `next_id`, signs; every other key is gone. NotFound when `next_id` is not the
/// next key (another rotation changed the keys meanwhile).
pub fn replace(db: &mut dyn Db, now: i64, next_id: i64) -> Result<(), StoreError> {
    activate_next(db, now, Some(next_id), |db| {
        db.execute("DELETE FROM signing_keys WHERE state <> 'next'", &[])
    })
}

/// Notes that a server signs with the current key for up to `lifetime` seconds per token; only
/// a longer lifetime is written (so that servers noting theirs cause no endless key changes).
pub fn note_lifetime(db: &mut dyn Db, lifetime: i64) -> Result<(), StoreError> {
    write(db, |db| {
        db.execute(
            "UPDATE signing_keys SET max_lifetime = ?1 WHERE state = 'current' AND COALESCE(max_lifetime, 0) < ?1",
            params![lifetime],
        )
    })?;
    Ok(())
}

/// Removes the next key (a prepared key that will not be used).
pub fn cancel_next(db: &mut dyn Db) -> Result<(), StoreError> {
    match write(db, |db| db.execute("DELETE FROM signing_keys WHERE state = 'next'", &[]))? {
        0 => Err(StoreError::NotFound { kind: "signing key", name: "next".into() }),
        _ => Ok(()),
    }
}

/// In one transaction: `set_aside` moves or removes the other keys, then the next key (which
/// must be `expected`, if given) becomes current at `now`.
fn activate_next(
    db: &mut dyn Db,
    now: i64,
    expected: Option<i64>,
    set_aside: impl FnOnce(&mut dyn Db) -> Result<usize, StoreError>,
) -> Result<(), StoreError> {
    write(db, |db| {
        require_next(db, expected)?;
        set_aside(db)?;
        db.execute(
            "UPDATE signing_keys SET state = 'current', activated_at = ?1 WHERE state = 'next'",
            params![now],
        )?;
        Ok(())
    })
}

/// Removes the retired keys `ids`; returns how many.
pub fn remove(db: &mut dyn Db, ids: &[i64]) -> Result<usize, StoreError> {
    write(db, |db| {
        let mut removed = 0;
        for id in ids {
            removed +=
                db.execute("DELETE FROM signing_keys WHERE id = ?1 AND state = 'retired'", params![*id])?;
        }
        Ok(removed)
    })
}

#[cfg(test)]
mod tests {
    use crate::store::sql::testing::on_both_backends;
    use crate::store::{KeyState, NewSigningKey, Store, StoreError};

    fn new(state: KeyState) -> NewSigningKey<'static> {
        NewSigningKey { state, algorithm: "ES256", private_key: "key", certificate: "cert" }
    }

    fn states(store: &dyn Store) -> Vec<(i64, KeyState)> {
        store.signing_keys().unwrap().into_iter().map(|key| (key.id, key.state)).collect()
    }

    on_both_backends! {
        fn a_rotation_moves_states_one_transaction_at_a_time(store) {
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
            assert_eq!(states(&**store), [(first, KeyState::Retired), (second, KeyState::Current)]);
            let keys = store.signing_keys().unwrap();
            assert_eq!((keys[0].retired_at, keys[1].activated_at), (Some(15), Some(15)));
            assert_eq!(store.remove_signing_keys(&[first, second]).unwrap(), 1, "only retired keys go");
            assert_eq!(states(&**store), [(second, KeyState::Current)]);

            // An emergency: the next key signs and every other key is gone, at once.
            store.add_signing_key(&new(KeyState::Retired), 16).unwrap();
            let third = store.add_signing_key(&new(KeyState::Next), 17).unwrap();
            assert!(
                matches!(store.replace_signing_keys(18, third + 1), Err(StoreError::NotFound { .. })),
                "not our key"
            );
            store.replace_signing_keys(18, third).unwrap();
            store.note_key_lifetime(300).unwrap();
            store.note_key_lifetime(60).unwrap();
            assert_eq!(
                store.signing_keys().unwrap()[0].max_lifetime,
                Some(300),
                "only a longer lifetime is kept"
            );
            let fourth = store.add_signing_key(&new(KeyState::Next), 19).unwrap();
            store.cancel_next_signing_key().unwrap();
            assert!(!states(&**store).contains(&(fourth, KeyState::Next)));
            assert_eq!(states(&**store), [(third, KeyState::Current)]);
        }
    }
}
