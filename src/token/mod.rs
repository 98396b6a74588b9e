//! The registry token itself: a decision in, a signed JWT and its JSON envelope out. (The
//! request's scopes are parsed in [`crate::authz::scope`].)
//!
//! - [`claims`]: the JWT claim set the registry verifies;
//! - [`keys`]: one signing key, its certificate, and the header that names it;
//! - [`jwk`]: a key's JWK and thumbprints, as registry 3.x names keys;
//! - [`key_set`]: the stored keys and their rotation states as one set, and the bundle and
//!   JWKS files registries read;
//! - [`keyring`]: the set a running server signs with, following the database;
//! - `registry_v3` (tests only): distribution 3.x's verification rules, which every header
//!   mode is checked against;
//! - this file: [`TokenIssuer`], which turns a decision into a token, and the JSON answer.

pub mod claims;
pub mod jwk;
pub mod key_set;
pub mod keyring;
pub mod keys;
#[cfg(test)]
mod registry_v3;

use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;
use serde::Serialize;

use crate::authz::scope::Scope;
use claims::{AccessEntry, Claims};
use keys::SigningKey;

/// Makes tokens for the configured issuer and lifetime, signed by the key it is given (the
/// keyring's current one).
pub struct TokenIssuer {
    /// The `iss` claim.
    issuer: String,
    /// Seconds from `iat` to `exp`; at least 60.
    lifetime_secs: u64,
    /// Seconds `nbf` lies before `iat`.
    not_before_skew_secs: u64,
}

/// What the token endpoint answers with (GET and POST alike).
///
/// Both `token` and `access_token` are sent: containers/image prefers the first, containerd and
/// oras require the second.
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    pub token: String,
    pub access_token: String,
    /// Equal to `exp - iat`.
    pub expires_in: u64,
    /// RFC 3339 UTC; docker, containerd and containers/image all parse it.
    pub issued_at: String,
    /// Only on request (`offline_token=true` / `access_type=offline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The granted scopes as one space-separated string (OAuth2 answers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl TokenIssuer {
    pub fn new(issuer: String, lifetime_secs: u64, not_before_skew_secs: u64) -> Self {
        TokenIssuer { issuer, lifetime_secs, not_before_skew_secs }
    }

    /// Signs with `key` a token for `subject` (empty when anonymous) valid at `audience` for
    /// `granted`.
    pub fn issue(
        &self,
        key: &SigningKey,
        subject: &str,
        audience: &str,
        granted: &[Scope],
    ) -> Result<TokenResponse, keys::SigningError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.to_string(),
            aud: audience.to_string(),
            exp: now + self.lifetime_secs,
            nbf: now.saturating_sub(self.not_before_skew_secs),
            iat: now,
            jti: random_id(),
            access: granted.iter().map(AccessEntry::from).collect(),
        };
        let jwt = key.sign(&claims)?;
        Ok(TokenResponse {
            token: jwt.clone(),
            access_token: jwt,
            expires_in: self.lifetime_secs,
            issued_at: crate::text::rfc3339(now as i64),
            refresh_token: None,
            scope: None,
        })
    }

    pub fn lifetime_secs(&self) -> u64 {
        self.lifetime_secs
    }
}

/// 128 random bits, hex-encoded.
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    data_encoding::HEXLOWER.encode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_at_is_rfc3339_utc() {
        assert_eq!(crate::text::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(crate::text::rfc3339(1_415_387_315), "2014-11-07T19:08:35Z");
    }

    #[test]
    fn issued_token_carries_claims_and_matching_lifetime() {
        let key = keys::tests::key(crate::config::KeyAlgorithm::ES256, keys::tests::DEFAULT_MODE);
        let issuer = TokenIssuer::new("portcullis".into(), 300, 10);
        let scopes = crate::authz::scope::parse_scopes(["repository:a/b:pull"], 4).unwrap();
        let answer = issuer.issue(&key, "alice", "registry", &scopes).unwrap();
        assert_eq!(answer.token, answer.access_token);
        assert_eq!(answer.expires_in, 300);
        let payload = answer.token.split('.').nth(1).unwrap();
        let claims: Claims = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap(),
        )
        .unwrap();
        assert_eq!(claims.exp - claims.iat, 300);
        assert_eq!(claims.iat - claims.nbf, 10);
        assert_eq!(
            (claims.sub.as_str(), claims.aud.as_str(), claims.iss.as_str()),
            ("alice", "registry", "portcullis")
        );
        assert_eq!(claims.access.len(), 1);
        assert_eq!(claims.jti.len(), 32);
    }
}
