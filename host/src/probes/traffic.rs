//! What a `connections` probe reads: the app's TCP traffic at one moment.

use serde::Serialize;

pub use super::silences::Silences;
use lameduck_core as policy;
use lameduck_core::Connections;

/// Where a reading came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Evidence {
    /// Netlink `sock_diag` with `tcp_info`: per-connection activity.
    SockDiag,
    /// `/proc/net/tcp{,6}`, where netlink is refused: connections and
    /// queues only. `in_flight` is then every open connection (who owes a
    /// response cannot be told) and requests on kept-alive connections are
    /// not seen.
    ProcNetTcp,
}

/// The app's TCP traffic: connections to its ports, the requests on them,
/// and what was left out. Counts leave out [`Excluded`] connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Traffic {
    pub evidence: Evidence,
    /// Connections established to the app's ports (ESTABLISHED, or
    /// CLOSE_WAIT: the client is done sending but the app still holds it).
    pub open: u32,
    /// Of `open`, those with a request whose answer is not done: data
    /// received after the last data sent, received data the app has not
    /// read yet, response bytes not yet sent or not yet acknowledged, an
    /// answer still streaming, or one the clocks cannot tell done.
    pub in_flight: u32,
    /// Of `in_flight`, those sending an answer that streams.
    pub streaming: u32,
    /// Of `in_flight`, those counted because the clocks cannot tell their
    /// answers done (a paused young stream, an exchange within one kernel
    /// tick, a connection that multiplexes calls and received data lately).
    pub unsure: u32,
    /// Of `open`, those that owe nothing: idle keep-alive connections.
    pub idle: u32,
    /// Of `open`, those that stream and are older than the long-lived age:
    /// WebSockets, event streams, watches.
    pub long_lived: u32,
    /// The age of the oldest of those.
    pub long_lived_oldest_ms: Option<u32>,
    /// Whether calls were seen to overlap on one connection of the app's.
    pub multiplexed: bool,
    /// Connections accepted on the app's ports since the previous sample,
    /// counted from the namespace's `PassiveOpens` (so one that opened and
    /// closed between two samples counts), less accepts known to be
    /// excluded; never less than the new connections seen. 0 on the first
    /// sample.
    pub accepted: u32,
    /// Time since the last request arrived on any connection to the app's
    /// ports: data last received on an open connection (an accept with no
    /// data yet counts), or, for activity seen only as an accept or a
    /// closing connection, the sample that saw it. `None` if never.
    pub since_last_request_ms: Option<u32>,
    /// Time since the sample that last counted an accept; `None` if never.
    pub since_last_accept_ms: Option<u32>,
    /// The silences between requests, learned while serving.
    pub silences: Silences,
    /// What was left out.
    pub excluded: Excluded,
}

/// Connections left out of [`Traffic`], by reason; the first reason that
/// applies, in this order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Excluded {
    /// Open connections to the agent's admin port (the kubelet's probes of
    /// `/readyz`, `/prestop` holds, scrapes of `/metrics`).
    pub admin: u32,
    /// Open connections made by the agent's own `http` probes.
    pub own_probes: u32,
    /// Open connections to a port listed in `exclude.ports`.
    pub ports: u32,
    /// Open connections from a peer listed in `exclude.peers`, or from the
    /// node's IP (`LAMEDUCK_NODE_IP`, the kubelet's probes).
    pub peers: u32,
    /// Open connections accepted by other listeners of the namespace
    /// (sidecars): never the app's, counted for their accepts.
    pub other_listeners: u32,
    /// Accepts since the previous sample known to be one of the above, and
    /// left out of `accepted`.
    pub accepts: u32,
}

impl Traffic {
    /// The reading as the contract's `connections` record; `excluded` is
    /// the open connections left out, whatever the reason.
    pub fn to_connections(&self) -> Connections {
        let e = &self.excluded;
        Connections {
            evidence: match self.evidence {
                Evidence::SockDiag => policy::Evidence::SockDiag,
                Evidence::ProcNetTcp => policy::Evidence::ProcNetTcp,
            },
            open: self.open,
            in_flight: self.in_flight,
            streaming: self.streaming,
            unsure: self.unsure,
            idle: self.idle,
            long_lived: self.long_lived,
            long_lived_oldest_ms: self.long_lived_oldest_ms,
            multiplexed: self.multiplexed,
            accepted: self.accepted,
            since_last_request_ms: self.since_last_request_ms,
            since_last_accept_ms: self.since_last_accept_ms,
            silences: policy::Silences {
                watched_ms: self.silences.watched_ms,
                count: self.silences.count,
                p50_ms: self.silences.p50_ms,
                p99_ms: self.silences.p99_ms,
                max_ms: self.silences.max_ms,
            },
            excluded: e.admin + e.own_probes + e.ports + e.peers + e.other_listeners,
        }
    }
}
