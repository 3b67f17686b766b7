//! The snapshot the `decide` benchmark and the `policy_cost` example time
//! calls on, included by both (`#[path]`), so their numbers compare.

use lameduck_core::{
    Child, Connections, Evidence, FileState, HttpResponse, Mode, Probe, ProbeValue, Signal,
    Silences, Snapshot, Trigger,
};

/// A snapshot in the middle of a drain, with four probes.
pub fn snapshot() -> Snapshot {
    let probe = |name: &str, value| Probe {
        name: name.into(),
        value,
        unchanged_ms: 250,
    };
    Snapshot {
        trigger: Trigger::Signal(Signal::Term),
        elapsed_ms: 1_200,
        remaining_ms: 26_800,
        child: Child::Running,
        signals_sent: Vec::new(),
        ready: false,
        probes: vec![
            probe(
                "connections",
                ProbeValue::Connections(Connections {
                    evidence: Evidence::SockDiag,
                    open: 12,
                    in_flight: 3,
                    idle: 9,
                    accepted: 1,
                    since_last_request_ms: Some(40),
                    since_last_accept_ms: Some(140),
                    silences: Silences {
                        watched_ms: 600_000,
                        count: 4_000,
                        p50_ms: Some(10),
                        p99_ms: Some(90),
                        max_ms: Some(150),
                    },
                    excluded: 1,
                    streaming: 1,
                    unsure: 0,
                    long_lived: 0,
                    long_lived_oldest_ms: None,
                    multiplexed: false,
                }),
            ),
            probe(
                "idle",
                ProbeValue::Http(HttpResponse {
                    status: 503,
                    body: "2 jobs".into(),
                }),
            ),
            probe(
                "lock",
                ProbeValue::File(FileState {
                    exists: true,
                    contents: "busy".into(),
                }),
            ),
            probe("queue", ProbeValue::Exec(1)),
        ],
        mode: Mode::Entrypoint,
    }
}
