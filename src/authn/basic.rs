//! The `Authorization` header of a token request, decoded into a name and a secret.

use base64::Engine;

/// A name and secret from HTTP Basic auth. The secret is never printed: `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// Why an `Authorization` header could not be read. Each is the client's mistake, answered 400:
/// such a request must not fall through to anonymous access.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BasicAuthError {
    #[error("unsupported authorization scheme (expected Basic)")]
    UnsupportedScheme,
    #[error("Basic credentials are not valid base64")]
    BadBase64,
    #[error("Basic credentials are not valid UTF-8")]
    NotUtf8,
    #[error("Basic credentials lack the ':' between user name and password")]
    NoSeparator,
}

/// Decodes `Basic base64(user:password)`. The scheme name is case-insensitive (RFC 7235).
pub fn parse_basic(header: &[u8]) -> Result<Credentials, BasicAuthError> {
    let header = std::str::from_utf8(header).map_err(|_| BasicAuthError::NotUtf8)?.trim();
    let (scheme, encoded) = header.split_once(' ').ok_or(BasicAuthError::UnsupportedScheme)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(BasicAuthError::UnsupportedScheme);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| BasicAuthError::BadBase64)?;
    let text = String::from_utf8(decoded).map_err(|_| BasicAuthError::NotUtf8)?;
    let (username, password) = text.split_once(':').ok_or(BasicAuthError::NoSeparator)?;
    Ok(Credentials { username: username.to_string(), password: password.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(text: &[u8]) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(text))
    }

    #[test]
    fn decodes_user_and_password_with_colons() {
        let credentials = parse_basic(encode(b"alice:pa:ss").as_bytes()).unwrap();
        assert_eq!(credentials.username, "alice");
        assert_eq!(credentials.password, "pa:ss");
        assert!(!format!("{credentials:?}").contains("pa:ss"), "Debug must hide the password");
    }

    #[test]
    fn rejects_malformed_headers() {
        assert_eq!(parse_basic(b"Bearer abc"), Err(BasicAuthError::UnsupportedScheme));
        assert_eq!(parse_basic(b"Basic"), Err(BasicAuthError::UnsupportedScheme));
        assert_eq!(parse_basic(b"Basic !!!"), Err(BasicAuthError::BadBase64));
        assert_eq!(parse_basic(encode(b"\xff\xfe:x").as_bytes()), Err(BasicAuthError::NotUtf8));
        assert_eq!(parse_basic(encode(b"nocolon").as_bytes()), Err(BasicAuthError::NoSeparator));
        assert_eq!(parse_basic(b"Basic \xff"), Err(BasicAuthError::NotUtf8));
    }
}
