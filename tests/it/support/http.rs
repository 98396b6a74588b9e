//! HTTP against the token server: `HttpResponse`, the one answer type every test reads (status,
//! headers, JSON body, the token's decoded parts), and the two ways to get one: `request`, through
//! ureq, for every well-formed request, and `send_raw` for bytes no well-behaved client sends
//! (oversized or broken heads, non-UTF-8 header bytes, bodies that do not match their framing).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

/// How long a request may take before the test fails.
const TIMEOUT: Duration = Duration::from_secs(30);

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// One ureq agent for every test. It keeps no idle connections: each request gets a connection
/// of its own, as a fresh client's would, and none is ever reused after a server closed it.
fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::AgentBuilder::new().timeout(TIMEOUT).max_idle_connections(0).redirects(0).build()
    })
}

/// Sends `METHOD http://ADDR TARGET` with `headers` through ureq and reads the whole answer,
/// whatever its status. A GET carries no body; other methods send `body` with its length.
pub fn request(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let url = format!("http://{addr}{target}");
    let mut request = agent().request(method, &url);
    for (name, value) in headers {
        request = request.set(name, value);
    }
    let result = if method == "GET" { request.call() } else { request.send_bytes(body) };
    let response = match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("{method} {url}: no HTTP answer: {error}"),
    };
    let status = response.status();
    let mut names: Vec<String> = response.headers_names();
    let mut seen = BTreeSet::new();
    names.retain(|name| seen.insert(name.clone()));
    let headers = names
        .iter()
        .flat_map(|name| response.all(name).into_iter().map(|value| (name.clone(), value.to_string())))
        .collect();
    let mut bytes = Vec::new();
    response
        .into_reader()
        .read_to_end(&mut bytes)
        .unwrap_or_else(|error| panic!("{method} {url}: reading the body: {error}"));
    HttpResponse { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
}

/// Writes `bytes` to `addr` as they are and reads the answer until the server closes the
/// connection (send `Connection: close`, or a request the server answers by closing).
pub fn send_raw(addr: &str, bytes: &[u8]) -> HttpResponse {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    exchange(stream, addr, bytes)
}

/// [`send_raw`] from the loopback address `source` (all of 127.0.0.0/8 is local), so that a test
/// can be several clients at once.
pub fn send_raw_from(source: std::net::Ipv4Addr, addr: &str, bytes: &[u8]) -> HttpResponse {
    let target: std::net::SocketAddr = addr.parse().expect("a socket address");
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    let local = std::net::SocketAddr::from((source, 0));
    socket.bind(&local.into()).unwrap_or_else(|e| panic!("bind {local}: {e}"));
    socket.connect(&target.into()).unwrap_or_else(|e| panic!("connect to {addr} from {source}: {e}"));
    exchange(socket.into(), addr, bytes)
}

fn exchange(mut stream: TcpStream, addr: &str, bytes: &[u8]) -> HttpResponse {
    stream.set_read_timeout(Some(TIMEOUT)).expect("set a read timeout");
    // The server may answer (and close) before reading everything, e.g. for an oversized head.
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    if let Err(error) = stream.read_to_end(&mut answer) {
        if answer.is_empty() {
            panic!("no answer from {addr}: {error}");
        }
    }
    parse_response(&answer)
}

/// A parsed HTTP answer.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Lower-cased names, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// The decoded header (`alg`, `kid`, `x5c`) of the `token` in a 200 answer.
    pub fn token_header(&self) -> Value {
        self.token_part(0)
    }

    /// The decoded claims of the `token` in a 200 answer.
    pub fn claims(&self) -> Value {
        self.token_part(1)
    }

    /// Part `index` of the JWT in `token` (for the OAuth2 POST, `access_token` is the same),
    /// base64url-decoded and parsed.
    fn token_part(&self, index: usize) -> Value {
        let json = self.json();
        let token = json["token"].as_str().unwrap_or_else(|| panic!("no token in {self:?}"));
        let part = token.split('.').nth(index).unwrap_or_else(|| panic!("not a JWT: {token}"));
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap_or_else(|e| panic!("JWT part {index} is not base64url ({e}): {token}"));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("JWT part {index} is not JSON ({e})"))
    }

    /// The token's `sub`: who it was issued to.
    pub fn subject(&self) -> String {
        self.claims()["sub"].as_str().unwrap_or_else(|| panic!("no sub in {}", self.claims())).to_string()
    }

    /// The token's granted access as `type:name:actions` strings, actions sorted.
    pub fn access(&self) -> Vec<String> {
        let claims = self.claims();
        let entries = claims["access"].as_array().cloned().unwrap_or_default();
        entries
            .iter()
            .map(|entry| {
                let mut actions: Vec<&str> =
                    entry["actions"].as_array().into_iter().flatten().filter_map(|a| a.as_str()).collect();
                actions.sort();
                format!(
                    "{}:{}:{}",
                    entry["type"].as_str().unwrap_or(""),
                    entry["name"].as_str().unwrap_or(""),
                    actions.join(",")
                )
            })
            .collect()
    }

    /// The `refresh_token` of the answer, if it has one.
    pub fn refresh_token(&self) -> Option<String> {
        self.json()["refresh_token"].as_str().map(str::to_string)
    }

    /// The registry error code of a refusal, checking the error JSON's shape on the way.
    pub fn error_code(&self) -> String {
        let json = self.json();
        assert_eq!(self.header("content-type"), Some("application/json"), "{self:?}");
        json["errors"][0]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.body))
            .to_string()
    }

    /// Asserts a refusal with `status`: the registry's error JSON (code and message), no token,
    /// and, when `oauth_error` is given, OAuth2's `error` and `error_description` beside it.
    #[track_caller]
    pub fn assert_refused(&self, status: u16, oauth_error: Option<&str>) {
        assert_eq!(self.status, status, "{self:?}");
        let json = self.json();
        assert!(json["errors"][0]["code"].is_string(), "registry error JSON: {self:?}");
        assert!(json["errors"][0]["message"].is_string(), "registry error JSON: {self:?}");
        assert_eq!(self.header("content-type"), Some("application/json"), "{self:?}");
        if let Some(error) = oauth_error {
            assert_eq!(json["error"], error, "{self:?}");
            assert!(json["error_description"].is_string(), "{self:?}");
        }
        assert!(json.get("access_token").is_none() && json.get("token").is_none(), "{self:?}");
    }
}

fn parse_response(answer: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP head in {text:?}"));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    HttpResponse { status, headers, body }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
