//! The `[ldap]` section: how to reach an LDAP directory or Active Directory, find a user's entry,
//! resolve their groups, and which groups make system admins.
//!
//! Every key has a default that suits OpenLDAP with `inetOrgPerson` users and `groupOfNames`
//! groups, so a minimal section names only the URL and base DNs. The logic using these keys lives
//! in `authn::ldap`; this file only describes and checks them, so that a mistake (a filter
//! without parentheses, StartTLS on an `ldaps://` URL) stops the server at start instead of
//! failing every login later.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

use super::ConfigError;
use crate::dn::looks_like_dn;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap://host[:port]` or `ldaps://host[:port]` (TLS from the first byte).
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before anything is sent, so that the search
    /// account's and users' passwords never cross the network in clear. Plain `ldap://` without
    /// it still works, with a warning at start.
    pub starttls: bool,
    /// PEM file of the CA certificates that may sign the directory's certificate; defaults to the
    /// system's trusted roots.
    pub ca_file: Option<PathBuf>,
    /// Check the directory's certificate and name. Turning this off lets anyone on the path read
    /// every password; it exists for test directories only.
    pub verify_certificate: bool,
    /// Seconds one login may spend with the directory in all (connect, search, bind, groups).
    /// Past it the login fails with 503, so a hanging directory never hangs a client.
    pub timeout_secs: u64,
    /// DN of the search account; empty for an anonymous search.
    pub bind_dn: String,
    /// The search account's password (better: `PORTCULLIS_LDAP__BIND_PASSWORD` or
    /// `bind_password_file`, to keep it out of the config file).
    pub bind_password: Option<String>,
    /// File holding the search account's password (trailing newline ignored), e.g. a mounted
    /// secret.
    pub bind_password_file: Option<PathBuf>,
    /// Where user entries are searched.
    pub user_base_dn: String,
    /// `sub` (the whole subtree, default) or `one` (direct children only).
    pub user_scope: SearchScope,
    /// Extra conditions an entry must meet to log in, ANDed with the login name match, e.g.
    /// `(objectClass=inetOrgPerson)` or, for Active Directory, enabled accounts only.
    pub user_filter: Option<String>,
    /// The attribute holding the login name: `uid` (OpenLDAP), `sAMAccountName` or
    /// `userPrincipalName` (Active Directory), `cn`, `mail`... Its value in the entry becomes the
    /// Portcullis user name.
    pub login_attribute: String,
    /// An attribute with the user's e-mail address, shown by `portcullis ldap test`.
    pub email_attribute: Option<String>,
    /// Where groups are searched (`member` and `member_uid` modes). With `member_of`, only groups
    /// below it count; without it every group on the entry counts (warned about at start).
    pub group_base_dn: Option<String>,
    /// `sub` (default) or `one`, for the group search.
    pub group_scope: SearchScope,
    /// Extra conditions a group entry must meet, e.g. `(objectClass=groupOfNames)`.
    pub group_filter: Option<String>,
    /// The attribute naming a group (`cn`); grants and admin groups may use this name or the DN.
    pub group_name_attribute: String,
    /// How a user's groups are found; see [`GroupMembership`].
    pub group_membership: GroupMembership,
    /// The attribute that links user and group; defaults per mode to `memberOf` (on the user
    /// entry), `member` (on the group: `uniqueMember` for `groupOfUniqueNames`) or `memberUid`.
    pub membership_attribute: Option<String>,
    /// Groups whose members are system admins: every project and the catalog. By DN; a name
    /// (no `=`) matches every group of that name and is warned about at start. From the
    /// environment: one group, or several separated by `;`.
    #[serde(deserialize_with = "one_or_many")]
    pub admin_groups: Vec<String>,
    /// Seconds a successful directory login (and its groups) is remembered, so that the several
    /// token requests of one `docker push` cost one bind. 0 disables it. Failures are never
    /// remembered.
    pub cache_secs: u64,
    /// Which source decides first for a name that both could know.
    pub order: SourceOrder,
    /// Seconds a directory user's refresh tokens and personal tokens are trusted on the last
    /// directory check (a login or a re-check). Past it, the next use looks the entry up again
    /// by DN first: a user deleted, disabled or filtered out in the directory loses every
    /// credential within this time, and changed groups apply. At least 1.
    pub revalidate_secs: u64,
    /// Seconds past the last successful check that such credentials keep working while the
    /// directory cannot answer; after it they get 503 until it answers again. An outage of
    /// the directory then does not stop CI at once, and does not keep an offboarded user in
    /// for ever either.
    pub revalidate_grace_secs: u64,
}

/// How far below a base DN a search reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchScope {
    /// The base's direct children only.
    One,
    /// The whole subtree below the base.
    Sub,
}

/// Where the directory records who is in which group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupMembership {
    /// The user entry lists its groups' DNs (`memberOf`): Active Directory, and OpenLDAP with the
    /// memberOf overlay. No group search needed.
    MemberOf,
    /// Group entries list their members' DNs (`member` of `groupOfNames`, `uniqueMember` of
    /// `groupOfUniqueNames`): works on every directory, overlay or not.
    Member,
    /// Group entries list their members' login names (`memberUid` of `posixGroup`).
    MemberUid,
}

/// The order in which the two user sources are asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceOrder {
    /// A name that is a database user is checked against its password hash only, and the
    /// directory is never asked for it: the bootstrap admin and other local accounts keep working
    /// when the directory is down, and a directory entry cannot take over a local account.
    DatabaseFirst,
    /// The directory decides for every name it has an entry for (its password wins, also for a
    /// database user of the same name); names it does not know, or every name while it is
    /// unreachable, fall back to database users.
    DirectoryFirst,
}

impl Default for LdapConfig {
    fn default() -> Self {
        LdapConfig {
            url: String::new(),
            starttls: false,
            ca_file: None,
            verify_certificate: true,
            timeout_secs: 5,
            bind_dn: String::new(),
            bind_password: None,
            bind_password_file: None,
            user_base_dn: String::new(),
            user_scope: SearchScope::Sub,
            user_filter: None,
            login_attribute: "uid".to_string(),
            email_attribute: None,
            group_base_dn: None,
            group_scope: SearchScope::Sub,
            group_filter: None,
            group_name_attribute: "cn".to_string(),
            group_membership: GroupMembership::Member,
            membership_attribute: None,
            admin_groups: Vec::new(),
            cache_secs: 60,
            order: SourceOrder::DatabaseFirst,
            revalidate_secs: 300,
            revalidate_grace_secs: 3600,
        }
    }
}

impl LdapConfig {
    /// Checks what can be checked without the directory.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(format!("ldap: {message}")));
        let scheme = self.url.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("ldap") => {}
            Some("ldaps") if self.starttls => {
                return invalid("starttls is for ldap:// URLs; an ldaps:// URL is TLS already".into());
            }
            Some("ldaps") => {}
            _ => return invalid(format!("url {:?} must start with ldap:// or ldaps://", self.url)),
        }
        let host = self.url.split_once("://").map(|(_, rest)| rest.split('/').next().unwrap_or(""));
        if host.is_none_or(|host| host.is_empty() || host.starts_with(':')) {
            return invalid(format!(
                "url {:?} must name the directory's host, as in ldap://ldap.example.com",
                self.url
            ));
        }
        if self.user_base_dn.trim().is_empty() {
            return invalid("user_base_dn must name where user entries are".into());
        }
        if self.timeout_secs == 0 {
            return invalid("timeout_secs must be at least 1".into());
        }
        if self.revalidate_secs == 0 {
            return invalid(
                "revalidate_secs must be at least 1 (credentials are re-checked this often)".into(),
            );
        }
        if self.bind_password.is_some() && self.bind_password_file.is_some() {
            return invalid("set bind_password or bind_password_file, not both".into());
        }
        let attribute_ok = |name: &str| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ';')
        };
        for (key, value) in [
            ("login_attribute", Some(&self.login_attribute)),
            ("group_name_attribute", Some(&self.group_name_attribute)),
            ("email_attribute", self.email_attribute.as_ref()),
        ] {
            if let Some(value) = value.filter(|value| !attribute_ok(value)) {
                return invalid(format!("{key} {value:?} is not an attribute name"));
            }
        }
        // The membership attribute may carry a matching rule, as Active Directory's nested-group
        // search does: `member:1.2.840.113556.1.4.1941:`.
        if let Some(value) = &self.membership_attribute {
            let (attribute, rule) = value.split_once(':').unwrap_or((value, ""));
            if !attribute_ok(attribute) || !rule.chars().all(|c| c.is_ascii_digit() || c == '.' || c == ':') {
                return invalid(format!("membership_attribute {value:?} is not an attribute name"));
            }
        }
        if self.group_membership == GroupMembership::MemberOf && self.group_filter.is_some() {
            return invalid(
                "group_filter applies to group searches; member_of mode reads no group entry".into(),
            );
        }
        for (key, filter) in [("user_filter", &self.user_filter), ("group_filter", &self.group_filter)] {
            if let Some(filter) = filter {
                if !(filter.starts_with('(') && filter.ends_with(')')) || ldap3::parse_filter(filter).is_err()
                {
                    return invalid(format!(
                        "{key} {filter:?} is not an LDAP filter like (objectClass=person)"
                    ));
                }
            }
        }
        let needs_group_base = self.group_membership != GroupMembership::MemberOf;
        if needs_group_base && self.group_base_dn.as_deref().is_none_or(|dn| dn.trim().is_empty()) {
            return invalid(
                "group_base_dn is needed to search groups (or use group_membership = \"member_of\")".into(),
            );
        }
        Ok(())
    }

    /// What is allowed but weaker than its alternative, one sentence each, for the server to log
    /// at start and `portcullis ldap test` to print. (Refusing these would stop configurations
    /// that work today; each is a choice an operator should make knowingly.)
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.url.to_ascii_lowercase().starts_with("ldap://") && !self.starttls {
            warnings.push(format!(
                "directory {} is plain LDAP without StartTLS: the search account's and users' \
                 passwords cross the network in clear (set starttls = true, or use ldaps://)",
                self.url
            ));
        }
        if self.group_membership == GroupMembership::MemberOf
            && self.group_base_dn.as_deref().is_none_or(|dn| dn.trim().is_empty())
        {
            warnings.push(
                "group_membership = \"member_of\" without group_base_dn: every group on a user's entry \
                 counts wherever it is in the directory, so whoever may create a group anywhere can \
                 name it like a granted one (set group_base_dn)"
                    .to_string(),
            );
        }
        for group in self.admin_groups.iter().filter(|group| !looks_like_dn(group)) {
            warnings.push(format!(
                "admin_groups names {group:?} by name: members of any group called that are system \
                 admins, so whoever may create or join such a group becomes one (name it by its DN)"
            ));
        }
        warnings
    }

    /// The attribute linking users and groups for the configured membership mode.
    pub fn membership_attribute(&self) -> &str {
        match (&self.membership_attribute, self.group_membership) {
            (Some(attribute), _) => attribute,
            (None, GroupMembership::MemberOf) => "memberOf",
            (None, GroupMembership::Member) => "member",
            (None, GroupMembership::MemberUid) => "memberUid",
        }
    }
}

/// Accepts a list, or one string holding one item or several separated by `;` (DNs contain
/// commas, so commas cannot separate them).
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize, Serialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(text) => {
            text.split(';').map(str::trim).filter(|item| !item.is_empty()).map(str::to_string).collect()
        }
        OneOrMany::Many(items) => items,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(toml: &str, environment: &[(&str, &str)]) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, toml).unwrap();
        let environment = environment.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(Some(&path), environment).map_err(|error| error.to_string())
    }

    const MINIMAL: &str =
        "[ldap]\nurl = \"ldap://127.0.0.1:389\"\nuser_base_dn = \"ou=people,dc=example,dc=org\"\n\
                           group_base_dn = \"ou=groups,dc=example,dc=org\"\n";

    #[test]
    fn no_section_means_no_directory() {
        assert!(load("", &[]).unwrap().ldap.is_none());
    }

    #[test]
    fn minimal_section_gets_openldap_defaults() {
        let ldap = load(MINIMAL, &[]).unwrap().ldap.unwrap();
        assert_eq!(ldap.login_attribute, "uid");
        assert_eq!(ldap.membership_attribute(), "member");
        assert_eq!((ldap.timeout_secs, ldap.cache_secs), (5, 60));
        assert_eq!(ldap.order, super::SourceOrder::DatabaseFirst);
        assert!(ldap.verify_certificate && !ldap.starttls);
    }

    #[test]
    fn environment_alone_can_configure_the_directory() {
        let config = load(
            "",
            &[
                ("PORTCULLIS_LDAP__URL", "ldaps://dc1.corp.example"),
                ("PORTCULLIS_LDAP__USER_BASE_DN", "DC=corp,DC=example"),
                ("PORTCULLIS_LDAP__GROUP_MEMBERSHIP", "member_of"),
                ("PORTCULLIS_LDAP__BIND_PASSWORD", "123456"),
                ("PORTCULLIS_LDAP__ADMIN_GROUPS", "CN=Registry Admins,OU=Groups,DC=corp,DC=example; ops"),
            ],
        )
        .unwrap();
        let ldap = config.ldap.unwrap();
        assert_eq!(ldap.bind_password.as_deref(), Some("123456"), "a numeric password stays a string");
        assert_eq!(ldap.admin_groups, ["CN=Registry Admins,OU=Groups,DC=corp,DC=example", "ops"]);
        assert_eq!(ldap.membership_attribute(), "memberOf");
    }

    /// Review defect 13: `0123` became `123` and `+42` became `42`, so the search account's bind
    /// failed. Text keys keep the variable's text exactly; number keys still take numbers.
    #[test]
    fn environment_values_take_the_type_of_their_key() {
        for password in ["0123", "+42", "1e3", "true", " 7 ", "0x10", "-0"] {
            let environment = [
                ("PORTCULLIS_LDAP__URL", "ldap://dc1.corp.example"),
                ("PORTCULLIS_LDAP__USER_BASE_DN", "DC=corp,DC=example"),
                ("PORTCULLIS_LDAP__BIND_PASSWORD", password),
                ("PORTCULLIS_LDAP__BIND_DN", "12"),
                ("PORTCULLIS_LDAP__TIMEOUT_SECS", "9"),
                ("PORTCULLIS_LDAP__STARTTLS", "true"),
                ("PORTCULLIS_LDAP__GROUP_MEMBERSHIP", "member_of"),
            ];
            let ldap = load("", &environment).unwrap().ldap.unwrap();
            assert_eq!(ldap.bind_password.as_deref(), Some(password));
            assert_eq!(ldap.bind_dn, "12");
            assert_eq!((ldap.timeout_secs, ldap.starttls), (9, true));
        }
        let wrong = load("", &[("PORTCULLIS_TOKEN__EXPIRES_IN", "ten")]).unwrap_err();
        assert!(wrong.contains("PORTCULLIS_TOKEN__EXPIRES_IN") && wrong.contains("whole number"), "{wrong}");
        let wrong = load("", &[("PORTCULLIS_LDAP__STARTTLS", "yes")]).unwrap_err();
        assert!(wrong.contains("true nor false"), "{wrong}");
        let issuer = load("", &[("PORTCULLIS_TOKEN__ISSUER", "007")]).unwrap();
        assert_eq!(issuer.token.issuer, "007");
    }

    #[test]
    fn mistakes_are_refused_at_start() {
        let cases = [
            ("url = \"http://x\"", "ldap://"),
            ("url = \"ldap://\"", "host"),
            ("starttls = true\nurl = \"ldaps://x\"", "starttls"),
            ("user_filter = \"objectClass=person\"", "user_filter"),
            ("user_filter = \"(objectClass=person\"", "user_filter"),
            ("login_attribute = \"uid)(x\"", "login_attribute"),
            ("timeout_secs = 0", "timeout_secs"),
            ("revalidate_secs = 0", "revalidate_secs"),
            ("group_membership = \"member_of\"\ngroup_filter = \"(objectClass=group)\"", "group_filter"),
            ("bogus = 1", "bogus"),
        ];
        for (extra, expected) in cases {
            // TOML refuses duplicate keys, so the url is added only where the case does not set one.
            let toml = format!("[ldap]\nuser_base_dn = \"dc=x\"\ngroup_base_dn = \"dc=x\"\n{extra}\n");
            let toml = if extra.starts_with("url") || extra.contains("\nurl") {
                toml
            } else {
                toml.replace("[ldap]\n", "[ldap]\nurl = \"ldap://h\"\n")
            };
            let error = load(&toml, &[]).expect_err(extra);
            assert!(error.contains(expected), "{extra}: {error}");
        }
        let error = load("[ldap]\nurl = \"ldap://h\"\nuser_base_dn = \"dc=x\"\n", &[]).unwrap_err();
        assert!(error.contains("group_base_dn"), "{error}");
    }

    #[test]
    fn example_configs_are_valid() {
        for example in [
            include_str!("../../examples/ldap-openldap.toml"),
            include_str!("../../examples/ldap-active-directory.toml"),
        ] {
            let ldap = load(example, &[]).unwrap_or_else(|error| panic!("{error}")).ldap.unwrap();
            assert!(ldap.url.starts_with("ldap"));
        }
    }

    #[test]
    fn weaker_settings_are_warned_about_not_refused() {
        let warnings = |toml: &str| load(toml, &[]).unwrap().ldap.unwrap().warnings();
        let plain = warnings(MINIMAL);
        assert_eq!(plain.len(), 1, "{plain:?}");
        assert!(plain[0].contains("ldap://127.0.0.1:389") && plain[0].contains("StartTLS"), "{plain:?}");
        assert!(warnings(&format!("{MINIMAL}starttls = true\n")).is_empty());
        let ldaps = MINIMAL.replace("ldap://", "ldaps://");
        assert!(warnings(&ldaps).is_empty());
        let by_name = warnings(&format!("{ldaps}admin_groups = [\"admins\", \"cn=admins,dc=x\"]\n"));
        assert_eq!(by_name.len(), 1, "only the name: {by_name:?}");
        assert!(by_name[0].contains("\"admins\""), "{by_name:?}");
        let no_base = ldaps.replace("group_base_dn = \"ou=groups,dc=example,dc=org\"\n", "");
        let no_base = warnings(&format!("{no_base}group_membership = \"member_of\"\n"));
        assert!(no_base.len() == 1 && no_base[0].contains("group_base_dn"), "{no_base:?}");
    }

    #[test]
    fn nested_group_rule_is_accepted_for_active_directory() {
        let toml = format!("{MINIMAL}membership_attribute = \"member:1.2.840.113556.1.4.1941:\"\n");
        assert!(load(&toml, &[]).is_ok());
    }
}
