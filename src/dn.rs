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
    // Not trimmed here: white space around a DN is dropped by `normalize_dn`, which knows an
    // escaped trailing space (`cn=a\ `) from one to drop; a name is trimmed by its key.
    GroupRef::typed(typed).key()
}

/// A group key ([`GroupRef::key`]) as people read it: the DN or the name, without its kind.
pub fn group_of_key(key: &str) -> &str {
    key.strip_prefix("dn:").or_else(|| key.strip_prefix("name:")).unwrap_or(key)
}

/// A DN in one spelling, so that every way RFC 4514 lets a directory or an admin write it
/// compares equal: RDNs split on unescaped commas (and multi-valued RDNs on unescaped `+`, their
/// parts sorted); white space around RDNs, types and values dropped; every escape undone (`\,`,
/// `\2C` and `\2c` are one comma, `\C3\A9` is `é`) and the value escaped again one way (see
/// [`escape_value`]); and all lower case, as attribute types and the common string values compare
/// case-insensitively in every directory Portcullis targets.
pub fn normalize_dn(dn: &str) -> String {
    canonical_rdns(dn).join(",")
}

/// The value of a DN's first RDN, unescaped and in its own case: `Developers` for
/// `CN=Developers,OU=Groups,...`. It is the group's name in `member_of` mode, where no group entry
/// is read.
pub fn first_rdn_value(dn: &str) -> Option<String> {
    let first = parse(dn).into_iter().next()?;
    let value = first.into_iter().find_map(|ava| ava.value)?;
    let value = match value {
        Value::Text(text) | Value::Ber(text) => text,
        Value::Bytes(escaped) => escaped,
    };
    (!value.is_empty()).then_some(value)
}

/// Whether `dn` lies at or below `base`: `base`'s RDNs are the last ones of `dn`, compared one by
/// one in their normal spelling. (Comparing the text's end would put `cn=evil,cn=x\,ou=groups,...`
/// below `ou=groups,...`, since the escaped comma reads like a separator.)
pub fn is_within(dn: &str, base: &str) -> bool {
    depth_below(dn, base).is_some()
}

/// How many RDNs `dn` has below `base` (0: it is `base`); `None` when it is not within it.
pub fn depth_below(dn: &str, base: &str) -> Option<usize> {
    let (dn, base) = (canonical_rdns(dn), canonical_rdns(base));
    let depth = dn.len().checked_sub(base.len())?;
    (dn[depth..] == base[..]).then_some(depth)
}

/// One attribute-value pair of an RDN, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ava {
    /// The attribute type (`cn`, or an OID), trimmed and lower-cased; for a malformed RDN without
    /// `=`, all of its text.
    attribute: String,
    /// `None` for a malformed RDN without `=`.
    value: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    /// A string value with its escapes undone, in its own case.
    Text(String),
    /// A `#`-prefixed hex (BER) value, kept as written: it is not a string to unescape.
    Ber(String),
    /// Escapes that decode to bytes which are not UTF-8, every byte as `\xx` (ASCII letters
    /// lower-cased first): two different such values stay different (a lossy decoding would make
    /// both U+FFFD).
    Bytes(String),
}

impl Ava {
    /// The one spelling this pair is compared in.
    fn canonical(&self) -> String {
        // Escaped like a value, so that no text of a malformed RDN (a trailing backslash, a
        // comma) can run into the separator that follows it.
        let attribute = escape_value(&self.attribute);
        match &self.value {
            None => attribute,
            Some(Value::Ber(hex) | Value::Bytes(hex)) => format!("{attribute}={}", hex.to_ascii_lowercase()),
            Some(Value::Text(text)) => format!("{attribute}={}", escape_value(&text.to_lowercase())),
        }
    }
}

/// The RDNs of `dn` in their one spelling, most specific first.
fn canonical_rdns(dn: &str) -> Vec<String> {
    parse(dn)
        .iter()
        .map(|rdn| {
            let mut avas: Vec<String> = rdn.iter().map(Ava::canonical).collect();
            avas.sort();
            avas.join("+")
        })
        .collect()
}

/// Splits `dn` into RDNs, each a list of attribute-value pairs. Never fails: what is not a DN
/// comes back as RDNs without values, which match only the same text.
fn parse(dn: &str) -> Vec<Vec<Ava>> {
    let bytes = dn.as_bytes();
    // Blank is ASCII white space only, as everywhere in a DN: an escaped U+00A0 is text.
    if dn.bytes().all(|byte| byte.is_ascii_whitespace()) {
        return Vec::new();
    }
    let mut rdns = Vec::new();
    let mut rdn = Vec::new();
    let mut index = 0;
    loop {
        let (ava, separator, next) = parse_ava(bytes, index);
        rdn.push(ava);
        index = next;
        match separator {
            Some(b'+') => {}
            Some(_) => rdns.push(std::mem::take(&mut rdn)),
            None => {
                rdns.push(rdn);
                return rdns;
            }
        }
    }
}

/// One pair from `bytes[start..]`: the pair, the unescaped separator that ended it (`,` or `+`;
/// `None` at the end) and where the next pair starts.
fn parse_ava(bytes: &[u8], start: usize) -> (Ava, Option<u8>, usize) {
    // The attribute type, escapes undone: in a malformed RDN (no `=`) an escaped `,` or `+` is
    // text, not a separator.
    let mut index = start;
    // Each byte, and whether it was escaped (white space around the type goes, escaped or not
    // only when unescaped).
    let mut attribute: Vec<(u8, bool)> = Vec::new();
    while index < bytes.len() && !matches!(bytes[index], b'=' | b',' | b'+') {
        if let Some((decoded, next)) = escape_at(bytes, index) {
            attribute.push((decoded, true));
            index = next;
            continue;
        }
        attribute.push((bytes[index], false));
        index += 1;
    }
    let is_blank = |&(byte, escaped): &(u8, bool)| !escaped && byte.is_ascii_whitespace();
    let first = attribute.iter().position(|pair| !is_blank(pair)).unwrap_or(attribute.len());
    let last = attribute.iter().rposition(|pair| !is_blank(pair)).map_or(first, |last| last + 1);
    let attribute: Vec<u8> = attribute[first..last.max(first)].iter().map(|&(byte, _)| byte).collect();
    let attribute = String::from_utf8_lossy(&attribute).to_ascii_lowercase();
    if index >= bytes.len() || bytes[index] != b'=' {
        let separator = bytes.get(index).copied();
        return (Ava { attribute, value: None }, separator, index + 1);
    }
    index += 1;
    while index < bytes.len() && bytes[index] == b' ' {
        index += 1;
    }
    // The value's bytes, and which of them were escaped (an escaped space is part of the value;
    // an unescaped one at the end is not).
    let mut value: Vec<(u8, bool)> = Vec::new();
    let ber = bytes.get(index) == Some(&b'#');
    let mut separator = None;
    while index < bytes.len() {
        let byte = bytes[index];
        if let Some((decoded, next)) = escape_at(bytes, index) {
            value.push((decoded, true));
            index = next;
            continue;
        }
        index += 1;
        if byte == b',' || byte == b'+' {
            separator = Some(byte);
            break;
        }
        value.push((byte, false));
    }
    while value.last().is_some_and(|&(byte, escaped)| byte == b' ' && !escaped) {
        value.pop();
    }
    // `#` and hex digits, nothing escaped: a BER value. Anything else that starts with `#` is not
    // one (its escapes, a `\+` say, were undone as text).
    let ber = ber
        && value.len() > 1
        && value.iter().all(|&(_, escaped)| !escaped)
        && value[1..].iter().all(|&(byte, _)| byte.is_ascii_hexdigit());
    let bytes: Vec<u8> = value.iter().map(|&(byte, _)| byte).collect();
    let value = match String::from_utf8(bytes) {
        Ok(text) if ber => Value::Ber(text),
        Ok(text) => Value::Text(text),
        // ASCII letters among the bytes compare without case, as in a text value.
        Err(error) => Value::Bytes(
            error.into_bytes().iter().map(|byte| format!("\\{:02x}", byte.to_ascii_lowercase())).collect(),
        ),
    };
    (Ava { attribute, value: Some(value) }, separator, index)
}

/// The byte the escape at `bytes[index]` stands for (`\XX` in hex, or `\c` the character
/// itself) and where what follows it starts; `None` when no escape starts there (no backslash,
/// or one at the very end).
fn escape_at(bytes: &[u8], index: usize) -> Option<(u8, usize)> {
    if bytes.get(index) != Some(&b'\\') || index + 1 >= bytes.len() {
        return None;
    }
    Some(match hex_pair(bytes.get(index + 1..index + 3)) {
        Some(decoded) => (decoded, index + 3),
        None => (bytes[index + 1], index + 2),
    })
}

/// Two hex digits, as the byte they spell.
fn hex_pair(pair: Option<&[u8]>) -> Option<u8> {
    let pair = std::str::from_utf8(pair?).ok()?;
    u8::from_str_radix(pair, 16).ok().filter(|_| pair.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// An RDN value escaped the one way [`normalize_dn`] writes it: RFC 4514's special characters and
/// `=` as `\c` (the spelling Active Directory prints, so that DNs copied from AD keep the key they
/// always had), a leading `#` or space and a trailing space likewise, control characters as `\xx`,
/// everything else (UTF-8 included) as is.
fn escape_value(value: &str) -> String {
    let last = value.chars().count().saturating_sub(1);
    let mut out = String::with_capacity(value.len());
    for (position, character) in value.chars().enumerate() {
        let special = matches!(character, '\\' | ',' | '+' | '"' | '<' | '>' | ';' | '=')
            || (position == 0 && matches!(character, '#' | ' '))
            || (position == last && character == ' ');
        if character.is_control() {
            let mut buffer = [0; 4];
            for byte in character.encode_utf8(&mut buffer).bytes() {
                out.push_str(&format!("\\{byte:02x}"));
            }
        } else if special {
            out.push('\\');
            out.push(character);
        } else {
            out.push(character);
        }
    }
    out
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
        assert!(is_within("ou=groups,dc=example,dc=org", "ou=groups,dc=example,dc=org"));
        assert!(!is_within("cn=devs,ou=othergroups,dc=example,dc=org", "ou=groups,dc=example,dc=org"));
        assert!(!is_within("dc=example,dc=org", "ou=groups,dc=example,dc=org"));
        // An escaped comma is part of a value, however it is spelled (review defect 14).
        for evil in
            ["cn=evil,cn=x\\,ou=groups,dc=example,dc=org", "cn=evil,cn=x\\2Cou\\3Dgroups,dc=example,dc=org"]
        {
            assert!(!is_within(evil, "ou=groups,dc=example,dc=org"), "{evil}");
            assert!(is_within(evil, "dc=example,dc=org"), "{evil}");
        }
        assert!(!is_within("cn=a,ou=groups\\,dc=example,dc=org", "dc=example,dc=org"));
        assert_eq!(depth_below("cn=a,ou=g,dc=org", "dc=org"), Some(2));
        assert_eq!(depth_below("dc=org", "dc=org"), Some(0));
        assert_eq!(depth_below("dc=org", "ou=g,dc=org"), None);
        assert!(is_within("cn=a,dc=org", ""), "the empty DN is the root");
    }

    #[test]
    fn every_spelling_of_an_escape_is_one_key() {
        // Likely defect 5 of the review: AD prints `\,`, OpenLDAP `\2C`; admins copy either.
        let same = |a: &str, b: &str| assert_eq!(normalize_dn(a), normalize_dn(b), "{a} vs {b}");
        same("CN=Smith\\, John,OU=People", "cn=smith\\2c john,ou=people");
        same("CN=Smith\\, John,OU=People", "cn=Smith\\2C John,ou=People");
        same("cn=caf\\C3\\A9,dc=org", "CN=Café,DC=org");
        same("cn=caf\\c3\\a9,dc=org", "cn=CAF\\C3\\89,dc=org");
        same("cn=CN\\=Admins,dc=org", "cn=cn\\3dadmins,dc=org");
        same("cn=a\\+b,dc=org", "cn=a\\2Bb,dc=org");
        same("cn=a\\\\b,dc=org", "cn=a\\5cb,dc=org");
        same("cn=\\#1,dc=org", "cn=\\231,dc=org");
        same("cn=x\\\"y\\<z\\>\\;,dc=org", "cn=x\\22y\\3cz\\3e\\3b,dc=org");
        same("cn=a ,dc=org", "cn=a,dc=org");
        same("cn = a , dc = org", "cn=a,dc=org");
        same("uid=x+cn=y,dc=org", "CN=y + UID=x,dc=org");
        same("cn=#04024869,dc=org", "cn=#04024869 ,DC=org");
        // What differs stays different.
        let differ = |a: &str, b: &str| assert_ne!(normalize_dn(a), normalize_dn(b), "{a} vs {b}");
        differ("cn=a\\,b,dc=org", "cn=a,cn=b,dc=org");
        differ("cn=a\\+b,dc=org", "cn=a+b,dc=org");
        differ("cn=a\\20,dc=org", "cn=a,dc=org");
        differ("cn=\\20a,dc=org", "cn=a,dc=org");
        differ("cn=\\ff,dc=org", "cn=\\fe,dc=org");
        differ("cn=\\ff,dc=org", "cn=\u{fffd},dc=org");
        differ("cn=#04024869,dc=org", "cn=\\#04024869,dc=org");
        // The one spelling: AD's character escapes, so keys of DNs copied from AD keep the form
        // earlier versions stored.
        assert_eq!(normalize_dn("CN=Smith\\2C John,OU=People"), "cn=smith\\, john,ou=people");
        assert_eq!(normalize_dn("cn=cn\\3Dx\\2Cou\\3Dy,dc=org"), "cn=cn\\=x\\,ou\\=y,dc=org");
        assert_eq!(normalize_dn("cn=\\20a\\20,dc=org"), "cn=\\ a\\ ,dc=org");
        assert_eq!(normalize_dn("cn=a\\0ab,dc=org"), "cn=a\\0ab,dc=org");
        assert_eq!(normalize_dn("cn=caf\\C3\\A9"), "cn=café");
        assert_eq!(normalize_dn(""), "");
        assert_eq!(normalize_dn("nonsense"), "nonsense");
    }

    #[test]
    fn the_normal_spelling_is_a_fixed_point() {
        for dn in [
            "CN=Smith\\, John,OU=People,DC=corp",
            "cn=\\#x\\ ,ou=a\\+b+uid=c,dc=org",
            "cn=caf\\c3\\a9\\0a,dc=org",
            "cn=\\ff\\41,dc=org",
            "cn=a\\\\,dc=org",
            "cn=#0401,dc=org",
        ] {
            let once = normalize_dn(dn);
            assert_eq!(normalize_dn(&once), once, "{dn}");
            assert_eq!(canonical_rdns(&once).len(), canonical_rdns(dn).len(), "{dn}");
        }
    }

    #[test]
    fn any_text_parses_without_panic_into_a_fixed_point() {
        // What a directory returns (memberOf values) reaches the parser unchecked.
        let alphabet = ['a', 'B', '=', ',', '+', '\\', ' ', '#', '2', 'c', 'é', '"', ';', '\0'];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..5_000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let length = (seed >> 59) as usize;
            let text: String = (0..length)
                .map(|i| alphabet[((seed >> (i * 4 % 56)) & 0xf) as usize % alphabet.len()])
                .collect();
            let once = normalize_dn(&text);
            assert_eq!(normalize_dn(&once), once, "{text:?}");
            let _ = (first_rdn_value(&text), is_within(&text, &once));
            assert!(is_within(&text, &once), "{text:?} is within its own normal form");
        }
    }
}
