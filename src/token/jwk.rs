//! A signing key's public half as registries name and trust it: the JWK (RFC 7517/7518) that a
//! registry 3.x `jwks` file holds, and the two ways of turning it into a key ID by thumbprint.
//!
//! - [`PublicKey::rfc7638_thumbprint`]: RFC 7638 exactly: SHA-256 over the JWK's required members
//!   in lexicographic order, EC coordinates padded to the curve's 32 bytes (RFC 7518 §6.2.1.2).
//! - [`PublicKey::distribution_thumbprint`]: what distribution 3.1 computes for each certificate
//!   of its `rootcertbundle` (`GetRFC7638Thumbprint`): the same JSON, but with the big integers'
//!   minimal bytes, so an EC coordinate with a leading zero byte (about 1 key in 128) gives a
//!   different value. A token whose `kid` names a bundle certificate must carry this one.
//!
//! The JWK itself always carries the standard, padded coordinates: distribution reads its
//! `jwks` file with go-jose, which refuses EC coordinates of the wrong length.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The public key of a token signing key, as JWK members need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// P-256: the point's coordinates, 32 bytes each.
    P256 { x: [u8; 32], y: [u8; 32] },
    /// RSA: modulus and exponent, big-endian without leading zero bytes.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

impl PublicKey {
    /// The key of a DER SubjectPublicKeyInfo (what a certificate carries).
    pub fn from_spki(spki_der: &[u8]) -> Result<PublicKey, String> {
        use x509_parser::prelude::FromDer;
        use x509_parser::public_key::PublicKey as Parsed;
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|error| format!("not a public key: {error}"))?;
        match spki.parsed().map_err(|error| format!("public key does not parse: {error}"))? {
            Parsed::EC(point) => {
                let data = point.data();
                // Uncompressed: 0x04 || x || y.
                if data.len() != 65 || data[0] != 4 {
                    return Err("only uncompressed P-256 points are supported".into());
                }
                let mut x = [0u8; 32];
                let mut y = [0u8; 32];
                x.copy_from_slice(&data[1..33]);
                y.copy_from_slice(&data[33..]);
                Ok(PublicKey::P256 { x, y })
            }
            Parsed::RSA(rsa) => {
                Ok(PublicKey::Rsa { n: minimal(rsa.modulus).to_vec(), e: minimal(rsa.exponent).to_vec() })
            }
            _ => Err("only P-256 and RSA keys are supported by registries".into()),
        }
    }

    /// The JWK for a `jwks` file: `kid` as the token header carries it, `alg`, `use: sig`.
    pub fn jwk(&self, kid: &str, alg: &str) -> Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        match self {
            PublicKey::P256 { x, y } => json!({
                "kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y), "kid": kid, "alg": alg, "use": "sig"
            }),
            PublicKey::Rsa { n, e } => json!({
                "kty": "RSA", "n": b64(n), "e": b64(e), "kid": kid, "alg": alg, "use": "sig"
            }),
        }
    }

    /// RFC 7638's thumbprint (SHA-256, base64url without padding).
    pub fn rfc7638_thumbprint(&self) -> String {
        self.thumbprint(false)
    }

    /// Distribution 3.1's thumbprint of a bundle certificate's key (see the module header).
    pub fn distribution_thumbprint(&self) -> String {
        self.thumbprint(true)
    }

    fn thumbprint(&self, minimal_coordinates: bool) -> String {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        // Members in lexicographic order, no whitespace (RFC 7638 §3.3): written out by hand
        // because the order is the point.
        let payload = match self {
            PublicKey::P256 { x, y } => {
                let (x, y) = if minimal_coordinates { (minimal(x), minimal(y)) } else { (&x[..], &y[..]) };
                format!(r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#, b64(x), b64(y))
            }
            PublicKey::Rsa { n, e } => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64(e), b64(n)),
        };
        URL_SAFE_NO_PAD.encode(Sha256::digest(payload.as_bytes()))
    }

    /// RSA modulus length in bits (0 for EC keys).
    pub fn rsa_bits(&self) -> usize {
        match self {
            PublicKey::Rsa { n, .. } => n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize),
            PublicKey::P256 { .. } => 0,
        }
    }
}

/// `bytes` without leading zero bytes (a big integer's minimal big-endian form; zero stays one
/// byte, as Go's `big.Int.Bytes` gives none but no key has a zero coordinate and exponent).
fn minimal(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len().saturating_sub(1));
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example key of RFC 7638 §3.1 and its thumbprint.
    #[test]
    fn rsa_thumbprint_matches_rfc_7638() {
        let n = URL_SAFE_NO_PAD
            .decode(
                "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP\
                 ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY\
                 368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f\
                 M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            )
            .unwrap();
        let key = PublicKey::Rsa { n, e: vec![1, 0, 1] };
        assert_eq!(key.rfc7638_thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        assert_eq!(
            key.distribution_thumbprint(),
            key.rfc7638_thumbprint(),
            "RSA integers are minimal in both"
        );
        assert_eq!(key.rsa_bits(), 2048);
    }

    /// A coordinate with a leading zero byte: distribution 3.1 hashes 31 bytes of it, RFC 7638
    /// all 32; elsewhere the two agree.
    #[test]
    fn ec_thumbprints_differ_only_for_a_leading_zero_byte() {
        let mut x = [0x11u8; 32];
        let y = [0x22u8; 32];
        let full = PublicKey::P256 { x, y };
        assert_eq!(full.rfc7638_thumbprint(), full.distribution_thumbprint());
        x[0] = 0;
        let short = PublicKey::P256 { x, y };
        assert_ne!(short.rfc7638_thumbprint(), short.distribution_thumbprint());
        // Each is the SHA-256 of the JSON written by hand here.
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let strict = format!(r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#, b64(&x), b64(&y));
        let go = format!(r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#, b64(&x[1..]), b64(&y));
        assert_eq!(short.rfc7638_thumbprint(), URL_SAFE_NO_PAD.encode(Sha256::digest(strict)));
        assert_eq!(short.distribution_thumbprint(), URL_SAFE_NO_PAD.encode(Sha256::digest(go)));
        // The JWK keeps all 32 bytes.
        let jwk = short.jwk("k", "ES256");
        assert_eq!(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap().len(), 32);
    }
}
