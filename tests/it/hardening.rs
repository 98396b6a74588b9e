//! The review's denial-of-service, data-safety and oracle items, through the real binary: slots
//! per client address and deadlines per connection (defect 2), the open-file limit (likely 1), the
//! bounded and fair argon2 queue (8), a decision after a long queue wait (likely 3), a database
//! restored under a running server (6), two servers bootstrapping one fresh database (likely
//! 12), failure logs that neither amplify nor grow with the name (9), and refusals that take the
//! same time whatever refused them (11).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::binary::{Admin, Portcullis, ADMIN, SERVICE};
use crate::support::http::{basic, send_raw_from};
use crate::support::process::{free_port, require_binary, run, tail, wait_for_tcp, ChildGuard};

/// `GET /token` with Basic credentials, as raw bytes for `send_raw_from` (a chosen source address).
fn login(user: &str, password: &str) -> String {
    format!(
        "GET /token?service={SERVICE} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        basic(user, password)
    )
}

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// A TCP connection to `addr` from the loopback address `source`.
fn connect_from(source: Ipv4Addr, addr: &str) -> TcpStream {
    let target: SocketAddr = addr.parse().expect("a socket address");
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    socket.bind(&SocketAddr::from((source, 0)).into()).expect("bind a loopback source");
    socket.connect(&target.into()).expect("connect");
    socket.into()
}

/// How long until the server closes `stream` (reads return end of file or an error), at most
/// `limit`; `None` when it is still open then. Whatever the server sends first is read and
/// dropped.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 4096];
    while started.elapsed() < limit {
        stream.set_read_timeout(Some(Duration::from_millis(200))).expect("a read timeout");
        match stream.read(&mut buffer) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(error)
                if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

#[test]
fn connections_are_capped_per_address_and_cannot_be_held_open() {
    let server = Portcullis::start_with(&[
        ("PORTCULLIS_LIMITS__MAX_CONNECTIONS_PER_ADDRESS", "3"),
        ("PORTCULLIS_LIMITS__IDLE_TIMEOUT", "2"),
        ("PORTCULLIS_LIMITS__HEADER_READ_TIMEOUT", "3"),
        ("PORTCULLIS_LIMITS__MAX_CONNECTION_AGE", "3"),
    ]);
    let attacker = Ipv4Addr::new(127, 0, 0, 41);
    let user = Ipv4Addr::new(127, 0, 0, 42);
    // Three silent connections fill the attacker's share; a fourth is closed at once.
    let mut held: Vec<TcpStream> = (0..3).map(|_| connect_from(attacker, server.addr())).collect();
    thread::sleep(Duration::from_millis(300));
    let mut fourth = connect_from(attacker, server.addr());
    let closed = closed_within(&mut fourth, Duration::from_secs(1));
    assert!(closed.is_some(), "a fourth connection from one address is refused");
    // Another address is served meanwhile.
    assert_eq!(send_raw_from(user, server.addr(), HEALTH).status, 200);
    // Silent connections are dropped after the idle (or head) deadline, freeing the share.
    for stream in &mut held {
        let closed = closed_within(stream, Duration::from_secs(6));
        assert!(closed.is_some(), "an idle connection is closed by the server");
    }
    assert_eq!(send_raw_from(attacker, server.addr(), HEALTH).status, 200, "the share is free again");

    // A head sent one byte at a time never completes: cut at the head deadline, not held.
    let mut slow = connect_from(attacker, server.addr());
    let started = Instant::now();
    let mut cut = false;
    for byte in b"GET /token?service=registry.test&scope=repository:team/app:pull HTTP/1.1\r\n".iter().cycle()
    {
        if slow.write_all(&[*byte]).is_err() || started.elapsed() > Duration::from_secs(8) {
            cut = slow.write_all(b"x").is_err()
                || closed_within(&mut slow, Duration::from_millis(300)).is_some();
            break;
        }
        thread::sleep(Duration::from_millis(250));
    }
    assert!(cut && started.elapsed() < Duration::from_secs(8), "a trickled head is cut within its deadline");

    // A keep-alive connection busy with requests is closed after its age.
    let mut busy = connect_from(attacker, server.addr());
    let started = Instant::now();
    let mut ended = false;
    while started.elapsed() < Duration::from_secs(8) {
        let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut answer = [0u8; 1024];
        busy.set_read_timeout(Some(Duration::from_secs(2))).expect("a read timeout");
        if busy.write_all(request).is_err() || matches!(busy.read(&mut answer), Ok(0) | Err(_)) {
            ended = true;
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    assert!(ended && started.elapsed() >= Duration::from_secs(2), "closed after its age, not before");
    assert!(server.log().contains("too many from this address"), "{}", server.log());
}

#[test]
fn the_open_file_limit_is_raised_and_the_connection_limit_kept_below_it() {
    let prlimit = require_binary("prlimit", "util-linux");
    let admin = Admin::new();
    let addr = format!("127.0.0.1:{}", free_port());
    let serve = admin.command_for(&["serve"]);
    // The server under a soft limit of 256 and a hard one of 1024, as many shells give.
    let mut command = Command::new(prlimit);
    command.args(["--nofile=256:1024", "--"]).arg(serve.get_program()).args(serve.get_args());
    command.env_clear();
    for (name, value) in serve.get_envs() {
        if let Some(value) = value {
            command.env(name, value);
        }
    }
    command.env("PATH", std::env::var_os("PATH").unwrap_or_default()).env("PORTCULLIS_LISTEN", &addr);
    let log = admin.data_dir().with_file_name("prlimit-serve.log");
    let (stdout, stderr) = crate::support::process::log_file(&log);
    command.stdout(stdout).stderr(stderr);
    let mut daemon = ChildGuard::spawn("portcullis under prlimit", &mut command);
    daemon.wait_until("portcullis to listen", Duration::from_secs(20), &log, || {
        tail(&log).contains("listening on") && wait_for_tcp(&addr, Duration::ZERO)
    });
    let pid = daemon.pid().expect("running");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("/proc limits");
    let open_files = limits.lines().find(|line| line.starts_with("Max open files")).expect("a line");
    let numbers: Vec<&str> =
        open_files.split_whitespace().filter(|word| word.parse::<u64>().is_ok()).collect();
    assert_eq!(numbers, ["1024", "1024"], "the soft limit is raised to the hard one: {open_files}");
    assert!(
        tail(&log).contains("serving at most"),
        "max_connections = 4096 does not fit in 1024 descriptors, and the log says so:\n{}",
        tail(&log)
    );
}

/// An argon2 cost that takes a while per verification, so that logins queue.
const SLOW_HASH: [(&str, &str); 3] = [
    ("PORTCULLIS_PASSWORDS__MEMORY_KIB", "65536"),
    ("PORTCULLIS_PASSWORDS__ITERATIONS", "3"),
    ("PORTCULLIS_PASSWORDS__MAX_CONCURRENT", "1"),
];

#[test]
fn the_password_queue_is_bounded_and_shared_fairly_between_addresses() {
    let mut settings = SLOW_HASH.to_vec();
    settings.push(("PORTCULLIS_PASSWORDS__MAX_QUEUED", "8"));
    settings.push(("PORTCULLIS_THROTTLE__CLIENT_FAILURES", "1000"));
    let server = Portcullis::start_with(&settings);
    server.add_user("alice", "alice-password-1");
    let flood: Vec<_> = (0..16)
        .map(|i| {
            let (addr, request) = (server.addr().to_string(), login(&format!("nobody{i}"), "wrong"));
            thread::spawn(move || send_raw_from(Ipv4Addr::new(127, 0, 0, 51), &addr, request.as_bytes()))
        })
        .collect();
    thread::sleep(Duration::from_millis(100));
    let user = send_raw_from(
        Ipv4Addr::new(127, 0, 0, 52),
        server.addr(),
        login("alice", "alice-password-1").as_bytes(),
    );
    assert_eq!(user.status, 200, "another address keeps its share of the queue: {user:?}");
    let answers: Vec<_> = flood.into_iter().map(|thread| thread.join().expect("a request thread")).collect();
    let busy: Vec<_> = answers.iter().filter(|answer| answer.status == 503).collect();
    assert!(
        !busy.is_empty(),
        "one address cannot queue 16 logins: {:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    for answer in &busy {
        assert_eq!(answer.error_code(), "UNAVAILABLE");
        assert!(answer.header("retry-after").is_some(), "{answer:?}");
    }
    assert!(answers.iter().all(|answer| matches!(answer.status, 401 | 503)), "only 401 and 503");
}

/// Likely defect 3: a login decided after a long wait for a verifier sees a `user disable` made
/// meanwhile.
#[test]
fn a_login_that_waited_in_the_queue_sees_a_disable_made_meanwhile() {
    let server = Portcullis::start_with(&SLOW_HASH);
    server.add_user("alice", "alice-password-1");
    let waiting: Vec<_> = (0..6u8)
        .map(|i| {
            let addr = server.addr().to_string();
            let request = login("alice", "alice-password-1");
            thread::spawn(move || send_raw_from(Ipv4Addr::new(127, 0, 1, 60 + i), &addr, request.as_bytes()))
        })
        .collect();
    thread::sleep(Duration::from_millis(150));
    server.cli(&["user", "disable", "alice"], None).assert_success();
    let statuses: Vec<u16> =
        waiting.into_iter().map(|thread| thread.join().expect("a thread").status).collect();
    assert_eq!(statuses.last(), Some(&401), "the last one was decided after the disable: {statuses:?}");
    assert!(statuses.iter().all(|status| matches!(status, 200 | 401)), "{statuses:?}");
}

#[test]
fn a_database_restored_under_a_running_server_is_what_it_answers_from() {
    let sqlite3 = require_binary("sqlite3", "sqlite3");
    let server = Portcullis::start();
    server.add_user("alice", "alice-password-1");
    server.create_project("team", false);
    server.add_member("team", "alice", "developer");
    let push = |server: &Portcullis| {
        let response = server.token(
            &format!("service={SERVICE}&scope=repository:team/app:push"),
            Some(("alice", "alice-password-1")),
        );
        assert_eq!(response.status, 200, "{response:?}");
        response.access()
    };
    assert_eq!(push(&server), ["repository:team/app:push"]);
    let database = server.data_dir().join("portcullis.db");
    let backup = server.data_dir().with_file_name("backup.db");
    run(Command::new(&sqlite3).arg(&database).arg(format!(".backup {}", backup.display())), None)
        .assert_success();
    server.cli(&["member", "remove", "team", "alice"], None).assert_success();
    assert!(push(&server).is_empty(), "the removal applies");
    // Restored as an operator would, while the server runs (sqlite3 takes the locks).
    run(Command::new(&sqlite3).arg(&database).arg(format!(".restore {}", backup.display())), None)
        .assert_success();
    assert_eq!(
        push(&server),
        ["repository:team/app:push"],
        "the restored membership is what counts\n{}",
        server.log()
    );

    // Replaced by another database altogether (another epoch, another file).
    let other = Admin::new();
    other.add_user("alice", "alice-password-1");
    other.create_project("team", false);
    other.add_member("team", "alice", "guest");
    let copy = server.data_dir().join("incoming.db");
    run(
        Command::new(&sqlite3)
            .arg(other.data_dir().join("portcullis.db"))
            .arg(format!(".backup {}", copy.display())),
        None,
    )
    .assert_success();
    std::fs::rename(&copy, &database).expect("replace the database file");
    for stale in ["portcullis.db-wal", "portcullis.db-shm"] {
        let _ = std::fs::remove_file(server.data_dir().join(stale));
    }
    // Noticed within the second the file check waits between looks.
    let started = Instant::now();
    while !push(&server).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a guest may not push in the new database\n{}",
            server.log()
        );
        thread::sleep(Duration::from_millis(200));
    }
    assert!(server.log().contains("database file was replaced"), "{}", server.log());
}

#[test]
fn two_servers_bootstrapping_one_fresh_database_both_start() {
    let admin = Admin::new();
    std::fs::remove_dir_all(admin.data_dir()).expect("an empty data dir");
    let log = admin.data_dir().with_file_name("race.log");
    let mut servers = Vec::new();
    for index in 0..2 {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut command = admin.command_for(&["serve"]);
        command.env("PORTCULLIS_LISTEN", &addr).env("PORTCULLIS_ADMIN_PASSWORD", ADMIN.1);
        let log = log.with_extension(format!("{index}.log"));
        let (stdout, stderr) = crate::support::process::log_file(&log);
        command.stdout(stdout).stderr(stderr);
        servers.push((ChildGuard::spawn("portcullis", &mut command), addr, log));
    }
    for (daemon, addr, log) in &mut servers {
        daemon.wait_until("both servers to listen", Duration::from_secs(20), log, || {
            tail(log).contains("listening on") && wait_for_tcp(addr, Duration::ZERO)
        });
        let response = crate::support::http::request(
            addr,
            "GET",
            &format!("/token?service={SERVICE}&scope=registry:catalog:*"),
            &[("Authorization", &basic(ADMIN.0, ADMIN.1))],
            b"",
        );
        assert_eq!(response.access(), ["registry:catalog:*"], "one bootstrap admin, for both");
    }
    let users = admin.json(&["user", "list", "--json"]);
    assert_eq!(users.as_array().map(Vec::len), Some(1), "{users}");
}

#[test]
fn failure_logs_clip_names_and_aggregate_a_flood() {
    let server = Portcullis::start_with(&[("PORTCULLIS_THROTTLE__CLIENT_FAILURES", "1000")]);
    let long = "x".repeat(5000);
    let response = server.token(&format!("service={SERVICE}"), Some((&long, "wrong")));
    assert_eq!(response.status, 401);
    for _ in 0..30 {
        assert_eq!(server.token(&format!("service={SERVICE}"), Some(("mallory", "wrong"))).status, 401);
    }
    let log = server.log();
    assert!(!log.contains(&"x".repeat(300)), "a 5000-byte name is clipped in the log");
    let lines =
        log.lines().filter(|line| line.contains("authentication failed") && line.contains("mallory")).count();
    assert!(
        (1..=3).contains(&lines),
        "30 failures of one pair are a line or two with a count, not 30: {lines}\n{log}"
    );
    assert!(log.contains("refusals=") && !log.contains('\u{1b}'), "a count, in plain text:\n{log}");
}

/// Review defect 11: an unknown user, a wrong password, an unknown robot and an existing robot's
/// wrong secret are refused alike, in status and in time.
#[test]
fn refusals_cost_the_same_whatever_refused_them() {
    let mut settings = SLOW_HASH.to_vec();
    settings.push(("PORTCULLIS_THROTTLE__CLIENT_FAILURES", "1000"));
    settings.push(("PORTCULLIS_THROTTLE__ACCOUNT_FAILURES", "1000"));
    let server = Portcullis::start_with(&settings);
    server.add_user("alice", "alice-password-1");
    server.create_project("team", false);
    server.cli(&["robot", "create", "ci", "--project", "team", "--actions", "pull"], None).assert_success();
    let robot_name = "robot_team+ci".to_string();
    let cases = [
        ("alice", "wrong"),
        ("nobody", "wrong"),
        (robot_name.as_str(), "rbt_wrong"),
        ("robot_team+nope", "rbt_x"),
    ];
    let mut medians = Vec::new();
    for (user, secret) in cases {
        let mut times: Vec<Duration> = (0..5)
            .map(|_| {
                let started = Instant::now();
                let response = server.token(&format!("service={SERVICE}"), Some((user, secret)));
                assert_eq!(
                    (response.status, response.error_code()),
                    (401, "UNAUTHORIZED".to_string()),
                    "{user}"
                );
                started.elapsed()
            })
            .collect();
        times.sort();
        medians.push((user, times[2]));
    }
    let fastest = medians.iter().map(|(_, time)| *time).min().expect("cases");
    let slowest = medians.iter().map(|(_, time)| *time).max().expect("cases");
    assert!(slowest < fastest * 2, "refusal times differ by kind: {medians:?}");
}

/// Review likely defect 8: recording a refresh token's use waited the full busy timeout (10 s)
/// behind another writer, stalling every docker push meanwhile.
#[test]
fn a_held_write_lock_does_not_stall_a_refresh() {
    let sqlite3 = require_binary("sqlite3", "sqlite3");
    let server = Portcullis::start();
    server.add_user("alice", "alice-password-1");
    let login =
        server.token(&format!("service={SERVICE}&offline_token=true"), Some(("alice", "alice-password-1")));
    let refresh_token = login.refresh_token().expect("a refresh token");
    let database = server.data_dir().join("portcullis.db");
    // Last used two minutes ago, so this use is recorded.
    let aged = "UPDATE refresh_tokens SET created_at = created_at - 120, last_used_at = last_used_at - 120";
    run(Command::new(&sqlite3).arg(&database).arg(aged), None).assert_success();
    // Another writer holds the write lock (an operator's sqlite3 session, a long CLI write).
    let mut holder = Command::new(&sqlite3)
        .arg(&database)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start sqlite3");
    let mut stdin = holder.stdin.take().expect("stdin");
    stdin
        .write_all(b"BEGIN IMMEDIATE;\nUPDATE users SET disabled = disabled WHERE 0;\nSELECT 'locked';\n")
        .expect("write");
    stdin.flush().expect("flush");
    thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let answer = server
        .post_form(&format!("grant_type=refresh_token&refresh_token={refresh_token}&service={SERVICE}"));
    let took = started.elapsed();
    drop(stdin);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(took < Duration::from_secs(3), "the refresh waited {took:?} behind the writer");
}

/// Review likely defect 11: after the operator lowers the argon2 cost, accounts whose hashes
/// were made at the old cost take longer to refuse than an unknown name did; every refusal now
/// takes as long as the costliest stored hash.
#[test]
fn old_costlier_hashes_do_not_tell_their_accounts_apart() {
    let server = Portcullis::start();
    let costly = [
        ("PORTCULLIS_PASSWORDS__MEMORY_KIB", "65536"),
        ("PORTCULLIS_PASSWORDS__ITERATIONS", "3"),
        ("PORTCULLIS_PASSWORDS__MIN_LENGTH", "1"),
    ];
    let added =
        server.cli_with(&costly, &["user", "add", "veteran", "--password-stdin"], Some("old-password\n"));
    added.assert_success();
    let time = |user: &str| {
        let mut times: Vec<Duration> = (0..5)
            .map(|_| {
                let started = Instant::now();
                assert_eq!(server.token(&format!("service={SERVICE}"), Some((user, "wrong"))).status, 401);
                started.elapsed()
            })
            .collect();
        times.sort();
        times[2]
    };
    let veteran = time("veteran");
    let unknown = time("nobody-at-all");
    assert!(unknown * 10 >= veteran * 8, "unknown {unknown:?} against an old-cost account {veteran:?}");
}

/// Review likely defect 2: `limits.header_read_timeout = 0` would have closed every connection
/// whose head was not already buffered; it is refused at start, naming the setting.
#[test]
fn a_zero_deadline_is_refused_at_start() {
    let admin = Admin::new();
    for setting in ["HEADER_READ_TIMEOUT", "IDLE_TIMEOUT", "MAX_CONNECTION_AGE"] {
        let variable = format!("PORTCULLIS_LIMITS__{setting}");
        let mut serve = admin.command_for(&["serve"]);
        serve.env(&variable, "0").env("PORTCULLIS_LISTEN", format!("127.0.0.1:{}", free_port()));
        let refused = crate::support::process::run_with_timeout(&mut serve, None, Duration::from_secs(20));
        refused.assert_failure();
        assert!(refused.stderr.contains(&setting.to_ascii_lowercase()), "{variable}=0: {refused}");
    }
}

/// Review defect 10: the compose example gives the registry the certificate alone (not the
/// signing key or the database), and the image does not run as root.
#[test]
fn the_compose_example_gives_the_registry_only_the_certificate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for example in ["examples/docker-compose.yml", "examples/ha/docker-compose.yml"] {
        let compose = std::fs::read_to_string(root.join(example)).expect("the compose example");
        let registry = compose.split("\n  registry:\n").nth(1).expect("a registry service");
        let registry = registry.split("\nvolumes:").next().expect("its block");
        let registry = registry.split("\nsecrets:").next().expect("its block");
        assert!(registry.contains("portcullis-certs:/certs:ro"), "{example}: {registry}");
        assert!(
            !registry.contains("-data:/data")
                && !registry.contains("db-password")
                && !registry.contains("postgres"),
            "{example}: the registry must not see the key or the database:\n{registry}"
        );
    }
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("the Dockerfile");
    assert!(
        dockerfile.lines().any(|line| line.starts_with("USER ") && !line.contains("root")),
        "{dockerfile}"
    );
}

/// Review likely defect 7: `offline_token=true` on a remembered login made every request a
/// database write that every server catches up on. Past a few per minute per user the answer
/// carries no refresh token (docker then keeps the password), and the token itself is granted.
#[test]
fn a_client_looping_on_offline_tokens_causes_a_bounded_number_of_writes() {
    let server = Portcullis::start();
    server.add_user("alice", "alice-password-1");
    let mut issued = 0;
    for _ in 0..40 {
        let answer = server
            .token(&format!("service={SERVICE}&offline_token=true"), Some(("alice", "alice-password-1")));
        assert_eq!(answer.status, 200, "{answer:?}");
        issued += usize::from(answer.refresh_token().is_some());
    }
    assert_eq!(issued, 20, "a minute's share of refresh tokens, then none");
    let rows = server.json(&["refresh-token", "list", "--user", "alice", "--json"]);
    assert_eq!(rows.as_array().map(Vec::len), Some(20));
}

/// An address whose token requests keep being refused is answered at a slower pace, so that a
/// flood of guesses cannot spend the CPU that cached logins from other addresses need; another
/// address is not slowed.
#[test]
fn an_address_that_keeps_being_refused_is_paced() {
    let server = Portcullis::start_with(&[
        ("PORTCULLIS_THROTTLE__ADDRESS_REFUSALS", "5"),
        ("PORTCULLIS_THROTTLE__ADDRESS_DELAY_MS", "600"),
        ("PORTCULLIS_THROTTLE__CLIENT_FAILURES", "1000"),
    ]);
    server.add_user("alice", "alice-password-1");
    let (guesser, user) = (Ipv4Addr::new(127, 0, 0, 71), Ipv4Addr::new(127, 0, 0, 72));
    for i in 0..8 {
        let answer = send_raw_from(guesser, server.addr(), login(&format!("guess{i}"), "wrong").as_bytes());
        assert_eq!(answer.status, 401);
    }
    let started = Instant::now();
    let paced = send_raw_from(guesser, server.addr(), login("alice", "alice-password-1").as_bytes());
    assert!(started.elapsed() >= Duration::from_millis(600), "paced: {:?}", started.elapsed());
    assert_eq!(paced.status, 200, "paced, never refused for it");
    let started = Instant::now();
    assert_eq!(send_raw_from(user, server.addr(), login("alice", "alice-password-1").as_bytes()).status, 200);
    assert!(started.elapsed() < Duration::from_millis(500), "another address is not paced");
}
