//! The contract's types as timeline data: serde for the types wit-bindgen
//! generates, in the shape the agent has always written (signals by name,
//! `{"recheck_ms": 100}`, `{"connections": {...}}`), so recordings made by
//! earlier agents read as well as today's.
//!
//! Each type is described once, by a mirror that serde derives for
//! (`#[serde(remote)]`); [`via!`] makes it the type's own `Serialize` and
//! `Deserialize`.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{
    Child, Connections, Decision, Evidence, FileState, HttpResponse, Metrics, Mode, Next, Probe,
    ProbeValue, SentSignal, Series, Signal, SignalAction, Silences, Snapshot, Trigger,
};

/// Makes the mirror `$def` the serde implementation of `$type`.
macro_rules! via {
    ($($type:ty => $def:ident),* $(,)?) => {$(
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $def::serialize(self, s)
            }
        }
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $def::deserialize(d)
            }
        }
    )*};
}

via! {
    Snapshot => SnapshotDef,
    SentSignal => SentSignalDef,
    Probe => ProbeDef,
    ProbeValue => ProbeValueDef,
    HttpResponse => HttpResponseDef,
    FileState => FileStateDef,
    Metrics => MetricsDef,
    Series => SeriesDef,
    Silences => SilencesDef,
    Decision => DecisionDef,
    Next => NextDef,
    Child => ChildDef,
    Mode => ModeDef,
    Evidence => EvidenceDef,
    SignalAction => SignalActionDef,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Snapshot")]
struct SnapshotDef {
    trigger: Trigger,
    elapsed_ms: u32,
    remaining_ms: u32,
    child: Child,
    signals_sent: Vec<SentSignal>,
    ready: bool,
    /// Recorded since 0.2; an entrypoint before.
    #[serde(default = "entrypoint")]
    mode: Mode,
    probes: Vec<Probe>,
}

fn entrypoint() -> Mode {
    Mode::Entrypoint
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "SentSignal")]
struct SentSignalDef {
    signal: Signal,
    at_ms: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Probe")]
struct ProbeDef {
    name: String,
    value: ProbeValue,
    unchanged_ms: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "ProbeValue", rename_all = "lowercase")]
enum ProbeValueDef {
    Connections(Connections),
    Http(HttpResponse),
    File(FileState),
    Exec(i32),
    Metrics(Metrics),
    Failed(String),
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Metrics")]
struct MetricsDef {
    sum: f64,
    series: Vec<Series>,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Series")]
struct SeriesDef {
    labels: Vec<(String, String)>,
    value: f64,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "HttpResponse")]
struct HttpResponseDef {
    status: u16,
    body: String,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "FileState")]
struct FileStateDef {
    exists: bool,
    contents: String,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Silences")]
struct SilencesDef {
    watched_ms: u32,
    count: u32,
    p50_ms: Option<u32>,
    p99_ms: Option<u32>,
    max_ms: Option<u32>,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Connections")]
struct ConnectionsDef {
    evidence: Evidence,
    open: u32,
    in_flight: u32,
    /// Recorded since 0.3, as the rest below that has a default.
    #[serde(default)]
    streaming: u32,
    #[serde(default)]
    unsure: u32,
    idle: u32,
    accepted: u32,
    since_last_request_ms: Option<u32>,
    since_last_accept_ms: Option<u32>,
    silences: Silences,
    excluded: u32,
    #[serde(default)]
    long_lived: u32,
    #[serde(default)]
    long_lived_oldest_ms: Option<u32>,
    #[serde(default)]
    multiplexed: bool,
}

impl Serialize for Connections {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ConnectionsDef::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for Connections {
    /// Today's reading, or one an agent of the 0.1 contract recorded
    /// (connections only), adapted as the host adapts snapshots for 0.1
    /// policies the other way round.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        if value.get("established").is_none() {
            return ConnectionsDef::deserialize(value).map_err(D::Error::custom);
        }
        #[derive(Deserialize)]
        struct V01 {
            established: u32,
            accepted: u32,
            since_last_accept_ms: Option<u32>,
            typical_gap_ms: Option<u32>,
        }
        let old = V01::deserialize(value).map_err(D::Error::custom)?;
        let typical = old.typical_gap_ms;
        Ok(Connections {
            evidence: Evidence::ProcNetTcp,
            open: old.established,
            in_flight: old.established,
            idle: 0,
            accepted: old.accepted,
            since_last_request_ms: old.since_last_accept_ms,
            since_last_accept_ms: old.since_last_accept_ms,
            silences: Silences {
                watched_ms: 0,
                count: u32::from(typical.is_some()),
                p50_ms: typical,
                p99_ms: typical,
                max_ms: typical,
            },
            excluded: 0,
            streaming: 0,
            unsure: 0,
            long_lived: 0,
            long_lived_oldest_ms: None,
            multiplexed: false,
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Decision")]
struct DecisionDef {
    ready: Option<bool>,
    signal: Option<Signal>,
    next: Next,
    reason: String,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Next")]
enum NextDef {
    #[serde(rename = "recheck_ms")]
    Recheck(u32),
    #[serde(rename = "wait-for-exit")]
    WaitForExit,
    #[serde(rename = "exit")]
    Exit,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Child", rename_all = "lowercase")]
enum ChildDef {
    Running,
    Exited(u8),
    Killed(u8),
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Mode", rename_all = "lowercase")]
enum ModeDef {
    Entrypoint,
    Sidecar,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Evidence", rename_all = "kebab-case")]
enum EvidenceDef {
    SockDiag,
    ProcNetTcp,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "SignalAction", rename_all = "lowercase")]
enum SignalActionDef {
    Forward,
    Rewrite(Signal),
    Ignore,
    Drain,
}

/// A signal by its name: `TERM`.
impl Serialize for Signal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Signal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Signal::from_name(&name)
            .ok_or_else(|| D::Error::custom(format!("`{name}` is not a signal a policy knows")))
    }
}

/// `none`, `prestop`, or the name of the signal that began the drain.
impl Serialize for Trigger {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Trigger::None => s.serialize_str("none"),
            Trigger::Prestop => s.serialize_str("prestop"),
            Trigger::Signal(signal) => signal.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Trigger {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
        match &*name {
            "none" => Ok(Trigger::None),
            "prestop" => Ok(Trigger::Prestop),
            other => Signal::from_name(other)
                .map(Trigger::Signal)
                .ok_or_else(|| {
                    D::Error::custom(format!("`{other}` is not none, prestop or a signal"))
                }),
        }
    }
}
