//! Distribution 3.x's token verification, reproduced from its `registry/auth/token/` sources
//! (v3.0 and v3.1) so that a header mode a 3.x registry would refuse fails a test here: 3.x is
//! not packaged for the test machines, so no test runs it for real (the README says which
//! versions were run).
//!
//! The rules, as `Token.VerifySigningKey` and `newAccessController` apply them:
//! - the header's `alg` must be one of `signingalgorithms`;
//! - `x5c` first: the chain must verify against the `rootcertbundle` pool (for a self-signed
//!   certificate: be one of its certificates); when `x5c` is present and fails, the token is
//!   refused, with no fallback to `kid` (only a missing `x5c` falls through);
//! - then `kid`, looked up among the JWKS entries' `kid`s and the bundle certificates'
//!   thumbprints: 3.1 hashes the key's coordinates as minimal big-endian bytes; 3.0 hashed the
//!   curve's generator for every P-256 key (distribution#4683), so no P-256 bundle key is found
//!   by thumbprint there;
//! - go-jose's checks on the key: ES256 needs a P-256 key, RS256 an RSA key of 2048 bits or more.

use super::jwk::PublicKey;
use aws_lc_rs::signature::{
    RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

/// Which 3.x line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V3_0,
    V3_1,
}

/// A 3.x registry's `auth.token` trust settings.
pub struct Registry {
    pub version: Version,
    /// DER certificates of `rootcertbundle`.
    pub bundle: Vec<Vec<u8>>,
    /// `jwks` entries: (kid, key).
    pub jwks: Vec<(String, PublicKey)>,
    /// `signingalgorithms` (empty: all of them).
    pub algorithms: Vec<&'static str>,
}

/// The P-256 generator, which 3.0 hashed in place of every key's coordinates.
const P256_GX: &str = "6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296";
const P256_GY: &str = "4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5";

fn key_of_certificate(der: &[u8]) -> PublicKey {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).expect("a certificate");
    PublicKey::from_spki(certificate.tbs_certificate.subject_pki.raw).expect("a supported key")
}

impl Registry {
    /// The thumbprint this version files a bundle certificate's key under.
    fn bundle_thumbprint(&self, key: &PublicKey) -> String {
        match (self.version, key) {
            (Version::V3_0, PublicKey::P256 { .. }) => {
                let decode = |hex: &str| data_encoding::HEXUPPER.decode(hex.as_bytes()).unwrap();
                let mut x = [0u8; 32];
                let mut y = [0u8; 32];
                x.copy_from_slice(&decode(P256_GX));
                y.copy_from_slice(&decode(P256_GY));
                PublicKey::P256 { x, y }.distribution_thumbprint()
            }
            _ => key.distribution_thumbprint(),
        }
    }

    /// Whether the registry accepts `token`'s signature and key (claims are not its concern here).
    pub fn verify(&self, token: &str) -> Result<(), String> {
        let mut parts = token.split('.');
        let (header, payload, signature) = match (parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(p), Some(s)) => (h, p, s),
            _ => return Err("malformed token".into()),
        };
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        let alg = header["alg"].as_str().unwrap_or("");
        if !self.algorithms.is_empty() && !self.algorithms.contains(&alg) {
            return Err(format!("unexpected signature algorithm {alg:?}"));
        }
        let key = match header.get("x5c").and_then(|x5c| x5c.as_array()) {
            Some(chain) => {
                // verifyCertChain: an x5c that does not verify is the end, whatever kid says.
                let leaf = chain.first().and_then(|c| c.as_str()).ok_or("empty x5c")?;
                let der = STANDARD.decode(leaf).map_err(|e| e.to_string())?;
                if !self.bundle.contains(&der) {
                    return Err("x509: certificate signed by unknown authority".into());
                }
                key_of_certificate(&der)
            }
            None => {
                let kid = header["kid"].as_str().filter(|kid| !kid.is_empty()).ok_or("invalid token")?;
                let from_jwks = self.jwks.iter().find(|(id, _)| id == kid).map(|(_, key)| key.clone());
                let from_bundle = || {
                    self.bundle
                        .iter()
                        .map(|der| key_of_certificate(der))
                        .find(|key| self.bundle_thumbprint(key) == kid)
                };
                from_jwks
                    .or_else(from_bundle)
                    .ok_or_else(|| format!("token signed by untrusted key with ID: {kid:?}"))?
            }
        };
        let signed = format!("{}.{payload}", token.split('.').next().unwrap_or(""));
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|e| e.to_string())?;
        match (alg, &key) {
            ("ES256", PublicKey::P256 { x, y }) => {
                let mut point = vec![4u8];
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(signed.as_bytes(), &signature)
                    .map_err(|_| "square/go-jose: error in cryptographic primitive".to_string())
            }
            ("RS256", PublicKey::Rsa { n, e }) => {
                if key.rsa_bits() < 2048 {
                    return Err("go-jose/go-jose: RSA key too short".into());
                }
                RsaPublicKeyComponents { n, e }
                    .verify(&RSA_PKCS1_2048_8192_SHA256, signed.as_bytes(), &signature)
                    .map_err(|_| "square/go-jose: error in cryptographic primitive".to_string())
            }
            _ => Err(format!("go-jose/go-jose: unexpected key type for {alg}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KeyAlgorithm, KeyIdMode};
    use crate::token::key_set::HeaderMode;
    use crate::token::keys::{generate_pem, SigningKey};

    fn der_of(pem: &str) -> Vec<u8> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        pem.contents
    }

    /// The same key pair, with its header written each way.
    fn keyed(algorithm: KeyAlgorithm) -> (String, String) {
        generate_pem(algorithm).unwrap()
    }

    fn token(pems: &(String, String), mode: HeaderMode) -> (String, SigningKey) {
        let signing = SigningKey::from_pem(&pems.0, &pems.1, "test", mode).unwrap();
        (signing.sign(&serde_json::json!({"sub": "x"})).unwrap(), signing)
    }

    fn registry(version: Version, bundle: bool, jwks: bool, signing: &SigningKey) -> Registry {
        Registry {
            version,
            bundle: if bundle { vec![der_of(signing.certificate_pem())] } else { vec![] },
            jwks: if jwks { vec![(signing.kid().to_string(), signing.public_key().clone())] } else { vec![] },
            algorithms: vec![signing.algorithm().jws_name()],
        }
    }

    const MODES: [(KeyIdMode, bool); 4] = [
        (KeyIdMode::Libtrust, true),
        (KeyIdMode::Thumbprint, true),
        (KeyIdMode::Libtrust, false),
        (KeyIdMode::Thumbprint, false),
    ];

    /// Each header mode against each 3.x configuration, for both algorithms: what the README's
    /// table recommends is accepted and what it warns against is refused.
    #[test]
    fn header_modes_against_each_registry_3_configuration() {
        for algorithm in [KeyAlgorithm::ES256, KeyAlgorithm::RS256] {
            let pems = keyed(algorithm);
            for (key_id, x5c) in MODES {
                let (jwt, signing) = token(&pems, HeaderMode { key_id, x5c });
                for version in [Version::V3_0, Version::V3_1] {
                    for (bundle, jwks) in [(true, false), (false, true), (true, true)] {
                        // The JWKS a registry reads is written with the server's own header mode.
                        let accepted = registry(version, bundle, jwks, &signing).verify(&jwt).is_ok();
                        let expected = match (x5c, bundle, jwks) {
                            // x5c is checked first against the bundle, with no fallback.
                            (true, true, _) => true,
                            (true, false, _) => false,
                            // Without x5c, the JWKS names the key under the header's kid...
                            (false, _, true) => true,
                            // ...and the bundle only under 3.1's thumbprint; 3.0 hashed the
                            // generator for P-256 keys (distribution#4683).
                            (false, true, false) => {
                                key_id == KeyIdMode::Thumbprint
                                    && (version == Version::V3_1 || algorithm == KeyAlgorithm::RS256)
                            }
                            (false, false, false) => unreachable!(),
                        };
                        assert_eq!(
                            accepted, expected,
                            "{algorithm:?} kid={key_id:?} x5c={x5c} on {version:?} bundle={bundle} jwks={jwks}"
                        );
                    }
                }
            }
        }
    }

    /// On a key with a leading zero byte in a coordinate, 3.1 files the bundle certificate under
    /// its unpadded thumbprint: a kid computed strictly by RFC 7638 is not found.
    #[test]
    fn a_leading_zero_coordinate_needs_the_unpadded_thumbprint() {
        let pems = (0..5_000)
            .map(|_| keyed(KeyAlgorithm::ES256))
            .find(|pems| {
                let key =
                    SigningKey::from_pem(&pems.0, &pems.1, "test", crate::token::keys::tests::DEFAULT_MODE)
                        .unwrap();
                matches!(key.public_key(), PublicKey::P256 { x, y } if x[0] == 0 || y[0] == 0)
            })
            .expect("about one key in 64 has a coordinate starting with a zero byte");
        let mode = HeaderMode { key_id: KeyIdMode::Thumbprint, x5c: false };
        let (jwt, signing) = token(&pems, mode);
        assert_ne!(signing.public_key().rfc7638_thumbprint(), signing.thumbprint());
        let v3_1 = registry(Version::V3_1, true, false, &signing);
        assert!(v3_1.verify(&jwt).is_ok(), "Portcullis's thumbprint kid is 3.1's");
        // The same token with the strict thumbprint as kid, signed again.
        let strict = SigningKey::from_pem(&pems.0, &pems.1, "test", mode).unwrap();
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "kid": strict.public_key().rfc7638_thumbprint()});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
            URL_SAFE_NO_PAD.encode(b"{\"sub\":\"x\"}")
        );
        let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rcgen::KeyPair::from_pem(&pems.0).unwrap().serialize_der(),
        )
        .unwrap();
        let signature = pair.sign(&aws_lc_rs::rand::SystemRandom::new(), signing_input.as_bytes()).unwrap();
        let strict_jwt = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
        let refused = v3_1.verify(&strict_jwt).unwrap_err();
        assert!(refused.contains("untrusted key"), "{refused}");
    }

    /// `signingalgorithms` pinned to one algorithm refuses the other; go-jose refuses short RSA.
    #[test]
    fn pinned_algorithms_and_key_checks() {
        let pems = keyed(KeyAlgorithm::RS256);
        let (jwt, signing) = token(&pems, crate::token::keys::tests::DEFAULT_MODE);
        let mut pinned = registry(Version::V3_1, true, false, &signing);
        pinned.algorithms = vec!["ES256"];
        assert!(pinned.verify(&jwt).unwrap_err().contains("algorithm"));
        // A JWKS entry with a 1024-bit RSA key: go-jose refuses it before any signature check.
        let short = PublicKey::Rsa { n: vec![0xff; 128], e: vec![1, 0, 1] };
        assert_eq!(short.rsa_bits(), 1024);
        let weak = Registry {
            version: Version::V3_1,
            bundle: vec![],
            jwks: vec![("short".into(), short)],
            algorithms: vec![],
        };
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"short"}"#);
        let refused = weak.verify(&format!("{header}.e30.AAAA")).unwrap_err();
        assert!(refused.contains("too short"), "{refused}");
    }
}
