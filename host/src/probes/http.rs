//! `http`: GET a local URL; status and the first 4 KiB of the body.
//!
//! A plain HTTP/1.0 request, so the answer is never chunked and ends when the
//! server closes: a few lines instead of an HTTP client in the agent.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::exclusions::own;
use super::{MAX_BODY, Sample};
use crate::policy::{HttpResponse, ProbeValue};

/// Headers beyond this are not read.
const MAX_HEAD: usize = 16 * 1024;

pub struct HttpProbe {
    url: String,
    target: Result<Target, String>,
}

#[derive(Debug)]
pub(super) struct Target {
    authority: String,
    path: String,
}

impl HttpProbe {
    pub fn new(url: &str) -> Self {
        HttpProbe {
            url: url.to_string(),
            target: parse_url(url),
        }
    }

    async fn get(&self, target: &Target) -> std::io::Result<(u16, String)> {
        let mut stream = connect(&target.authority).await?;
        let request = format!(
            "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: {}\r\nConnection: close\r\n\r\n",
            target.path,
            target.authority,
            super::USER_AGENT
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream
            .take((MAX_HEAD + MAX_BODY) as u64)
            .read_to_end(&mut response)
            .await?;
        parse_response(&response).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response")
        })
    }
}

impl HttpProbe {
    /// One GET, bounded by `timeout`.
    pub async fn get_once(mut self, timeout: std::time::Duration) -> ProbeValue {
        tokio::time::timeout(timeout, self.sample())
            .await
            .unwrap_or_else(|_| ProbeValue::Failed(format!("no answer within {timeout:?}")))
    }
}

impl Sample for HttpProbe {
    async fn sample(&mut self) -> ProbeValue {
        let target = match &self.target {
            Ok(target) => target,
            Err(e) => return ProbeValue::Failed(e.clone()),
        };
        match self.get(target).await {
            Ok((status, body)) => ProbeValue::Http(HttpResponse { status, body }),
            Err(e) => ProbeValue::Failed(format!("GET {}: {e}", self.url)),
        }
    }
}

/// Connects from a port bound first and registered as the agent's own, so
/// `connections` probes leave the connection out from its very first sample.
async fn connect(authority: &str) -> std::io::Result<TcpStream> {
    let mut last = None;
    for address in tokio::net::lookup_host(authority).await? {
        let socket = if address.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        let any = SocketAddr::new(
            match address {
                SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
                SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
            },
            0,
        );
        socket.bind(any)?;
        own::register_client_port(socket.local_addr()?.port());
        match socket.connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{authority}: no address"),
        )
    }))
}

/// `http://host:port/path` → `host:port` and `/path`.
pub(super) fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{url}`: only http:// URLs can be probed"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("`{url}`: no host"));
    }
    let has_port = match authority.rfind(']') {
        Some(end) => authority[end..].contains(':'),
        None => authority.contains(':'),
    };
    let authority = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok(Target {
        authority,
        path: path.to_string(),
    })
}

fn parse_response(response: &[u8]) -> Option<(u16, String)> {
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status_line = std::str::from_utf8(&response[..head_end])
        .ok()?
        .lines()
        .next()?;
    let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let body = &response[head_end + 4..];
    let body = &body[..body.len().min(MAX_BODY)];
    Some((status, String::from_utf8_lossy(body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("http://127.0.0.1:8080/idle?x=1").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("127.0.0.1:8080", "/idle?x=1")
        );
        let t = parse_url("http://[::1]:9000").unwrap();
        assert_eq!((t.authority.as_str(), t.path.as_str()), ("[::1]:9000", "/"));
        assert_eq!(
            parse_url("http://localhost/x").unwrap().authority,
            "localhost:80"
        );
        assert!(
            parse_url("https://x/")
                .unwrap_err()
                .contains("only http://")
        );
    }

    #[test]
    fn the_connection_is_registered_as_the_agents_own() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            use std::io::{BufRead, Write};
            let (mut stream, peer) = listener.accept().unwrap();
            // The whole head, so closing resets nothing.
            let mut head = std::io::BufReader::new(&stream);
            let mut line = String::new();
            while head.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            stream.write_all(b"HTTP/1.0 200 OK\r\n\r\nok").unwrap();
            peer.port()
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let value =
            runtime.block_on(HttpProbe::new(&url).get_once(std::time::Duration::from_secs(5)));
        assert!(
            matches!(value, ProbeValue::Http(HttpResponse { status: 200, .. })),
            "{value:?}"
        );
        let mut ports = std::collections::HashSet::new();
        own::client_ports(&mut ports);
        assert!(ports.contains(&server.join().unwrap()));
    }

    #[test]
    fn responses() {
        let r = b"HTTP/1.1 503 Service Unavailable\r\nX: y\r\n\r\nbusy: 2 jobs";
        assert_eq!(parse_response(r), Some((503, "busy: 2 jobs".into())));
        assert_eq!(parse_response(b"garbage"), None);
    }
}
