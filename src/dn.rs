//! Distinguished names: one spelling for comparison, the first RDN's value, "within a base",
//! and the [`group_key`] directory groups are compared by.
//!
//! Shared vocabulary: the store keys group grants by it and the LDAP login computes it for the
//! groups it finds, so it belongs to neither. Groups come back as DNs whose spelling varies
//! (`CN=Devs, OU=Groups` vs `cn=devs,ou=groups`) and are granted roles by name or by DN, so both
//! sides are compared as a key. No mainstream crate parses RFC 4514 DNs; this is small and tested.

/// Whether `text` names a group by DN (`cn=devs,ou=groups,...`) rather than by its plain name.
pub fn looks_like_dn(text: &str) -> bool {
    text.contains('=')
}

/// The key a group is compared by: `dn:` and the normalized DN for DNs, `name:` and the lower-case
/// name otherwise. The prefixes keep a group named like another group's DN from matching it.
pub fn group_key(name_or_dn: &str) -> String {
    let text = name_or_dn.trim();
    if looks_like_dn(text) {
        format!("dn:{}", normalize_dn(text))
    } else {
        format!("name:{}", text.to_lowercase())
    }
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
        assert_eq!(normalize_dn("cn=a\\,b,dc=org"), "cn=a\\,b,dc=org", "escaped commas stay in their RDN");
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
