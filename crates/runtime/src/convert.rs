//! At the wasm boundary: the agent's types (the contract's) to each version
//! of the world's bindings, and back. Every version is generated from its
//! own WIT, so most conversions are a field-by-field copy, written once for
//! every version by `shared!`; only what differs is written per version.

use lameduck_core as contract;

use super::bindings::{v0_1, v0_2, v0_3};

/// A signal of one enum to the same signal of another.
macro_rules! each_signal {
    ($value:expr, $from:ident => $to:ident) => {
        each_signal!(@ $value, $from, $to, [
            Hup, Int, Quit, Kill, Usr1, Usr2, Pipe, Alrm, Term, Cont, Stop, Tstp, Ttin, Ttou,
            Urg, Xcpu, Xfsz, Vtalrm, Prof, Winch, Io, Pwr
        ])
    };
    (@ $value:expr, $from:ident, $to:ident, [$($v:ident),*]) => {
        match $value { $($from::$v => $to::$v,)* }
    };
}

/// The conversions whose types are the same in every version.
macro_rules! shared {
    ($name:ident, $version:ident) => {
        pub mod $name {
            use super::super::bindings::$version::lameduck::policy::types as w;
            use lameduck_core as contract;

            pub fn signal(s: contract::Signal) -> w::Signal {
                use {contract::Signal as From, w::Signal as To};
                each_signal!(s, From => To)
            }

            pub fn from_signal(s: w::Signal) -> contract::Signal {
                use {contract::Signal as To, w::Signal as From};
                each_signal!(s, From => To)
            }

            pub fn trigger(t: contract::Trigger) -> w::Trigger {
                match t {
                    contract::Trigger::None => w::Trigger::None,
                    contract::Trigger::Signal(s) => w::Trigger::Signal(signal(s)),
                    contract::Trigger::Prestop => w::Trigger::Prestop,
                }
            }

            pub fn child(c: contract::Child) -> w::Child {
                match c {
                    contract::Child::Running => w::Child::Running,
                    contract::Child::Exited(code) => w::Child::Exited(code),
                    contract::Child::Killed(n) => w::Child::Killed(n),
                }
            }

            pub fn sent(s: &[contract::SentSignal]) -> Vec<w::SentSignal> {
                s.iter()
                    .map(|s| w::SentSignal {
                        signal: signal(s.signal),
                        at_ms: s.at_ms,
                    })
                    .collect()
            }

            /// A probe, with the version's own reading of `connections` and
            /// of `metrics` (`None`: the version cannot show it).
            pub fn probe(
                p: &contract::Probe,
                connections: impl Fn(&contract::Connections) -> w::Connections,
                metrics: impl Fn(&contract::Metrics) -> Option<w::ProbeValue>,
            ) -> w::Probe {
                w::Probe {
                    name: p.name.clone(),
                    value: match &p.value {
                        contract::ProbeValue::Connections(c) => {
                            w::ProbeValue::Connections(connections(c))
                        }
                        contract::ProbeValue::Metrics(m) => metrics(m).unwrap_or_else(|| {
                            w::ProbeValue::Failed(super::NO_METRICS.into())
                        }),
                        contract::ProbeValue::Http(r) => w::ProbeValue::Http(w::HttpResponse {
                            status: r.status,
                            body: r.body.clone(),
                        }),
                        contract::ProbeValue::File(f) => w::ProbeValue::File(w::FileState {
                            exists: f.exists,
                            contents: f.contents.clone(),
                        }),
                        contract::ProbeValue::Exec(code) => w::ProbeValue::Exec(*code),
                        contract::ProbeValue::Failed(why) => w::ProbeValue::Failed(why.clone()),
                    },
                    unchanged_ms: p.unchanged_ms,
                }
            }

            pub fn decision(d: w::Decision) -> contract::Decision {
                contract::Decision {
                    ready: d.ready,
                    signal: d.signal.map(from_signal),
                    next: match d.next {
                        w::Next::Recheck(ms) => contract::Next::Recheck(ms),
                        w::Next::WaitForExit => contract::Next::WaitForExit,
                        w::Next::Exit => contract::Next::Exit,
                    },
                    reason: d.reason,
                }
            }

            pub fn signal_action(a: w::SignalAction) -> contract::SignalAction {
                match a {
                    w::SignalAction::Forward => contract::SignalAction::Forward,
                    w::SignalAction::Rewrite(s) => contract::SignalAction::Rewrite(from_signal(s)),
                    w::SignalAction::Ignore => contract::SignalAction::Ignore,
                    w::SignalAction::Drain => contract::SignalAction::Drain,
                }
            }
        }
    };
}

shared!(current, v0_3);
shared!(second, v0_2);
shared!(first, v0_1);

/// What a version without the `metrics` probe reads for one.
const NO_METRICS: &str = "a metrics probe needs a policy built against lameduck:policy@0.3.0";

/// A snapshot for a component built against 0.3.0: as it is.
pub fn snapshot_v0_3(s: &contract::Snapshot) -> v0_3::lameduck::policy::types::Snapshot {
    use v0_3::lameduck::policy::types as w;
    let connections = |c: &contract::Connections| w::Connections {
        evidence: match c.evidence {
            contract::Evidence::SockDiag => w::Evidence::SockDiag,
            contract::Evidence::ProcNetTcp => w::Evidence::ProcNetTcp,
        },
        open: c.open,
        in_flight: c.in_flight,
        streaming: c.streaming,
        unsure: c.unsure,
        idle: c.idle,
        accepted: c.accepted,
        since_last_request_ms: c.since_last_request_ms,
        since_last_accept_ms: c.since_last_accept_ms,
        silences: w::Silences {
            watched_ms: c.silences.watched_ms,
            count: c.silences.count,
            p50_ms: c.silences.p50_ms,
            p99_ms: c.silences.p99_ms,
            max_ms: c.silences.max_ms,
        },
        excluded: c.excluded,
        long_lived: c.long_lived,
        long_lived_oldest_ms: c.long_lived_oldest_ms,
        multiplexed: c.multiplexed,
    };
    let metrics = |m: &contract::Metrics| {
        Some(w::ProbeValue::Metrics(w::Metrics {
            sum: m.sum,
            series: m
                .series
                .iter()
                .map(|s| w::Series {
                    labels: s.labels.clone(),
                    value: s.value,
                })
                .collect(),
        }))
    };
    w::Snapshot {
        trigger: current::trigger(s.trigger),
        elapsed_ms: s.elapsed_ms,
        remaining_ms: s.remaining_ms,
        child: current::child(s.child),
        signals_sent: current::sent(&s.signals_sent),
        ready: s.ready,
        probes: s
            .probes
            .iter()
            .map(|p| current::probe(p, connections, metrics))
            .collect(),
        mode: match s.mode {
            contract::Mode::Entrypoint => w::Mode::Entrypoint,
            contract::Mode::Sidecar => w::Mode::Sidecar,
        },
    }
}

/// A snapshot for a component built against 0.2.0, adapted (see the header
/// of `wit/v0.2/policy.wit`): long-lived connections count as in flight,
/// and a `metrics` probe reads `failed`.
pub fn snapshot_v0_2(s: &contract::Snapshot) -> v0_2::lameduck::policy::types::Snapshot {
    use v0_2::lameduck::policy::types as w;
    let connections = |c: &contract::Connections| w::Connections {
        evidence: match c.evidence {
            contract::Evidence::SockDiag => w::Evidence::SockDiag,
            contract::Evidence::ProcNetTcp => w::Evidence::ProcNetTcp,
        },
        open: c.open,
        in_flight: c.in_flight + c.long_lived,
        idle: c.idle,
        accepted: c.accepted,
        since_last_request_ms: c.since_last_request_ms,
        since_last_accept_ms: c.since_last_accept_ms,
        silences: w::Silences {
            watched_ms: c.silences.watched_ms,
            count: c.silences.count,
            p50_ms: c.silences.p50_ms,
            p99_ms: c.silences.p99_ms,
            max_ms: c.silences.max_ms,
        },
        excluded: c.excluded,
    };
    w::Snapshot {
        trigger: second::trigger(s.trigger),
        elapsed_ms: s.elapsed_ms,
        remaining_ms: s.remaining_ms,
        child: second::child(s.child),
        signals_sent: second::sent(&s.signals_sent),
        ready: s.ready,
        probes: s
            .probes
            .iter()
            .map(|p| second::probe(p, connections, |_| None))
            .collect(),
        mode: match s.mode {
            contract::Mode::Entrypoint => w::Mode::Entrypoint,
            contract::Mode::Sidecar => w::Mode::Sidecar,
        },
    }
}

/// A snapshot for a component built against 0.1.0, adapted (see the header
/// of `wit/v0.1/policy.wit`): it looked for connections, and is shown
/// requests, which is what it meant.
pub fn snapshot_v0_1(s: &contract::Snapshot) -> v0_1::lameduck::policy::types::Snapshot {
    use v0_1::lameduck::policy::types as w;
    let connections = |c: &contract::Connections| w::Connections {
        established: c.in_flight + c.long_lived,
        accepted: c.accepted,
        since_last_accept_ms: c.since_last_request_ms,
        typical_gap_ms: c.silences.p99_ms,
    };
    w::Snapshot {
        trigger: first::trigger(s.trigger),
        elapsed_ms: s.elapsed_ms,
        remaining_ms: s.remaining_ms,
        child: first::child(s.child),
        signals_sent: first::sent(&s.signals_sent),
        ready: s.ready,
        probes: s
            .probes
            .iter()
            .map(|p| first::probe(p, connections, |_| None))
            .collect(),
    }
}
