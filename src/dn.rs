//! Distinguished names: one spelling for comparison, the first RDN's value, "within a base",
//! and the [`group_key`] directory groups are compared by.
//!
//! Shared vocabulary: the store keys group grants by it and the LDAP login computes it for the
//! groups it finds, so it belongs to neither. A key says whether it was made from a DN or from a
//! name, and that is decided by where the value came from ([`GroupRef`]). Groups come back as DNs whose spelling varies
//! (`CN=Devs, OU=Groups` vs `cn=devs,ou=groups`) and are granted roles by name or by DN, so both
//! sides are compared as a key. No mainstream crate parses RFC 4514 DNs; this is small and tested.

/// A directory group as something to compare: by its DN or by its name. Which one a value is
/// depends on where it came from, never on what it looks like, except for what an admin typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRef<'a> {
    /// An entry's DN, as the directory returned it (a group entry's DN, a `memberOf` value).
    Dn(&'a str),
    /// A group's name, read from an attribute (`cn`) or an RDN value. Whoever may create a group
    /// chooses it, so it can hold `=` and commas: it must never be read as a DN, or a group named
    /// `cn=registry-admins,ou=groups,...` would be the admin group of that DN.
    Name(&'a str),
}

impl<'a> GroupRef<'a> {
    /// What an admin typed (`member add --group`, `admin_groups`): a DN if it contains `=`, a
    /// name otherwise. Only the admin's own input is classified by its look.
    pub fn typed(text: &'a str) -> GroupRef<'a> {
        match looks_like_dn(text) {
            true => GroupRef::Dn(text),
            false => GroupRef::Name(text),
        }
    }

    /// The key it is compared by: `dn:` and the normalized DN, or `name:` and the lower-case
    /// name. The prefixes keep a name from ever matching a DN.
    pub fn key(self) -> String {
        match self {
            GroupRef::Dn(dn) => format!("dn:{}", normalize_dn(dn)),
            GroupRef::Name(name) => format!("name:{}", name.trim().to_lowercase()),
        }
    }
}

/// Whether an admin-typed `text` names a group by DN (`cn=devs,ou=groups,...`) rather than by its
/// plain name.
pub fn looks_like_dn(text: &str) -> bool {
    text.contains('=')
}

/// The key of a group an admin typed (a grant, an `admin_groups` entry): see [`GroupRef::typed`].
/// Groups the directory returned are keyed with [`GroupRef::Dn`] and [`GroupRef::Name`].
pub fn group_key(typed: &str) -> String {
    GroupRef::typed(typed.trim()).key()
}

/// A DN in one spelling: RDNs split on unescaped commas, white space around RDNs and around
/// their `=` removed, and all lower case (attribute types and the common string values compare
/// case-insensitively in every directory Portcullis targets).
pub fn normalize_dn(dn: &str) -> String {
    split_unescaped(dn, ',')
        .iter()
        .map(|rdn| match rdn.split_once('=') {
            Some((attribute, value)) => format!("{}={}", attribute.trim(), value.trim()),
            None => rdn.trim().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

/// The value of a DN's first RDN, unescaped: `Developers` for `CN=Developers,OU=Groups,...`. It is
/// the group's name in `member_of` mode, where no group entry is read.
pub fn first_rdn_value(dn: &str) -> Option<String> {
    let first = split_unescaped(dn, ',').into_iter().next()?;
    let (_, value) = first.split_once('=')?;
    let value = unescape_dn_value(value.trim());
    (!value.is_empty()).then_some(value)
}

/// Whether `dn` lies at or below `base` (both compared normalized).
pub fn is_within(dn: &str, base: &str) -> bool {
    let dn = normalize_dn(dn);
    let base = normalize_dn(base);
    dn == base || dn.ends_with(&format!(",{base}"))
}

/// Splits on `separator` where it is not escaped with a backslash.
fn split_unescaped(text: &str, separator: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for character in text.chars() {
        let current = parts.last_mut().expect("parts starts non-empty and only grows");
        if escaped {
            current.push(character);
            escaped = false;
        } else if character == '\\' {
            current.push(character);
            escaped = true;
        } else if character == separator {
            parts.push(String::new());
        } else {
            current.push(character);
        }
    }
    parts
}

/// Undoes RFC 4514 escapes in one RDN value: `\,` and other `\c` give `c`, `\XX` gives the byte.
fn unescape_dn_value(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'\\' && index + 1 < bytes.len() {
            let hex = bytes.get(index + 1..index + 3).and_then(|pair| std::str::from_utf8(pair).ok());
            match hex.and_then(|pair| u8::from_str_radix(pair, 16).ok()) {
                Some(byte) => {
                    out.push(byte);
                    index += 3;
                }
                None => {
                    out.push(bytes[index + 1]);
                    index += 2;
                }
            }
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_compare_in_one_spelling() {
        assert_eq!(
            normalize_dn("CN=Devs, OU=Groups ,DC=Example,DC=org"),
            "cn=devs,ou=groups,dc=example,dc=org"
        );
        assert_eq!(
            group_key("cn=Devs,ou=groups,dc=example,dc=org"),
            group_key("CN=devs, ou=Groups, dc=example, dc=org")
        );
        assert_eq!(group_key(" Developers "), "name:developers");
        assert_ne!(group_key("cn=x"), group_key("cnx"));
        assert_eq!(GroupRef::Name("Developers").key(), group_key("developers"));
        assert_eq!(GroupRef::Dn("CN=Devs,DC=org").key(), group_key("cn=devs,dc=org"));
        assert_eq!(normalize_dn("cn=a\\,b,dc=org"), "cn=a\\,b,dc=org", "escaped commas stay in their RDN");
    }

    #[test]
    fn a_name_is_never_a_dn_whatever_it_holds() {
        let admin_dn = "cn=registry-admins,ou=groups,dc=example,dc=org";
        assert_ne!(GroupRef::Name(admin_dn).key(), group_key(admin_dn));
        assert_ne!(GroupRef::Name(admin_dn).key(), GroupRef::Dn(admin_dn).key());
        assert_eq!(GroupRef::Name(admin_dn).key(), format!("name:{admin_dn}"));
        // The name of a group whose RDN value is a DN, as member_of mode reads it.
        let name = first_rdn_value("CN=CN\\=Registry Admins\\,OU\\=Groups,OU=Groups,DC=corp").unwrap();
        assert_eq!(name, "CN=Registry Admins,OU=Groups");
        assert_ne!(GroupRef::Name(&name).key(), group_key("CN=Registry Admins,OU=Groups"));
    }

    #[test]
    fn first_rdn_value_is_the_group_name() {
        assert_eq!(first_rdn_value("CN=Developers,OU=Groups,DC=corp").as_deref(), Some("Developers"));
        assert_eq!(first_rdn_value("cn=Smith\\, John,ou=people").as_deref(), Some("Smith, John"));
        assert_eq!(first_rdn_value("cn=caf\\c3\\a9,dc=org").as_deref(), Some("café"));
        assert_eq!(first_rdn_value("nonsense"), None);
    }

    #[test]
    fn within_base_compares_whole_rdns() {
        assert!(is_within("cn=devs,ou=Groups,dc=example,dc=org", "ou=groups, dc=example,dc=org"));
        assert!(!is_within("cn=devs,ou=othergroups,dc=example,dc=org", "ou=groups,dc=example,dc=org"));
    }
}
