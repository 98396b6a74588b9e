//! Registry notifications: what `POST /events` accepts and stores. The registry (2.8 sends
//! `application/vnd.docker.distribution.events.v1+json`, 3.x `...events.v2+json`; the envelope
//! is the same) posts `{"events":[...]}` batches, each event with an id, a timestamp, an action,
//! the target (repository, tag, digest, media type), the request (client address, user agent)
//! and the actor (the token's `sub`).
//!
//! Only what an auditor asks about is stored: pushes and pulls of manifests (an image or an index,
//! by tag or by digest) and deletes. The registry also reports every blob (layer) pushed, pulled
//! or mounted, a dozen per image; those are counted as skipped. The registry redelivers a batch
//! until it is answered 2xx, so events are stored once per id.

use serde::Deserialize;

use crate::store::{AuditEntry, AuditKind};
use crate::text::for_column;

/// The media types the registry reports for manifests (as opposed to blobs).
const MANIFEST_MEDIA_TYPES: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.artifact.manifest.v1+json",
];

/// The longest value an event's field is stored with: a repository name is at most 255 bytes in
/// the distribution spec; the rest are bounded as much, so that a hostile sender cannot fill the
/// database.
const MAX_EVENT_FIELD: usize = 255;

/// How far in the future (after it was received) an event's timestamp may lie; a later one is
/// taken as received: no sender can date entries where pruning never reaches them or where they
/// stay at the top of every listing.
const MAX_FUTURE_SECS: i64 = 300;

/// The notification body: each event is read on its own, so that one the registry got wrong
/// is skipped rather than refusing the batch (which the registry would send again forever).
#[derive(Debug, Deserialize)]
pub struct Envelope {
    #[serde(default)]
    pub events: Vec<serde_json::Value>,
}

/// One event as the registry sends it; fields it leaves out (or sends as null) are empty.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Event {
    pub id: Option<String>,
    pub timestamp: Option<String>,
    pub action: Option<String>,
    pub target: Option<Target>,
    pub request: Option<RequestRecord>,
    pub actor: Option<Actor>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Target {
    pub media_type: Option<String>,
    pub digest: Option<String>,
    pub repository: Option<String>,
    pub tag: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RequestRecord {
    pub addr: Option<String>,
    pub useragent: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Actor {
    pub name: Option<String>,
}

/// A batch, classified: what is stored, what is not audited, what is not an event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Classified {
    /// The events worth storing, as entries.
    pub entries: Vec<AuditEntry>,
    /// Blob events and actions not audited.
    pub skipped: usize,
    /// Events that are not events (a number where text belongs, say): skipped too.
    pub invalid: usize,
}

/// Parses a notification body. `received` (seconds since the epoch) stands in for a missing or
/// unreadable timestamp.
pub fn classify(body: &[u8], received: i64) -> Result<Classified, serde_json::Error> {
    let envelope: Envelope = serde_json::from_slice(body)?;
    let mut classified = Classified::default();
    for value in envelope.events {
        let Ok(event) = serde_json::from_value::<Event>(value) else {
            classified.invalid += 1;
            continue;
        };
        match entry_of(&event, received) {
            Some(entry) => classified.entries.push(entry),
            None => classified.skipped += 1,
        }
    }
    Ok(classified)
}

/// Whether the target is a manifest (an image or index) rather than a blob.
fn is_manifest(target: &Target) -> bool {
    !text(&target.tag).is_empty() || MANIFEST_MEDIA_TYPES.contains(&text(&target.media_type))
}

fn text(field: &Option<String>) -> &str {
    field.as_deref().unwrap_or("")
}

/// The entry stored for `event`, if it is one an auditor asks about.
fn entry_of(event: &Event, received: i64) -> Option<AuditEntry> {
    let target = event.target.as_ref()?;
    let action = text(&event.action);
    let audited = match action {
        "push" | "pull" => is_manifest(target),
        // A manifest's or tag's deletion (the 2.8 registry names no media type for them).
        "delete" => true,
        _ => false,
    };
    if !audited || text(&target.repository).is_empty() {
        return None;
    }
    let request = event.request.as_ref();
    let actor = event.actor.as_ref().map(|actor| text(&actor.name)).unwrap_or("");
    // The user agent is any client's choice: stored without control characters, so that no
    // escape sequence reaches the terminal of an operator running `audit list`.
    let field = |text: &str| (!text.is_empty()).then(|| for_column(text, MAX_EVENT_FIELD));
    let repository = for_column(text(&target.repository), MAX_EVENT_FIELD);
    let time = parse_time(text(&event.timestamp)).filter(|time| *time <= received + MAX_FUTURE_SECS);
    Some(AuditEntry {
        kind: AuditKind::Event,
        time: time.unwrap_or(received),
        actor: for_column(actor, MAX_EVENT_FIELD),
        action: action.to_string(),
        project: crate::authz::project_of(&repository).map(str::to_string),
        subject: None,
        target: repository,
        tag: field(text(&target.tag)),
        digest: field(text(&target.digest)),
        address: field(&client_host(request.map(|r| text(&r.addr)).unwrap_or(""))),
        user_agent: field(request.map(|r| text(&r.useragent)).unwrap_or("")),
        event_id: field(text(&event.id)),
    })
}

/// The registry's RFC 3339 timestamp (with nanoseconds) in seconds since the epoch.
fn parse_time(text: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(text, &Rfc3339).ok().map(|time| time.unix_timestamp())
}

/// The client's address without the port the registry appends (`10.0.0.7:51234`, `[::1]:443`).
fn client_host(addr: &str) -> String {
    addr.parse::<std::net::SocketAddr>()
        .map(|socket| socket.ip().to_string())
        .unwrap_or_else(|_| addr.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape registry 2.8.2 posted in `tests/it/events.rs`, trimmed.
    const BATCH: &str = r#"{"events":[
      {"id":"a1","timestamp":"2026-12-03T09:15:02.123456789Z","action":"push",
       "target":{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":32,
                 "digest":"sha256:aa","length":32,"repository":"team/app"},
       "request":{"id":"r1","addr":"127.0.0.1:40112","host":"127.0.0.1:5000","method":"PUT","useragent":"skopeo/1.9"},
       "actor":{"name":"alice"},"source":{"addr":"host:5000","instanceID":"i"}},
      {"id":"a2","timestamp":"2026-12-03T09:15:03Z","action":"push",
       "target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb",
                 "repository":"team/app","tag":"v1"},
       "request":{"addr":"[::1]:40113","useragent":"skopeo/1.9"},"actor":{"name":"alice"}},
      {"id":"a3","timestamp":"not a time","action":"delete",
       "target":{"digest":"sha256:bb","repository":"team/app"},
       "request":{"addr":"127.0.0.1:40114"},"actor":{"name":"bob"}},
      {"id":"a4","action":"pull","target":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
       "digest":"sha256:cc","repository":"solo"},"actor":{}},
      {"id":"a5","action":"mount","target":{"repository":"team/app"}}
    ]}"#;

    #[test]
    fn manifests_and_deletes_are_kept_and_blobs_skipped() {
        let received = 1_796_290_000;
        let classified = classify(BATCH.as_bytes(), received).unwrap();
        assert_eq!(classified.skipped, 2, "the layer push and the mount");
        let ids: Vec<_> = classified.entries.iter().map(|e| e.event_id.as_deref().unwrap()).collect();
        assert_eq!(ids, ["a2", "a3", "a4"]);
        let push = &classified.entries[0];
        assert_eq!(push.time, 1_796_289_303);
        assert_eq!((push.actor.as_str(), push.action.as_str()), ("alice", "push"));
        assert_eq!((push.project.as_deref(), push.target.as_str()), (Some("team"), "team/app"));
        assert_eq!((push.tag.as_deref(), push.digest.as_deref()), (Some("v1"), Some("sha256:bb")));
        assert_eq!(push.address.as_deref(), Some("::1"));
        assert_eq!(classified.entries[1].time, received, "an unreadable timestamp is the time received");
        assert_eq!(classified.entries[1].address.as_deref(), Some("127.0.0.1"));
        let anonymous = &classified.entries[2];
        assert_eq!((anonymous.actor.as_str(), anonymous.project.as_deref()), ("", None));
    }

    #[test]
    fn hostile_bodies_are_refused_or_bounded() {
        assert!(classify(b"not json", 0).is_err());
        assert!(classify(br#"{"events":"x"}"#, 0).is_err());
        // One bad event does not cost the batch; nulls are empty fields.
        let mixed = br#"{"events":[{"id":5},{"id":"ok","action":"delete","tag":null,
            "target":{"repository":"team/app","tag":null},"actor":null},{"action":"pull","timestamp":1}]}"#;
        let classified = classify(mixed, 7).unwrap();
        assert_eq!((classified.invalid, classified.entries.len()), (2, 1), "{classified:?}");
        assert_eq!((classified.entries[0].actor.as_str(), classified.entries[0].time), ("", 7));
        // A date far ahead is taken as the time received.
        let ahead = br#"{"events":[{"action":"delete","timestamp":"9999-12-31T23:59:59Z","target":{"repository":"team/app"}}]}"#;
        assert_eq!(classify(ahead, 1_000).unwrap().entries[0].time, 1_000);
        assert_eq!(classify(b"{}", 0).unwrap(), Classified::default());
        let long = "a".repeat(10_000);
        let body = format!(
            r#"{{"events":[{{"action":"delete","target":{{"repository":"{long}"}},"actor":{{"name":"{long}"}}}}]}}"#
        );
        let classified = classify(body.as_bytes(), 0).unwrap();
        assert_eq!(classified.entries[0].target.len(), MAX_EVENT_FIELD);
        assert_eq!(classified.entries[0].actor.len(), MAX_EVENT_FIELD);
        let escape = r#"{"events":[{"action":"delete","target":{"repository":"team/app"},
            "request":{"useragent":"curl\u001b]0;owned\u0007"}}]}"#;
        let classified = classify(escape.as_bytes(), 0).unwrap();
        assert_eq!(classified.entries[0].user_agent.as_deref(), Some("curl?]0;owned?"));
    }
}
