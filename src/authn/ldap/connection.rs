//! Connections to the directory: TLS (ldaps://, StartTLS, a CA file or the system roots), the
//! search account's shared connection, and one short-lived connection per user bind.
//!
//! The search account's connection is opened on first use and kept: ldap3 multiplexes concurrent
//! operations over it, so every login shares one TCP (and TLS) session instead of paying for a
//! handshake each. It is dropped and reopened when it breaks or an operation on it times out (a
//! directory that stopped answering must not hold every later login too). Users bind on their own
//! connection: a bind changes who the connection speaks for, which must never leak into the
//! shared search connection.

use std::sync::Arc;
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError};
use rustls::ClientConfig;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::metrics::{metrics, DirectoryOperation};
use crate::tls_client::{client_config, trusted_roots, Verify};

use super::DirectoryError;
use crate::config::ldap::LdapConfig;

/// Opens connections to one directory with the configured TLS settings.
pub struct Connector {
    /// The configured URL, also how log lines and errors name the directory.
    url: String,
    /// ldap3's settings (TLS configuration, StartTLS, connect timeout), cloned per connection.
    settings: LdapConnSettings,
    /// The search account, or `None` for anonymous searches.
    search_account: Option<(String, String)>,
    /// The search account's connection, once opened and bound. A plain mutex, never held across
    /// an await, so that dropping a broken connection never waits.
    kept: std::sync::Mutex<Option<Ldap>>,
    /// Held while a new search connection is opened, so that a burst of logins opens one.
    opening: Mutex<()>,
}

impl Connector {
    pub fn new(config: &LdapConfig) -> Result<Connector, DirectoryError> {
        let url = config.url.clone();
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(Duration::from_secs(config.timeout_secs))
            .set_starttls(config.starttls);
        if config.starttls || url.to_ascii_lowercase().starts_with("ldaps://") {
            settings = settings.set_config(tls_config(config)?);
        }
        let search_account = if config.bind_dn.trim().is_empty() {
            None
        } else {
            let password = crate::config::read_secret(
                config.bind_password.as_deref(),
                config.bind_password_file.as_deref(),
                "bind_password",
            )
            .map_err(|error| DirectoryError::Setup(error.to_string()))?
            .ok_or_else(|| {
                DirectoryError::Setup(
                    "bind_dn is set but neither bind_password nor bind_password_file".into(),
                )
            })?;
            Some((config.bind_dn.clone(), password))
        };
        Ok(Connector {
            url,
            settings,
            search_account,
            kept: std::sync::Mutex::new(None),
            opening: Mutex::new(()),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A new connection (TLS and StartTLS done), not bound yet; must be ready by `deadline`.
    pub async fn open(&self, deadline: Instant) -> Result<Ldap, DirectoryError> {
        let connecting = LdapConnAsync::with_settings(self.settings.clone(), &self.url);
        let (connection, ldap) = metrics()
            .time_directory(DirectoryOperation::connect, within(deadline, &self.url, connecting))
            .await?;
        let url = self.url.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.drive().await {
                tracing::debug!(directory = %url, %error, "directory connection closed");
            }
        });
        Ok(ldap)
    }

    /// The search account's connection: the kept one, or a new one bound as the search account.
    /// `reused` tells the caller whether a failure may be a stale connection worth one retry.
    pub async fn search_connection(&self, deadline: Instant) -> Result<(Ldap, bool), DirectoryError> {
        if let Some(ldap) = self.kept() {
            return Ok((ldap, true));
        }
        // One login opens the connection while the others wait, within their own deadlines: no
        // login waits longer than the timeout, however many arrive at once.
        let _opening = tokio::time::timeout_at(deadline, self.opening.lock())
            .await
            .map_err(|_| DirectoryError::TimedOut { url: self.url.clone() })?;
        if let Some(ldap) = self.kept() {
            return Ok((ldap, true));
        }
        let mut ldap = self.open(deadline).await?;
        if let Some((dn, password)) = &self.search_account {
            let binding = within(deadline, &self.url, ldap.simple_bind(dn, password));
            let result = metrics().time_directory(DirectoryOperation::bind, binding).await?;
            if result.rc != 0 {
                return Err(DirectoryError::SearchAccountRefused {
                    url: self.url.clone(),
                    reason: describe_result(result.rc, &result.text),
                });
            }
        }
        if let Ok(mut kept) = self.kept.lock() {
            *kept = Some(ldap.clone());
        }
        Ok((ldap, false))
    }

    /// The kept connection, unless it is known to be closed.
    fn kept(&self) -> Option<Ldap> {
        let mut ldap = self.kept.lock().ok()?.clone()?;
        (!ldap.is_closed()).then_some(ldap)
    }

    /// Forgets the kept connection after it failed or timed out; the next search opens anew.
    pub fn discard_search_connection(&self) {
        let kept = self.kept.lock().ok().and_then(|mut kept| kept.take());
        if let Some(mut ldap) = kept {
            // Best effort and in the background: it may be the connection that stopped answering.
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(1), ldap.unbind()).await;
            });
        }
    }
}

/// Runs one directory operation with the login's deadline, turning ldap3's errors into ours.
pub async fn within<T>(
    deadline: Instant,
    url: &str,
    operation: impl std::future::Future<Output = Result<T, LdapError>>,
) -> Result<T, DirectoryError> {
    match tokio::time::timeout_at(deadline, operation).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(LdapError::Timeout { .. })) | Err(_) => Err(DirectoryError::TimedOut { url: url.to_string() }),
        Ok(Err(error)) => {
            Err(DirectoryError::Unreachable { url: url.to_string(), reason: error.to_string() })
        }
    }
}

/// An LDAP result code with the server's text, as logged and shown by `portcullis ldap test`.
pub fn describe_result(rc: u32, text: &str) -> String {
    let name = match rc {
        1 => "operationsError",
        4 => "sizeLimitExceeded",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        _ => "error",
    };
    if text.is_empty() {
        format!("result code {rc} ({name})")
    } else {
        format!("result code {rc} ({name}): {text}")
    }
}

/// The rustls configuration ([`crate::tls_client`]): the directory's certificate checked
/// against `ca_file` or the system's roots, unless `verify_certificate` is off.
fn tls_config(config: &LdapConfig) -> Result<Arc<ClientConfig>, DirectoryError> {
    let setup = |error: String| DirectoryError::Setup(error);
    let client = if config.verify_certificate {
        let roots =
            trusted_roots(config.ca_file.as_deref()).map_err(|error| setup(format!("ca_file {error}")))?;
        if roots.is_empty() {
            tracing::warn!(directory = %config.url, "no system CA certificates found: set ldap.ca_file");
        }
        client_config(Verify::Full, roots).map_err(setup)?
    } else {
        tracing::warn!(directory = %config.url, "ldap.verify_certificate is off: the directory's certificate is not checked");
        client_config(Verify::Nothing, rustls::RootCertStore::empty()).map_err(setup)?
    };
    Ok(Arc::new(client))
}
