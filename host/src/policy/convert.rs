//! Between the host's types (wasmtime's bindings) and the SDK's (wit-bindgen's),
//! for the native fallback. Both are generated from the same WIT, so every
//! conversion is a field-by-field copy.

use lameduck_sdk as sdk;

use super::{Child, Decision, Next, Probe, ProbeValue, Signal, SignalAction, Snapshot, Trigger};

macro_rules! same_enum {
    ($host:ident, [$($variant:ident),* $(,)?]) => {
        impl From<sdk::$host> for $host {
            fn from(value: sdk::$host) -> Self {
                match value { $(sdk::$host::$variant => $host::$variant,)* }
            }
        }
        impl From<$host> for sdk::$host {
            fn from(value: $host) -> Self {
                match value { $($host::$variant => sdk::$host::$variant,)* }
            }
        }
    };
}

same_enum!(
    Signal,
    [
        Hup, Int, Quit, Kill, Usr1, Usr2, Pipe, Alrm, Term, Cont, Stop, Tstp, Ttin, Ttou, Urg,
        Xcpu, Xfsz, Vtalrm, Prof, Winch, Io, Pwr,
    ]
);

pub fn snapshot(s: &Snapshot) -> sdk::Snapshot {
    sdk::Snapshot {
        trigger: match s.trigger {
            Trigger::None => sdk::Trigger::None,
            Trigger::Signal(signal) => sdk::Trigger::Signal(signal.into()),
            Trigger::Prestop => sdk::Trigger::Prestop,
        },
        elapsed_ms: s.elapsed_ms,
        remaining_ms: s.remaining_ms,
        child: match s.child {
            Child::Running => sdk::Child::Running,
            Child::Exited(code) => sdk::Child::Exited(code),
            Child::Killed(signal) => sdk::Child::Killed(signal),
        },
        signals_sent: s
            .signals_sent
            .iter()
            .map(|sent| sdk::SentSignal {
                signal: sent.signal.into(),
                at_ms: sent.at_ms,
            })
            .collect(),
        ready: s.ready,
        probes: s.probes.iter().map(probe).collect(),
    }
}

fn probe(p: &Probe) -> sdk::Probe {
    sdk::Probe {
        name: p.name.clone(),
        value: match &p.value {
            ProbeValue::Connections(c) => sdk::ProbeValue::Connections(sdk::Connections {
                established: c.established,
                accepted: c.accepted,
                since_last_accept_ms: c.since_last_accept_ms,
                typical_gap_ms: c.typical_gap_ms,
            }),
            ProbeValue::Http(r) => sdk::ProbeValue::Http(sdk::HttpResponse {
                status: r.status,
                body: r.body.clone(),
            }),
            ProbeValue::File(f) => sdk::ProbeValue::File(sdk::FileState {
                exists: f.exists,
                contents: f.contents.clone(),
            }),
            ProbeValue::Exec(code) => sdk::ProbeValue::Exec(*code),
            ProbeValue::Failed(why) => sdk::ProbeValue::Failed(why.clone()),
        },
        unchanged_ms: p.unchanged_ms,
    }
}

pub fn decision(d: sdk::Decision) -> Decision {
    Decision {
        ready: d.ready,
        signal: d.signal.map(Into::into),
        next: match d.next {
            sdk::Next::Recheck(ms) => Next::Recheck(ms),
            sdk::Next::WaitForExit => Next::WaitForExit,
            sdk::Next::Exit => Next::Exit,
        },
        reason: d.reason,
    }
}

pub fn signal_action(a: sdk::SignalAction) -> SignalAction {
    match a {
        sdk::SignalAction::Forward => SignalAction::Forward,
        sdk::SignalAction::Rewrite(signal) => SignalAction::Rewrite(signal.into()),
        sdk::SignalAction::Ignore => SignalAction::Ignore,
        sdk::SignalAction::Drain => SignalAction::Drain,
    }
}
