//! The signing key: created on first start, loaded after, and named the way registries look it up.
//!
//! The registry trusts the certificates in its `rootcertbundle`. Distribution 2.8 finds the key by
//! the JWT header's `x5c` (the certificate itself, checked against the bundle) or by `kid` (the
//! libtrust key ID of a bundle certificate's public key); 3.x accepts `x5c` too. Every token
//! therefore carries both, which is what lets one Portcullis serve registries of either version.

use std::fs;
use std::io::Write;
use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::claims::Header;
use crate::config::KeyAlgorithm;

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
    /// libtrust key ID of the public key, the header's `kid`.
    kid: String,
    /// The certificate as PEM: what the registry's `rootcertbundle` file must contain.
    certificate_pem: String,
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
    #[error("{0} exists but {1} does not; restore it or remove both to generate a new key")]
    Incomplete(String, String),
}

impl SigningKey {
    /// Loads the key and certificate, creating both when neither exists. A key without its
    /// certificate (or the reverse) is an error, not a reason to overwrite: the registry already
    /// trusts the old certificate and replacing it silently would lock every client out.
    pub fn load_or_create(
        key_path: &Path,
        cert_path: &Path,
        algorithm: KeyAlgorithm,
    ) -> Result<Self, KeyError> {
        match (key_path.exists(), cert_path.exists()) {
            (true, true) => Self::load(key_path, cert_path),
            (false, false) => {
                let (key_pem, cert_pem) = generate(algorithm)?;
                // Two servers starting on one new data dir both get here: the first to publish
                // the key writes its certificate, the other uses that pair.
                if !publish_new(key_path, &key_pem, 0o600)? {
                    return Self::load_when_complete(key_path, cert_path);
                }
                write_public(cert_path, &cert_pem)?;
                Self::from_pem(&key_pem, &cert_pem, &key_path.display().to_string())
            }
            (true, false) | (false, true) => Self::load_when_complete(key_path, cert_path),
        }
    }

    /// Loads the pair once both files exist, waiting briefly for a process that is writing the
    /// other half; a half that stays missing is an error naming both files, never replaced.
    fn load_when_complete(key_path: &Path, cert_path: &Path) -> Result<Self, KeyError> {
        let deadline = std::time::Instant::now() + PAIR_WAIT;
        while !(key_path.exists() && cert_path.exists()) {
            if std::time::Instant::now() >= deadline {
                let (present, missing) = match key_path.exists() {
                    true => (key_path, cert_path),
                    false => (cert_path, key_path),
                };
                return Err(KeyError::Incomplete(
                    present.display().to_string(),
                    missing.display().to_string(),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self::load(key_path, cert_path)
    }

    /// Generates a new key and certificate, replacing the files (used by `key generate --force`).
    pub fn create(key_path: &Path, cert_path: &Path, algorithm: KeyAlgorithm) -> Result<Self, KeyError> {
        let (key_pem, cert_pem) = generate(algorithm)?;
        write_private(key_path, &key_pem)?;
        write_public(cert_path, &cert_pem)?;
        Self::from_pem(&key_pem, &cert_pem, &key_path.display().to_string())
    }

    pub fn load(key_path: &Path, cert_path: &Path) -> Result<Self, KeyError> {
        let read = |path: &Path| {
            fs::read_to_string(path)
                .map_err(|source| KeyError::Read { path: path.display().to_string(), source })
        };
        Self::from_pem(&read(key_path)?, &read(cert_path)?, &key_path.display().to_string())
    }

    /// Builds a signing key from a PKCS#8 PEM private key and the PEM certificate of its public key.
    pub fn from_pem(key_pem: &str, cert_pem: &str, origin: &str) -> Result<Self, KeyError> {
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
        let kid = libtrust_key_id(spki);
        // The `x5c` chain: the certificate alone (self-signed), standard base64 DER.
        let certificate_base64 = base64::engine::general_purpose::STANDARD.encode(&pem.contents);
        let header = Header { typ: "JWT", alg: algorithm.jws_name(), kid: &kid, x5c: [certificate_base64] };
        let header_json =
            serde_json::to_vec(&header).map_err(|e| invalid(format!("cannot encode the JWT header: {e}")))?;
        let header_prefix = format!("{}.", URL_SAFE_NO_PAD.encode(header_json));
        Ok(SigningKey { algorithm, signer, header_prefix, kid, certificate_pem: cert_pem.to_string() })
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

    pub fn kid(&self) -> &str {
        &self.kid
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
fn generate(algorithm: KeyAlgorithm) -> Result<(String, String), KeyError> {
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

/// Writes a private key readable by its owner only (0600), creating parent directories.
fn write_private(path: &Path, contents: &str) -> Result<(), KeyError> {
    write_file(path, contents, 0o600)
}

/// How long a half-written pair is waited for before it counts as incomplete.
const PAIR_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Writes `contents` to `path` only if no file is there yet, atomically (a hard link of a
/// complete temporary file, which fails when the name exists). `false` when one was there.
fn publish_new(path: &Path, contents: &str, mode: u32) -> Result<bool, KeyError> {
    let failed = |source| KeyError::Write { path: path.display().to_string(), source };
    let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.{}.new", std::process::id()));
    write_file(&temporary, contents, mode)?;
    let linked = fs::hard_link(&temporary, path);
    let _ = fs::remove_file(&temporary);
    match linked {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(error) => Err(failed(error)),
    }
}

fn write_public(path: &Path, contents: &str) -> Result<(), KeyError> {
    write_file(path, contents, 0o644)
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), KeyError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let failed = |source| KeyError::Write { path: path.display().to_string(), source };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(failed)?;
    }
    // Write beside the target and rename, so a crash never leaves half a key behind; the name is
    // this process's own, so two processes never write one temporary file.
    let temporary = path.with_extension(format!("{}.tmp", std::process::id()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)
        .map_err(failed)?;
    // The mode given to open() is filtered by the umask and ignored for an existing file.
    file.set_permissions(fs::Permissions::from_mode(mode)).map_err(failed)?;
    file.write_all(contents.as_bytes()).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    fs::rename(&temporary, path).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

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
    fn generated_key_round_trips_with_private_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = (dir.path().join("k/token.key"), dir.path().join("k/token.pem"));
        let created = SigningKey::load_or_create(&key, &cert, KeyAlgorithm::ES256).unwrap();
        assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        let loaded = SigningKey::load_or_create(&key, &cert, KeyAlgorithm::ES256).unwrap();
        assert_eq!(created.kid(), loaded.kid());
        assert_eq!(loaded.algorithm(), KeyAlgorithm::ES256);
        assert_eq!(loaded.kid().len(), 59);
    }

    #[test]
    fn missing_certificate_is_not_silently_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = (dir.path().join("token.key"), dir.path().join("token.pem"));
        SigningKey::load_or_create(&key, &cert, KeyAlgorithm::ES256).unwrap();
        fs::remove_file(&cert).unwrap();
        assert!(matches!(
            SigningKey::load_or_create(&key, &cert, KeyAlgorithm::ES256),
            Err(KeyError::Incomplete(..))
        ));
    }

    /// The signature checks out against the certificate's public key, for both key kinds, and
    /// the precomputed header is the one jsonwebtoken would have written.
    #[test]
    fn signature_verifies_against_the_certificate() {
        use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256};
        for algorithm in [KeyAlgorithm::ES256, KeyAlgorithm::RS256] {
            let dir = tempfile::tempdir().unwrap();
            let (key, cert) = (dir.path().join("token.key"), dir.path().join("token.pem"));
            let signing = SigningKey::create(&key, &cert, algorithm).unwrap();
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
            let payload: serde_json::Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(signed.split('.').nth(1).unwrap()).unwrap())
                    .unwrap();
            assert_eq!(payload["sub"], "alice");
        }
    }

    #[test]
    fn signed_token_verifies_with_certificate_key() {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = (dir.path().join("token.key"), dir.path().join("token.pem"));
        let signing = SigningKey::create(&key, &cert, KeyAlgorithm::RS256).unwrap();
        assert_eq!(signing.algorithm(), KeyAlgorithm::RS256);
        let token = signing.sign(&serde_json::json!({"sub": "x", "exp": 4_000_000_000u64})).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(signing.kid()));
        assert_eq!(header.x5c.as_ref().map(Vec::len), Some(1));
    }
}
