//! The JWT header and claim set, as distribution's `registry/auth/token` decodes them.
//!
//! The header names the key twice: `x5c` (the certificate, checked against the registry's
//! bundle) and `kid` (its libtrust key ID), so registries of 2.8 and 3.x both find it. `aud` is a
//! single string because distribution 2.8 fails to decode an array; times are integer
//! seconds; `access` lists each granted resource with its actions.

use serde::{Deserialize, Serialize};

use crate::authz::scope::Scope;

/// The JOSE header of every token, in distribution's field order.
#[derive(Debug, Serialize)]
pub struct Header<'a> {
    pub typ: &'static str,
    /// `ES256` or `RS256`.
    pub alg: &'static str,
    pub kid: &'a str,
    /// The signing certificate alone (it is self-signed), standard base64 DER; left out for a
    /// registry 3.x that trusts a JWKS alone (it would check `x5c` against an empty bundle).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x5c: Option<[String; 1]>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Issuer: must equal the registry's `auth.token.issuer`.
    pub iss: String,
    /// The account the token was issued to; empty for anonymous requests, as the spec says.
    pub sub: String,
    /// Audience: the service asked for, which the registry compares with `auth.token.service`.
    pub aud: String,
    pub exp: u64,
    /// Set a little before `iat` so a registry whose clock runs behind accepts the token at once.
    pub nbf: u64,
    pub iat: u64,
    /// A random ID, so that two tokens issued in the same second still differ.
    pub jti: String,
    pub access: Vec<AccessEntry>,
}

/// One granted resource.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessEntry {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl From<&Scope> for AccessEntry {
    fn from(scope: &Scope) -> Self {
        AccessEntry {
            resource_type: scope.resource_type.as_str().to_string(),
            name: scope.name.clone(),
            actions: scope.actions.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::scope::parse_scopes;

    #[test]
    fn claims_serialize_as_distribution_expects() {
        let scopes = parse_scopes(["repository(plugin):team/app:push,pull"], 4).unwrap();
        let claims = Claims {
            iss: "portcullis".into(),
            sub: "alice".into(),
            aud: "registry".into(),
            exp: 1300,
            nbf: 990,
            iat: 1000,
            jti: "j".into(),
            access: scopes.iter().map(AccessEntry::from).collect(),
        };
        let json = serde_json::to_value(&claims).unwrap();
        assert_eq!(json["aud"], "registry", "aud must be a string for distribution 2.8");
        assert_eq!(
            json["access"],
            serde_json::json!([{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}])
        );
    }
}
