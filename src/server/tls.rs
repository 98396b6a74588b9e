//! TLS serving: the certificate chain and key of `[tls]`, and their replacement at run time.
//!
//! cert-manager, an ACME client or an operator replaces the files before the certificate
//! expires; Portcullis must pick the new one up without a restart and without dropping a
//! connection. [`Certificates`] holds the loaded pair behind a lock that every handshake reads;
//! [`Certificates::reload`] re-reads the files every [`CHECK_EVERY`] ([`Certificates::watch`])
//! and on `SIGHUP`, and swaps in a new pair only once it parses and its key matches
//! its certificate: a half-written pair (the certificate replaced, the key not yet) keeps the
//! old one serving. Connections already open keep the session they negotiated; the next
//! handshake gets the new certificate.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use crate::config::TlsConfig;

/// How often the files are looked at for a change: two small reads, and a renewed certificate
/// serves within seconds of being written.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The trigger named in log lines of reloads the file watch made.
const WATCH_TRIGGER: &str = "file change";

/// What the operator sees of the certificate being served.
#[derive(Debug, Clone)]
pub struct CertificateSummary {
    /// The leaf certificate's serial number, hex with colons (as `openssl x509 -serial` prints).
    pub serial: String,
    /// The leaf's subject alternative names (DNS names and IP addresses).
    pub names: Vec<String>,
    /// When the leaf expires, seconds since the Unix epoch.
    pub not_after: i64,
}

impl CertificateSummary {
    /// Whether the certificate has expired: every client will refuse it.
    pub fn has_expired(&self) -> bool {
        self.not_after <= time::OffsetDateTime::now_utc().unix_timestamp()
    }
}

/// One loaded pair.
struct Loaded {
    key: Arc<CertifiedKey>,
    summary: CertificateSummary,
    /// SHA-256 of both files' bytes, to tell a real change from a touch.
    digest: [u8; 32],
}

/// The certificate served, and the files it came from.
pub struct Certificates {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Loaded>,
    /// What failed last: the digest of a pair that did not load, or of the error that kept the
    /// files from being read, so that one failure is reported once rather than every
    /// [`CHECK_EVERY`] by the watch (a SIGHUP always reports).
    last_failure: RwLock<Option<[u8; 32]>>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates").field("cert_file", &self.cert_file).finish_non_exhaustive()
    }
}

impl Certificates {
    /// Loads the pair named in `config`; an error names the file and what is wrong with it.
    pub fn load(config: &TlsConfig) -> anyhow::Result<Certificates> {
        let (cert_file, key_file) = (config.cert_file.clone(), config.key_file.clone());
        let (cert_pem, key_pem) = read_pair(&cert_file, &key_file)?;
        let loaded = parse_pair(&cert_pem, &key_pem, &cert_file, &key_file)?;
        crate::metrics::metrics().tls_certificate_served(loaded.summary.not_after);
        Ok(Certificates {
            cert_file,
            key_file,
            current: RwLock::new(loaded),
            last_failure: RwLock::new(None),
        })
    }

    /// The certificate being served.
    pub fn summary(&self) -> CertificateSummary {
        self.current.read().unwrap_or_else(PoisonError::into_inner).summary.clone()
    }

    /// Logs the certificate being served, and warns when it has expired.
    pub fn log_served(&self, trigger: &str) {
        let summary = self.summary();
        tracing::info!(
            trigger,
            serial = %summary.serial,
            names = %summary.names.join(","),
            not_after = %crate::text::rfc3339(summary.not_after),
            "tls: serving a certificate"
        );
        if summary.has_expired() {
            tracing::warn!(serial = %summary.serial, not_after = %crate::text::rfc3339(summary.not_after), "tls: the certificate served has expired; clients will refuse it");
        }
    }

    /// Reads the files again (once) and serves what they hold if it differs and is valid, and
    /// logs what it did: what `SIGHUP` and the file watch do. On an error the pair served so far
    /// stays.
    pub fn reload(&self, trigger: &str) {
        let (cert_pem, key_pem) = match read_pair(&self.cert_file, &self.key_file) {
            Ok(pair) => pair,
            Err(error) => return self.refused(trigger, &error, None),
        };
        let digest = digest(&cert_pem, &key_pem);
        if digest == self.current.read().unwrap_or_else(PoisonError::into_inner).digest {
            tracing::debug!(trigger, "tls: certificate files unchanged");
            return;
        }
        match parse_pair(&cert_pem, &key_pem, &self.cert_file, &self.key_file) {
            Ok(loaded) => {
                crate::metrics::metrics().tls_certificate_served(loaded.summary.not_after);
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = loaded;
                *self.last_failure.write().unwrap_or_else(PoisonError::into_inner) = None;
                self.log_served(trigger);
            }
            Err(error) => self.refused(trigger, &error, Some(digest)),
        }
    }

    /// Reports a pair that did not load. The watch reports a broken pair once, not every few
    /// seconds while it stays; `digest` is of the files as read (`None`: unreadable).
    fn refused(&self, trigger: &str, error: &anyhow::Error, digest: Option<[u8; 32]>) {
        let mut last = self.last_failure.write().unwrap_or_else(PoisonError::into_inner);
        let message = format!("{error:#}");
        let failure = digest.unwrap_or_else(|| self::digest(message.as_bytes(), b""));
        let reported = trigger == WATCH_TRIGGER && *last == Some(failure);
        if !reported {
            tracing::warn!(trigger, error = %message, "tls: kept the certificate served so far");
        }
        *last = Some(failure);
    }

    /// Looks at the files every [`CHECK_EVERY`] until the process ends.
    pub async fn watch(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(CHECK_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let certificates = self.clone();
            // File reads: off the request threads.
            let _ = tokio::task::spawn_blocking(move || certificates.reload(WATCH_TRIGGER)).await;
        }
    }

    /// A rustls server configuration that serves from `self`: TLS 1.2 and 1.3, HTTP/1.1.
    pub fn server_config(self: &Arc<Self>) -> anyhow::Result<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("tls protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(PoisonError::into_inner).key.clone())
    }
}

/// Both files' bytes; an error names the setting.
fn read_pair(cert_file: &Path, key_file: &Path) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let cert_pem = std::fs::read(cert_file)
        .with_context(|| format!("cannot read tls.cert_file {}", cert_file.display()))?;
    let key_pem = std::fs::read(key_file)
        .with_context(|| format!("cannot read tls.key_file {}", key_file.display()))?;
    Ok((cert_pem, key_pem))
}

fn digest(cert_pem: &[u8], key_pem: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for bytes in [cert_pem, key_pem] {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    hasher.finalize().into()
}

/// Parses and checks one pair: a PEM chain (leaf first) and its PEM key (PKCS#8, PKCS#1 or
/// SEC1), read from the files named in errors.
fn parse_pair(cert_pem: &[u8], key_pem: &[u8], cert_file: &Path, key_file: &Path) -> anyhow::Result<Loaded> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("tls.cert_file {}: not a PEM certificate chain", cert_file.display()))?;
    if chain.is_empty() {
        bail!("tls.cert_file {}: holds no PEM certificate", cert_file.display());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .with_context(|| format!("tls.key_file {}: not a PEM private key", key_file.display()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).with_context(|| {
        format!(
            "tls.key_file {} does not fit the first certificate of tls.cert_file {}",
            key_file.display(),
            cert_file.display()
        )
    })?;
    let summary = summarize(&certified.cert[0])
        .with_context(|| format!("tls.cert_file {}: unreadable certificate", cert_file.display()))?;
    Ok(Loaded { key: Arc::new(certified), summary, digest: digest(cert_pem, key_pem) })
}

fn summarize(leaf: &CertificateDer<'_>) -> anyhow::Result<CertificateSummary> {
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf.as_ref())?;
    let serial = certificate.raw_serial_as_string();
    let mut names = Vec::new();
    if let Ok(Some(alternatives)) = certificate.subject_alternative_name() {
        for name in &alternatives.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => names.push(dns.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    let address = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(std::net::IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(std::net::IpAddr::from),
                        _ => None,
                    };
                    names.extend(address.map(|address| address.to_string()));
                }
                _ => {}
            }
        }
    }
    Ok(CertificateSummary { serial, names, not_after: certificate.validity().not_after.timestamp() })
}
