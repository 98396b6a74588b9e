//! Throw-away X.509 material made with rcgen: a self-signed P-256 certificate (a registry
//! `rootcertbundle` for tests that do not involve Portcullis' own key) and a test CA that issues
//! loopback server certificates (slapd's TLS listener).

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A certificate and its private key, both PEM.
pub struct CertifiedKeyPem {
    pub cert_pem: String,
    /// PKCS#8 `PRIVATE KEY` PEM.
    pub key_pem: String,
}

impl CertifiedKeyPem {
    /// Writes `<dir>/<stem>.crt` and `<dir>/<stem>.key`; returns (cert path, key path).
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        fs::write(&cert, &self.cert_pem).unwrap_or_else(|err| panic!("write {}: {err}", cert.display()));
        fs::write(&key, &self.key_pem).unwrap_or_else(|err| panic!("write {}: {err}", key.display()));
        (cert, key)
    }
}

/// A self-signed ES256 (P-256) certificate with common name `common_name`.
pub fn self_signed_p256(common_name: &str) -> CertifiedKeyPem {
    let key = KeyPair::generate().expect("generate a P-256 key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty certificate params");
    params.distinguished_name.push(DnType::CommonName, common_name);
    let cert = params.self_signed(&key).expect("self-sign a P-256 certificate");
    CertifiedKeyPem { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
}

/// A CA that exists for one test: it signs server certificates for loopback names.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM: what clients are told to trust.
    pub cert_pem: String,
}

impl TestCa {
    pub fn new(common_name: &str) -> TestCa {
        let key = KeyPair::generate().expect("generate the test CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty CA params");
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("self-sign the test CA");
        TestCa { issuer: Issuer::new(params, key), cert_pem: cert.pem() }
    }

    /// A server certificate for 127.0.0.1 and localhost, signed by this CA.
    pub fn issue_loopback_server(&self) -> CertifiedKeyPem {
        self.issue_server(&["127.0.0.1", "localhost"], None)
    }

    /// A server certificate for `names` (IP addresses or DNS names), valid from a day ago until
    /// `expired_at` if given (a time in the past), else for a year.
    pub fn issue_server(&self, names: &[&str], expired_at: Option<time::OffsetDateTime>) -> CertifiedKeyPem {
        let key = KeyPair::generate().expect("generate a server key");
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("server certificate params");
        params.distinguished_name.push(DnType::CommonName, names[0].as_str());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_after = expired_at.unwrap_or(now + time::Duration::days(365));
        params.not_before = params.not_after.min(now) - time::Duration::days(2);
        let cert = params.signed_by(&key, &self.issuer).expect("sign a server certificate");
        CertifiedKeyPem { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    /// Writes the CA certificate as `<dir>/ca.crt` (the name containers/image reads from a
    /// `--cert-dir`) and returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.crt");
        fs::write(&path, &self.cert_pem).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
        path
    }
}

/// The serial number of a PEM certificate, hex with colons.
pub fn serial_of(cert_pem: &str) -> String {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).expect("a PEM certificate");
    serial_of_der(&pem.contents)
}

/// The serial number of a DER certificate, hex with colons.
pub fn serial_of_der(der: &[u8]) -> String {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).expect("a DER certificate");
    certificate.raw_serial_as_string()
}
