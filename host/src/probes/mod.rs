//! Probes: what the agent can observe without changing the app. Each kind
//! implements [`Sample`]. A probe that fails or overruns its timeout is a
//! value the policy sees (`failed`), never an error of the agent.

mod app_ports;
mod connections;
mod exclusions;
mod exec;
mod file;
mod http;
mod proc_net_tcp;
mod silences;
mod snmp;
mod sockets;
mod traffic;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use crate::config::{ProbeKind, ProbeSpec};
use crate::supervisor::Reaper;
use lameduck_core::ProbeValue;

pub use connections::{ConnectionsError, ConnectionsProbe};
pub use exclusions::{Agent, Cidr, Exclude, Own};
pub use http::{Get, HttpProbe};
pub use traffic::{Evidence, Excluded, Silences, Traffic};

/// How much of a body or file a probe keeps.
pub const MAX_BODY: usize = 4096;

/// The `User-Agent` of the agent's own HTTP requests: the admin server's
/// `/readyz` knows by it that a readiness URL led back to itself.
pub const USER_AGENT: &str = "lameduck";

/// One kind of probe.
pub(crate) trait Sample {
    /// Takes a reading. Slow kinds are bounded by the caller's timeout.
    async fn sample(&mut self) -> ProbeValue;
}

enum Kind {
    /// Boxed: its per-socket state dwarfs the other kinds.
    Connections(Box<ConnectionsProbe>),
    Http(http::HttpProbe),
    File(file::FileProbe),
    Exec(exec::ExecProbe),
}

impl Kind {
    async fn sample(&mut self) -> ProbeValue {
        match self {
            Kind::Connections(p) => p.sample().await,
            Kind::Http(p) => p.sample().await,
            Kind::File(p) => p.sample().await,
            Kind::Exec(p) => p.sample().await,
        }
    }
}

struct Slot {
    name: String,
    timeout: Duration,
    kind: Kind,
}

/// The configured probes, in configuration order. What they read is kept by
/// the agent (`lameduck_core::agent`), with how long each value has held.
pub struct Probes {
    slots: Vec<Slot>,
}

impl Probes {
    /// Builds the probes; `app_pgid` lets a `connections` probe without
    /// ports find the app's listening ports (without one, beside the app as a
    /// sidecar: every listener in the network namespace but lameduck's own),
    /// and `agent` tells it which connections are the agent's, not the app's.
    pub fn new(
        specs: &[ProbeSpec],
        reaper: Arc<Reaper>,
        app_pgid: Option<i32>,
        agent: &Agent,
    ) -> Self {
        let slots = specs
            .iter()
            .map(|spec| Slot {
                name: spec.name.clone(),
                timeout: spec.timeout,
                kind: match &spec.kind {
                    ProbeKind::Connections { ports, exclude } => Kind::Connections(Box::new(
                        ConnectionsProbe::new(ports.clone(), app_pgid, exclude, agent),
                    )),
                    ProbeKind::Http { url } => {
                        Kind::Http(http::HttpProbe::new(url, agent.own.clone()))
                    }
                    ProbeKind::File { path } => Kind::File(file::FileProbe::new(path.clone())),
                    ProbeKind::Exec { command } => {
                        Kind::Exec(exec::ExecProbe::new(command.clone(), reaper.clone()))
                    }
                },
            })
            .collect();
        Probes { slots }
    }

    /// The probes' names, in configuration order.
    pub fn names(&self) -> Vec<String> {
        self.slots.iter().map(|slot| slot.name.clone()).collect()
    }

    /// Samples every probe at once; the whole takes at most the longest
    /// timeout.
    pub async fn sample(&mut self) -> Vec<(String, ProbeValue)> {
        join_all(self.slots.iter_mut().map(|slot| async move {
            let value = tokio::time::timeout(slot.timeout, slot.kind.sample())
                .await
                .unwrap_or_else(|_| {
                    ProbeValue::Failed(format!("no answer within {:?}", slot.timeout))
                });
            (slot.name.clone(), value)
        }))
        .await
    }

    /// While serving: lets `connections` probes learn the rhythm of
    /// requests. Cheap and synchronous. The readings are the probes' values
    /// too, so `on-signal` sees the traffic of the moment.
    pub fn learn(&mut self) -> Vec<(String, ProbeValue)> {
        self.slots
            .iter_mut()
            .filter_map(|slot| match &mut slot.kind {
                Kind::Connections(probe) => Some((slot.name.clone(), probe.learn())),
                _ => None,
            })
            .collect()
    }

    /// Whether any probe learns while serving.
    pub fn learns(&self) -> bool {
        self.slots
            .iter()
            .any(|slot| matches!(slot.kind, Kind::Connections(_)))
    }
}

/// Checks that `url` can be probed (`http://host[:port]/path`).
pub fn check_url(url: &str) -> Result<(), String> {
    http::host_port(url).map(|_| ())
}
