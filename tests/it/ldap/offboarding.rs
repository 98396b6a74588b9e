//! Offboarding in the directory reaches the credentials the directory never sees (review defect
//! 3): identity tokens (refresh tokens) and personal access tokens of directory users are
//! re-checked by DN once their last check is older than `ldap.revalidate_secs`, die when the entry
//! is gone, moved out of the user base or filtered out, follow changed groups, and outlive a
//! directory outage only for `ldap.revalidate_grace_secs`. Also: an entry that answers to an
//! account recorded for another entry does not take it over (likely defect 4).

use std::thread::sleep;
use std::time::{Duration, Instant};

use super::{add_person, ldap_env, modify, password, populate, user_dn, Q};
use crate::support::binary::Portcullis;
use crate::support::slapd::{Slapd, SlapdOptions, ADMIN_DN, ADMIN_PASSWORD, BASE_DN};

const PUSH_PULL: &str = "repository:team/app:push,pull";
const CATALOG: &str = "registry:catalog:*";

/// `docker login`'s request: a refresh token for `user`.
fn identity_token(server: &Portcullis, user: &str) -> String {
    let login =
        server.token(&format!("{Q}&offline_token=true&client_id=docker"), Some((user, &password(user))));
    assert_eq!(login.status, 200, "{user}: {login:?}\n{}", server.log());
    login.refresh_token().expect("offline_token=true gives a refresh token")
}

/// A personal access token for `user`, made with the CLI.
fn personal_token(server: &Portcullis, user: &str) -> String {
    let created = server.json(&["pat", "create", "--user", user, "--name", "ci", "--json"]);
    created["token"].as_str().expect("the token in the JSON answer").to_string()
}

/// The refresh grant as docker sends it; the status and what was granted.
fn refresh(server: &Portcullis, token: &str, scope: &str) -> (u16, Vec<String>) {
    let response = server.post_form(&format!(
        "grant_type=refresh_token&refresh_token={token}&client_id=docker&{Q}&scope={scope}"
    ));
    let access = if response.status == 200 { response.access() } else { Vec::new() };
    (response.status, access)
}

/// A request with a personal token as the password; the status and what was granted.
fn with_token(server: &Portcullis, user: &str, token: &str, scope: &str) -> (u16, Vec<String>) {
    let response = server.token(&format!("{Q}&scope={scope}"), Some((user, token)));
    let access = if response.status == 200 { response.access() } else { Vec::new() };
    (response.status, access)
}

fn ldapdelete(slapd: &Slapd, dn: &str) {
    let url = slapd.url();
    slapd
        .tool("ldapdelete", &["-x", "-D", ADMIN_DN, "-w", ADMIN_PASSWORD, "-H", &url, dn], None)
        .assert_success();
}

/// How many rows a JSON list command prints.
fn listed(server: &Portcullis, args: &[&str]) -> usize {
    server.json(args).as_array().map(Vec::len).unwrap_or_else(|| panic!("{args:?} prints a JSON list"))
}

/// A server for `slapd` in `member` mode, directory logins never remembered, re-checking after
/// `revalidate` seconds with `grace` seconds of outage allowed; project `team` is granted to
/// the group `developers`.
fn server_for(slapd: &Slapd, revalidate: &str, grace: &str) -> Portcullis {
    let filter = "(&(objectClass=inetOrgPerson)(!(description=disabled)))";
    let env = ldap_env(
        &slapd.url(),
        &[
            ("GROUP_MEMBERSHIP", "member"),
            ("CACHE_SECS", "0"),
            ("USER_FILTER", filter),
            ("REVALIDATE_SECS", revalidate),
            ("REVALIDATE_GRACE_SECS", grace),
        ],
    );
    let server = Portcullis::start_with(&env);
    server.create_project("team", false);
    server
        .cli(&["member", "add", "team", "--group", "developers", "--role", "developer"], None)
        .assert_success();
    server
}

#[test]
fn offboarding_in_the_directory_reaches_identity_tokens_and_personal_tokens() {
    let slapd = Slapd::start(SlapdOptions::default());
    populate(&slapd);
    add_person(&slapd, "erin", "");
    add_person(&slapd, "frank", "");
    add_person(&slapd, "gina", "");
    add_person(&slapd, "hank", "");
    let server = server_for(&slapd, "2", "3600");
    let pull_push = vec!["repository:team/app:pull,push".to_string()];

    // alice (developers) will be deleted, erin moved out of the user base, frank disabled by
    // the filter, gina replaced by a new entry of her DN, hank's account expired (shadowExpire),
    // carol taken out of the admin group, bob put into developers.
    let tokens: Vec<(&str, String, String)> = ["alice", "erin", "frank", "gina", "hank", "carol", "bob"]
        .into_iter()
        .map(|user| (user, identity_token(&server, user), personal_token(&server, user)))
        .collect();
    let token_of = |user: &str| tokens.iter().find(|(name, ..)| *name == user).expect("a user of the test");
    assert_eq!(refresh(&server, &token_of("alice").1, PUSH_PULL), (200, pull_push.clone()));
    assert_eq!(refresh(&server, &token_of("carol").1, CATALOG), (200, vec![CATALOG.to_string()]));
    assert_eq!(refresh(&server, &token_of("bob").1, PUSH_PULL), (200, vec![]));

    ldapdelete(&slapd, &user_dn("alice"));
    // gina leaves and a new gina is hired under the same DN: another entry, not her.
    ldapdelete(&slapd, &user_dn("gina"));
    add_person(&slapd, "gina", "");
    modify(
        &slapd,
        &format!(
            "dn: ou=former,{BASE_DN}\nchangetype: add\nobjectClass: organizationalUnit\nou: former\n\n\
             dn: {}\nchangetype: modrdn\nnewrdn: uid=erin\ndeleteoldrdn: 1\nnewsuperior: ou=former,{BASE_DN}\n\n\
             dn: {}\nchangetype: modify\nadd: description\ndescription: disabled\n\n\
             dn: {}\nchangetype: modify\nadd: objectClass\nobjectClass: shadowAccount\n-\nadd: shadowExpire\nshadowExpire: 1\n\n\
             dn: cn=registry-admins,ou=groups,{BASE_DN}\nchangetype: modify\nreplace: member\nmember: {}\n\n\
             dn: cn=developers,ou=groups,{BASE_DN}\nchangetype: modify\nadd: member\nmember: {}\n",
            user_dn("erin"),
            user_dn("frank"),
            user_dn("hank"),
            user_dn("dave"),
            user_dn("bob"),
        ),
    );
    sleep(Duration::from_millis(2500));

    for user in ["alice", "erin", "frank", "gina", "hank"] {
        let (_, identity, personal) = token_of(user);
        assert_eq!(refresh(&server, identity, PUSH_PULL).0, 401, "{user}'s identity token\n{}", server.log());
        assert_eq!(with_token(&server, user, personal, PUSH_PULL).0, 401, "{user}'s personal token");
        assert_eq!(listed(&server, &["refresh-token", "list", "--user", user, "--json"]), 0, "{user}");
        assert_eq!(listed(&server, &["pat", "list", "--user", user, "--json"]), 0, "{user}");
        if user != "gina" {
            assert_eq!(super::status(&server, user, &password(user)).0, 401, "{user} cannot log in either");
        }
    }
    assert!(server.log().contains("the DN now names another entry"), "{}", server.log());
    assert!(server.log().contains("no longer vouches"), "the revocation is logged:\n{}", server.log());
    // Changed groups apply to the tokens of users still there, without a password login.
    assert_eq!(refresh(&server, &token_of("carol").1, CATALOG), (200, vec![]), "no longer an admin");
    assert_eq!(with_token(&server, "carol", &token_of("carol").2, CATALOG), (200, vec![]));
    assert_eq!(refresh(&server, &token_of("bob").1, PUSH_PULL), (200, pull_push.clone()), "now a developer");
    assert_eq!(with_token(&server, "bob", &token_of("bob").2, PUSH_PULL), (200, pull_push));
    assert_eq!(listed(&server, &["pat", "list", "--user", "bob", "--json"]), 1, "bob keeps his");
}

#[test]
fn a_directory_outage_is_borne_for_the_grace_then_answered_503() {
    let mut slapd = Slapd::start(SlapdOptions::default());
    populate(&slapd);
    let server = server_for(&slapd, "1", "4");
    let started = Instant::now();
    let identity = identity_token(&server, "alice");
    let personal = personal_token(&server, "alice");
    slapd.stop();
    sleep(Duration::from_millis(1500));
    let pull_push = vec!["repository:team/app:pull,push".to_string()];
    // Due for a check, the directory is down, but the last good check is recent.
    assert_eq!(refresh(&server, &identity, PUSH_PULL), (200, pull_push.clone()), "{}", server.log());
    assert_eq!(with_token(&server, "alice", &personal, PUSH_PULL), (200, pull_push));
    // Whole seconds count: 6 s after the login is more than 4 s past its check, whatever the fraction.
    sleep(Duration::from_secs(6).saturating_sub(started.elapsed()));
    let late =
        server.post_form(&format!("grant_type=refresh_token&refresh_token={identity}&{Q}&scope={PUSH_PULL}"));
    assert_eq!((late.status, late.error_code()), (503, "UNAVAILABLE".to_string()), "{late:?}");
    let late = server.token(&format!("{Q}&scope={PUSH_PULL}"), Some(("alice", &personal)));
    assert_eq!((late.status, late.error_code()), (503, "UNAVAILABLE".to_string()), "{late:?}");
    // Nothing was revoked: the directory never said she was gone.
    assert_eq!(listed(&server, &["pat", "list", "--user", "alice", "--json"]), 1);
    assert_eq!(listed(&server, &["refresh-token", "list", "--user", "alice", "--json"]), 1);
}

/// Likely defect 4: an entry with a second login name takes over nobody's account, while a user
/// moved to another DN keeps theirs.
#[test]
fn an_entry_cannot_answer_for_another_entrys_account() {
    let slapd = Slapd::start(SlapdOptions::default());
    populate(&slapd);
    add_person(&slapd, "mallory", "");
    let server = server_for(&slapd, "300", "3600");
    server.create_project("secret", false);
    assert_eq!(super::status(&server, "alice", &password("alice")).0, 200);
    server.add_member("secret", "alice", "maintainer");

    // alice leaves; mallory, who may write her own entry, adds `uid: alice` to it.
    ldapdelete(&slapd, &user_dn("alice"));
    modify(&slapd, &format!("dn: {}\nchangetype: modify\nadd: uid\nuid: alice\n", user_dn("mallory")));
    let response =
        server.token(&format!("{Q}&scope=repository:secret/app:pull"), Some(("alice", &password("mallory"))));
    assert_eq!(response.status, 401, "mallory must not become alice: {response:?}");
    assert!(server.log().contains("belongs to another directory entry"), "{}", server.log());

    // Or she renames her entry into alice's old DN, one login name: the entry is not alice's.
    modify(
        &slapd,
        &format!(
            "dn: {}\nchangetype: modify\ndelete: uid\nuid: alice\n\n             dn: {}\nchangetype: modrdn\nnewrdn: uid=alice\ndeleteoldrdn: 1\n",
            user_dn("mallory"),
            user_dn("mallory")
        ),
    );
    let response =
        server.token(&format!("{Q}&scope=repository:secret/app:pull"), Some(("alice", &password("mallory"))));
    assert_eq!(
        response.status, 401,
        "an entry renamed into a deleted user's DN is not that user: {response:?}"
    );

    // bob moves to another OU under the user base: same person, same account.
    assert_eq!(super::status(&server, "bob", &password("bob")).0, 200);
    server.add_member("secret", "bob", "guest");
    modify(
        &slapd,
        &format!(
            "dn: {}\nchangetype: modrdn\nnewrdn: uid=bob\ndeleteoldrdn: 1\nnewsuperior: ou=contractors,ou=people,{BASE_DN}\n",
            user_dn("bob")
        ),
    );
    let response =
        server.token(&format!("{Q}&scope=repository:secret/app:pull"), Some(("bob", &password("bob"))));
    assert_eq!(response.status, 200, "{response:?}\n{}", server.log());
    assert_eq!(response.access(), ["repository:secret/app:pull"], "bob's role is still bob's");
}

/// An account made ahead with `user add --ldap` has no recorded entry yet: its personal token
/// is first checked by name, and dies when no entry of that name exists.
#[test]
fn a_personal_token_of_an_account_made_ahead_is_checked_by_name() {
    let slapd = Slapd::start(SlapdOptions::default());
    populate(&slapd);
    let server = server_for(&slapd, "300", "3600");
    for user in ["alice", "ghost"] {
        server.cli(&["user", "add", user, "--ldap"], None).assert_success();
    }
    let alice = personal_token(&server, "alice");
    let ghost = personal_token(&server, "ghost");
    let pull_push = vec!["repository:team/app:pull,push".to_string()];
    assert_eq!(with_token(&server, "alice", &alice, PUSH_PULL), (200, pull_push), "her groups apply");
    assert_eq!(with_token(&server, "ghost", &ghost, PUSH_PULL).0, 401, "no entry is called ghost");
    assert_eq!(listed(&server, &["pat", "list", "--user", "ghost", "--json"]), 0);
    assert_eq!(listed(&server, &["pat", "list", "--user", "alice", "--json"]), 1);
}

/// The review's headline case: a phished password is reset in the directory. Identity tokens
/// made before the change die at the next check; personal tokens (made by an operator) stay; a
/// login with the new password works.
#[test]
fn a_password_reset_in_the_directory_ends_the_identity_tokens_made_before_it() {
    // ppolicy records pwdChangedTime on every password change.
    let slapd = Slapd::start(SlapdOptions { lockout_after: Some(100), ..Default::default() });
    populate(&slapd);
    let server = server_for(&slapd, "1", "3600");
    let identity = identity_token(&server, "alice");
    let personal = personal_token(&server, "alice");
    let pull_push = vec!["repository:team/app:pull,push".to_string()];
    // pwdChangedTime has whole seconds: the reset comes a second after the login.
    sleep(Duration::from_millis(1100));
    modify(
        &slapd,
        &format!(
            "dn: {}\nchangetype: modify\nreplace: userPassword\nuserPassword: reset-by-helpdesk\n",
            user_dn("alice")
        ),
    );
    sleep(Duration::from_millis(1100));
    assert_eq!(refresh(&server, &identity, PUSH_PULL).0, 401, "{}", server.log());
    assert_eq!(listed(&server, &["refresh-token", "list", "--user", "alice", "--json"]), 0);
    assert_eq!(with_token(&server, "alice", &personal, PUSH_PULL), (200, pull_push.clone()), "PATs stay");
    let login = server.token(&format!("{Q}&offline_token=true"), Some(("alice", "reset-by-helpdesk")));
    assert_eq!(login.status, 200, "{login:?}");
    let fresh = login.refresh_token().expect("a new identity token");
    sleep(Duration::from_millis(1100));
    assert_eq!(refresh(&server, &fresh, PUSH_PULL), (200, pull_push), "made after the change");
}
