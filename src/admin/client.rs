//! A minimal blocking HTTP/1.1 client for the admin API: one request per connection, bearer token, bounded waits.
//! Speaks only what the admin server sends (http, or https with a given TLS configuration; fixed or chunked
//! bodies); no redirects.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::time::Duration;

/// How long to wait for the broker to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long to wait for an answer.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `http://HOST:PORT` (or `https://HOST:PORT` with a TLS configuration).
    #[error("admin URL {0:?} is not of the form http://HOST:PORT (or https://HOST:PORT)")]
    BadUrl(String),
    /// Nothing answered at the address.
    #[error("the admin API at {url} is not reachable: {reason}")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// What the network said.
        reason: String,
    },
    /// Something answered, but not with HTTP the client understands.
    #[error("the admin API at {url} sent a malformed answer: {reason}")]
    Malformed {
        /// The URL tried.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client of one admin API.
#[derive(Debug, Clone)]
pub struct AdminClient {
    url: String,
    host: String,
    token: Option<String>,
    /// For an https URL.
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl AdminClient {
    /// A client for `url` (`http://HOST:PORT`, a trailing `/` allowed) sending `token` as bearer.
    pub fn new(url: &str, token: Option<String>) -> Result<AdminClient, ClientError> {
        AdminClient::with_tls(url, token, None)
    }

    /// A client for `url`, `https://HOST:PORT` when `tls` is given (what the client trusts), else `http://`.
    pub fn with_tls(
        url: &str,
        token: Option<String>,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> Result<AdminClient, ClientError> {
        let scheme = if tls.is_some() { "https://" } else { "http://" };
        let host = url
            .strip_prefix(scheme)
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|h| !h.is_empty() && !h.contains('/'))
            .ok_or_else(|| ClientError::BadUrl(url.to_owned()))?;
        Ok(AdminClient {
            url: url.trim_end_matches('/').to_owned(),
            host: host.to_owned(),
            token,
            tls,
        })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends `method path` and reads the whole answer.
    pub fn request(&self, method: &str, path: &str) -> Result<Response, ClientError> {
        let unreachable = |reason: String| ClientError::Unreachable {
            url: self.url.clone(),
            reason,
        };
        let addr: SocketAddr = self
            .host
            .to_socket_addrs()
            .map_err(|e| unreachable(e.to_string()))?
            .next()
            .ok_or_else(|| unreachable("the host name has no address".to_owned()))?;
        let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .map_err(|e| unreachable(e.to_string()))?;
        let io = |e: std::io::Error| unreachable(e.to_string());
        stream.set_read_timeout(Some(READ_TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(READ_TIMEOUT)).map_err(io)?;
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Accept: */*\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.host
        );
        let mut raw = Vec::new();
        match &self.tls {
            None => {
                stream.write_all(head.as_bytes()).map_err(io)?;
                stream.read_to_end(&mut raw).map_err(io)?;
            }
            Some(config) => {
                let name = self.host.rsplit_once(':').map_or(&*self.host, |(h, _)| h);
                let name = rustls::pki_types::ServerName::try_from(name.trim_matches(['[', ']']))
                    .map_err(|e| unreachable(e.to_string()))?
                    .to_owned();
                let connection = rustls::ClientConnection::new(config.clone(), name)
                    .map_err(|e| unreachable(e.to_string()))?;
                let mut tls = rustls::StreamOwned::new(connection, stream);
                tls.write_all(head.as_bytes()).map_err(io)?;
                match tls.read_to_end(&mut raw) {
                    // A server that closes without close_notify after its whole answer.
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
                    other => {
                        other.map_err(io)?;
                    }
                }
            }
        }
        parse_response(&raw).map_err(|reason| ClientError::Malformed {
            url: self.url.clone(),
            reason,
        })
    }
}

/// Splits an HTTP/1.1 answer into status and body.
fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(raw.get(..split).unwrap_or_default()).into_owned();
    let body = raw.get(split + 4..).unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or("no status line")?;
    let chunked = lines.any(|line| {
        let lower = line.to_ascii_lowercase();
        lower.starts_with("transfer-encoding:") && lower.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(Response { status, body })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = String::from_utf8_lossy(data.get(..end).unwrap_or_default()).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = data.get(end + 2..).unwrap_or_default();
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or("truncated chunk")?);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

/// Percent-encodes a path segment or query value; `/` is kept when `keep_slash` (topic names in paths).
pub fn encode(text: &str, keep_slash: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let plain = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && byte == b'/');
        if plain {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_and_chunked_bodies_are_read() {
        let fixed =
            parse_response(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nno").unwrap();
        assert_eq!((fixed.status, fixed.text().as_str()), (404, "no"));
        let chunked = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(chunked.text(), "abcde");
    }

    #[test]
    fn urls_and_paths() {
        assert!(AdminClient::new("http://127.0.0.1:8081/", None).is_ok());
        assert!(AdminClient::new("https://x:1", None).is_err());
        assert_eq!(encode("a b/$SYS", true), "a%20b/%24SYS");
        assert_eq!(encode("a/b", false), "a%2Fb");
    }
}
