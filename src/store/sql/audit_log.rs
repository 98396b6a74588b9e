//! The `audit_log` table (schema 0008): the stored audit trail of CLI changes and registry
//! events, written by the CLI and `POST /events`, read by `portcullis audit list`, and trimmed
//! in batches (by age, and oldest first past a count) as [`crate::audit::retention`] decides.

use super::{params, query_value, query_vec, Db, Row, Value};
use crate::store::names::fold;

use crate::store::{AuditEntry, AuditFilter, AuditKind, StoreError};

const COLUMNS: &str =
    "kind, time, actor, action, project, subject, target, tag, digest, address, user_agent, event_id";

fn from_row(row: &Row<'_>) -> Result<AuditEntry, StoreError> {
    let kind: String = row.get(0)?;
    Ok(AuditEntry {
        // The table's CHECK admits only these two.
        kind: AuditKind::from_stored(&kind).unwrap_or(AuditKind::Change),
        time: row.get(1)?,
        actor: row.get(2)?,
        action: row.get(3)?,
        project: row.get(4)?,
        subject: row.get(5)?,
        target: row.get(6)?,
        tag: row.get(7)?,
        digest: row.get(8)?,
        address: row.get(9)?,
        user_agent: row.get(10)?,
        event_id: row.get(11)?,
    })
}

/// Adds `entries` in one transaction, skipping events already stored; returns how many were new.
pub fn record(db: &mut dyn Db, entries: &[AuditEntry]) -> Result<usize, StoreError> {
    let sql = format!(
        "INSERT INTO audit_log ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (event_id) DO NOTHING"
    );
    super::transaction(db, super::TransactionKind::Batch, |db| {
        let mut added = 0;
        for entry in entries {
            added += db.execute(
                &sql,
                params![
                    entry.kind.as_str(),
                    entry.time,
                    &entry.actor,
                    &entry.action,
                    &entry.project,
                    &entry.subject,
                    &entry.target,
                    &entry.tag,
                    &entry.digest,
                    &entry.address,
                    &entry.user_agent,
                    &entry.event_id,
                ],
            )?;
        }
        Ok(added)
    })
}

/// The entries `filter` selects, the newest first.
pub fn list(db: &mut dyn Db, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
    let dialect = db.dialect();
    let user = filter.user.as_deref().map(fold);
    let sudo = user.as_deref().map(|user| format!(" (sudo: {user})"));
    let mut conditions = Vec::new();
    let mut values: Vec<Value<'_>> = Vec::new();
    // Each value is bound once and named by its number.
    if let Some(kind) = filter.kind {
        values.push(Value::Text(kind.as_str()));
        conditions.push(format!("kind = ?{}", values.len()));
    }
    if let (Some(user), Some(sudo)) = (&user, &sudo) {
        // Account names are matched up to ASCII case, as logins are; `root (sudo: alice)` is
        // alice's too.
        values.push(Value::Text(user));
        let name = format!("?{}", values.len());
        values.push(Value::Text(sudo));
        let sudo = format!("?{}", values.len());
        conditions.push(format!(
            "({} = {name} OR {} = {name} OR {})",
            dialect.fold("actor"),
            dialect.fold("subject"),
            dialect.contains(&dialect.fold("actor"), &sudo),
        ));
    }
    if let Some(project) = &filter.project {
        values.push(Value::Text(project));
        conditions.push(format!("project = ?{}", values.len()));
    }
    if let Some(since) = filter.since {
        values.push(Value::Int(since));
        conditions.push(format!("time >= ?{}", values.len()));
    }
    let condition = if conditions.is_empty() { "1 = 1".to_string() } else { conditions.join(" AND ") };
    let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log WHERE {condition} ORDER BY time DESC, id DESC LIMIT {limit}"
    );
    query_vec(db, &sql, &values, from_row)
}

/// Removes at most `batch` of the entries older than `before`.
pub fn prune(db: &mut dyn Db, before: i64, batch: usize) -> Result<usize, StoreError> {
    let batch = i64::try_from(batch).unwrap_or(i64::MAX);
    db.execute(
        "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE time < ?1 LIMIT ?2)",
        params![before, batch],
    )
}

pub fn count(db: &mut dyn Db) -> Result<u64, StoreError> {
    let count: i64 = query_value(db, "SELECT COUNT(*) FROM audit_log", &[])?;
    Ok(count.max(0) as u64)
}

/// Removes the `count` oldest entries.
pub fn remove_oldest(db: &mut dyn Db, count: usize) -> Result<usize, StoreError> {
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    db.execute(
        "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log ORDER BY time, id LIMIT ?1)",
        params![count],
    )
}

#[cfg(test)]
mod tests {
    use crate::store::sql::testing::on_both_backends;
    use crate::store::{AuditEntry, AuditFilter, AuditKind};

    fn change(
        time: i64,
        actor: &str,
        action: &str,
        project: Option<&str>,
        subject: Option<&str>,
    ) -> AuditEntry {
        AuditEntry {
            kind: AuditKind::Change,
            time,
            actor: actor.into(),
            action: action.into(),
            project: project.map(str::to_string),
            subject: subject.map(str::to_string),
            target: String::new(),
            tag: None,
            digest: None,
            address: None,
            user_agent: None,
            event_id: None,
        }
    }

    fn event(time: i64, id: &str, actor: &str) -> AuditEntry {
        AuditEntry {
            kind: AuditKind::Event,
            event_id: Some(id.into()),
            project: Some("team".into()),
            target: "team/app".into(),
            ..change(time, actor, "push", None, None)
        }
    }

    on_both_backends! {
        fn entries_are_filtered_newest_first_and_events_stored_once(store) {
            store
                .record_audit(
                    &[
                        change(100, "root", "user.add", None, Some("alice")),
                        change(200, "ops", "member.add", Some("team"), Some("Alice")),
                        change(300, "ops", "project.add", Some("other"), None),
                    ],
                    None,
                )
                .unwrap();
            assert_eq!(
                store.record_audit(&[event(250, "e1", "alice"), event(250, "e1", "alice")], None).unwrap(),
                1
            );
            assert_eq!(store.record_audit(&[event(250, "e1", "alice")], None).unwrap(), 0, "a redelivery");

            let all = store.list_audit(&AuditFilter { limit: 100, ..Default::default() }).unwrap();
            let times: Vec<i64> = all.iter().map(|e| e.time).collect();
            assert_eq!(times, [300, 250, 200, 100]);

            let about_alice = AuditFilter { user: Some("ALICE".into()), limit: 100, ..Default::default() };
            let found: Vec<i64> = store.list_audit(&about_alice).unwrap().iter().map(|e| e.time).collect();
            assert_eq!(found, [250, 200, 100], "by actor or subject, up to case");

            let team_changes = AuditFilter {
                kind: Some(AuditKind::Change),
                project: Some("team".into()),
                user: Some("ops".into()),
                since: Some(150),
                limit: 100,
            };
            let found: Vec<i64> = store.list_audit(&team_changes).unwrap().iter().map(|e| e.time).collect();
            assert_eq!(found, [200]);
            assert_eq!(store.list_audit(&AuditFilter { limit: 1, ..Default::default() }).unwrap().len(), 1);

            assert_eq!(store.prune_audit(250, 1).unwrap(), 1, "one batch");
            assert_eq!(store.prune_audit(250, 10).unwrap(), 1);
            assert_eq!(store.count_audit().unwrap(), 2);
            assert_eq!(store.remove_oldest_audit(1).unwrap(), 1);
            let left = store.list_audit(&AuditFilter { limit: 100, ..Default::default() }).unwrap();
            assert_eq!(left.iter().map(|e| e.time).collect::<Vec<_>>(), [300], "the newest stays");
        }
    }
}
