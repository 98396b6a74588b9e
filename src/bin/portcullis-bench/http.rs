//! A minimal HTTP/1.1 keep-alive client for loopback load: requests are prepared bytes, and a
//! response is read just far enough to know its status and where it ends.
//!
//! A general client (hyper's) costs several times more CPU per request, and the load generator
//! shares the machine's two cores with the server it measures: every microsecond it spends is
//! one the server does not get.

use std::io;
use std::net::SocketAddr;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The exact bytes of `GET /token` for one user.
pub fn token_request(host: &str, query: &str, user: &str, password: &str) -> Vec<u8> {
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("GET /token?{query} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {credentials}\r\n\r\n")
        .into_bytes()
}

/// One keep-alive connection with its read buffer.
pub struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    pub async fn open(address: SocketAddr) -> io::Result<Connection> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream, buffer: Vec::with_capacity(8192) })
    }

    /// A connection from the loopback address `source` (all of 127.0.0.0/8 is local): one
    /// machine plays several clients.
    pub async fn open_from(source: std::net::Ipv4Addr, address: SocketAddr) -> io::Result<Connection> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((source, 0)))?;
        let stream = socket.connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream, buffer: Vec::with_capacity(8192) })
    }

    /// Sends one request and reads its whole response; returns the status code.
    pub async fn exchange(&mut self, request: &[u8]) -> io::Result<u16> {
        self.stream.write_all(request).await?;
        self.buffer.clear();
        let mut head_end = None;
        let mut total = usize::MAX;
        loop {
            if self.buffer.len() == self.buffer.capacity() {
                self.buffer.reserve(8192);
            }
            let read = self.stream.read_buf(&mut self.buffer).await?;
            if read == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection"));
            }
            if head_end.is_none() {
                if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                    let length = content_length(&self.buffer[..end])
                        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no content-length"))?;
                    head_end = Some(end + 4);
                    total = end + 4 + length;
                }
            }
            if self.buffer.len() >= total {
                break;
            }
        }
        let status = std::str::from_utf8(self.buffer.get(9..12).unwrap_or_default())
            .ok()
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no status line"))?;
        Ok(status)
    }

    /// The body of the last response (for checking a token's contents).
    pub fn last_body(&self) -> &[u8] {
        match find(&self.buffer, b"\r\n\r\n") {
            Some(end) => &self.buffer[end + 4..],
            None => &[],
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

fn content_length(head: &[u8]) -> Option<usize> {
    let head = std::str::from_utf8(head).ok()?;
    head.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_content_length_whatever_its_case() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 42";
        assert_eq!(content_length(head), Some(42));
        assert_eq!(content_length(b"HTTP/1.1 200 OK\r\ncontent-length:7"), Some(7));
        assert_eq!(content_length(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked"), None);
    }

    #[test]
    fn a_token_request_carries_basic_credentials() {
        let request = String::from_utf8(token_request("h:1", "service=s", "alice", "pw")).unwrap();
        assert!(request.starts_with("GET /token?service=s HTTP/1.1\r\nHost: h:1\r\n"));
        assert!(request.contains("Authorization: Basic YWxpY2U6cHc=\r\n"));
        assert!(request.ends_with("\r\n\r\n"));
    }
}
