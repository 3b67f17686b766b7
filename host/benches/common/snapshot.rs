//! The snapshot the `decide` benchmark and the `policy_cost` example time
//! calls on, included by both (`#[path]`), so their numbers compare.

use lameduck::policy::{
    Child, Connections, FileState, HttpResponse, Probe, ProbeValue, Signal, Snapshot, Trigger,
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
                    established: 3,
                    accepted: 1,
                    since_last_accept_ms: Some(140),
                    typical_gap_ms: Some(90),
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
    }
}
