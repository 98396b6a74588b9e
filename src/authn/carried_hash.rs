//! Password hashes carried over from another server by `portcullis import`: the registry's
//! htpasswd (bcrypt), docker_auth's static users (bcrypt), Harbor's users (PBKDF2), and the weak
//! kinds an htpasswd file may hold (Apache MD5, SHA-1, crypt). Which kind a stored hash is, and how
//! to check a password against it.
//!
//! Such a hash is kept only until its user's first successful login, which stores an argon2id
//! hash of the same password instead ([`super::password`]), unless the kind read only part of
//! that password ([`match_is_exact`]); `user list` shows who still has one.
//! Verification runs on the same verifier threads as argon2id, within the same throttle, and a
//! refusal is padded to the same floor whatever the kind (see [`cost_class`]).
//!
//! Stored forms: bcrypt, Apache MD5 (`$apr1$`), `{SHA}` and crypt (DES, `$1$`, `$5$`, `$6$`) as the
//! file had them; Harbor's PBKDF2 as `$pbkdf2-sha1$i=4096$<salt hex>$<key hex>` (or `-sha256`),
//! since Harbor keeps the salt in a column of its own.

use std::fmt::Write as _;

use sha1::Digest as _;
use subtle::ConstantTimeEq as _;

/// The highest bcrypt cost accepted: 2^16 rounds take seconds already; a stored cost of 31
/// would tie a verifier thread up for days at every login.
pub const MAX_BCRYPT_COST: u32 = 16;

/// The most SHA-crypt rounds accepted (glibc's default is 5000, its maximum 999,999,999: minutes
/// of CPU at every login).
pub const MAX_SHA_CRYPT_ROUNDS: u64 = 100_000;

/// Harbor's PBKDF2 parameters (`utils.Encrypt`): 4096 iterations, a 16-byte key, shown in hex.
pub const HARBOR_ITERATIONS: u32 = 4096;
const HARBOR_KEY_BYTES: usize = 16;

/// The kind of a stored password hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Portcullis' own.
    Argon2,
    /// `$2a$`, `$2b$`, `$2x$`, `$2y$`: the registry's htpasswd and docker_auth.
    Bcrypt,
    /// Harbor's users.
    Pbkdf2,
    /// `$apr1$`: htpasswd's default (`-m`), 1000 rounds of MD5.
    AprMd5,
    /// `{SHA}`: one unsalted SHA-1 (`htpasswd -s`).
    Sha1,
    /// crypt(3): DES (`htpasswd -d`, 8 characters at most), or `$1$`, `$5$`, `$6$`.
    Crypt,
    /// Anything else: never matches.
    Unknown,
}

impl Scheme {
    /// The kind of `stored` (a hash as the database or an import file holds it).
    pub fn of(stored: &str) -> Scheme {
        let crypt_alphabet = |c: u8| c.is_ascii_alphanumeric() || c == b'.' || c == b'/';
        match stored {
            _ if stored.starts_with("$argon2") => Scheme::Argon2,
            _ if ["$2a$", "$2b$", "$2x$", "$2y$"].iter().any(|p| stored.starts_with(p)) => Scheme::Bcrypt,
            _ if stored.starts_with("$pbkdf2-sha1$") || stored.starts_with("$pbkdf2-sha256$") => {
                Scheme::Pbkdf2
            }
            _ if stored.starts_with("$apr1$") => Scheme::AprMd5,
            _ if stored.starts_with("{SHA}") => Scheme::Sha1,
            _ if ["$1$", "$5$", "$6$"].iter().any(|p| stored.starts_with(p)) => Scheme::Crypt,
            _ if stored.len() == 13 && stored.bytes().all(crypt_alphabet) => Scheme::Crypt,
            _ => Scheme::Unknown,
        }
    }

    /// The name `user list` and the import report use.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Argon2 => "argon2id",
            Scheme::Bcrypt => "bcrypt",
            Scheme::Pbkdf2 => "pbkdf2",
            Scheme::AprMd5 => "apr1-md5",
            Scheme::Sha1 => "sha1",
            Scheme::Crypt => "crypt",
            Scheme::Unknown => "unknown",
        }
    }

    /// Kinds an attacker who has the file (or the database) cracks in hours: imported only
    /// with `--allow-weak`.
    pub fn is_weak(self) -> bool {
        matches!(self, Scheme::AprMd5 | Scheme::Sha1 | Scheme::Crypt)
    }
}

/// Whether `stored`, of a carried-over kind, is well formed and may be imported: `Err` says why
/// not. argon2id hashes are not imported: no server Portcullis imports from makes them, and one
/// made up with a huge cost would be verified at every login of its user.
pub fn check(stored: &str) -> Result<Scheme, String> {
    match Scheme::of(stored) {
        Scheme::Argon2 => Err(
            "an argon2 hash: import reads the kinds other servers make (set a password with `user passwd`)"
                .into(),
        ),
        _ => well_formed(stored),
    }
}

/// The kind of `stored` if it is a well-formed carried-over hash that this server verifies in
/// bounded time: every field in its alphabet and length, the cost within the limits. What is
/// handed to the hashing crates is only ever this (they are not all robust against garbage).
fn well_formed(stored: &str) -> Result<Scheme, String> {
    let scheme = Scheme::of(stored);
    let fields = |prefix: &str| stored[prefix.len()..].split('$').collect::<Vec<_>>();
    let ok = match scheme {
        Scheme::Argon2 | Scheme::Unknown => false,
        Scheme::Bcrypt => {
            let cost = bcrypt_cost(stored).unwrap_or(0);
            if cost > MAX_BCRYPT_COST {
                return Err(format!(
                    "bcrypt cost {cost} is above {MAX_BCRYPT_COST}: too slow to verify at every login"
                ));
            }
            stored.len() == 60 && cost >= 4 && crypt64(&stored[7..])
        }
        // Harbor's parameters only: nothing else makes this form.
        Scheme::Pbkdf2 => parse_pbkdf2(stored)
            .is_some_and(|hash| hash.iterations == HARBOR_ITERATIONS && hash.key.len() == HARBOR_KEY_BYTES),
        Scheme::AprMd5 => {
            matches!(fields("$apr1$")[..], [salt, sum] if salt.len() <= 8 && crypt64(salt) && sum.len() == 22 && crypt64(sum))
        }
        Scheme::Sha1 => {
            data_encoding::BASE64.decode(&stored.as_bytes()[5..]).is_ok_and(|digest| digest.len() == 20)
        }
        Scheme::Crypt => {
            if let Some(rounds) = sha_crypt_rounds(stored).filter(|rounds| *rounds > MAX_SHA_CRYPT_ROUNDS) {
                return Err(format!(
                    "{rounds} rounds of SHA-crypt are above {MAX_SHA_CRYPT_ROUNDS}: too slow to verify at every login"
                ));
            }
            let sum_length = if stored.starts_with("$5$") { 43 } else { 86 };
            match &stored[..3] {
                "$1$" => {
                    matches!(fields("$1$")[..], [salt, sum] if salt.len() <= 8 && crypt64(salt) && sum.len() == 22 && crypt64(sum))
                }
                "$5$" | "$6$" => match fields("$5$")[..] {
                    [rounds, salt, sum] => {
                        rounds.starts_with("rounds=")
                            && salt.len() <= 16
                            && crypt64(salt)
                            && sum.len() == sum_length
                            && crypt64(sum)
                    }
                    [salt, sum] => {
                        salt.len() <= 16 && crypt64(salt) && sum.len() == sum_length && crypt64(sum)
                    }
                    _ => false,
                },
                // DES: 13 characters of the alphabet, as `Scheme::of` found.
                _ => true,
            }
        }
    };
    match ok {
        true => Ok(scheme),
        false => Err(format!("not a well-formed {} hash", scheme.name())),
    }
}

/// crypt(3)'s alphabet.
fn crypt64(field: &str) -> bool {
    field.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'/')
}

/// Whether a match of `password` against `stored` proves it is exactly the user's password, so
/// that its argon2id hash may replace `stored`. Not so where the kind reads only part of it: DES
/// crypt the first 8 characters (7 bits each), bcrypt the first 72 bytes. Upgrading such a match
/// would make the password that happened to match the only one (say `longpass` for the user's
/// `longpassword`): those users keep their old hash.
pub fn match_is_exact(password: &[u8], stored: &str) -> bool {
    match Scheme::of(stored) {
        Scheme::Bcrypt => password.len() < 72,
        Scheme::Crypt if !stored.starts_with('$') => password.len() < 8 && password.is_ascii(),
        _ => true,
    }
}

/// Whether `password` matches `stored`, of any carried-over kind (argon2id is verified by the
/// verifier threads' own code). A malformed hash never matches. Every comparison of a computed
/// value with the stored one is in constant time.
pub fn verify(password: &[u8], stored: &str) -> bool {
    let Ok(scheme) = well_formed(stored) else { return false };
    match scheme {
        // bcrypt reads at most 72 bytes, as the registry's and Apache's implementations do.
        Scheme::Bcrypt => bcrypt::verify(password, stored).unwrap_or(false),
        Scheme::Pbkdf2 => parse_pbkdf2(stored).is_some_and(|hash| {
            let mut key = vec![0u8; hash.key.len()];
            match hash.sha256 {
                true => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, &hash.salt, hash.iterations, &mut key),
                false => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, &hash.salt, hash.iterations, &mut key),
            }
            bool::from(key.ct_eq(&hash.key))
        }),
        Scheme::AprMd5 => {
            let Some((salt, _)) = stored[6..].split_once('$') else { return false };
            bool::from(md5_crypt(password, salt.as_bytes(), b"$apr1$").as_bytes().ct_eq(stored.as_bytes()))
        }
        Scheme::Sha1 => {
            let computed = data_encoding::BASE64.encode(&sha1::Sha1::digest(password));
            bool::from(computed.as_bytes().ct_eq(&stored.as_bytes()[5..]))
        }
        Scheme::Crypt => pwhash::unix::verify(password, stored),
        Scheme::Argon2 | Scheme::Unknown => false,
    }
}

/// Verifications of hashes of the same class take about as long: bcrypt of one cost, PBKDF2 of
/// one digest and iteration count. The refusal floor is kept above the slowest class stored, so
/// that a wrong password for a bcrypt account is not told apart from an unknown name by time.
/// `None` for kinds cheaper than any argon2id verification (the floor already covers them).
pub fn cost_class(stored: &str) -> Option<String> {
    match Scheme::of(stored) {
        Scheme::Bcrypt => bcrypt_cost(stored).map(|cost| format!("bcrypt-{cost}")),
        Scheme::Crypt => sha_crypt_rounds(stored).map(|rounds| format!("sha-crypt-{rounds}")),
        Scheme::Pbkdf2 => parse_pbkdf2(stored).map(|hash| {
            format!("pbkdf2-{}-{}", if hash.sha256 { "sha256" } else { "sha1" }, hash.iterations)
        }),
        _ => None,
    }
}

/// The stored form of a Harbor user's hash: `password_version` (`sha1`, `sha256`; Harbor's
/// oldest rows have none and mean sha1), the `salt` column and the `password` column (hex).
pub fn harbor_pbkdf2(password_version: &str, salt: &str, password_hex: &str) -> Result<String, String> {
    let digest = match password_version.trim() {
        "" | "sha1" => "sha1",
        "sha256" => "sha256",
        other => return Err(format!("password_version {other:?} is not sha1 or sha256")),
    };
    let key = password_hex.trim().to_ascii_lowercase();
    if key.is_empty() {
        return Err("no local password (a directory or OIDC user of Harbor?)".into());
    }
    match data_encoding::HEXLOWER.decode(key.as_bytes()) {
        Ok(bytes) if bytes.len() == HARBOR_KEY_BYTES => {}
        _ => return Err("the password column is not a 32-digit hex PBKDF2 key".into()),
    }
    if salt.is_empty() {
        return Err("the salt is empty".into());
    }
    let salt = data_encoding::HEXLOWER.encode(salt.as_bytes());
    Ok(format!("$pbkdf2-{digest}$i={HARBOR_ITERATIONS}${salt}${key}"))
}

/// The rounds of a SHA-crypt hash (`$5$`, `$6$`; 5000 unless `rounds=N$` says otherwise), `None`
/// for the other crypt(3) kinds, whose cost is fixed and small. A rounds field that does not
/// parse counts as too many.
fn sha_crypt_rounds(stored: &str) -> Option<u64> {
    let rest = stored.strip_prefix("$5$").or_else(|| stored.strip_prefix("$6$"))?;
    match rest.strip_prefix("rounds=") {
        None => Some(5000),
        Some(rounds) => Some(rounds.split('$').next().and_then(|n| n.parse().ok()).unwrap_or(u64::MAX)),
    }
}

fn bcrypt_cost(stored: &str) -> Option<u32> {
    let digits = stored.get(4..6).filter(|digits| digits.bytes().all(|c| c.is_ascii_digit()))?;
    digits.parse().ok().filter(|_| stored.as_bytes().get(6) == Some(&b'$'))
}

struct Pbkdf2Hash {
    sha256: bool,
    iterations: u32,
    salt: Vec<u8>,
    key: Vec<u8>,
}

fn parse_pbkdf2(stored: &str) -> Option<Pbkdf2Hash> {
    let mut parts = stored.strip_prefix("$pbkdf2-")?.split('$');
    let sha256 = match parts.next()? {
        "sha1" => false,
        "sha256" => true,
        _ => return None,
    };
    let iterations: u32 = parts.next()?.strip_prefix("i=")?.parse().ok()?;
    let salt = data_encoding::HEXLOWER.decode(parts.next()?.as_bytes()).ok()?;
    let key = data_encoding::HEXLOWER.decode(parts.next()?.as_bytes()).ok()?;
    let sane = (1..=1_000_000).contains(&iterations) && (16..=64).contains(&key.len()) && !salt.is_empty();
    (sane && parts.next().is_none()).then_some(Pbkdf2Hash { sha256, iterations, salt, key })
}

/// The MD5-based crypt of FreeBSD, which Apache adopted under the magic `$apr1$`: 1000 rounds of
/// MD5 over password, salt (at most 8 characters) and the previous round; the result as
/// `magic salt $ 22 characters`.
fn md5_crypt(password: &[u8], salt: &[u8], magic: &[u8]) -> String {
    let salt = &salt[..salt.len().min(8)];
    let alternate =
        md5::Md5::new().chain_update(password).chain_update(salt).chain_update(password).finalize();
    let mut context = md5::Md5::new().chain_update(password).chain_update(magic).chain_update(salt);
    for chunk in (0..password.len()).step_by(16) {
        context.update(&alternate[..(password.len() - chunk).min(16)]);
    }
    let mut length = password.len();
    while length > 0 {
        match length & 1 {
            1 => context.update([0u8]),
            _ => context.update(&password[..1]),
        }
        length >>= 1;
    }
    let mut digest = context.finalize();
    for round in 0..1000 {
        let mut context = md5::Md5::new();
        if round & 1 == 1 {
            context.update(password)
        } else {
            context.update(digest)
        }
        if round % 3 != 0 {
            context.update(salt);
        }
        if round % 7 != 0 {
            context.update(password);
        }
        if round & 1 == 1 {
            context.update(digest)
        } else {
            context.update(password)
        }
        digest = context.finalize();
    }
    let mut out = String::with_capacity(magic.len() + salt.len() + 23);
    out.push_str(&String::from_utf8_lossy(magic));
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let d = |i: usize| u32::from(digest[i]);
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        crypt_base64(&mut out, d(a) << 16 | d(b) << 8 | d(c), 4);
    }
    crypt_base64(&mut out, d(11), 2);
    out
}

/// crypt(3)'s base-64: `count` characters of `value`, least significant six bits first.
fn crypt_base64(out: &mut String, mut value: u32, count: usize) {
    const ALPHABET: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    for _ in 0..count {
        let _ = out.write_char(char::from(ALPHABET[(value & 0x3f) as usize]));
        value >>= 6;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apache_md5_agrees_with_known_hashes_and_freebsd_md5_crypt() {
        // A published $apr1$ example, and FreeBSD's $1$ (the same algorithm) checked against an
        // independent implementation.
        assert!(verify(b"password", "$apr1$63JlJ2NH$smE0mnB5h3tDri0zkpWXt1"));
        assert!(!verify(b"Password", "$apr1$63JlJ2NH$smE0mnB5h3tDri0zkpWXt1"));
        for password in ["", "a", "password", "a much longer password than sixteen bytes, surely"] {
            let ours = md5_crypt(password.as_bytes(), b"5pZSV9va", b"$1$");
            assert!(pwhash::md5_crypt::verify(password, &ours), "{password:?}: {ours}");
        }
    }

    #[test]
    fn each_kind_matches_only_its_password() {
        let bcrypt =
            bcrypt::hash_with_salt("s3cret", 4, [7u8; 16]).unwrap().format_for_version(bcrypt::Version::TwoY);
        let sha = format!("{{SHA}}{}", data_encoding::BASE64.encode(&sha1::Sha1::digest(b"s3cret")));
        // What `htpasswd -d` makes (salt "ab").
        #[allow(deprecated)]
        let des = pwhash::unix_crypt::hash_with("ab", "s3cret").unwrap();
        let sha512 = pwhash::sha512_crypt::hash("s3cret").unwrap();
        let apr1 = md5_crypt(b"s3cret", b"saltsalt", b"$apr1$");
        for (stored, scheme) in [
            (&bcrypt, Scheme::Bcrypt),
            (&sha, Scheme::Sha1),
            (&des, Scheme::Crypt),
            (&sha512, Scheme::Crypt),
            (&apr1, Scheme::AprMd5),
        ] {
            assert_eq!(Scheme::of(stored), scheme, "{stored}");
            assert_eq!(check(stored), Ok(scheme), "{stored}");
            assert!(verify(b"s3cret", stored), "{stored}");
            assert!(!verify(b"s3cret ", stored), "{stored}");
            assert!(!verify(b"", stored), "{stored}");
        }
        assert!(!Scheme::Bcrypt.is_weak() && Scheme::AprMd5.is_weak() && Scheme::Crypt.is_weak());
    }

    #[test]
    fn only_a_match_of_the_whole_password_may_replace_the_hash() {
        #[allow(deprecated)]
        let des = pwhash::unix_crypt::hash_with("ab", "longpassword").unwrap();
        assert!(verify(b"longpassXYZ", &des), "DES reads 8 characters");
        assert!(!match_is_exact(b"longpassXYZ", &des) && !match_is_exact(b"longpass", &des));
        assert!(match_is_exact(b"short", &des) && !match_is_exact("pässw".as_bytes(), &des));
        let bcrypt = bcrypt::hash("x".repeat(80), 4).unwrap();
        assert!(
            verify("x".repeat(72).as_bytes(), &bcrypt) && !match_is_exact("x".repeat(72).as_bytes(), &bcrypt)
        );
        assert!(match_is_exact(b"a normal password", &bcrypt));
        assert!(match_is_exact(b"anything", "$apr1$saltsalt$abcdefghijklmnopqrstuv"));
    }

    #[test]
    fn harbor_hashes_are_pbkdf2_of_the_salt_string() {
        // As Harbor's utils.Encrypt: PBKDF2(password, []byte(salt), 4096, 16, sha1 or sha256), hex.
        let salt = "s4lt-as-harbor-makes-it";
        for (version, sha256) in [("sha1", false), ("sha256", true), ("", false)] {
            let mut key = [0u8; 16];
            match sha256 {
                true => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(b"Harbor12345", salt.as_bytes(), 4096, &mut key),
                false => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(b"Harbor12345", salt.as_bytes(), 4096, &mut key),
            }
            let stored = harbor_pbkdf2(version, salt, &data_encoding::HEXLOWER.encode(&key)).unwrap();
            assert_eq!(check(&stored), Ok(Scheme::Pbkdf2));
            assert!(verify(b"Harbor12345", &stored), "{version}");
            assert!(!verify(b"harbor12345", &stored), "{version}");
            assert!(cost_class(&stored).unwrap().ends_with("-4096"));
        }
        assert!(harbor_pbkdf2("md5", salt, "00").is_err());
        assert!(harbor_pbkdf2("sha1", salt, "abc").is_err());
        assert!(harbor_pbkdf2("sha1", "", &"0".repeat(32)).is_err());
    }

    #[test]
    fn malformed_and_too_costly_hashes_are_refused_and_never_match() {
        let costly =
            bcrypt::hash_with_salt("x", 4, [1u8; 16]).unwrap().format_for_version(bcrypt::Version::TwoB);
        let costly = costly.replacen("$04$", "$31$", 1);
        assert!(check(&costly).unwrap_err().contains("cost 31"));
        assert!(!verify(b"x", &costly), "never attempted");
        for bad in
            ["", "$2y$", "$2y$10$short", "$apr1$", "{SHA}abc", "$pbkdf2-sha1$i=0$00$00", "plain", "$6$"]
        {
            assert!(!verify(b"x", bad), "{bad:?}");
            assert!(check(bad).is_err(), "{bad:?}");
        }
        assert_eq!(cost_class(&costly).as_deref(), Some("bcrypt-31"));
        assert_eq!(cost_class("{SHA}x"), None);
        // Found by the attack review and the fuzzer: each was imported, or reached a hashing
        // crate that panics on it.
        let huge_argon2 = "$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA";
        assert!(check(huge_argon2).unwrap_err().contains("argon2"), "no argon2 hash is imported");
        let odd_bcrypt = format!("$2y$+4${}", &costly[7..]);
        assert!(check(&odd_bcrypt).is_err() && !verify(b"x", &odd_bcrypt));
        let control = "$6$rounds=5000$saltsalt\u{4}abc";
        assert!(check(control).is_err() && !verify(b"x", control), "never handed to pwhash");
        let iterations = "$pbkdf2-sha1$i=1$73616c74$0123456789abcdef0123456789abcdef";
        assert!(check(iterations).is_err(), "only Harbor's parameters");
        let slow = "$6$rounds=999999999$saltsalt$hash";
        assert!(check(slow).unwrap_err().contains("rounds"), "refused before any crypt is computed");
        assert!(!verify(b"x", slow));
        assert!(check("$5$rounds=x$salt$hash").is_err());
        assert_eq!(cost_class("$6$rounds=20000$salt$hash").as_deref(), Some("sha-crypt-20000"));
    }
}
