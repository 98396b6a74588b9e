//! The questions Portcullis asks a directory, each one function: who is this login name
//! ([`Directory::find_user`]), is this their password ([`Directory::check_password`]), which
//! groups are they in ([`Directory::groups_of`]), and is the entry recorded at a login still
//! there and usable ([`Directory::recheck`]).
//!
//! Every call takes the login's deadline, so that all of a login's round trips together stay
//! within `timeout_secs`. Entries are decoded here without ldap3's `SearchEntry::construct`, which
//! panics on an entry it cannot parse: what a server sends must never crash a request.

use crate::metrics::{metrics, DirectoryOperation};
use ldap3::asn1::{StructureTag, PL};
use ldap3::{Ldap, LdapError, ResultEntry, Scope, SearchOptions};
use tokio::time::Instant;

use super::connection::{describe_result, within, Connector};
use super::filter::and_filter;
use super::DirectoryError;
use crate::config::ldap::{GroupMembership, LdapConfig, SearchScope};
use crate::dn::{depth_below, first_rdn_value, group_key, is_within, GroupRef};

/// LDAP result codes Portcullis tells apart.
const SUCCESS: u32 = 0;
const SIZE_LIMIT_EXCEEDED: u32 = 4;
const NO_SUCH_OBJECT: u32 = 32;

/// Attributes that name an entry for good, whatever its DN: read with every user entry (both are
/// operational, so only when asked for). `objectGUID` is binary and kept as hex.
const ENTRY_ID_ATTRIBUTES: [&str; 2] = ["entryUUID", "objectGUID"];

/// What a re-check reads to tell a disabled or expired account: Active Directory's flags and
/// expiry, OpenLDAP ppolicy's lock, the shadow account expiry, 389 Directory Server's lock.
const DISABLE_ATTRIBUTES: [&str; 5] =
    ["userAccountControl", "pwdAccountLockedTime", "accountExpires", "shadowExpire", "nsAccountLock"];

/// Why the account of `entry` may not log in at `now`, if it may not: disabled, locked by an
/// administrator, or expired. (A lockout after failed binds is no reason: it ends by itself, and
/// an attacker could cause it.)
fn disabled(entry: &Entry, now: i64) -> Option<&'static str> {
    let disabled_by_ad = entry
        .values("userAccountControl")
        .iter()
        .any(|flags| flags.trim().parse::<u64>().is_ok_and(|flags| flags & AD_ACCOUNT_DISABLED != 0));
    if disabled_by_ad {
        return Some("the account is disabled (userAccountControl)");
    }
    if entry.values("pwdAccountLockedTime").iter().any(|time| time.trim() == PPOLICY_LOCKED_BY_ADMIN) {
        return Some("the account is locked by an administrator (pwdAccountLockedTime)");
    }
    if entry.values("nsAccountLock").iter().any(|lock| lock.trim().eq_ignore_ascii_case("true")) {
        return Some("the account is locked (nsAccountLock)");
    }
    expired(entry, now)
}

/// Why `entry` has expired at `now`, if it has: AD's `accountExpires` (FILETIME; 0 and the
/// largest value mean never) or `shadowExpire` (days since 1970; -1 means never).
fn expired(entry: &Entry, now: i64) -> Option<&'static str> {
    let first = |attribute: &str| entry.values(attribute).into_iter().next();
    let ad_expired = first("accountExpires")
        .filter(|value| value.trim() != i64::MAX.to_string())
        .and_then(|value| windows_file_time(&value))
        .is_some_and(|expires| expires <= now);
    if ad_expired {
        return Some("the account has expired (accountExpires)");
    }
    let shadow_expired = first("shadowExpire")
        .and_then(|value| value.trim().parse::<i64>().ok())
        .is_some_and(|days| days >= 0 && days * 86_400 <= now);
    shadow_expired.then_some("the account has expired (shadowExpire)")
}

/// Active Directory's `userAccountControl` bit for a disabled account (ACCOUNTDISABLE).
const AD_ACCOUNT_DISABLED: u64 = 0x2;
/// The `pwdAccountLockedTime` an OpenLDAP `ppolicy` administrator sets to lock an account for
/// good (a lockout after failed binds carries its time instead, and ends by itself).
const PPOLICY_LOCKED_BY_ADMIN: &str = "000001010000Z";
/// The BER tag of a SearchResultEntry (a SearchResultReference is 19 and is skipped).
const SEARCH_RESULT_ENTRY: u64 = 4;

/// A user's directory entry, as far as login needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    /// The entry's DN: what the user binds as, and what `member` groups list.
    pub dn: String,
    /// The login attribute's value as the directory spells it: the Portcullis user name, so that
    /// `Alice` and `alice` are one account.
    pub account: String,
    pub email: Option<String>,
    /// Raw values of the membership attribute on the entry (`memberOf` mode only).
    pub member_of: Vec<String>,
    /// How many values the login attribute has: more than one means the entry answers to
    /// several names, so a name alone cannot say which account it is.
    pub login_values: usize,
    /// The entry's own identifier, which no rename or move changes and no other entry ever
    /// gets (OpenLDAP's `entryUUID`, Active Directory's `objectGUID` in hex); `None` when the
    /// directory gives neither.
    pub entry_id: Option<String>,
    /// When the entry's password was last changed (OpenLDAP ppolicy's `pwdChangedTime`, Active
    /// Directory's `pwdLastSet`), Unix seconds; `None` when the directory does not say.
    pub password_changed_at: Option<i64>,
    /// Why the account may not log in (disabled, locked by an administrator, expired), if so:
    /// a login is refused even where the directory would accept the bind.
    pub disabled: Option<&'static str>,
}

/// One group the user is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The group entry's DN as the directory returned it.
    pub dn: String,
    /// The group's name attribute (or its DN's first RDN value when not read): text whoever
    /// created the group chose.
    pub name: String,
}

impl Group {
    /// The keys a grant or admin group may match: by DN and by name. Each is keyed as what it
    /// is: the name never as a DN, whatever text it holds.
    pub fn keys(&self) -> [String; 2] {
        [GroupRef::Dn(&self.dn).key(), GroupRef::Name(&self.name).key()]
    }
}

/// What the user search found.
#[derive(Debug)]
pub enum Lookup {
    Found(UserEntry),
    /// No entry matches: the directory does not know this name.
    Unknown,
    /// More than one entry matches: refused, since binding as either could be the wrong person.
    Ambiguous,
}

/// What a re-check by DN found.
#[derive(Debug)]
pub enum Recheck {
    /// The entry is there, within the user base, matches `user_filter`, still carries the login
    /// name, and is not disabled.
    Present(UserEntry),
    /// The entry is gone, moved out of the user base, filtered out by `user_filter`, no longer
    /// has that login name, or is disabled: its credentials must die.
    Absent(&'static str),
}

/// A configured directory: its settings and its connections.
pub struct Directory {
    pub(super) config: LdapConfig,
    pub(super) connector: Connector,
}

/// One decoded entry: its DN and attributes (names as the server spells them).
struct Entry {
    dn: String,
    attributes: Vec<(String, Vec<String>)>,
}

impl Entry {
    fn values(&self, attribute: &str) -> Vec<String> {
        self.attributes
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(attribute))
            .flat_map(|(_, values)| values.iter().cloned())
            .collect()
    }
}

impl Directory {
    pub fn new(config: &LdapConfig) -> Result<Directory, DirectoryError> {
        Ok(Directory { config: config.clone(), connector: Connector::new(config)? })
    }

    pub fn url(&self) -> &str {
        self.connector.url()
    }

    /// Opens (or reuses) the search account's connection: the first step of every login, alone
    /// here for `portcullis ldap test`.
    pub async fn connect(&self, deadline: Instant) -> Result<(), DirectoryError> {
        self.connector.search_connection(deadline).await.map(|_| ())
    }

    pub fn config(&self) -> &LdapConfig {
        &self.config
    }

    /// Searches the entry whose login attribute equals `login` (escaped: the name cannot change
    /// the filter's meaning).
    pub async fn find_user(&self, login: &str, deadline: Instant) -> Result<Lookup, DirectoryError> {
        let config = &self.config;
        let filter = and_filter(&config.login_attribute, login, config.user_filter.as_deref());
        let attributes = self.user_attributes();
        // Two are enough to know the name is ambiguous.
        let (entries, rc, text) = self
            .search(
                &Search {
                    base: &config.user_base_dn,
                    scope: ldap_scope(config.user_scope),
                    filter: &filter,
                    attributes: &attributes,
                    size_limit: 2,
                },
                deadline,
            )
            .await?;
        match rc {
            SUCCESS => {}
            SIZE_LIMIT_EXCEEDED => return Ok(Lookup::Ambiguous),
            _ => return Err(self.failed("the user search", rc, &text)),
        }
        let mut entries = entries;
        let entry = match (entries.pop(), entries.is_empty()) {
            (Some(entry), true) => entry,
            (None, _) => return Ok(Lookup::Unknown),
            (Some(_), false) => return Ok(Lookup::Ambiguous),
        };
        Ok(Lookup::Found(self.user_entry(entry, login)))
    }

    /// The attributes a user search reads.
    fn user_attributes(&self) -> Vec<String> {
        let config = &self.config;
        let mut attributes = vec![config.login_attribute.clone()];
        attributes.extend(ENTRY_ID_ATTRIBUTES.map(String::from));
        attributes.extend(["pwdChangedTime".to_string(), "pwdLastSet".to_string()]);
        attributes.extend(DISABLE_ATTRIBUTES.map(String::from));
        attributes.extend(config.email_attribute.clone());
        if config.group_membership == GroupMembership::MemberOf {
            attributes.push(config.membership_attribute().to_string());
        }
        attributes
    }

    /// A found entry as login needs it; `login` picks the account among several values of the
    /// login attribute (up to case).
    fn user_entry(&self, entry: Entry, login: &str) -> UserEntry {
        let config = &self.config;
        let accounts = entry.values(&config.login_attribute);
        let account = accounts
            .iter()
            .find(|value| value.eq_ignore_ascii_case(login))
            .or(accounts.first())
            .cloned()
            .unwrap_or_else(|| login.to_string());
        let email =
            config.email_attribute.as_ref().and_then(|attribute| entry.values(attribute).into_iter().next());
        let member_of = match config.group_membership {
            GroupMembership::MemberOf => entry.values(config.membership_attribute()),
            _ => Vec::new(),
        };
        let entry_id = ENTRY_ID_ATTRIBUTES
            .iter()
            .find_map(|attribute| entry.values(attribute).into_iter().next())
            .map(|id| id.trim().to_ascii_lowercase());
        let password_changed_at = entry
            .values("pwdChangedTime")
            .first()
            .and_then(|time| generalized_time(time))
            .or_else(|| entry.values("pwdLastSet").first().and_then(|time| windows_file_time(time)));
        let disabled = disabled(&entry, crate::store::now());
        UserEntry {
            disabled,
            dn: entry.dn,
            account,
            email,
            member_of,
            login_values: accounts.len(),
            entry_id,
            password_changed_at,
        }
    }

    /// Looks up the entry `dn` again with the search account, for the credentials of the user
    /// `account` it was recorded for: no password is involved, so this is what keeps identity
    /// tokens and personal tokens honest after a user is offboarded.
    pub async fn recheck(
        &self,
        dn: &str,
        account: &str,
        deadline: Instant,
    ) -> Result<Recheck, DirectoryError> {
        let config = &self.config;
        let depth = depth_below(dn, &config.user_base_dn);
        let in_base = match config.user_scope {
            SearchScope::One => depth == Some(1),
            SearchScope::Sub => depth.is_some_and(|depth| depth >= 1),
        };
        if !in_base {
            return Ok(Recheck::Absent("the entry is no longer within user_base_dn"));
        }
        let filter = config.user_filter.clone().unwrap_or_else(|| "(objectClass=*)".to_string());
        let attributes = self.user_attributes();
        let (mut entries, rc, text) = self
            .search(
                &Search {
                    base: dn,
                    scope: Scope::Base,
                    filter: &filter,
                    attributes: &attributes,
                    size_limit: 1,
                },
                deadline,
            )
            .await?;
        match rc {
            SUCCESS => {}
            NO_SUCH_OBJECT => return Ok(Recheck::Absent("the entry no longer exists")),
            _ => return Err(self.failed("the user re-check", rc, &text)),
        }
        let Some(entry) = entries.pop() else {
            return Ok(Recheck::Absent("the entry no longer matches user_filter"));
        };
        if let Some(reason) = disabled(&entry, crate::store::now()) {
            return Ok(Recheck::Absent(reason));
        }
        if !entry.values(&config.login_attribute).iter().any(|value| value.eq_ignore_ascii_case(account)) {
            return Ok(Recheck::Absent("the entry no longer has this login name"));
        }
        Ok(Recheck::Present(self.user_entry(entry, account)))
    }

    /// Binds as `dn` with `password` on a connection of its own. `Ok(false)` for a refused bind
    /// (wrong password, locked account); errors only for faults of the directory or network.
    pub async fn check_password(
        &self,
        dn: &str,
        password: &str,
        deadline: Instant,
    ) -> Result<bool, DirectoryError> {
        // An empty password would make a simple bind "unauthenticated" and succeed.
        if password.is_empty() || dn.is_empty() {
            return Ok(false);
        }
        let mut ldap = self.connector.open(deadline).await?;
        let binding = within(deadline, self.url(), ldap.simple_bind(dn, password));
        let result = metrics().time_directory(DirectoryOperation::bind, binding).await;
        let _ = tokio::time::timeout_at(deadline, ldap.unbind()).await;
        let result = result?;
        if result.rc != SUCCESS {
            tracing::info!(directory = %self.url(), %dn, result = %describe_result(result.rc, &result.text), "directory refused the bind");
        }
        Ok(result.rc == SUCCESS)
    }

    /// The user's groups, found the configured way.
    pub async fn groups_of(&self, user: &UserEntry, deadline: Instant) -> Result<Vec<Group>, DirectoryError> {
        let config = &self.config;
        let member_value = match config.group_membership {
            GroupMembership::MemberOf => return Ok(self.groups_from_member_of(user)),
            GroupMembership::Member => &user.dn,
            GroupMembership::MemberUid => &user.account,
        };
        let Some(base) = config.group_base_dn.as_deref() else { return Ok(Vec::new()) };
        let filter = and_filter(config.membership_attribute(), member_value, config.group_filter.as_deref());
        let attributes = [config.group_name_attribute.clone()];
        let (entries, rc, text) = self
            .search(
                &Search {
                    base,
                    scope: ldap_scope(config.group_scope),
                    filter: &filter,
                    attributes: &attributes,
                    size_limit: 0,
                },
                deadline,
            )
            .await?;
        match rc {
            SUCCESS => {}
            SIZE_LIMIT_EXCEEDED => {
                tracing::warn!(directory = %self.url(), user = %user.dn, "the group search hit the server's size limit; some groups are missing");
            }
            _ => return Err(self.failed("the group search", rc, &text)),
        }
        let mut groups: Vec<Group> = entries
            .into_iter()
            .filter_map(|entry| {
                let name = entry
                    .values(&config.group_name_attribute)
                    .into_iter()
                    .next()
                    .or_else(|| first_rdn_value(&entry.dn))?;
                Some(Group { dn: entry.dn, name })
            })
            .collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(groups)
    }

    /// Groups listed on the user entry, limited to `group_base_dn` when set; named by their DN's
    /// first RDN value, as no group entry is read.
    fn groups_from_member_of(&self, user: &UserEntry) -> Vec<Group> {
        let base = self.config.group_base_dn.as_deref().filter(|base| !base.trim().is_empty());
        let mut groups: Vec<Group> = user
            .member_of
            .iter()
            .filter(|dn| base.is_none_or(|base| is_within(dn, base)))
            .filter_map(|dn| Some(Group { dn: dn.clone(), name: first_rdn_value(dn)? }))
            .collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        groups
    }

    /// Whether any of `groups` is a configured admin group.
    pub fn is_admin(&self, groups: &[Group]) -> bool {
        let admin_keys: Vec<String> = self.config.admin_groups.iter().map(|group| group_key(group)).collect();
        groups.iter().flat_map(Group::keys).any(|key| admin_keys.contains(&key))
    }

    /// A search on the search account's connection, retried once on a fresh connection when a
    /// kept one turns out to be broken (the directory restarted, a firewall dropped it).
    async fn search(
        &self,
        search: &Search<'_>,
        deadline: Instant,
    ) -> Result<(Vec<Entry>, u32, String), DirectoryError> {
        loop {
            let (ldap, reused) = self.connector.search_connection(deadline).await?;
            match self.search_on(ldap, search, deadline).await {
                Ok(found) => return Ok(found),
                Err(error) => {
                    self.connector.discard_search_connection();
                    if !(reused && matches!(error, DirectoryError::Unreachable { .. })) {
                        return Err(error);
                    }
                    tracing::debug!(directory = %self.url(), %error, "kept directory connection broke; reconnecting");
                }
            }
        }
    }

    async fn search_on(
        &self,
        mut ldap: Ldap,
        search: &Search<'_>,
        deadline: Instant,
    ) -> Result<(Vec<Entry>, u32, String), DirectoryError> {
        let searching = async {
            ldap.with_search_options(SearchOptions::new().sizelimit(search.size_limit));
            let result =
                ldap.search(search.base, search.scope, search.filter, search.attributes.to_vec()).await?;
            Ok::<_, LdapError>(result)
        };
        let result = metrics()
            .time_directory(DirectoryOperation::search, within(deadline, self.url(), searching))
            .await?;
        let entries = result.0.into_iter().filter_map(decode_entry).collect();
        Ok((entries, result.1.rc, result.1.text))
    }

    fn failed(&self, operation: &str, rc: u32, text: &str) -> DirectoryError {
        DirectoryError::Failed {
            url: self.url().to_string(),
            operation: operation.to_string(),
            reason: describe_result(rc, text),
        }
    }
}

/// One search: where, how deep, for what, which attributes, and at most how many entries (0: the
/// server's limit).
struct Search<'a> {
    base: &'a str,
    scope: Scope,
    filter: &'a str,
    attributes: &'a [String],
    size_limit: i32,
}

/// The configured depth as ldap3 names it.
fn ldap_scope(scope: SearchScope) -> Scope {
    match scope {
        SearchScope::One => Scope::OneLevel,
        SearchScope::Sub => Scope::Subtree,
    }
}

/// Decodes a SearchResultEntry; `None` for references and anything malformed.
fn decode_entry(entry: ResultEntry) -> Option<Entry> {
    let tag = entry.0;
    if tag.id != SEARCH_RESULT_ENTRY {
        return None;
    }
    let mut parts = constructed(tag)?.into_iter();
    let dn = text(parts.next()?)?;
    let mut attributes = Vec::new();
    for attribute in constructed(parts.next()?)? {
        let mut pieces = constructed(attribute)?.into_iter();
        let name = text(pieces.next()?)?;
        let values = constructed(pieces.next()?)?;
        let values = match name.eq_ignore_ascii_case("objectGUID") {
            true => values.into_iter().filter_map(hex).collect(),
            // Other binary values (certificates, photos) are not UTF-8 and not needed here.
            false => values.into_iter().filter_map(text).collect(),
        };
        attributes.push((name, values));
    }
    Some(Entry { dn, attributes })
}

fn constructed(tag: StructureTag) -> Option<Vec<StructureTag>> {
    match tag.payload {
        PL::C(children) => Some(children),
        PL::P(_) => None,
    }
}

/// An LDAP GeneralizedTime in UTC (`20261202154100Z`, maybe with a fraction) as Unix seconds.
fn generalized_time(text: &str) -> Option<i64> {
    let text = text.trim().strip_suffix('Z')?;
    let digits = text.split(['.', ',']).next()?;
    if digits.len() != 14 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| digits[range].parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(8..10)?, number(10..12)?, number(12..14)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Active Directory's FILETIME (100 ns units since 1601) as Unix seconds; `None` for 0 ("must
/// change at next logon") and nonsense.
fn windows_file_time(text: &str) -> Option<i64> {
    let ticks = text.trim().parse::<i64>().ok().filter(|&ticks| ticks > 0)?;
    Some(ticks / 10_000_000 - 11_644_473_600)
}

/// A binary value as lower-case hex.
fn hex(tag: StructureTag) -> Option<String> {
    match tag.payload {
        PL::P(bytes) => Some(bytes.iter().map(|byte| format!("{byte:02x}")).collect()),
        PL::C(_) => None,
    }
}

fn text(tag: StructureTag) -> Option<String> {
    match tag.payload {
        PL::P(bytes) => String::from_utf8(bytes).ok(),
        PL::C(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_change_times_read_as_unix_seconds() {
        assert_eq!(generalized_time("19700101000000Z"), Some(0));
        assert_eq!(generalized_time("20261202154100Z"), Some(1_796_226_060));
        assert_eq!(generalized_time("20261202154100.123Z"), Some(1_796_226_060));
        assert_eq!(generalized_time("20000229120000Z"), Some(951_825_600));
        for bad in ["", "2026", "20261302154100Z", "20261202154100", "2026120215410xZ"] {
            assert_eq!(generalized_time(bad), None, "{bad:?}");
        }
        assert_eq!(windows_file_time("116444736000000000"), Some(0));
        let entry = |attribute: &str, value: &str| Entry {
            dn: "uid=x".into(),
            attributes: vec![(attribute.to_string(), vec![value.to_string()])],
        };
        let now = 1_796_226_060;
        assert!(expired(&entry("accountExpires", "0"), now).is_none(), "never");
        assert!(expired(&entry("accountExpires", &i64::MAX.to_string()), now).is_none(), "never");
        assert!(expired(&entry("accountExpires", "116444736000000000"), now).is_some(), "1970");
        assert!(expired(&entry("shadowExpire", "-1"), now).is_none());
        assert!(expired(&entry("shadowExpire", "20000"), now).is_some(), "2024");
        assert!(expired(&entry("shadowExpire", "30000"), now).is_none(), "2052");
        assert_eq!(windows_file_time("0"), None);
        assert_eq!(windows_file_time("-5"), None);
    }
}
