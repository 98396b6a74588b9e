//! Groups that try to pass for other groups. Whoever may create a group (many AD and Exchange
//! sites delegate that) chooses its name and its place in the tree, so neither may make it the
//! admin group or a DN-granted group: a group's *name* is never read as a DN, and "below the
//! group base" means below it by RDNs, not by the text's end.

use super::*;

/// `text` as an RDN value, with `,` `=` `+` and `\` hex-escaped as OpenLDAP prints them.
fn hex_escaped(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            ',' | '=' | '+' | '\\' => format!("\\{:02X}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

/// A `groupOfNames` at `dn` with this `cn` and the one member `uid=MEMBER`.
fn add_group(slapd: &Slapd, dn: &str, cn: &str, member: &str) {
    let ldif = format!("dn: {dn}\nobjectClass: groupOfNames\ncn: {cn}\nmember: {}\n", user_dn(member));
    let added = slapd.ldapadd(&ldif);
    assert!(added.success(), "{ldif}\n{added}");
}

#[test]
fn a_group_named_like_the_admin_groups_dn_is_not_the_admin_group() {
    let admin_dn = format!("cn=registry-admins,ou=groups,{BASE_DN}");
    let developers_dn = format!("cn=developers,ou=groups,{BASE_DN}");
    // Both ways a group's name is read: its cn from a group search (member), and the first RDN
    // value of each memberOf DN (member_of, as Active Directory).
    for (membership, memberof) in [("member", false), ("member_of", true)] {
        let slapd = Slapd::start(SlapdOptions { memberof, tls: false, ..Default::default() });
        populate(&slapd);
        add_person(&slapd, "mallory", "");
        slapd
            .ldapadd(&format!(
                "dn: ou=sandbox,ou=groups,{BASE_DN}\nobjectClass: organizationalUnit\nou: sandbox\n"
            ))
            .assert_success();
        for target in [&admin_dn, &developers_dn] {
            // The review's recipe: hex escapes, as OpenLDAP prints them ...
            add_group(&slapd, &format!("cn={},ou=groups,{BASE_DN}", hex_escaped(target)), target, "mallory");
        }
        // ... and Active Directory's spelling, character escapes, one OU further down.
        let ad_spelling = target_with_character_escapes(&admin_dn);
        add_group(&slapd, &format!("cn={ad_spelling},ou=sandbox,ou=groups,{BASE_DN}"), &admin_dn, "mallory");

        let env = ldap_env(
            &slapd.url(),
            &[("GROUP_MEMBERSHIP", membership), ("ADMIN_GROUPS", &admin_dn), ("CACHE_SECS", "0")],
        );
        let server = Portcullis::start_with(&env);
        server.create_project("team", false);
        server.ok(&["member", "add", "team", "--group", &developers_dn, "--role", "developer"]);

        // The DN forms work for the real members ...
        assert_eq!(
            access(&server, "carol", &password("carol"), "registry:catalog:*"),
            ["registry:catalog:*"]
        );
        assert_eq!(
            access(&server, "alice", &password("alice"), PUSH_PULL),
            ["repository:team/app:pull,push"]
        );
        // ... and give mallory nothing, whatever her groups are called.
        let mallory = password("mallory");
        assert!(access(&server, "mallory", &mallory, "registry:catalog:*").is_empty(), "{membership}: admin");
        assert!(access(&server, "mallory", &mallory, PUSH_PULL).is_empty(), "{membership}: the DN grant");
        let shown = ldap_test(&server, &env, "mallory", Some(&mallory));
        shown.assert_success();
        assert!(shown.stdout.contains("system admin  no"), "{membership}: {shown}");
        assert!(shown.stdout.contains("group roles   none"), "{membership}: {shown}");
    }
}

/// `dn` as the value of an RDN in Active Directory's spelling: `\,` and `\=`.
fn target_with_character_escapes(dn: &str) -> String {
    dn.replace(',', "\\,").replace('=', "\\=")
}

/// Settings for member_of mode with the user entry's `description` as the membership attribute:
/// its values reach Portcullis exactly as written, so a test can send the spellings Active
/// Directory uses in `memberOf` (`\,`), which OpenLDAP's memberOf overlay never prints (it
/// hex-escapes, `\2C`).
fn verbatim_member_of(slapd: &Slapd) -> Vec<(String, String)> {
    ldap_env(
        &slapd.url(),
        &[("GROUP_MEMBERSHIP", "member_of"), ("MEMBERSHIP_ATTRIBUTE", "description"), ("CACHE_SECS", "0")],
    )
}

/// Replaces the `description` values of `uid=USER` with `values`.
fn set_descriptions(slapd: &Slapd, user: &str, values: &[&str]) {
    let mut ldif = format!("dn: {}\nchangetype: modify\nreplace: description\n", user_dn(user));
    for value in values {
        ldif.push_str(&format!("description: {value}\n"));
    }
    modify(slapd, &ldif);
}

#[test]
fn a_group_outside_the_group_base_stays_outside_whatever_its_rdn_holds() {
    // member_of keeps the groups below group_base_dn. A group below `cn=x\,ou=groups,dc=...`
    // lies directly below the suffix, outside ou=groups, though its DN's text ends like one
    // inside (review defect 14).
    let slapd = Slapd::start(SlapdOptions::default());
    populate(&slapd);
    add_person(&slapd, "mallory", "");
    let outside = format!("cn=x\\,ou=groups,{BASE_DN}");
    set_descriptions(
        &slapd,
        "mallory",
        &[&format!("cn=registry-admins,{outside}"), &format!("CN=developers, {outside}")],
    );
    set_descriptions(&slapd, "alice", &[&format!("cn=developers,ou=groups,{BASE_DN}")]);
    set_descriptions(&slapd, "carol", &[&format!("cn=registry-admins,ou=groups,{BASE_DN}")]);
    let env = verbatim_member_of(&slapd);
    let server = Portcullis::start_with(&env);
    server.create_project("team", false);
    server.ok(&["member", "add", "team", "--group", "developers", "--role", "developer"]);
    assert_eq!(access(&server, "carol", &password("carol"), "registry:catalog:*"), ["registry:catalog:*"]);
    assert_eq!(access(&server, "alice", &password("alice"), PUSH_PULL), ["repository:team/app:pull,push"]);
    let mallory = password("mallory");
    assert!(access(&server, "mallory", &mallory, "registry:catalog:*").is_empty(), "admin from outside");
    assert!(access(&server, "mallory", &mallory, PUSH_PULL).is_empty(), "a role from outside");
    let shown = ldap_test(&server, &env, "mallory", Some(&mallory));
    assert!(shown.stdout.contains("0 found"), "{shown}");
}

#[test]
fn dn_grants_and_admin_groups_match_whatever_escapes_the_directory_uses() {
    // RFC 4514 lets one DN be written several ways: `\,` or `\2C` or `\2c`, `é` or `\C3\A9`.
    // Active Directory prints character escapes, OpenLDAP hex; admins copy whichever they see.
    let slapd = Slapd::start(SlapdOptions::default());
    populate(&slapd);
    set_descriptions(&slapd, "alice", &[&format!("CN=Smith\\, Team,OU=Groups,{BASE_DN}")]);
    set_descriptions(&slapd, "bob", &[&format!("cn=caf\\c3\\a9,ou=groups,{BASE_DN}")]);
    set_descriptions(&slapd, "carol", &[&format!("CN=Registry\\+Admins,OU=Groups,{BASE_DN}")]);
    let mut env = verbatim_member_of(&slapd);
    env.push(("PORTCULLIS_LDAP__ADMIN_GROUPS".into(), format!("cn=registry\\2badmins,ou=groups,{BASE_DN}")));
    let server = Portcullis::start_with(&env);
    server.create_project("team", false);
    let smith = format!("cn=smith\\2C team,ou=groups,{BASE_DN}");
    server.ok(&["member", "add", "team", "--group", &smith, "--role", "developer"]);
    server.ok(&[
        "member",
        "add",
        "team",
        "--group",
        &format!("CN=Café,OU=Groups,{BASE_DN}"),
        "--role",
        "guest",
    ]);
    assert_eq!(access(&server, "alice", &password("alice"), PUSH_PULL), ["repository:team/app:pull,push"]);
    assert_eq!(access(&server, "bob", &password("bob"), PUSH_PULL), ["repository:team/app:pull"]);
    assert_eq!(access(&server, "carol", &password("carol"), "registry:catalog:*"), ["registry:catalog:*"]);
    // A grant is removed in any spelling of its DN.
    server.ok(&["member", "remove", "team", "--group", &format!("CN=Smith\\, Team,OU=Groups,{BASE_DN}")]);
    assert!(access(&server, "alice", &password("alice"), PUSH_PULL).is_empty());
}

#[test]
fn weaker_directory_settings_warn_at_start_and_keep_working() {
    let slapd = Slapd::start(SlapdOptions { memberof: true, tls: true, ..Default::default() });
    populate(&slapd);
    let admin_dn = format!("cn=registry-admins,ou=groups,{BASE_DN}");
    // Plain ldap://, member_of without group_base_dn, an admin group and a grant by name: each
    // weaker than its alternative, each warned about, none refused (review defects 4 and 18).
    let admin = Admin::with_settings(&ldap_env(
        &slapd.url(),
        &[
            ("GROUP_MEMBERSHIP", "member_of"),
            ("GROUP_BASE_DN", ""),
            ("ADMIN_GROUPS", &format!("registry-admins; {admin_dn}")),
        ],
    ));
    admin.create_project("team", false);
    let by_name = admin.cli(&["member", "add", "team", "--group", "developers", "--role", "developer"], None);
    by_name.assert_success();
    assert!(by_name.stderr.contains("warning") && by_name.stderr.contains("by DN"), "{by_name}");
    let by_dn = format!("cn=readers,ou=groups,{BASE_DN}");
    let quiet = admin.cli(&["member", "add", "team", "--group", &by_dn, "--role", "guest"], None);
    quiet.assert_success();
    assert!(!quiet.stderr.contains("warning"), "a DN grant needs no warning: {quiet}");

    let server = Portcullis::start_on(admin);
    let log = server.log();
    let warnings: Vec<&str> = log.lines().filter(|line| line.contains("WARN")).collect();
    let warned = |needle: &str| warnings.iter().filter(|line| line.contains(needle)).count();
    assert_eq!(warned(&slapd.url()), 1, "one line names the plain URL:\n{log}");
    assert_eq!(warned("\"registry-admins\""), 1, "the admin group by name:\n{log}");
    assert_eq!(warned(&admin_dn), 0, "not the admin group by DN:\n{log}");
    assert_eq!(warned("developers"), 1, "the grant by name:\n{log}");
    assert_eq!(warned("without group_base_dn"), 1, "member_of without a base:\n{log}");
    assert_eq!(access(&server, "alice", &password("alice"), PUSH_PULL), ["repository:team/app:pull,push"]);
    assert_eq!(access(&server, "carol", &password("carol"), "registry:catalog:*"), ["registry:catalog:*"]);
    // `ldap test` shows the same warnings.
    let shown = ldap_test(
        &server,
        &ldap_env(&slapd.url(), &[("GROUP_MEMBERSHIP", "member_of"), ("GROUP_BASE_DN", "")]),
        "alice",
        None,
    );
    assert!(shown.stdout.contains("warning") && shown.stdout.contains("StartTLS"), "{shown}");

    // The stronger forms start without a word.
    let ca = slapd.ca_cert_path().display().to_string();
    let server = Portcullis::start_with(&ldap_env(
        &slapd.url(),
        &[
            ("STARTTLS", "true"),
            ("CA_FILE", &ca),
            ("GROUP_MEMBERSHIP", "member_of"),
            ("ADMIN_GROUPS", &admin_dn),
        ],
    ));
    let log = server.log();
    assert!(!log.lines().any(|line| line.contains("WARN") && line.contains("ldap")), "{log}");
}
