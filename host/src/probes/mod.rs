//! Probes: what the agent can observe without changing the app. Each kind
//! implements [`Sample`]. A probe that fails or overruns its timeout is a
//! value the policy sees (`failed`), never an error of the agent.

mod app_ports;
pub(crate) mod connections;
mod exclusions;
mod exec;
mod file;
pub(crate) mod http;
mod metrics;
#[cfg(test)]
mod namespace;
mod proc_net_tcp;
mod silences;
mod snmp;
mod sockets;
mod traffic;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use lameduck_core::ProbeValue;
use serde::{Deserialize, Serialize};

use crate::supervisor::Reaper;

pub use connections::{ConnectionsError, ConnectionsProbe};
pub use exclusions::{Agent, Cidr, Exclude, Own};
pub use http::{Get, HttpProbe};
pub use snmp::{Snmp, TcpCounters};
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
    Metrics(metrics::MetricsProbe),
}

/// A configured probe: its name, its timeout, and what it observes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub name: String,
    pub timeout: Duration,
    pub kind: Spec,
}

/// What a probe observes: one kind, each a module of its own owning its
/// spec and its sampling. A new kind is a variant here, a line in
/// [`Spec::start`], its module, and its value in `wit/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Spec {
    Connections(connections::Spec),
    Http(http::Spec),
    File(file::Spec),
    Exec(exec::Spec),
    Metrics(metrics::Spec),
}

impl Spec {
    /// The kinds, by name.
    const KINDS: &str = "connections, http, file, exec, metrics";

    /// The spec of the kind called `kind`, from its YAML.
    fn read(kind: &str, yaml: serde_yaml::Value) -> Result<Spec, String> {
        fn read<T: for<'de> Deserialize<'de>>(yaml: serde_yaml::Value) -> Result<T, String> {
            serde_path_to_error::deserialize(yaml).map_err(|e| {
                let inner = e.inner().to_string();
                match e.path().to_string().as_str() {
                    "." => inner,
                    path => format!("{path}: {inner}"),
                }
            })
        }
        let spec = match kind {
            "connections" => Spec::Connections(read(yaml)?),
            "http" => Spec::Http(read(yaml)?),
            "file" => Spec::File(read(yaml)?),
            "exec" => Spec::Exec(read(yaml)?),
            "metrics" => Spec::Metrics(read(yaml)?),
            other => {
                return Err(format!(
                    "`{other}` is not a kind of probe (there are: {})",
                    Spec::KINDS
                ));
            }
        };
        Ok(spec)
    }

    /// The probe, ready to sample.
    fn start(&self, reaper: &Arc<Reaper>, app_pgid: Option<i32>, agent: &Agent) -> Kind {
        match self {
            Spec::Connections(spec) => Kind::Connections(Box::new(
                ConnectionsProbe::new(spec.ports.clone(), app_pgid, &spec.exclude, agent)
                    .long_lived_from(spec.long_lived.unwrap_or(connections::LONG_LIVED)),
            )),
            Spec::Http(spec) => Kind::Http(HttpProbe::new(&spec.url, agent.own.clone())),
            Spec::File(spec) => Kind::File(file::FileProbe::new(spec.path.clone())),
            Spec::Exec(spec) => {
                Kind::Exec(exec::ExecProbe::new(spec.command.clone(), reaper.clone()))
            }
            Spec::Metrics(spec) => {
                Kind::Metrics(metrics::MetricsProbe::new(spec, agent.own.clone()))
            }
        }
    }
}

/// A probe's timeout when it gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

impl ProbeSpec {
    /// The default probe: `connections`, on the app's own ports.
    pub fn connections() -> Self {
        ProbeSpec {
            name: "connections".into(),
            timeout: DEFAULT_TIMEOUT,
            kind: Spec::Connections(connections::Spec::default()),
        }
    }
}

/// `{name: web, timeout: 500ms, connections: {...}}`: a name, an optional
/// timeout, and exactly one kind.
impl<'de> Deserialize<'de> for ProbeSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = serde_yaml::Mapping::deserialize(d)?;
        let name = match map.remove("name") {
            Some(serde_yaml::Value::String(name)) => name,
            Some(_) => return Err(D::Error::custom("name: expected a string")),
            None => return Err(D::Error::missing_field("name")),
        };
        let timeout = match map.remove("timeout") {
            Some(value) => {
                timeout(&value).map_err(|e| D::Error::custom(format!("timeout: {e}")))?
            }
            None => DEFAULT_TIMEOUT,
        };
        if map.len() != 1 {
            let kinds: Vec<String> = map
                .keys()
                .filter_map(|k| k.as_str().map(String::from))
                .collect();
            return Err(D::Error::custom(format!(
                "probe `{name}` has {} kinds ({}): give exactly one of {}",
                map.len(),
                kinds.join(", "),
                Spec::KINDS
            )));
        }
        let (kind, yaml) = map.into_iter().next().expect("one");
        let kind = kind.as_str().unwrap_or_default().to_string();
        // An error leads with its place in the probe: `.connections.ports[0]: …`.
        let kind = Spec::read(&kind, yaml).map_err(|e| {
            D::Error::custom(match e.split_once(": ") {
                Some((path, e)) if !path.contains(' ') => format!(".{kind}.{path}: {e}"),
                _ => format!(".{kind}: {e}"),
            })
        })?;
        Ok(ProbeSpec {
            name,
            timeout,
            kind,
        })
    }
}

/// A probe's timeout: a duration, and not zero (which would fail every
/// reading).
fn timeout(value: &serde_yaml::Value) -> Result<Duration, String> {
    let text = value
        .as_str()
        .ok_or("expected a duration (examples: 500ms, 2s)")?;
    match lameduck_core::parse_duration_ms(text) {
        Some(0) => Err("must be more than 0ms: no reading could be taken within it".into()),
        Some(ms) => Ok(Duration::from_millis(ms.into())),
        None => Err(format!("`{text}` is not a duration (examples: 500ms, 2s)")),
    }
}

impl Serialize for ProbeSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            name: &'a str,
            timeout: String,
            #[serde(flatten)]
            kind: &'a Spec,
        }
        Shown {
            name: &self.name,
            timeout: lameduck_core::show_duration(self.timeout),
            kind: &self.kind,
        }
        .serialize(s)
    }
}

impl Kind {
    async fn sample(&mut self) -> ProbeValue {
        match self {
            Kind::Connections(p) => p.sample().await,
            Kind::Http(p) => p.sample().await,
            Kind::File(p) => p.sample().await,
            Kind::Exec(p) => p.sample().await,
            Kind::Metrics(p) => p.sample().await,
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
                kind: spec.kind.start(&reaper, app_pgid, agent),
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
