//! The `portcullis token`, `robot` and `pat` commands as an admin runs them: what they print,
//! that secrets appear once and never in listings, and clear failures for bad input.

use crate::support::binary::{Admin, SERVICE};

#[test]
fn robot_create_prints_the_secret_once_with_a_ready_docker_login_line() {
    let admin = Admin::new();
    admin.ok(&["project", "create", "team"]);
    let created = admin.ok(&["robot", "create", "ci", "--project", "team", "--actions", "push,pull"]);
    let secret = created
        .lines()
        .find_map(|line| line.strip_prefix("secret (shown only now): "))
        .unwrap_or_else(|| panic!("no secret line:\n{created}"))
        .to_string();
    let random = secret.strip_prefix("rbt_").unwrap_or_else(|| panic!("a recognisable prefix: {secret}"));
    assert!(random.len() >= 22 && random.bytes().all(|b| b.is_ascii_alphanumeric()), "{secret}");
    let login = format!("echo {secret} | docker login --username robot_team+ci --password-stdin {SERVICE}");
    assert!(created.contains(&login), "no docker login line:\n{created}");
    assert!(created.contains("pull,push on team"), "{created}");

    let listed = admin.ok(&["robot", "list"]);
    assert!(listed.contains("robot_team+ci") && !listed.contains(&secret), "{listed}");
    let json = admin.ok(&["robot", "list", "--project", "team", "--json"]);
    assert!(!json.contains(&secret) && !json.contains("digest"), "{json}");

    let regenerated = admin.ok(&["robot", "regenerate", "robot_team+ci", "--registry", "reg.local:5000"]);
    assert!(!regenerated.contains(&secret), "a new secret");
    assert!(regenerated.contains("--password-stdin reg.local:5000"), "{regenerated}");
    admin.ok(&["robot", "remove", "robot_team+ci"]);
    assert!(admin.fails(&["robot", "remove", "robot_team+ci"]).contains("does not exist"));
}

#[test]
fn robot_name_prefix_is_configurable_and_must_be_shell_safe() {
    let admin = Admin::new();
    let prefix = |prefix| [("PORTCULLIS_ROBOTS__NAME_PREFIX", prefix)];
    let output = admin.cli_with(&prefix("bot-"), &["robot", "create", "mirror", "--system"], None);
    assert!(output.assert_success().stdout.contains("created robot bot-mirror"), "{output}");
    let output = admin.cli_with(&prefix("robot$"), &["robot", "list"], None);
    assert!(output.assert_failure().stderr.contains("name_prefix"), "{output}");
    // A user cannot take a robot's name, nor a robot a user's, in any case.
    admin.cli(&["user", "add", "bot-mirror", "--password-stdin"], Some("pw\n")).assert_failure();
    admin.cli(&["user", "add", "Bot-Mirror", "--password-stdin"], Some("pw\n")).assert_failure();
    admin.add_user("bot-x", "pw");
    let output = admin.cli_with(&prefix("bot-"), &["robot", "create", "x", "--system"], None);
    assert!(output.assert_failure().stderr.contains("already exists"), "{output}");
    // The configured prefix is reserved for robots: no user may start with it.
    let refused = admin.fails(&["user", "add", "robot_x", "--password-stdin"]);
    assert!(refused.contains("reserved for robots"), "{refused}");
}

#[test]
fn robot_create_refuses_bad_input_clearly() {
    let admin = Admin::new();
    admin.ok(&["project", "create", "team"]);
    assert!(admin.fails(&["robot", "create", "ci"]).contains("--project"), "a kind is required");
    assert!(admin
        .fails(&["robot", "create", "ci", "--project", "team", "--system"])
        .contains("cannot be used"));
    assert!(admin.fails(&["robot", "create", "CI", "--project", "team"]).contains("invalid robot name"));
    assert!(admin
        .fails(&["robot", "create", "ci", "--project", "team", "--actions", "admin"])
        .contains("unknown action"));
    assert!(admin
        .fails(&["robot", "create", "ci", "--project", "team", "--expires", "soon"])
        .contains("invalid expiry"));
    assert!(admin.fails(&["robot", "create", "ci", "--project", "nope"]).contains("does not exist"));
    assert!(admin
        .fails(&["robot", "create", "ci", "--system", "--projects", "team,nope"])
        .contains("does not exist"));
    assert!(admin.ok(&["robot", "list"]).lines().count() == 1, "nothing was created");
}

#[test]
fn pat_create_list_revoke() {
    let admin = Admin::new();
    admin.ok(&["project", "create", "team"]);
    admin.add_user("alice", "pw");
    let created = admin.ok(&[
        "pat",
        "create",
        "--user",
        "alice",
        "--name",
        "laptop",
        "--project",
        "team",
        "--actions",
        "pull",
    ]);
    let token = created
        .lines()
        .find_map(|line| line.strip_prefix("token (shown only now): "))
        .unwrap_or_else(|| panic!("no token line:\n{created}"))
        .to_string();
    assert!(token.starts_with("pat_"), "{token}");
    assert!(
        created.contains(&format!("echo {token} | docker login --username alice --password-stdin")),
        "{created}"
    );
    let listed = admin.ok(&["pat", "list", "--user", "alice"]);
    assert!(listed.contains("laptop") && listed.contains("team") && !listed.contains(&token), "{listed}");
    assert!(admin
        .fails(&["pat", "create", "--user", "alice", "--name", "laptop"])
        .contains("already exists"));
    assert!(admin.fails(&["pat", "create", "--user", "bob", "--name", "x"]).contains("does not exist"));
    assert!(admin
        .fails(&["pat", "create", "--user", "alice", "--name", "a b"])
        .contains("invalid token name"));
    admin.ok(&["pat", "revoke", "--user", "alice", "--name", "laptop"]);
    assert!(!admin.ok(&["pat", "list"]).contains("laptop"));
    assert!(admin
        .fails(&["pat", "revoke", "--user", "alice", "--name", "laptop"])
        .contains("does not exist"));
}

#[test]
fn token_revoke_needs_to_be_told_which() {
    let admin = Admin::new();
    admin.add_user("alice", "pw");
    assert!(admin.ok(&["token", "list"]).starts_with("ID"));
    assert!(admin.fails(&["token", "revoke"]).contains("required"));
    assert!(admin.fails(&["token", "revoke", "7"]).contains("does not exist"));
    assert!(admin.fails(&["token", "list", "--user", "bob"]).contains("does not exist"));
    assert!(admin.ok(&["token", "revoke", "--user", "alice"]).contains("revoked 0"));
    assert!(admin.ok(&["token", "revoke", "--all"]).contains("revoked 0"));
}

#[test]
fn commands_refuse_a_missing_database_and_init_makes_one() {
    let admin = Admin::new();
    let elsewhere = tempfile::tempdir().expect("a temp dir");
    let stray = elsewhere.path().join("nothing-here");
    let settings = [("PORTCULLIS_DATA_DIR", stray.display().to_string())];
    let refused = admin.cli_with(&settings, &["refresh-token", "revoke", "--all"], None);
    assert!(refused.assert_failure().stderr.contains("no database at"), "{refused}");
    assert!(refused.stderr.contains(&stray.display().to_string()), "names the path: {refused}");
    assert!(!stray.exists(), "nothing was created");
    admin.cli_with(&settings, &["init"], None).assert_success();
    admin.cli_with(&settings, &["user", "list"], None).assert_success();
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| std::fs::metadata(path).expect("exists").permissions().mode() & 0o777;
    assert_eq!(mode(&stray), 0o700, "the data dir");
    // The private key lives in the database (0600); the registry's files are public.
    assert_eq!(mode(&stray.join("portcullis.db")), 0o600);
    assert!(!stray.join("token.key").exists(), "no key file beside the database");
    for file in ["token.pem", "jwks.json"] {
        assert_eq!(mode(&stray.join(file)), 0o644, "{file}");
    }
}

#[test]
fn database_passwords_have_a_minimum_length() {
    let admin = Admin::new();
    let policy = [("PORTCULLIS_PASSWORDS__MIN_LENGTH", "12")];
    let short = admin.cli_with(&policy, &["user", "add", "dora", "--password-stdin"], Some("short-pw\n"));
    assert!(short.assert_failure().stderr.contains("at least 12 characters"), "{short}");
    let long =
        admin.cli_with(&policy, &["user", "add", "dora", "--password-stdin"], Some("a-long-password\n"));
    long.assert_success();
}

/// A revocation is on disk before the command says it is done: the CLI's commit is synced
/// (`synchronous=FULL`), seen under strace as an fsync or fdatasync of the database's log before
/// the command prints that it disabled the user. (With `synchronous=NORMAL` the log's header is
/// synced when it is made, and the commit only at the checkpoint when the database is closed,
/// after the message.)
#[test]
fn a_revocation_is_synced_before_the_command_returns() {
    let strace = crate::support::process::require_binary("strace", "strace");
    let admin = Admin::new();
    admin.add_user("alice", "pw");
    let command = admin.command_for(&["user", "disable", "alice"]);
    let mut traced = std::process::Command::new(strace);
    traced
        .args(["-f", "-y", "-e", "trace=fsync,fdatasync,write", "--"])
        .arg(command.get_program())
        .args(command.get_args());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => traced.env(name, value),
            None => traced.env_remove(name),
        };
    }
    let output = crate::support::process::run(&mut traced, None);
    output.assert_success();
    assert!(output.stdout.contains("disabled alice"), "{output}");
    let lines: Vec<&str> = output.stderr.lines().collect();
    let said = lines.iter().position(|line| line.contains("write(1") && line.contains("disabled alice"));
    let said = said.unwrap_or_else(|| panic!("no write of the message:\n{output}"));
    // The first sync is of the new log's header (SQLite makes it in any mode); the commit's own
    // sync is a second one.
    let is_log_sync = |line: &&&str| {
        (line.contains("fsync(") || line.contains("fdatasync(")) && line.contains("portcullis.db-wal")
    };
    let synced = lines[..said].iter().filter(is_log_sync).count();
    assert!(synced >= 2, "the commit was not synced before the message:\n{output}");
}
