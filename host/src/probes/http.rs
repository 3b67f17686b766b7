//! `http`: GET a local URL; the status and the first 4 KiB of the body.
//! The GET itself ([`Get`]) is shared with the admin server's readiness
//! check: a connection from a port registered as the agent's own, so that
//! `connections` probes leave it out.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper::{Request, Uri};
use tokio::net::{TcpSocket, TcpStream};

use super::exclusions::Own;
use super::{MAX_BODY, Sample};
use lameduck_core::{HttpResponse, ProbeValue};

/// `http: { url: http://127.0.0.1:8080/idle }`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(deserialize_with = "url")]
    pub url: String,
}

pub(super) fn url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let url = <String as serde::Deserialize>::deserialize(d)?;
    host_port(&url).map_err(serde::de::Error::custom)?;
    Ok(url)
}

/// A GET of one URL, from the agent.
#[derive(Clone)]
pub struct Get {
    url: String,
    target: Result<Target, String>,
    own: Own,
}

#[derive(Debug, Clone)]
struct Target {
    uri: Uri,
    /// `host:port`, to connect to.
    authority: String,
}

impl Get {
    pub fn new(url: &str, own: Own) -> Self {
        Get {
            url: url.to_string(),
            target: parse_url(url),
            own,
        }
    }

    /// The status and at most `max_body` bytes of the body.
    pub async fn fetch(&self, max_body: usize) -> Result<(u16, Bytes), String> {
        let target = self.target.as_ref().map_err(Clone::clone)?;
        self.get(target, max_body)
            .await
            .map_err(|e| format!("GET {}: {e}", self.url))
    }

    /// One GET, bounded by `timeout`, as a probe's value.
    pub async fn once(&self, timeout: std::time::Duration) -> ProbeValue {
        tokio::time::timeout(timeout, self.value())
            .await
            .unwrap_or_else(|_| ProbeValue::Failed(format!("no answer within {timeout:?}")))
    }

    /// One GET as a probe's value; the caller bounds the time.
    async fn value(&self) -> ProbeValue {
        match self.fetch(MAX_BODY).await {
            Ok((status, body)) => ProbeValue::Http(HttpResponse {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            }),
            Err(e) => ProbeValue::Failed(e),
        }
    }

    async fn get(&self, target: &Target, max_body: usize) -> Result<(u16, Bytes), String> {
        let stream = connect(&target.authority, &self.own)
            .await
            .map_err(|e| e.to_string())?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        // Drives the connection until the answer is read, and no longer.
        let connection = tokio::spawn(connection);
        // The origin form (`/path?query`), as a client to a server, not a proxy.
        let path = target.uri.path_and_query().map_or("/", |p| p.as_str());
        let request = Request::get(path)
            .header(hyper::header::HOST, &target.authority)
            .header(hyper::header::USER_AGENT, super::USER_AGENT)
            .header(hyper::header::CONNECTION, "close")
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let mut body = response.into_body();
            let mut kept = Vec::new();
            while kept.len() < max_body {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            let room = max_body - kept.len();
                            kept.extend_from_slice(&data[..data.len().min(room)]);
                        }
                    }
                    Some(Err(e)) => return Err(e.to_string()),
                    None => break,
                }
            }
            Ok((status, Bytes::from(kept)))
        }
        .await;
        connection.abort();
        result
    }
}

/// The `http` probe.
pub struct HttpProbe {
    get: Get,
}

impl HttpProbe {
    pub fn new(url: &str, own: Own) -> Self {
        HttpProbe {
            get: Get::new(url, own),
        }
    }
}

impl Sample for HttpProbe {
    async fn sample(&mut self) -> ProbeValue {
        self.get.value().await
    }
}

/// Connects from a port bound first and registered as the agent's own, so
/// `connections` probes leave the connection out from its very first sample.
async fn connect(authority: &str, own: &Own) -> std::io::Result<TcpStream> {
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
        own.register_client_port(socket.local_addr()?.port());
        match socket.connect(address).await {
            Ok(stream) => {
                // Accepted in this namespace: the accept counter counts it.
                let here = stream.local_addr()?.ip();
                if address.ip().is_loopback() || address.ip() == here {
                    own.note_local_connect();
                }
                return Ok(stream);
            }
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

/// `http://host[:port]/path?query`: what to ask and whom.
fn parse_url(url: &str) -> Result<Target, String> {
    let uri: Uri = url.parse().map_err(|e| format!("`{url}`: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("`{url}`: only http:// URLs can be probed"));
    }
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("`{url}`: no host"))?;
    let authority = format!("{host}:{}", uri.port_u16().unwrap_or(80));
    Ok(Target { uri, authority })
}

/// The host and port an `http://` URL reaches, if it is one.
pub fn host_port(url: &str) -> Result<(String, u16), String> {
    let target = parse_url(url)?;
    let host = target.uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_string(), target.uri.port_u16().unwrap_or(80)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("http://127.0.0.1:8080/idle?x=1").unwrap();
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.uri.path_and_query().unwrap(), "/idle?x=1");
        let t = parse_url("http://[::1]:9000").unwrap();
        assert_eq!(t.authority, "[::1]:9000");
        assert_eq!(
            parse_url("http://localhost/x").unwrap().authority,
            "localhost:80"
        );
        assert_eq!(
            host_port("http://[::1]:9000/").unwrap(),
            ("::1".into(), 9000)
        );
        for bad in ["https://x/", "x/y", "http:///path", "http://a b/"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert!(
            parse_url("https://x/")
                .unwrap_err()
                .contains("only http://")
        );
    }

    fn serve_once(answer: &'static [u8]) -> (String, std::thread::JoinHandle<u16>) {
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
            stream.write_all(answer).unwrap();
            peer.port()
        });
        (url, server)
    }

    fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn the_connection_is_registered_as_the_agents_own() {
        let (url, server) = serve_once(b"HTTP/1.0 200 OK\r\n\r\nok");
        let own = Own::default();
        let value = block_on(Get::new(&url, own.clone()).once(std::time::Duration::from_secs(5)));
        assert!(
            matches!(&value, ProbeValue::Http(HttpResponse { status: 200, body }) if body == "ok"),
            "{value:?}"
        );
        let mut ports = std::collections::HashSet::new();
        own.client_ports(&mut ports);
        assert!(ports.contains(&server.join().unwrap()));
    }

    #[test]
    fn a_chunked_body_is_read_and_cut_at_the_limit() {
        let (url, server) = serve_once(
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nbusy:\r\n8\r\n 2 jobs!\r\n0\r\n\r\n",
        );
        let get = Get::new(&url, Own::default());
        let (status, body) = block_on(get.fetch(9)).unwrap();
        assert_eq!((status, &body[..]), (503, &b"busy: 2 j"[..]));
        server.join().unwrap();
    }

    #[test]
    fn garbage_is_a_failure() {
        let (url, server) = serve_once(b"garbage\r\n\r\n");
        let value =
            block_on(Get::new(&url, Own::default()).once(std::time::Duration::from_secs(5)));
        assert!(matches!(value, ProbeValue::Failed(_)), "{value:?}");
        server.join().unwrap();
    }
}
