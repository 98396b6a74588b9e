//! Replicas on PostgreSQL: several `portcullis serve` processes on one real PostgreSQL
//! database (a private cluster per test), each with its own data dir, changed through the CLI
//! of yet another data dir: every change reaches every replica within a second, and a replica
//! that cannot confirm the database's change log answers 503 instead of granting from old data.

use std::time::{Duration, Instant};

use crate::support::binary::{Admin, Portcullis};
use crate::support::postgres::Postgres;

const PUSH: &str = "service=registry.test&scope=repository:team/app:pull,push";

/// A cluster with an empty database `auth`, and its URL.
fn database() -> (Postgres, String) {
    let postgres = Postgres::start();
    postgres.psql("postgres", "CREATE DATABASE auth").assert_success();
    let url = postgres.url("auth");
    (postgres, url)
}

/// What `server` grants alice for PUSH, or its status when it grants nothing.
fn alice_gets(server: &Portcullis) -> Result<Vec<String>, u16> {
    let answer = server.token(PUSH, Some(("alice", "alice-password")));
    match answer.status {
        200 => Ok(answer.access()),
        status => Err(status),
    }
}

/// Waits up to `limit` until every replica answers `expected`; returns how long that took.
fn until_all(replicas: &[Portcullis], expected: &Result<Vec<String>, u16>, limit: Duration) -> Duration {
    let started = Instant::now();
    for (index, replica) in replicas.iter().enumerate() {
        loop {
            let answer = alice_gets(replica);
            if answer == *expected {
                break;
            }
            assert!(
                started.elapsed() < limit,
                "replica {index} still answers {answer:?}, not {expected:?}, after {limit:?}:\n{}",
                replica.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    started.elapsed()
}

fn pull_push() -> Result<Vec<String>, u16> {
    Ok(vec!["repository:team/app:pull,push".to_string()])
}

#[test]
fn a_change_made_with_the_cli_reaches_every_replica_within_a_second() {
    let (_postgres, url) = database();
    let settings = [("PORTCULLIS_DATABASE", url.as_str())];
    let replicas: Vec<Portcullis> = (0..3).map(|_| Portcullis::start_with(&settings)).collect();
    // The CLI of another machine: its own data dir, the same URL.
    let cli = Admin::with_settings(&settings);
    cli.add_user("alice", "alice-password");
    cli.create_project("team", false);
    cli.add_member("team", "alice", "developer");
    until_all(&replicas, &pull_push(), Duration::from_secs(1));

    cli.add_member("team", "alice", "guest");
    let took =
        until_all(&replicas, &Ok(vec!["repository:team/app:pull".to_string()]), Duration::from_secs(1));
    eprintln!("a role change reached three replicas in {took:?}");
    cli.ok(&["member", "remove", "team", "alice"]);
    until_all(&replicas, &Ok(Vec::new()), Duration::from_secs(1));
    cli.ok(&["user", "disable", "alice"]);
    until_all(&replicas, &Err(401), Duration::from_secs(1));

    // One bootstrap admin, whichever replica started first; one signing key for all.
    let users = cli.json(&["user", "list", "--json"]);
    let admins = users.as_array().unwrap().iter().filter(|user| user["is_admin"] == true).count();
    assert_eq!(admins, 1, "{users}");
    let bundles: Vec<String> =
        replicas.iter().map(|replica| std::fs::read_to_string(replica.certificate_path()).unwrap()).collect();
    assert!(bundles.iter().all(|bundle| *bundle == bundles[0]), "every replica publishes the same keys");
}

#[test]
fn replicas_answer_503_while_the_database_is_gone_or_hung_and_recover_by_themselves() {
    let (mut postgres, url) = database();
    let settings = [("PORTCULLIS_DATABASE", url.as_str()), ("PORTCULLIS_POSTGRES__MAX_STALENESS_SECS", "2")];
    let replica = Portcullis::start_with(&settings);
    replica.add_user("alice", "alice-password");
    replica.create_project("team", false);
    replica.add_member("team", "alice", "developer");
    until_all(std::slice::from_ref(&replica), &pull_push(), Duration::from_secs(1));

    for outage in ["stopped", "hung"] {
        match outage {
            "stopped" => postgres.stop(),
            _ => postgres.freeze(),
        }
        // Within the staleness bound (and a heartbeat) every request is refused with 503.
        let took = until_all(std::slice::from_ref(&replica), &Err(503), Duration::from_secs(6));
        eprintln!("{outage}: 503 after {took:?}");
        let answer = replica.token(PUSH, Some(("alice", "alice-password")));
        assert_eq!(answer.status, 503, "{outage}: {}", answer.body);
        assert!(answer.body.contains("UNAVAILABLE"), "{}", answer.body);
        match outage {
            "stopped" => postgres.restart(),
            _ => postgres.thaw(),
        }
        let took = until_all(std::slice::from_ref(&replica), &pull_push(), Duration::from_secs(15));
        eprintln!("{outage}: serving again {took:?} after the database came back");
    }
}
