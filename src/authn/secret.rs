//! Generated secrets (refresh tokens, robot secrets, personal access tokens): how they are made
//! and the only form in which they are stored.
//!
//! Why a fast keyed hash (HMAC-SHA256) and not argon2 as for passwords: argon2 exists to make
//! guessing a *human-chosen* password from a stolen hash expensive. These secrets are 190 random
//! bits drawn by this program; no amount of guessing finds one, however fast the hash. argon2
//! would only spend ~20 ms of CPU and 19 MiB per registry request, and CI systems and kubelets
//! send many. The HMAC key differs per kind of secret, so a digest of one kind never matches a
//! secret presented as another (a refresh token used as a robot secret, say).

use data_encoding::HEXLOWER;
use hmac::{Hmac, Mac};
use rand::distributions::{Alphanumeric, DistString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Which kind of credential a secret belongs to; each has its own HMAC key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    RefreshToken,
    Robot,
    PersonalToken,
}

impl SecretKind {
    fn key(self) -> &'static [u8] {
        match self {
            SecretKind::RefreshToken => b"portcullis refresh token v1",
            SecretKind::Robot => b"portcullis robot secret v1",
            SecretKind::PersonalToken => b"portcullis personal access token v1",
        }
    }
}

/// Random characters per secret: 32 from 62 symbols is about 190 bits.
const SECRET_CHARS: usize = 32;

/// A new secret: `prefix` (which lets people and secret scanners recognise it) and 32 random
/// letters and digits (so it is safe unquoted in any shell and in Basic auth) from the operating
/// system's generator.
pub fn generate(prefix: &str) -> String {
    let mut secret = String::with_capacity(prefix.len() + SECRET_CHARS);
    secret.push_str(prefix);
    Alphanumeric.append_string(&mut rand::rngs::OsRng, &mut secret, SECRET_CHARS);
    secret
}

/// Whether `text` has the shape `generate(prefix)` gives, without looking anything up.
pub fn looks_generated(prefix: &str, text: &str) -> bool {
    text.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == SECRET_CHARS && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The stored form of `secret`: HMAC-SHA256 under the kind's key, in lower-case hex.
pub fn digest(kind: SecretKind, secret: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(kind.key()).expect("HMAC takes any key length");
    mac.update(secret.as_bytes());
    HEXLOWER.encode(&mac.finalize().into_bytes())
}

/// Compares two digests in time independent of where they differ.
pub fn digests_match(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_long_random_and_shell_safe() {
        let a = generate("pat_");
        let b = generate("pat_");
        assert_ne!(a, b);
        assert!(looks_generated("pat_", &a));
        assert!(!looks_generated("prt_", &a));
        assert!(!looks_generated("pat_", "pat_short"));
        assert!(a[4..].bytes().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn digest_depends_on_kind_and_secret() {
        let secret = generate("");
        let robot = digest(SecretKind::Robot, &secret);
        assert_eq!(robot.len(), 64);
        assert_eq!(robot, digest(SecretKind::Robot, &secret));
        assert_ne!(robot, digest(SecretKind::PersonalToken, &secret));
        assert_ne!(robot, digest(SecretKind::Robot, "other"));
        assert!(digests_match(&robot, &digest(SecretKind::Robot, &secret)));
        assert!(!digests_match(&robot, &digest(SecretKind::RefreshToken, &secret)));
        assert!(!digests_match(&robot, "short"));
    }
}
