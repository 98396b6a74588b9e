//! `portcullis import`: reading another server's users, projects and memberships into one
//! [`Import`] for the store to write in one transaction. One file per source:
//!
//! - [`htpasswd`]: the registry's own `htpasswd` file (bcrypt), and Apache's weaker kinds;
//! - [`docker_auth`]: cesanta/docker_auth's static `users:` and the `acl:` entries that mean a
//!   project role;
//! - [`harbor`]: Harbor's `harbor_user` rows (PBKDF2) and its API's projects and members.
//!
//! Passwords keep their old hash ([`crate::authn::carried_hash`]) until a login replaces it
//! (the first one, unless its kind read only part of the password). Whatever cannot be carried over is a [`Finding`] with its place in the file and why;
//! nothing is written when the file cannot be read at all.

pub mod docker_auth;
pub mod harbor;
pub mod htpasswd;

use serde::Serialize;

use crate::authn::carried_hash::{self, Scheme};
use crate::authn::password::PasswordHasher;
use crate::store::names::{fold, validate_user_name};
use crate::store::{Import, ImportedUser};

/// What a file came to: what to write, and what was left out.
#[derive(Debug, Default)]
pub struct Plan {
    pub import: Import,
    pub findings: Vec<Finding>,
    /// Where each user kept so far came from, by folded name.
    places: std::collections::HashMap<String, String>,
}

impl Plan {
    /// Keeps `user`, read at `place`, unless its name is invalid or another user of the file
    /// has it already (up to ASCII case, as logins compare): those are findings.
    pub fn add_user(&mut self, place: String, user: ImportedUser) {
        if let Err(error) = validate_user_name(&user.name) {
            self.findings.push(Finding::skipped(place, format!("{error}; skipped")));
            return;
        }
        if let Some(first) = self.places.get(&fold(&user.name)) {
            let message = format!(
                "{}: the same user as {first} (names are compared ignoring case); skipped",
                crate::text::for_message(&user.name)
            );
            self.findings.push(Finding::skipped(place, message));
            return;
        }
        self.places.insert(fold(&user.name), place);
        self.import.users.push(user);
    }
}

/// Something of the file that was not carried over, or a caveat about what was, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Where it is: `line 3`, `acl entry 2`, `users.csv row 4`.
    pub place: String,
    pub message: String,
    /// Whether something was left out (else it is a caveat).
    pub left_out: bool,
}

impl Finding {
    /// Something left out.
    pub fn skipped(place: impl Into<String>, message: impl Into<String>) -> Finding {
        Finding { place: place.into(), message: message.into(), left_out: true }
    }

    /// A caveat about what was carried over, or about what cannot be.
    pub fn note(place: impl Into<String>, message: impl Into<String>) -> Finding {
        Finding { left_out: false, ..Finding::skipped(place, message) }
    }
}

/// How an import treats the password hashes it reads.
pub struct HashPolicy<'a> {
    /// Accept the weak kinds (Apache MD5, SHA-1, crypt, plain text) too.
    pub allow_weak: bool,
    /// Hashes plain-text passwords at once (they are never stored as they are).
    pub hasher: &'a PasswordHasher,
}

impl HashPolicy<'_> {
    /// The hash to store for the `field` a file gave as a user's password hash, with its kind's
    /// name; `Err` says why the user is left out. Plain text is what is neither a known hash nor
    /// looks like one (`htpasswd -p`, nginx's `{PLAIN}`).
    pub fn accept(&self, field: &str) -> Result<(String, &'static str), String> {
        let plain = field.strip_prefix("{PLAIN}").or_else(|| {
            let looks_like_a_hash = field.starts_with('$') || field.starts_with('{');
            (Scheme::of(field) == Scheme::Unknown && !looks_like_a_hash).then_some(field)
        });
        if let Some(password) = plain {
            if password.is_empty() {
                return Err("the password is empty".into());
            }
            if !self.allow_weak {
                return Err(
                    "a plain-text password: give --allow-weak to import it (hashed with argon2id now)".into(),
                );
            }
            let hash = self.hasher.hash_blocking(password).map_err(|error| error.to_string())?;
            return Ok((hash, "plain text, hashed now"));
        }
        let scheme = carried_hash::check(field)?;
        if scheme.is_weak() && !self.allow_weak {
            return Err(format!(
                "a weak {} hash: give --allow-weak to import it (replaced by argon2id at first login)",
                scheme.name()
            ));
        }
        Ok((field.to_string(), scheme.name()))
    }
}
