//! Not all traffic is traffic: connections to the agent's admin port, those
//! of its own `http` probes, and those from peers or to ports the operator
//! lists (the kubelet's probes, scrapers) are left out of the evidence.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// An address block, `10.0.0.0/8` or `fd00::/8`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The block of exactly one address.
    pub fn host(ip: IpAddr) -> Self {
        let ip = ip.to_canonical();
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        Cidr {
            network: ip,
            prefix,
        }
    }

    /// Whether `ip` is in the block; an IPv4 client seen through a
    /// dual-stack listener (`::ffff:a.b.c.d`) counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || {
            format!(
                "`{text}` is not an address or a CIDR block (examples: 10.0.0.7, 10.0.0.0/8, fd00::/8)"
            )
        };
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (text, None),
        };
        let ip: IpAddr = ip.trim().parse().map_err(|_| invalid())?;
        let Some(prefix) = prefix else {
            return Ok(Cidr::host(ip));
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .trim()
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(invalid)?;
        Ok(Cidr {
            network: ip,
            prefix,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What the operator excludes on a `connections` probe
/// (`exclude: { peers: [CIDR…], ports: [port…] }`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclude {
    /// Connections from these peers (e.g. a scraper's subnet).
    #[serde(default)]
    pub peers: Vec<Cidr>,
    /// Connections to these local ports (e.g. the app's metrics port).
    #[serde(default)]
    pub ports: Vec<u16>,
}

/// What the probes must know about the agent itself.
#[derive(Clone, Default)]
pub struct Agent {
    /// The admin server's port: the kubelet's probes of `/readyz` and
    /// `/prestop`, and scrapes of `/metrics`, are not the app's traffic.
    pub admin_port: Option<u16>,
    /// The node's IP (`LAMEDUCK_NODE_IP`, from the downward API's
    /// `status.hostIP`): the kubelet's probes come from it. NodePort traffic
    /// SNAT'd to the node's IP comes from it too, and is excluded with them.
    pub node_ip: Option<IpAddr>,
    /// The agent's own connections.
    pub own: Own,
}

/// Why a connection is not the app's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reason {
    Admin,
    OwnProbe,
    Port,
    Peer,
    /// A connection to another listener of the namespace (a sidecar, say):
    /// never the app's, but accepted in the same namespace.
    OtherListener,
}

/// The rules for one probe.
#[derive(Debug, Clone, Default)]
pub(super) struct Exclusions {
    admin_port: Option<u16>,
    peers: Vec<Cidr>,
    ports: Vec<u16>,
}

impl Exclusions {
    pub fn new(exclude: &Exclude, agent: &Agent) -> Self {
        let mut peers = exclude.peers.clone();
        peers.extend(agent.node_ip.map(Cidr::host));
        Exclusions {
            admin_port: agent.admin_port,
            peers,
            ports: exclude.ports.clone(),
        }
    }

    pub fn admin_port(&self) -> Option<u16> {
        self.admin_port
    }

    /// Why the server side of a connection, `local` ↔ `remote`, is left
    /// out, if it is; `on_app_port` says whether `local` is one of the app's
    /// ports; `own` holds the local ports of the agent's own client sockets.
    pub fn reason(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        on_app_port: bool,
        own: &HashSet<u16>,
    ) -> Option<Reason> {
        let port = local.port();
        if Some(port) == self.admin_port {
            return Some(Reason::Admin);
        }
        if !on_app_port {
            return Some(Reason::OtherListener);
        }
        // The agent's own probes connect from this namespace: from loopback
        // or from the address they connect to.
        let (peer, here) = (remote.ip().to_canonical(), local.ip().to_canonical());
        if own.contains(&remote.port()) && (peer.is_loopback() || peer == here) {
            return Some(Reason::OwnProbe);
        }
        if self.ports.contains(&port) {
            return Some(Reason::Port);
        }
        if self.peers.iter().any(|cidr| cidr.contains(peer)) {
            return Some(Reason::Peer);
        }
        None
    }
}

/// The agent's own connections, which `connections` probes must leave out:
/// those of its `http` probes (the admin server's readiness check among
/// them) and those the admin server accepts. One value per agent, handed to
/// whoever makes such connections and to the probes that read them.
#[derive(Clone, Default)]
pub struct Own {
    inner: Arc<Mutex<OwnInner>>,
}

#[derive(Default)]
struct OwnInner {
    client_ports: VecDeque<(u16, Instant)>,
    admin_accepts: u64,
    local_connects: u64,
}

impl Own {
    /// Longer than TIME_WAIT, so a probe's closed connection is still
    /// recognised while the kernel keeps it.
    const KEEP: Duration = Duration::from_secs(120);
    /// Bounds the list whatever the probing rate.
    const MAX: usize = 4096;

    fn lock(&self) -> std::sync::MutexGuard<'_, OwnInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes the local port of a client socket the agent is about to
    /// connect from (bound first, so it is known before the peer accepts).
    pub fn register_client_port(&self, port: u16) {
        let mut own = self.lock();
        if own.client_ports.len() == Self::MAX {
            own.client_ports.pop_front();
        }
        own.client_ports.push_back((port, Instant::now()));
    }

    /// The client ports registered recently, into `out`.
    pub fn client_ports(&self, out: &mut HashSet<u16>) {
        out.clear();
        let mut own = self.lock();
        while own
            .client_ports
            .front()
            .is_some_and(|(_, at)| at.elapsed() > Self::KEEP)
        {
            own.client_ports.pop_front();
        }
        out.extend(own.client_ports.iter().map(|(port, _)| *port));
    }

    /// Counts a connection the agent made to a listener of its own network
    /// namespace (its probes of the app): the namespace's accept counter
    /// counts it too.
    pub fn note_local_connect(&self) {
        self.lock().local_connects += 1;
    }

    /// Connections the agent has made within its namespace so far.
    pub fn local_connects(&self) -> u64 {
        self.lock().local_connects
    }

    /// Counts a connection the admin server accepted.
    pub fn note_admin_accept(&self) {
        self.lock().admin_accepts += 1;
    }

    /// Connections the admin server has accepted so far.
    pub fn admin_accepts(&self) -> u64 {
        self.lock().admin_accepts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn cidrs() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(!net.contains("fd00::1".parse().unwrap()));
        let one: Cidr = "fd00::7".parse().unwrap();
        assert!(one.contains("fd00::7".parse().unwrap()));
        assert!(!one.contains("fd00::8".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "10.0.0/8", "fd00::/129", "host", ""] {
            let e = bad.parse::<Cidr>().unwrap_err();
            assert!(e.contains("is not an address or a CIDR block"), "{e}");
        }
    }

    #[test]
    fn reasons_in_order() {
        let rules = Exclusions::new(
            &Exclude {
                peers: vec!["10.0.0.0/8".parse().unwrap()],
                ports: vec![9090],
            },
            &Agent {
                admin_port: Some(9911),
                node_ip: Some("192.168.1.5".parse().unwrap()),
                own: Own::default(),
            },
        );
        let own = HashSet::from([40000]);
        let reason = |local: &str, remote: &str, app: bool| {
            rules.reason(addr(local), addr(remote), app, &own)
        };
        assert_eq!(
            reason("10.1.1.1:9911", "10.9.9.9:1", false),
            Some(Reason::Admin)
        );
        assert_eq!(
            reason("10.1.1.1:7000", "10.9.9.9:1", false),
            Some(Reason::OtherListener)
        );
        assert_eq!(
            reason("127.0.0.1:8080", "127.0.0.1:40000", true),
            Some(Reason::OwnProbe)
        );
        assert_eq!(
            reason("172.16.0.4:8080", "172.16.0.4:40000", true),
            Some(Reason::OwnProbe)
        );
        // The same port number from elsewhere is someone else's.
        assert_eq!(reason("172.16.0.4:8080", "172.16.0.9:40000", true), None);
        assert_eq!(
            reason("172.16.0.4:9090", "172.16.0.9:1", true),
            Some(Reason::Port)
        );
        assert_eq!(
            reason("172.16.0.4:8080", "10.3.0.1:5", true),
            Some(Reason::Peer)
        );
        assert_eq!(
            reason("[::ffff:172.16.0.4]:8080", "[::ffff:192.168.1.5]:5", true),
            Some(Reason::Peer)
        );
        assert_eq!(reason("172.16.0.4:8080", "172.17.0.1:5", true), None);
    }

    #[test]
    fn own_client_ports_are_remembered() {
        let own = Own::default();
        own.register_client_port(1);
        let mut ports = HashSet::new();
        own.clone().client_ports(&mut ports);
        assert!(ports.contains(&1));
        own.note_admin_accept();
        assert_eq!(own.admin_accepts(), 1);
    }
}
