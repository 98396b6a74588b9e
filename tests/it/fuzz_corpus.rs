//! The fuzz corpus, replayed on stable: every file of `fuzz/corpus/<target>/` goes through the
//! same property checks the `cargo +nightly fuzz` targets run, so CI exercises them without
//! nightly or libFuzzer. The checks are `fuzz/src/lib.rs`, compiled here as a module (one copy
//! of each property); see README.md "Fuzzing". Unlike the rest of this crate these tests call the
//! library: the targets are its parsers, not the binary.
//!
//! The tests after the replays are the bugs the `dn` fuzzer found, each with its input, kept as
//! regressions.

use std::path::Path;

#[path = "../../fuzz/src/lib.rs"]
mod checks;

/// Runs `check` on every file of `fuzz/corpus/<target>/`; fails naming every input that fails.
fn replay(target: &str, check: fn(&[u8])) {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut paths: Vec<_> = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("{}: {error}", directory.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    paths.sort();
    assert!(paths.len() >= 10, "{target}: the corpus has {} inputs", paths.len());
    let failed: Vec<String> = paths
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).expect("corpus file");
            std::panic::catch_unwind(|| check(&data)).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{target}: {} of {} inputs fail: {failed:#?}", failed.len(), paths.len());
}

#[test]
fn scope_corpus() {
    replay("scope", checks::scope);
}

#[test]
fn basic_corpus() {
    replay("basic", checks::basic);
}

#[test]
fn oauth_form_corpus() {
    replay("oauth_form", checks::oauth_form);
}

#[test]
fn dn_corpus() {
    replay("dn", checks::dn);
}

#[test]
fn config_corpus() {
    replay("config", checks::config);
}

#[test]
fn import_corpus() {
    replay("import", checks::import);
}

// The bugs the `dn` target found in the first DN code, fixed
// since DNs are parsed by RDN; each assertion says what RFC 4514 means.

/// `\ ` is an escaped space (RFC 4514 requires it for a trailing one), but `normalize_dn` and
/// `first_rdn_value` trim it like unescaped white space and leave a dangling backslash, which
/// then escapes the next comma: two RDNs become one. So the group `cn=a\ ,dc=x` (name `a `)
/// gets the same key as `cn=a\,dc=x` (one RDN named `a,dc=x`). Fuzzer input: `=dh\ ,\u{fffd}cn,,`
/// (its three RDNs normalize to two).
#[test]
fn an_escaped_trailing_space_is_kept() {
    use portcullis::dn::{first_rdn_value, group_key, normalize_dn};
    assert_eq!(first_rdn_value("CN=Devs\\ ,OU=Groups,DC=corp").as_deref(), Some("Devs "));
    assert!(
        !normalize_dn("cn=a\\ ,dc=x").contains("\\,"),
        "{}: the comma is escaped",
        normalize_dn("cn=a\\ ,dc=x")
    );
    assert_ne!(group_key("cn=a\\ ,dc=x"), group_key("cn=a\\,dc=x"));
}

/// `is_within` compares the normalized text with `ends_with(",<base>")`, so the base also
/// matches after an escaped comma: `cn=x\,dc=corp` is one RDN (named `x,dc=corp`), not an entry
/// below `dc=corp`. Fuzzer input: `\,` (said to be within the empty base).
#[test]
fn is_within_never_matches_after_an_escaped_comma() {
    use portcullis::dn::is_within;
    assert!(!is_within("cn=x\\,dc=corp", "dc=corp"));
    assert!(!is_within("cn=evil\\,ou=groups,dc=corp", "ou=groups,dc=corp"));
}

/// `\+` (an escaped `+`, which RFC 4514 requires in values) followed by a hex digit is decoded
/// as a hex pair, because `u8::from_str_radix` accepts a leading `+`: `Team\+1` becomes
/// `Team\u{1}`. Fuzzer input: the value `\u{fffd}+aq` (escaped `\u{fffd}\+aq`, read as a
/// newline and `q`).
#[test]
fn an_escaped_plus_before_a_hex_digit_stays_a_plus() {
    use portcullis::dn::first_rdn_value;
    assert_eq!(first_rdn_value("CN=Team\\+1,OU=Groups,DC=corp").as_deref(), Some("Team+1"));
    assert_eq!(first_rdn_value("CN=C\\+\\+11 Devs,DC=corp").as_deref(), Some("C++11 Devs"));
}

/// A value whose escapes are not UTF-8 is compared byte by byte, and its ASCII letters kept their
/// case: `cn=CAF\c3\a7` and `cn=caf\c3\a7` were two groups. Fuzzer input: `cn=caf\c3\<byte>9`.
#[test]
fn a_value_that_is_not_utf8_still_ignores_ascii_case() {
    use portcullis::dn::{group_key, normalize_dn};
    assert_eq!(normalize_dn("CN=CAF\\c3\\28,DC=org"), normalize_dn("cn=caf\\c3\\28,dc=org"));
    assert_ne!(group_key("cn=caf\\c3\\28,dc=org"), group_key("cn=caf\\c3\\29,dc=org"));
}

/// In an RDN without `=` (not a DN, but still parsed), an escaped `+` was taken for the
/// separator of a multi-valued RDN and the text before it kept its trailing backslash, which
/// then escaped the comma after it: two RDNs became one. Fuzzer input:
/// `\u{fffd}sh\+plus\;se...,DC=x`.
#[test]
fn escapes_in_an_rdn_without_a_value_stay_escapes() {
    use portcullis::dn::normalize_dn;
    let normalized = normalize_dn("sh\\+plus,DC=x");
    assert!(normalized.ends_with(",dc=x") && !normalized.contains("\\,"), "{normalized}");
    assert_eq!(normalize_dn(&normalized), normalized);
    // An escaped space is text, not white space to drop (fuzzer input: `\  `).
    assert_eq!(normalize_dn("\\  "), "\\ ");
    // Nor is an escaped U+00A0, which Unicode calls white space (fuzzer input: `\\\u{a0}`).
    assert_eq!(normalize_dn(&normalize_dn("\\\u{a0}")), normalize_dn("\\\u{a0}"));
    assert_eq!(normalize_dn("\\\u{a0}"), "\u{a0}");
}

/// A group DN typed with an escaped trailing space (`cn=a\ `, the group `a `) lost the space to
/// a trim before normalizing, and the dangling backslash became an escaped backslash: the key
/// named another group. Fuzzer input: a DN ending in `\ `.
#[test]
fn a_typed_dn_keeps_its_escaped_trailing_space() {
    use portcullis::dn::group_key;
    assert_eq!(group_key("cn=a\\ ,dc=x"), "dn:cn=a\\ ,dc=x");
    assert_eq!(group_key("dc=x,cn=a\\ "), "dn:dc=x,cn=a\\ ");
    assert_eq!(group_key("  cn=a , dc=x  "), "dn:cn=a,dc=x", "unescaped white space still goes");
    assert_eq!(group_key(" Devs "), "name:devs");
}

/// A value starting with `#` is BER only when hex digits follow and nothing is escaped: in
/// `cf#=#\+C` the escaped `+` was left as a backslash and a separator, and the backslash then
/// escaped the next comma. Found by a search of DN shapes; input `Cf#=#\+C,\a\<tab>`.
#[test]
fn only_hex_after_a_hash_is_a_ber_value() {
    use portcullis::dn::normalize_dn;
    assert_eq!(normalize_dn("cn=#\\+C,dc=x"), "cn=\\#\\+c,dc=x");
    assert_eq!(normalize_dn("CN=#04024869,DC=x"), "cn=#04024869,dc=x", "BER stays as written");
}
