//! `portcullis import`: an htpasswd made by Debian's `htpasswd` (apache2-utils), a docker_auth
//! configuration and a Harbor export whose PBKDF2 keys are computed here as Harbor computes them
//! (Python's hashlib, independent of the server's crates). Users log in with their old passwords
//! (docker through the real registry), and the first login replaces the hash with argon2id
//! without ending the identity token docker stored.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::binary::{Portcullis, SERVICE};
use crate::support::dockerd::Dockerd;
use crate::support::process::{require_binary, run};
use crate::support::registry::Registry;

const Q: &str = "service=registry.test";

/// `htpasswd -b FLAGS FILE USER PASSWORD` (creating the file with `-c` when it is new).
fn htpasswd(file: &Path, flags: &[&str], user: &str, password: &str) {
    let program = require_binary("htpasswd", "apache2-utils");
    let mut command = Command::new(program);
    command.arg("-b");
    if !file.exists() {
        command.arg("-c");
    }
    command.args(flags).arg(file).args([user, password]);
    run(&mut command, None).assert_success();
}

/// The kind of each user's stored hash, as `user list --json` shows it.
fn hash_kinds(server: &Portcullis) -> Vec<(String, Value)> {
    let users = server.json(&["user", "list", "--json"]);
    let users = users.as_array().expect("a list").iter();
    users.map(|user| (user["name"].as_str().unwrap().to_string(), user["password_hash"].clone())).collect()
}

fn kind_of(server: &Portcullis, name: &str) -> Value {
    hash_kinds(server).into_iter().find(|(user, _)| user == name).map(|(_, kind)| kind).unwrap_or(Value::Null)
}

fn login(server: &Portcullis, user: &str, password: &str) -> u16 {
    server.token(&format!("{Q}&scope=repository:team/app:pull"), Some((user, password))).status
}

#[test]
fn htpasswd_users_keep_their_passwords_with_docker_and_are_upgraded_at_first_login() {
    let server = Portcullis::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    htpasswd(&file, &["-B", "-C", "5"], "alice", "alice-old-pw");
    htpasswd(&file, &["-B", "-C", "5"], "bob", "bob-old-pw");
    htpasswd(&file, &["-m"], "carol", "carol-old-pw");
    htpasswd(&file, &["-s"], "dave", "dave-old-pw");
    htpasswd(&file, &["-d"], "erin", "erin-p7");
    htpasswd(&file, &["-d"], "grace", "longpassword");
    htpasswd(&file, &["-p"], "frank", "frank-old-pw");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("# moved from the registry's htpasswd\n{text}\nno-colon-line\n")).unwrap();

    let import_as_developers = || {
        let file = file.to_str().unwrap();
        server.ok(&["import", "htpasswd", file, "--project", "team", "--role", "developer"])
    };
    let out = import_as_developers();
    // Line 1 is the comment: alice is line 2, carol 4, dave 5, erin 6, grace 7, frank 8, the
    // broken line 10.
    for (line, user, what) in [(4, "carol", "apr1-md5"), (5, "dave", "sha1"), (6, "erin", "crypt")] {
        let expected = format!("line {line}: {user}: a weak {what} hash");
        assert!(out.contains(&expected), "{expected:?} in:\n{out}");
    }
    assert!(out.contains("line 8: frank: a plain-text password"), "{out}");
    assert!(out.contains("line 10: no ':'"), "{out}");
    assert!(out.contains("user alice: created (bcrypt)"), "{out}");
    assert!(out.contains("member alice of team: created"), "{out}");
    assert_eq!(kind_of(&server, "alice"), "bcrypt");
    assert_eq!(kind_of(&server, "carol"), Value::Null, "weak lines are not imported without --allow-weak");
    assert!(server.ok(&["user", "list"]).contains("bcrypt (carried over)"));

    // docker login with the old password, through the real registry: docker keeps an identity
    // token, and the password's hash is argon2id from then on.
    let registry = Registry::start(server.token_auth());
    let docker = Dockerd::start();
    let host = registry.addr().to_string();
    let wrong = docker.login(&host, "alice", "not-the-old-pw");
    assert!(wrong.combined().contains("unauthorized"), "{wrong}");
    assert_eq!(kind_of(&server, "alice"), "bcrypt", "a wrong password upgrades nothing");
    let logged_in = docker.login(&host, "alice", "alice-old-pw");
    assert!(logged_in.success(), "{logged_in}\n{}", server.log());
    assert_eq!(kind_of(&server, "alice"), "argon2id");
    let config: Value = serde_json::from_str(&docker.config_json().unwrap()).unwrap();
    assert!(config["auths"][&host]["identitytoken"].is_string(), "{config}");
    // The identity token made before the upgrade still works: push and pull go through it.
    let image = format!("{host}/team/app:1");
    docker.import_image(&image);
    let push = docker.docker(&["push", &image], None);
    assert!(push.success(), "push with the identity token after the upgrade:\n{push}\n{}", server.log());
    assert_eq!(
        server.json(&["token", "list", "--user", "alice", "--json"]).as_array().map(Vec::len),
        Some(1)
    );
    // The same password against the new hash, and a wrong one.
    assert_eq!(login(&server, "alice", "alice-old-pw"), 200);
    assert_eq!(login(&server, "alice", "alice-old-pw!"), 401);

    // Again: nothing changes; alice's upgraded hash is kept, not put back.
    let again = import_as_developers();
    assert!(again.contains("user bob: unchanged"), "{again}");
    assert!(again.contains("user alice: kept as it is"), "{again}");
    assert!(again.contains("member bob of team: unchanged"), "{again}");
    assert_eq!(kind_of(&server, "alice"), "argon2id");

    // With --allow-weak the weak kinds come too (plain text is hashed at once) and each logs in
    // with its old password once, then has argon2id.
    let weak = server.ok(&["import", "htpasswd", file.to_str().unwrap(), "--allow-weak"]);
    assert!(weak.contains("user carol: created (apr1-md5)"), "{weak}");
    assert_eq!(kind_of(&server, "frank"), "argon2id", "plain text is never stored");
    for (user, password, kind) in
        [("carol", "carol-old-pw", "apr1-md5"), ("dave", "dave-old-pw", "sha1"), ("erin", "erin-p7", "crypt")]
    {
        assert_eq!(kind_of(&server, user), kind);
        assert_eq!(login(&server, user, "wrong-pw"), 401, "{user}");
        assert_eq!(login(&server, user, password), 200, "{user}: {}", server.log());
        assert_eq!(kind_of(&server, user), "argon2id", "{user}");
        assert_eq!(login(&server, user, password), 200, "{user} after the upgrade");
    }
    assert_eq!(login(&server, "frank", "frank-old-pw"), 200);
    // DES reads 8 characters, so a longer guess with the right first 8 matches (as it did for the
    // old server); such a match is never made the argon2id password, or grace's own would stop
    // working. She keeps her crypt hash.
    assert_eq!(login(&server, "grace", "longpassXYZ"), 200);
    assert_eq!(login(&server, "grace", "longpassword"), 200);
    assert_eq!(kind_of(&server, "grace"), "crypt");

    // --update replaces an existing user's hash with the file's: a password change.
    let newer = dir.path().join("htpasswd.new");
    htpasswd(&newer, &["-B", "-C", "5"], "bob", "bob-new-pw");
    let updated = server.ok(&["import", "htpasswd", newer.to_str().unwrap(), "--update"]);
    assert!(updated.contains("user bob: updated"), "{updated}");
    assert_eq!(login(&server, "bob", "bob-old-pw"), 401);
    assert_eq!(login(&server, "bob", "bob-new-pw"), 200);

    // A file that is not there is a clear error, and nothing is half-imported.
    let missing = server.fails(&["import", "htpasswd", "/nonexistent/htpasswd"]);
    assert!(missing.contains("cannot read /nonexistent/htpasswd"), "{missing}");
}

/// The time a refusal takes, the fastest of `tries` (the floor is a lower bound).
fn refusal_time(server: &Portcullis, user: &str, tries: usize) -> Duration {
    (0..tries)
        .map(|_| {
            let started = Instant::now();
            assert_eq!(login(server, user, "a wrong password"), 401);
            started.elapsed()
        })
        .min()
        .unwrap()
}

/// No oracle from the hash kind: with bcrypt users of a high cost stored, a wrong password for an
/// unknown name takes as long as one for a bcrypt account (the floor follows the costliest
/// stored kind), and guessing bcrypt accounts is throttled like any other.
#[test]
fn refusals_take_as_long_as_the_costliest_carried_over_hash_and_are_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    htpasswd(&file, &["-B", "-C", "11"], "slow", "slow-old-pw");
    // How long one bcrypt verification at cost 11 takes here, by Apache's own implementation.
    let program = require_binary("htpasswd", "apache2-utils");
    let apache = (0..3)
        .map(|_| {
            let started = Instant::now();
            run(Command::new(&program).args(["-vb", file.to_str().unwrap(), "slow", "wrong"]), None);
            started.elapsed()
        })
        .min()
        .unwrap();
    let server = Portcullis::start_with(&[("PORTCULLIS_THROTTLE__CLIENT_FAILURES", "4")]);
    server.ok(&["import", "htpasswd", file.to_str().unwrap()]);
    // The first refusal of the bcrypt account times its class; from then on every refusal waits
    // for the slowest class (a restarted server times it at start).
    let bcrypt_account = refusal_time(&server, "slow", 2);
    let unknown = refusal_time(&server, "nobody-at-all", 2);
    assert!(
        unknown >= apache.mul_f32(0.6) && unknown >= bcrypt_account.mul_f32(0.6),
        "an unknown name is refused in {unknown:?}, a bcrypt account in {bcrypt_account:?} \
         (Apache's bcrypt takes {apache:?})"
    );
    // Two more wrong guesses for the account reach the limit of 4: the right password waits too.
    for _ in 0..2 {
        assert_eq!(login(&server, "slow", "still wrong"), 401);
    }
    let throttled =
        server.token(&format!("{Q}&scope=repository:team/app:pull"), Some(("slow", "slow-old-pw")));
    assert_eq!(throttled.status, 429, "{throttled:?}");
}

/// A docker_auth static configuration: its users log in with their bcrypt passwords, and the ACL
/// entries that mean one role in one project became memberships.
#[test]
fn docker_auth_users_and_the_acl_entries_that_map() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    htpasswd(&file, &["-B", "-C", "5"], "dev", "dev-old-pw");
    htpasswd(&file, &["-B", "-C", "5"], "ci", "ci-old-pw");
    let hashes = std::fs::read_to_string(&file).unwrap();
    let hash = |user: &str| {
        hashes.lines().find_map(|line| line.strip_prefix(&format!("{user}:"))).unwrap().to_string()
    };
    let config = format!(
        r#"server:
  addr: ":5001"
token:
  issuer: "Acme auth server"
  expiration: 900
users:
  "dev":
    password: "{dev}"
  "ci":
    password: "{ci}"
  "": {{}}
acl:
  - match: {{account: "dev", name: "team/*"}}
    actions: ["pull", "push"]
    comment: "developers push to team"
  - match: {{account: "ci", name: "team/*"}}
    actions: ["pull"]
  - match: {{account: "ci", name: "tools/*"}}
    actions: ["*"]
  - match: {{account: "/.+/", name: "${{account}}/*"}}
    actions: ["*"]
  - match: {{account: "", name: "public/*"}}
    actions: ["pull"]
  - match: {{account: "dev", name: "ops/*", ip: "10.0.0.0/8"}}
    actions: ["pull"]
"#,
        dev = hash("dev"),
        ci = hash("ci")
    );
    let config_file = dir.path().join("auth_config.yml");
    std::fs::write(&config_file, config).unwrap();
    let server = Portcullis::start();
    let out = server.ok(&["import", "docker-auth", config_file.to_str().unwrap()]);
    assert!(out.contains("acl entry 4 (account \"/.+/\""), "{out}");
    assert!(out.contains("regular expression"), "{out}");
    assert!(out.contains("acl entry 5") && out.contains("anonymous"), "{out}");
    assert!(out.contains("acl entry 6") && out.contains("ip"), "{out}");
    assert!(out.contains("member dev of team: created"), "{out}");
    let access = |user: &str, password: &str, scope: &str| {
        let response = server.token(&format!("{Q}&scope={scope}"), Some((user, password)));
        assert_eq!(response.status, 200, "{user}: {response:?}");
        response.access()
    };
    assert_eq!(
        access("dev", "dev-old-pw", "repository:team/app:pull,push"),
        ["repository:team/app:pull,push"]
    );
    assert_eq!(access("ci", "ci-old-pw", "repository:team/app:pull,push"), ["repository:team/app:pull"]);
    assert_eq!(
        access("ci", "ci-old-pw", "repository:tools/x:pull,push,delete"),
        ["repository:tools/x:delete,pull,push"]
    );
    assert!(
        access("dev", "dev-old-pw", "repository:ops/x:pull").is_empty(),
        "the ip-bound entry was not mapped"
    );
    assert_eq!(kind_of(&server, "dev"), "argon2id", "upgraded at the first login");
    // Not YAML of that shape: a clear error, nothing imported.
    std::fs::write(&config_file, "users: [1, 2]\n").unwrap();
    let refused = server.fails(&["import", "docker-auth", config_file.to_str().unwrap()]);
    assert!(refused.contains("not a docker_auth configuration"), "{refused}");
}

/// PBKDF2 as Harbor's `utils.Encrypt` computes it, by Python's hashlib: 4096 iterations, a
/// 16-byte key, hex.
fn harbor_key(password: &str, salt: &str, digest: &str) -> String {
    let program = require_binary("python3", "python3");
    let script = "import hashlib,sys; print(hashlib.pbkdf2_hmac(sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode(), 4096, 16).hex())";
    let output = run(Command::new(program).args(["-c", script, digest, password, salt]), None);
    output.assert_success().stdout.trim().to_string()
}

#[test]
fn harbor_users_projects_and_members_with_their_pbkdf2_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let (salt_a, salt_b) = ("Nsd3cHkEOWhNaB1T7rzE41QHxBLRsWaY", "q1Mwp2P1zvDwhRLHJbGk1dE2lx8kJ8Rn");
    // harbor_user as `\copy (SELECT ...) TO ... WITH CSV HEADER` writes it (booleans as t/f).
    let csv = format!(
        "username,email,password,salt,password_version,sysadmin_flag,deleted\n\
         hadmin,admin@example.org,{},{salt_a},sha256,t,f\n\
         olduser,old@example.org,{},{salt_b},sha1,f,f\n\
         gone#12,gone@example.org,{},{salt_b},sha256,f,t\n",
        harbor_key("Harbor12345", salt_a, "sha256"),
        harbor_key("old-sha1-pw", salt_b, "sha1"),
        harbor_key("x", salt_b, "sha256"),
    );
    let users = dir.path().join("harbor_user.csv");
    std::fs::write(&users, csv).unwrap();
    let json_users = dir.path().join("more_users.json");
    let json = serde_json::json!([{
        "username": "dev", "email": "dev@example.org", "password": harbor_key("dev-harbor-pw", salt_a, "sha256"),
        "salt": salt_a, "password_version": "sha256", "sysadmin_flag": false
    }]);
    std::fs::write(&json_users, json.to_string()).unwrap();
    let projects = dir.path().join("projects.json");
    let projects_json = serde_json::json!([
        {"project_id": 2, "name": "team", "metadata": {"public": "false"}, "owner_name": "hadmin"},
        {"project_id": 3, "name": "open", "metadata": {"public": "true"}}
    ]);
    std::fs::write(&projects, projects_json.to_string()).unwrap();
    let members = dir.path().join("team-members.json");
    let members_json = serde_json::json!([
        {"id": 5, "project_id": 2, "entity_name": "dev", "entity_type": "u", "role_id": 2, "role_name": "developer"},
        {"id": 6, "project_id": 2, "entity_name": "olduser", "entity_type": "u", "role_id": 3, "role_name": "guest"},
        {"id": 7, "project_id": 2, "entity_name": "ops-team", "entity_type": "g", "role_id": 4, "role_name": "maintainer"}
    ]);
    std::fs::write(&members, members_json.to_string()).unwrap();
    let server = Portcullis::start();
    let paths = [&users, &json_users, &projects, &members].map(|path| path.to_str().unwrap().to_string());
    let mut args = vec!["import", "harbor"];
    args.extend(paths.iter().map(String::as_str));
    let out = server.ok(&args);
    assert!(out.contains("gone#12: deleted in Harbor; skipped"), "{out}");
    assert!(out.contains("group ops-team of team"), "{out}");
    assert!(out.contains("robot accounts cannot be carried over"), "{out}");
    assert_eq!(kind_of(&server, "hadmin"), "pbkdf2");

    let access = |user: &str, password: &str, scope: &str| {
        let response = server.token(&format!("service={SERVICE}&scope={scope}"), Some((user, password)));
        assert_eq!(response.status, 200, "{user}: {response:?}\n{}", server.log());
        response.access()
    };
    assert_eq!(
        access("dev", "dev-harbor-pw", "repository:team/app:pull,push"),
        ["repository:team/app:pull,push"]
    );
    assert_eq!(
        access("olduser", "old-sha1-pw", "repository:team/app:pull,push"),
        ["repository:team/app:pull"]
    );
    assert_eq!(
        access("hadmin", "Harbor12345", "registry:catalog:*"),
        ["registry:catalog:*"],
        "sysadmin_flag"
    );
    assert_eq!(
        server.token(&format!("{Q}&scope=repository:open/x:pull"), None).access(),
        ["repository:open/x:pull"]
    );
    assert_eq!(login(&server, "dev", "dev-harbor-pw "), 401);
    assert_eq!(kind_of(&server, "dev"), "argon2id");
    assert_eq!(kind_of(&server, "olduser"), "argon2id");
}
