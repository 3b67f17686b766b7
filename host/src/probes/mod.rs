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
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::config::{ProbeKind, ProbeSpec};
use crate::policy::{Probe, ProbeValue};
use crate::supervisor::Reaper;

pub use connections::{ConnectionsError, ConnectionsProbe};
pub use exclusions::{Agent, Cidr, Exclude};
pub use http::HttpProbe;
pub use traffic::{Evidence, Excluded, Silences, Traffic};

/// How much of a body or file a probe keeps.
pub const MAX_BODY: usize = 4096;

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
    latest: Option<ProbeValue>,
    changed_at: Instant,
}

impl Slot {
    fn record(&mut self, value: ProbeValue, now: Instant) {
        if self.latest.as_ref() != Some(&value) {
            self.changed_at = now;
            self.latest = Some(value);
        }
    }
}

/// The configured probes, in configuration order, with their latest values.
pub struct Probes {
    slots: Vec<Slot>,
}

impl Probes {
    /// Builds the probes; `app_pgid` lets a `connections` probe without
    /// ports find the app's listening ports, and `agent` tells it which
    /// connections are the agent's, not the app's.
    pub fn new(specs: &[ProbeSpec], reaper: Arc<Reaper>, app_pgid: i32, agent: Agent) -> Self {
        let slots = specs
            .iter()
            .map(|spec| Slot {
                name: spec.name.clone(),
                timeout: spec.timeout,
                kind: match &spec.kind {
                    ProbeKind::Connections { ports, exclude } => Kind::Connections(Box::new(
                        ConnectionsProbe::new(ports.clone(), app_pgid, exclude, agent),
                    )),
                    ProbeKind::Http { url } => Kind::Http(http::HttpProbe::new(url)),
                    ProbeKind::File { path } => Kind::File(file::FileProbe::new(path.clone())),
                    ProbeKind::Exec { command } => {
                        Kind::Exec(exec::ExecProbe::new(command.clone(), reaper.clone()))
                    }
                },
                latest: None,
                changed_at: Instant::now(),
            })
            .collect();
        Probes { slots }
    }

    /// Samples every probe at once; the whole takes at most the longest
    /// timeout.
    pub async fn sample(&mut self) -> Vec<Probe> {
        let readings = join_all(self.slots.iter_mut().map(|slot| async move {
            let value = tokio::time::timeout(slot.timeout, slot.kind.sample())
                .await
                .unwrap_or_else(|_| {
                    ProbeValue::Failed(format!("no answer within {:?}", slot.timeout))
                });
            (slot, value)
        }))
        .await;
        let now = Instant::now();
        for (slot, value) in readings {
            slot.record(value, now);
        }
        self.latest()
    }

    /// The latest values without sampling (for `on-signal`, which must be
    /// quick); probes never sampled are left out.
    pub fn latest(&self) -> Vec<Probe> {
        let now = Instant::now();
        self.slots
            .iter()
            .filter_map(|slot| {
                Some(Probe {
                    name: slot.name.clone(),
                    value: slot.latest.clone()?,
                    unchanged_ms: millis(now - slot.changed_at),
                })
            })
            .collect()
    }

    /// While serving: lets `connections` probes learn the rhythm of
    /// arrivals. Cheap and synchronous. The readings are the latest values
    /// too, so `on-signal` sees the traffic of the moment.
    pub fn learn(&mut self) {
        let now = Instant::now();
        for slot in &mut self.slots {
            if let Kind::Connections(probe) = &mut slot.kind {
                let value = probe.learn();
                slot.record(value, now);
            }
        }
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
    http::parse_url(url).map(|_| ())
}

/// Milliseconds, saturating at the contract's `u32`.
pub fn millis(duration: Duration) -> u32 {
    duration.as_millis().min(u32::MAX as u128) as u32
}

/// Counts a connection the admin server listening on `port` accepted, so
/// `connections` probes take it off the namespace's accepts.
pub fn note_admin_accept(port: u16) {
    exclusions::own::note_admin_accept(port);
}
