//! Guessing a directory user's password through Portcullis never locks them out of the
//! directory: a real slapd with the ppolicy overlay locks an account after 3 failed binds (as
//! Active Directory sites do), and a guessing loop from many addresses stays below that.

use std::net::Ipv4Addr;

use crate::support::binary::Portcullis;
use crate::support::http::{basic, send_raw_from};
use crate::support::slapd::{Slapd, SlapdOptions, ADMIN_DN, ADMIN_PASSWORD, BASE_DN};

fn login_from(server: &Portcullis, source: Ipv4Addr, user: &str, password: &str) -> u16 {
    let request = format!(
        "GET /token?service=registry.test HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {}\r\n\r\n",
        basic(user, password)
    );
    send_raw_from(source, server.addr(), request.as_bytes()).status
}

#[test]
fn a_guessing_loop_never_locks_the_directory_account() {
    let slapd = Slapd::start(SlapdOptions { lockout_after: Some(3), ..Default::default() });
    let dn = format!("uid=erin,ou=people,{BASE_DN}");
    let ldif = format!(
        "dn: ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: {dn}\nobjectClass: inetOrgPerson\nuid: erin\ncn: erin\nsn: erin\nuserPassword: erin-directory-pw\n"
    );
    slapd.ldapadd(&ldif).assert_success();
    let settings = [
        ("PORTCULLIS_LDAP__URL", slapd.url()),
        ("PORTCULLIS_LDAP__USER_BASE_DN", format!("ou=people,{BASE_DN}")),
        ("PORTCULLIS_LDAP__BIND_DN", ADMIN_DN.to_string()),
        ("PORTCULLIS_LDAP__BIND_PASSWORD", ADMIN_PASSWORD.to_string()),
        ("PORTCULLIS_LDAP__CACHE_SECS", "0".to_string()),
        ("PORTCULLIS_LDAP__GROUP_MEMBERSHIP", "member_of".to_string()),
    ];
    let server = Portcullis::start_with(&settings);
    // Erin logs in from her own address: it is a known client from now on.
    let own = Ipv4Addr::new(127, 0, 2, 1);
    assert_eq!(login_from(&server, own, "erin", "erin-directory-pw"), 200);
    // The attack: wrong passwords for erin from 40 addresses, 5 each.
    let mut statuses = std::collections::BTreeMap::new();
    for host in 10..50u8 {
        for guess in 0..5 {
            let status =
                login_from(&server, Ipv4Addr::new(127, 0, 1, host), "erin", &format!("guess-{guess}"));
            *statuses.entry(status).or_insert(0) += 1;
        }
    }
    assert!(statuses.contains_key(&429), "the directory is spared once the budget is spent: {statuses:?}");
    assert!(!statuses.contains_key(&200), "{statuses:?}");
    // The directory never locked her: she still binds there, and no lock time was set.
    slapd.ldapwhoami(&dn, "erin-directory-pw").assert_success();
    let entry = slapd.ldapsearch(&dn, "(objectClass=*)", &["pwdAccountLockedTime", "pwdFailureTime"]);
    entry.assert_success();
    assert!(!entry.stdout.contains("pwdAccountLockedTime"), "locked in the directory:\n{entry}");
    // A new address must wait while the failures stand...
    assert_eq!(login_from(&server, Ipv4Addr::new(127, 0, 2, 2), "erin", "erin-directory-pw"), 429);
    // ...but she logs in through Portcullis from her own address, which starts the count afresh.
    assert_eq!(login_from(&server, own, "erin", "erin-directory-pw"), 200);
    assert_eq!(login_from(&server, Ipv4Addr::new(127, 0, 2, 2), "erin", "erin-directory-pw"), 200);
}

#[test]
fn the_policy_does_lock_after_three_direct_failures() {
    // The control: the same directory, guessed at directly, locks the account, so the test
    // above proves something.
    let slapd = Slapd::start(SlapdOptions { lockout_after: Some(3), ..Default::default() });
    let dn = format!("uid=frank,ou=people,{BASE_DN}");
    let ldif = format!(
        "dn: ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: {dn}\nobjectClass: inetOrgPerson\nuid: frank\ncn: frank\nsn: frank\nuserPassword: frank-pw\n"
    );
    slapd.ldapadd(&ldif).assert_success();
    for _ in 0..3 {
        slapd.ldapwhoami(&dn, "wrong").assert_failure();
    }
    assert!(!slapd.ldapwhoami(&dn, "frank-pw").success(), "locked after 3 failures:\n{}", slapd.log());
}
