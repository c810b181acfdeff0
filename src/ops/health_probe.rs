//! `tiktok-gateway health --url http://127.0.0.1:9090/healthz`: one HTTP/1.1 GET over a plain TCP
//! connection with a deadline, success on a 2xx answer. It is the container's health check, so
//! the runtime image needs no curl (nor a shell).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "`{0}` is not an http:// URL with a host (https is not probed: use the metrics listener)"
    )]
    BadUrl(String),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("i/o error talking to {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("the answer is not HTTP: {0:?}")]
    NotHttp(String),
    #[error("unhealthy: HTTP {0}")]
    Status(u16),
}

/// Where to send the probe: `host:port` to connect to, the `Host` header and the request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    pub authority: String,
    pub path: String,
}

impl ProbeTarget {
    /// Parses `http://host[:port][/path]` (port 80 by default, path `/` by default).
    pub fn parse(url: &str) -> Result<Self, ProbeError> {
        let bad = || ProbeError::BadUrl(url.to_string());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty()
            || authority.contains('@')
            || path.bytes().any(|b| b.is_ascii_control() || b == b' ')
        {
            return Err(bad());
        }
        // A bracketed IPv6 literal carries colons of its own; a port follows `]:`.
        let has_port = match authority.rfind(']') {
            Some(close) => authority[close..].contains(':'),
            None => authority.contains(':'),
        };
        let authority = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Self {
            authority,
            path: path.to_string(),
        })
    }
}

/// Sends one GET and returns the status code when it is 2xx. The whole exchange (resolve,
/// connect, write, read of the status line) must finish within `timeout`.
pub fn probe(url: &str, timeout: Duration) -> Result<u16, ProbeError> {
    let target = ProbeTarget::parse(url)?;
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = target
        .authority
        .to_socket_addrs()
        .map_err(|_| ProbeError::Resolve(target.authority.clone()))?
        .collect();
    let addr = *addrs
        .first()
        .ok_or_else(|| ProbeError::Resolve(target.authority.clone()))?;
    let remaining = |deadline: Instant| {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(ProbeError::Timeout(timeout))
    };
    let io = |source: std::io::Error| {
        if matches!(
            source.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ) {
            ProbeError::Timeout(timeout)
        } else {
            ProbeError::Io {
                addr: addr.to_string(),
                source,
            }
        }
    };
    let mut stream = TcpStream::connect_timeout(&addr, remaining(deadline)?).map_err(|source| {
        ProbeError::Connect {
            addr: addr.to_string(),
            source,
        }
    })?;
    stream
        .set_write_timeout(Some(remaining(deadline)?))
        .map_err(io)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tiktok-gateway-health\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    stream.write_all(request.as_bytes()).map_err(io)?;

    // Read until the status line is complete; the rest of the answer is not needed.
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        if head.len() > 4096 {
            return Err(ProbeError::NotHttp(lossy_prefix(&head)));
        }
        stream
            .set_read_timeout(Some(remaining(deadline)?))
            .map_err(io)?;
        let n = stream.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let status = parse_status_line(&head)?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(ProbeError::Status(status))
    }
}

/// `HTTP/1.x NNN ...` → NNN.
fn parse_status_line(head: &[u8]) -> Result<u16, ProbeError> {
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or_else(|| ProbeError::NotHttp(lossy_prefix(head)))?;
    let line = std::str::from_utf8(&head[..line_end])
        .map_err(|_| ProbeError::NotHttp(lossy_prefix(head)))?;
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(ProbeError::NotHttp(lossy_prefix(head)));
    }
    code.parse::<u16>()
        .map_err(|_| ProbeError::NotHttp(lossy_prefix(head)))
}

fn lossy_prefix(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn parses_urls() {
        let t = ProbeTarget::parse("http://127.0.0.1:9090/healthz").unwrap();
        assert_eq!(t.authority, "127.0.0.1:9090");
        assert_eq!(t.path, "/healthz");
        let t = ProbeTarget::parse("http://localhost").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("localhost:80", "/")
        );
        let t = ProbeTarget::parse("http://[::1]/readyz").unwrap();
        assert_eq!(t.authority, "[::1]:80");
        for bad in [
            "https://127.0.0.1/",
            "127.0.0.1:9090",
            "http:///x",
            "http://u@h/",
            "http://h/a b",
        ] {
            assert!(ProbeTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n").unwrap(), 200);
        assert_eq!(parse_status_line(b"HTTP/1.0 503\r\n").unwrap(), 503);
        assert!(parse_status_line(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(parse_status_line(b"HTTP/1.1 2000 OK\r\n").is_err());
    }

    /// A one-shot server answering `answer` to the first connection; returns its URL.
    fn serve_once(answer: &'static [u8]) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/healthz", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = vec![0u8; 1024];
            let n = s.read(&mut req).unwrap();
            s.write_all(answer).unwrap();
            req.truncate(n);
            req
        });
        (url, handle)
    }

    #[test]
    fn healthy_on_2xx_and_sends_a_plain_get() {
        let (url, server) = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        assert_eq!(probe(&url, Duration::from_secs(5)).unwrap(), 200);
        let req = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(req.starts_with("GET /healthz HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("\r\nHost: 127.0.0.1:"), "{req}");
    }

    #[test]
    fn unhealthy_on_5xx() {
        let (url, server) = serve_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert!(matches!(
            probe(&url, Duration::from_secs(5)),
            Err(ProbeError::Status(503))
        ));
        server.join().unwrap();
    }

    #[test]
    fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/healthz", listener.local_addr().unwrap());
        // Accepted by the kernel's backlog, never answered.
        let err = probe(&url, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, ProbeError::Timeout(_)), "{err}");
        drop(listener);
    }

    #[test]
    fn nothing_listening_is_a_connect_error() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = probe(
            &format!("http://127.0.0.1:{port}/healthz"),
            Duration::from_secs(2),
        )
        .unwrap_err();
        assert!(matches!(err, ProbeError::Connect { .. }), "{err}");
    }
}
