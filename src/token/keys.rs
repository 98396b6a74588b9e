//! One signing key: a private key with its self-signed certificate, parsed once, and named in
//! the token header the way the registry in front looks keys up ([`HeaderMode`]).
//!
//! Distribution 2.8 finds the key by the header's `x5c` (the certificate itself, checked against
//! the `rootcertbundle`) or by `kid` (the libtrust key ID of a bundle certificate's key). 3.x
//! checks `x5c` first, against the bundle, without falling back; without `x5c` it takes `kid` as
//! a JWKS entry's `kid` or a bundle certificate's thumbprint (computed its own way, see
//! [`super::jwk`]). The default header (libtrust `kid` and `x5c`) serves 2.8 and 3.x with a
//! bundle; 3.x with a JWKS alone needs `x5c = false`. Which keys exist and which one signs is
//! [`super::keyring`]'s business.

use std::fs;
use std::io::Write;
use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::claims::Header;
use super::jwk::PublicKey;
use crate::config::{Config, KeyAlgorithm, KeyIdMode};

/// How token headers name their key, for the registry in front (`[token] key_id`, `[token] x5c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderMode {
    pub key_id: KeyIdMode,
    pub x5c: bool,
}

impl HeaderMode {
    pub fn from_config(config: &Config) -> HeaderMode {
        HeaderMode { key_id: config.token.key_id, x5c: config.token.x5c }
    }
}

/// A private key with its certificate, ready to sign tokens.
pub struct SigningKey {
    /// ES256 or RS256, as the key's type dictates.
    algorithm: KeyAlgorithm,
    /// The private key, parsed once: parsing it per token (as `jsonwebtoken::encode` does)
    /// costs about as much as the signature.
    signer: Signer,
    /// The encoded JWT header and its `.`, the same for every token; serialized once here
    /// rather than per token (it carries the whole certificate).
    header_prefix: String,
    /// The header's `kid` (the libtrust key ID or the thumbprint, as the header mode says) and
    /// the JWKS entry's.
    kid: String,
    /// The libtrust key ID of the public key (registry 2.8's `kid`).
    libtrust_kid: String,
    /// The thumbprint distribution 3.1 computes for the certificate (its `kid` for bundle keys).
    thumbprint: String,
    public_key: PublicKey,
    /// The certificate as PEM: what the registry's `rootcertbundle` file must contain.
    certificate_pem: String,
    /// When the certificate expires (seconds since the epoch).
    not_after: i64,
}

/// Signing a token failed: the claims did not serialize, or the crypto library refused.
#[derive(Debug, thiserror::Error)]
#[error("signing the token failed: {0}")]
pub struct SigningError(String);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error("the signing keys in the database: {0}")]
    Store(String),
}

impl SigningKey {
    /// Builds a signing key from a PKCS#8 PEM private key and the PEM certificate of its public
    /// key, with its header as `mode` says.
    pub fn from_pem(key_pem: &str, cert_pem: &str, origin: &str, mode: HeaderMode) -> Result<Self, KeyError> {
        let invalid = |message: String| KeyError::Invalid { path: origin.to_string(), message };
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| invalid(format!("certificate is not PEM: {e}")))?;
        let certificate =
            pem.parse_x509().map_err(|e| invalid(format!("certificate does not parse: {e}")))?;
        let spki = certificate.tbs_certificate.subject_pki.raw;
        let key_pair = rcgen::KeyPair::from_pem(key_pem)
            .map_err(|e| invalid(format!("private key does not parse: {e}")))?;
        if rcgen::PublicKeyData::subject_public_key_info(&key_pair) != spki {
            return Err(invalid("the certificate does not belong to the private key".into()));
        }
        let unusable = |e: aws_lc_rs::error::KeyRejected| invalid(format!("private key unusable: {e}"));
        let der = key_pair.serialize_der();
        let (algorithm, signer) = if key_pair.is_compatible(&rcgen::PKCS_ECDSA_P256_SHA256) {
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).map_err(unusable)?;
            (KeyAlgorithm::ES256, Signer::Ecdsa(pair))
        } else if key_pair.is_compatible(&rcgen::PKCS_RSA_SHA256) {
            (KeyAlgorithm::RS256, Signer::Rsa(RsaKeyPair::from_pkcs8(&der).map_err(unusable)?))
        } else {
            return Err(invalid(
                "only P-256 (ES256) and RSA (RS256) keys are supported by registries".into(),
            ));
        };
        let public_key = PublicKey::from_spki(spki).map_err(invalid)?;
        let libtrust_kid = libtrust_key_id(spki);
        let thumbprint = public_key.distribution_thumbprint();
        let kid = match mode.key_id {
            KeyIdMode::Libtrust => libtrust_kid.clone(),
            KeyIdMode::Thumbprint => thumbprint.clone(),
        };
        // The `x5c` chain: the certificate alone (self-signed), standard base64 DER.
        let x5c = mode.x5c.then(|| [base64::engine::general_purpose::STANDARD.encode(&pem.contents)]);
        let header = Header { typ: "JWT", alg: algorithm.jws_name(), kid: &kid, x5c };
        let header_json =
            serde_json::to_vec(&header).map_err(|e| invalid(format!("cannot encode the JWT header: {e}")))?;
        let header_prefix = format!("{}.", URL_SAFE_NO_PAD.encode(header_json));
        let not_after = certificate.validity().not_after.timestamp();
        Ok(SigningKey {
            algorithm,
            signer,
            header_prefix,
            kid,
            libtrust_kid,
            thumbprint,
            public_key,
            certificate_pem: cert_pem.to_string(),
            not_after,
        })
    }

    /// Signs `claims` as a compact JWS with `typ`, `alg`, `kid` and `x5c` in the header.
    pub fn sign<T: serde::Serialize>(&self, claims: &T) -> Result<String, SigningError> {
        let payload = serde_json::to_vec(claims).map_err(|error| SigningError(error.to_string()))?;
        let mut token = String::with_capacity(self.header_prefix.len() + payload.len() * 4 / 3 + 400);
        token.push_str(&self.header_prefix);
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let failed = |_| SigningError("the crypto library refused".into());
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Ecdsa(pair) => {
                let signature = pair.sign(&rng, token.as_bytes()).map_err(failed)?;
                token.push('.');
                URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
            }
            Signer::Rsa(pair) => {
                let mut signature = vec![0u8; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, token.as_bytes(), &mut signature).map_err(failed)?;
                token.push('.');
                URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
            }
        }
        Ok(token)
    }

    /// The `kid` its tokens carry.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn libtrust_kid(&self) -> &str {
        &self.libtrust_kid
    }

    /// Distribution 3.1's thumbprint of the certificate's key.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// Its JWKS entries: the public key under both names a token header may give it (the
    /// libtrust key ID and the thumbprint), one of which is the `kid` its tokens carry.
    pub fn jwks_entries(&self) -> [serde_json::Value; 2] {
        let alg = self.algorithm.jws_name();
        [self.public_key.jwk(&self.libtrust_kid, alg), self.public_key.jwk(&self.thumbprint, alg)]
    }

    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }
}

/// A parsed private key of either kind registries accept.
enum Signer {
    /// P-256, signatures in the fixed `r || s` form JWS uses.
    Ecdsa(EcdsaKeyPair),
    /// RSA, PKCS#1 v1.5 with SHA-256.
    Rsa(RsaKeyPair),
}

/// The libtrust key ID: SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32 without
/// padding, in twelve groups of four joined by `:`.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    let encoded = data_encoding::BASE32_NOPAD.encode(&digest[..30]);
    let groups: Vec<&str> = (0..encoded.len()).step_by(4).map(|i| &encoded[i..i + 4]).collect();
    groups.join(":")
}

/// A new key pair and a self-signed certificate for it, both PEM.
pub fn generate_pem(algorithm: KeyAlgorithm) -> Result<(String, String), KeyError> {
    let failed = |e: rcgen::Error| KeyError::Generate(e.to_string());
    let key_pair = match algorithm {
        KeyAlgorithm::ES256 => {
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed)?
        }
        KeyAlgorithm::RS256 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .map_err(failed)?
        }
    };
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "Portcullis token signer");
    let now = time::OffsetDateTime::now_utc();
    // Backdated a day so a registry host whose clock runs behind still accepts it.
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    let certificate = params.self_signed(&key_pair).map_err(failed)?;
    Ok((key_pair.serialize_pem(), certificate.pem()))
}

/// Writes a file others may read (a certificate bundle, a JWKS), atomically.
pub(crate) fn write_public(path: &Path, contents: &str) -> Result<(), KeyError> {
    write_file(path, contents, 0o644)
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), KeyError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let failed = |source| KeyError::Write { path: path.display().to_string(), source };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(failed)?;
    }
    // Written beside the target and renamed over it, so that no reader sees half a file. The
    // temporary name is random and opened only if new and not a link: whoever may write to the
    // directory cannot make this write through a planted name to another file.
    let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(mode)
            .open(&temporary)?;
        // The mode given to open() is filtered by the umask.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written.map_err(failed)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    pub const DEFAULT_MODE: HeaderMode = HeaderMode { key_id: KeyIdMode::Libtrust, x5c: true };

    /// A fresh key of `algorithm` with its header as `mode` says.
    pub fn key(algorithm: KeyAlgorithm, mode: HeaderMode) -> SigningKey {
        let (key_pem, cert_pem) = generate_pem(algorithm).unwrap();
        SigningKey::from_pem(&key_pem, &cert_pem, "test", mode).unwrap()
    }

    /// The example key of distribution's `docs/spec/auth/jwt.md` and the kid printed there.
    #[test]
    fn libtrust_kid_matches_the_spec_vector() {
        let x = URL_SAFE_NO_PAD.decode("m7zUpx3b-zmVE5cymSs64POG9QcyEpJaYCD82-549_Q").unwrap();
        let y = URL_SAFE_NO_PAD.decode("dU3biz8sZ_8GPB-odm8Wxz3lNDr1xcAQQPQaOcr1fmc").unwrap();
        // DER SubjectPublicKeyInfo prefix for an uncompressed P-256 point.
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
            0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
        ];
        spki.extend_from_slice(&x);
        spki.extend_from_slice(&y);
        assert_eq!(libtrust_key_id(&spki), "PYYO:TEWU:V7JH:26JV:AQTZ:LJC3:SXVJ:XGHA:34F2:2LAQ:ZRMK:Z7Q6");
    }

    #[test]
    fn a_key_refuses_a_certificate_of_another() {
        let (key_pem, _) = generate_pem(KeyAlgorithm::ES256).unwrap();
        let (_, other_cert) = generate_pem(KeyAlgorithm::ES256).unwrap();
        assert!(matches!(
            SigningKey::from_pem(&key_pem, &other_cert, "test", DEFAULT_MODE),
            Err(KeyError::Invalid { .. })
        ));
    }

    /// The header names the key as the mode says: libtrust or thumbprint `kid`, `x5c` or not.
    #[test]
    fn header_modes_name_the_key() {
        for (key_id, x5c) in [(KeyIdMode::Libtrust, true), (KeyIdMode::Thumbprint, false)] {
            let signing = key(KeyAlgorithm::ES256, HeaderMode { key_id, x5c });
            let token = signing.sign(&serde_json::json!({"sub": "x"})).unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            let expected = match key_id {
                KeyIdMode::Libtrust => signing.libtrust_kid(),
                KeyIdMode::Thumbprint => signing.thumbprint(),
            };
            assert_eq!(header.kid.as_deref(), Some(expected));
            assert_eq!(header.x5c.is_some(), x5c);
            assert!(
                signing.jwks_entries().iter().any(|jwk| jwk["kid"] == expected),
                "the JWKS names the key as its tokens do"
            );
        }
        assert_eq!(key(KeyAlgorithm::ES256, DEFAULT_MODE).libtrust_kid().len(), 59);
    }

    /// The signature checks out against the certificate's public key, for both key kinds, and
    /// the precomputed header is the one jsonwebtoken would have written.
    #[test]
    fn signature_verifies_against_the_certificate() {
        use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256};
        for algorithm in [KeyAlgorithm::ES256, KeyAlgorithm::RS256] {
            let signing = key(algorithm, DEFAULT_MODE);
            let token = signing.sign(&serde_json::json!({"sub": "alice", "exp": 4_000_000_000u64})).unwrap();
            let (signed, signature) = token.rsplit_once('.').unwrap();
            let (_, pem) = x509_parser::pem::parse_x509_pem(signing.certificate_pem().as_bytes()).unwrap();
            let certificate = pem.parse_x509().unwrap();
            let public_key = certificate.tbs_certificate.subject_pki.subject_public_key.data.to_vec();
            let verifier: &dyn aws_lc_rs::signature::VerificationAlgorithm = match algorithm {
                KeyAlgorithm::ES256 => &ECDSA_P256_SHA256_FIXED,
                KeyAlgorithm::RS256 => &RSA_PKCS1_2048_8192_SHA256,
            };
            UnparsedPublicKey::new(verifier, public_key)
                .verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(signature).unwrap())
                .expect("signature verifies");
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(format!("{:?}", header.alg), signing.algorithm().jws_name());
            assert_eq!(header.typ.as_deref(), Some("JWT"));
            assert_eq!(header.kid.as_deref(), Some(signing.kid()));
            assert_eq!(header.x5c.as_ref().map(Vec::len), Some(1));
            let payload: serde_json::Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(signed.split('.').nth(1).unwrap()).unwrap())
                    .unwrap();
            assert_eq!(payload["sub"], "alice");
            assert!(signing.not_after() > crate::store::now() + 9 * 365 * 86400, "ten years");
        }
    }
}
