//! Search filters built from what a user typed, so that `*)(uid=*` is searched for literally
//! and cannot widen the search: values are escaped per RFC 4515 by `ldap3::ldap_escape`.

/// `(&(attribute=escaped value)extra)`, or just the match when there is no extra filter.
pub fn and_filter(attribute: &str, value: &str, extra: Option<&str>) -> String {
    let matched = format!("({attribute}={})", ldap3::ldap_escape(value));
    match extra {
        Some(extra) => format!("(&{matched}{extra})"),
        None => matched,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_metacharacters_are_hex_escaped() {
        assert_eq!(and_filter("uid", "alice", None), "(uid=alice)");
        assert_eq!(and_filter("uid", "*", None), "(uid=\\2a)");
        assert_eq!(and_filter("uid", "*)(uid=*", None), "(uid=\\2a\\29\\28uid=\\2a)");
        assert_eq!(and_filter("uid", "a\\b\0c", None), "(uid=a\\5cb\\00c)");
        assert_eq!(and_filter("uid", "jürgen", None), "(uid=jürgen)", "UTF-8 needs no escape");
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
}
