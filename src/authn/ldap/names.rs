//! Text that crosses into and out of LDAP: filter values escaped against injection, and group
//! names and DNs reduced to one comparable key.
//!
//! A login name goes into a search filter, so `*)(uid=*` must be searched for literally, not
//! widen the search: every value is escaped per RFC 4515 (`\2a` for `*` and so on). Groups come
//! back as DNs whose spelling varies (`CN=Devs, OU=Groups` vs `cn=devs,ou=groups`) and are granted
//! roles by name or by DN, so both sides are compared as a [`group_key`].

/// Escapes `value` for use inside a filter's `(attribute=value)`: `*`, `(`, `)`, `\` and NUL
/// become `\XX` hex escapes (RFC 4515, section 3). Everything else, UTF-8 included, may appear
/// as is.
pub fn escape_filter_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        match character {
            '*' | '(' | ')' | '\\' | '\0' => escaped.push_str(&format!("\\{:02x}", character as u32)),
            other => escaped.push(other),
        }
    }
    escaped
}

/// `(&(attribute=escaped value)extra)`, or just the match when there is no extra filter.
pub fn and_filter(attribute: &str, value: &str, extra: Option<&str>) -> String {
    let matched = format!("({attribute}={})", escape_filter_value(value));
    match extra {
        Some(extra) => format!("(&{matched}{extra})"),
        None => matched,
    }
}

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
    fn filter_metacharacters_are_hex_escaped() {
        assert_eq!(escape_filter_value("alice"), "alice");
        assert_eq!(escape_filter_value("*"), "\\2a");
        assert_eq!(escape_filter_value("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
        assert_eq!(escape_filter_value("a\\b\0c"), "a\\5cb\\00c");
        assert_eq!(escape_filter_value("jürgen"), "jürgen", "UTF-8 needs no escape");
    }

    #[test]
    fn injection_attempts_stay_inside_one_assertion() {
        for attack in ["*", "*)(|(uid=*", "admin)(&)", "x)(objectClass=*", "\\2a"] {
            let filter = and_filter("uid", attack, Some("(objectClass=person)"));
            // Parentheses from the value are all escaped: the filter keeps the shape we built.
            let opens = filter.matches('(').count();
            let closes = filter.matches(')').count();
            assert_eq!((opens, closes), (3, 3), "{attack:?} gave {filter}");
            assert!(ldap3::parse_filter(&filter).is_ok(), "{filter}");
            assert!(!filter.contains("=*"), "no wildcard survives: {filter}");
        }
    }

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
