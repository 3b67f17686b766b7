use serde_json::json;

use super::*;
use crate::{
    Child, Connections, Evidence, FileState, HttpResponse, Metrics, Mode, Next, Probe, ProbeValue,
    SentSignal, Series, Silences,
};

fn snapshot() -> Snapshot {
    let connections = Connections {
        evidence: Evidence::SockDiag,
        open: 4,
        in_flight: 1,
        idle: 3,
        accepted: 2,
        since_last_request_ms: Some(120),
        since_last_accept_ms: None,
        silences: Silences {
            watched_ms: 60_000,
            count: 80,
            p50_ms: Some(40),
            p99_ms: Some(300),
            max_ms: None,
        },
        excluded: 1,
        streaming: 1,
        unsure: 0,
        long_lived: 2,
        long_lived_oldest_ms: Some(61_000),
        multiplexed: true,
    };
    let probe = |name: &str, value| Probe {
        name: name.into(),
        value,
        unchanged_ms: 7,
    };
    Snapshot {
        trigger: Trigger::Signal(Signal::Term),
        elapsed_ms: 1_200,
        remaining_ms: 11_800,
        child: Child::Killed(9),
        signals_sent: vec![SentSignal {
            signal: Signal::Usr1,
            at_ms: 900,
        }],
        ready: false,
        probes: vec![
            probe("connections", ProbeValue::Connections(connections)),
            probe(
                "ready",
                ProbeValue::Http(HttpResponse {
                    status: 503,
                    body: "no\u{1b}[2J".into(),
                }),
            ),
            probe(
                "flag",
                ProbeValue::File(FileState {
                    exists: true,
                    contents: "x".into(),
                }),
            ),
            probe("exec", ProbeValue::Exec(-3)),
            probe(
                "gauge",
                ProbeValue::Metrics(Metrics {
                    sum: 2.5,
                    series: vec![Series {
                        labels: vec![("method".into(), "Watch".into())],
                        value: 2.5,
                    }],
                }),
            ),
            probe("broken", ProbeValue::Failed("no answer".into())),
        ],
        mode: Mode::Sidecar,
    }
}

fn decisions() -> [Decision; 3] {
    [
        Decision {
            ready: Some(false),
            signal: Some(Signal::Term),
            next: Next::Recheck(100),
            reason: "quiet".into(),
        },
        Decision {
            ready: None,
            signal: None,
            next: Next::WaitForExit,
            reason: "waiting".into(),
        },
        Decision {
            ready: Some(true),
            signal: Some(Signal::Kill),
            next: Next::Exit,
            reason: "now".into(),
        },
    ]
}

/// One event of every kind, and of every shape a kind's data takes.
fn every_event() -> Vec<Event> {
    let call = Call {
        took_us: 42,
        fallback: Some("trapped".into()),
    };
    let [recheck, wait, exit] = decisions();
    let mut events = vec![
        Event::Started {
            pid: Some(7),
            program: Some("app".into()),
        },
        Event::Started {
            pid: None,
            program: None,
        },
        Event::Admin {
            address: "0.0.0.0:9911".into(),
        },
        Event::Held {
            signal: Signal::Term,
        },
        Event::Reload {
            signal: Signal::Hup,
        },
        Event::Forwarded {
            signal: "SIG34".into(),
        },
        Event::Interrupted,
        Event::Prestop,
        Event::DrainBegan {
            trigger: Trigger::Prestop,
            budget_ms: 28_000,
        },
        Event::Late {
            decision: wait.clone(),
        },
        Event::Sent {
            signal: Signal::Term,
            why: "quiet".into(),
        },
        Event::Refused {
            signal: Signal::Kill,
            why: "a sidecar cannot".into(),
        },
        Event::Deadline {
            kill_pause_ms: Some(1_000),
        },
        Event::Deadline {
            kill_pause_ms: None,
        },
        Event::Killed { why: "now".into() },
        Event::Exited { status: 143 },
        Event::Exited { status: 3 },
        Event::Stopping { why: "TERM".into() },
        Event::Policy {
            source: "builtin:drain".into(),
            sha256: "ab".repeat(32),
            load_ms: Some(3),
            origin: Some("precompiled".into()),
        },
        Event::PolicyFailed {
            source: "p.wasm".into(),
            reason: "trap".into(),
            deciding: Some("q.wasm (sha256 0123456789ab)".into()),
        },
        Event::PolicyFailed {
            source: "p.wasm".into(),
            reason: "trap".into(),
            deciding: None,
        },
        Event::PolicyError {
            error: "timed out".into(),
        },
        Event::ShadowPolicy {
            source: "s.wasm".into(),
            sha256: "cd".repeat(32),
            load_ms: None,
        },
        Event::ShadowFailed {
            source: "s.wasm".into(),
            reason: "init".into(),
        },
        Event::Shadow {
            call: "decide".into(),
            answer: Answer::Decision(exit.clone()),
            live: Some(Answer::Decision(recheck.clone())),
            agrees: Some(false),
            failure: None,
        },
        Event::Shadow {
            call: "decide".into(),
            answer: Answer::Decision(wait.clone()),
            live: None,
            agrees: None,
            failure: Some("trapped".into()),
        },
        Event::Degraded {
            probe: "connections".into(),
            why: "netlink refused".into(),
        },
        Event::Omitted {
            kind: "decision".into(),
            bytes: 40_000,
        },
        Event::PolicyPulled {
            reference: format!("oci://127.0.0.1:5000/drain@sha256:{}", "ab".repeat(32)),
            digest: format!("sha256:{}", "ab".repeat(32)),
            from: PulledFrom::Cache,
            pull_ms: 31,
            bytes: 18_400_000,
            failure: None,
            shadow: false,
        },
        Event::PolicyPulled {
            reference: "oci://registry.example:5000/policies/drain:stable".into(),
            digest: format!("sha256:{}", "cd".repeat(32)),
            from: PulledFrom::Registry,
            pull_ms: 812,
            bytes: 1_000,
            failure: None,
            shadow: true,
        },
        Event::PolicyPulled {
            reference: "oci://r/drain:stable".into(),
            digest: format!("sha256:{}", "ef".repeat(32)),
            from: PulledFrom::LastPull,
            pull_ms: 5,
            bytes: 1_000,
            failure: Some("cannot reach registry r".into()),
            shadow: false,
        },
        Event::PullFailed {
            reference: "oci://r/drain:stable".into(),
            reason: "HTTP 401".into(),
            deciding: Some("builtin:drain (sha256 0123456789ab)".into()),
            retry_ms: Some(5_000),
            shadow: false,
        },
        Event::PullFailed {
            reference: "oci://r/drain:stable".into(),
            reason: "stalled".into(),
            deciding: None,
            retry_ms: None,
            shadow: true,
        },
        Event::TagMoved {
            reference: "oci://r/drain:stable".into(),
            from: Some(format!("sha256:{}", "ab".repeat(32))),
            to: format!("sha256:{}", "cd".repeat(32)),
            shadow: false,
        },
        Event::TagMoved {
            reference: "oci://r/drain:stable".into(),
            from: None,
            to: format!("sha256:{}", "cd".repeat(32)),
            shadow: true,
        },
    ];
    for action in [
        SignalAction::Forward,
        SignalAction::Rewrite(Signal::Usr2),
        SignalAction::Ignore,
        SignalAction::Drain,
    ] {
        events.push(Event::Signal {
            signal: Signal::Int,
            action,
            drain_goes_on: action == SignalAction::Drain,
            snapshot: snapshot(),
            call: call.clone(),
        });
        events.push(Event::Shadow {
            call: "on-signal".into(),
            answer: Answer::Signal {
                signal_action: action,
            },
            live: None,
            agrees: Some(true),
            failure: None,
        });
    }
    for decision in decisions() {
        events.push(Event::Decision {
            snapshot: snapshot(),
            decision,
            call: call.clone(),
        });
    }
    events
}

#[test]
fn every_kind_of_event_reads_back_as_it_was_written() {
    let events = every_event();
    let mut kinds: Vec<String> = Vec::new();
    for (i, event) in events.into_iter().enumerate() {
        let entry = Entry {
            at_ms: 1_000 + i as u64,
            drain_ms: (i % 2 == 0).then_some(i as u32),
            event,
        };
        let text = serde_json::to_string(&entry).unwrap();
        let read = Entry::from_json(serde_json::from_str(&text).unwrap());
        assert_eq!(read, Ok(Some(entry.clone())), "{text}");
        let json = entry.to_json();
        assert_eq!(json["message"], entry.event.describe(), "{text}");
        assert_eq!(json["event"], entry.event.kind(), "{text}");
        kinds.push(json["event"].as_str().unwrap().to_string());
    }
    kinds.sort();
    kinds.dedup();
    let mut known = legacy::KINDS.to_vec();
    known.sort();
    assert_eq!(kinds, known, "every kind is written by the test, and known");
}

#[test]
fn recordings_of_the_earlier_agents_read_in_full() {
    for (file, signals) in [("status-0.1.json", 1), ("status-0.2.json", 1)] {
        let path = format!("{}/../../tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
        let status: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let entries: Vec<Entry> = status["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| Entry::from_json(e.clone()).unwrap().expect("a known kind"))
            .collect();
        let answered: Vec<_> = entries
            .iter()
            .filter(|e| {
                matches!(
                    e.event,
                    Event::Signal {
                        signal: Signal::Term,
                        action: SignalAction::Drain,
                        ..
                    }
                )
            })
            .collect();
        assert_eq!(answered.len(), signals, "{file}");
        assert!(
            entries
                .iter()
                .any(|e| matches!(e.event, Event::Decision { .. })),
            "{file}"
        );
    }
}

#[test]
fn the_0_2_agents_signal_entries_are_told_apart() {
    let read = |event: serde_json::Value| Entry::from_json(event).unwrap().unwrap().event;
    assert_eq!(
        read(
            json!({ "at_ms": 1, "event": "signal", "message": "TERM: held until the policy is loaded",
                     "data": { "signal": "TERM", "held": true } })
        ),
        Event::Held {
            signal: Signal::Term
        }
    );
    assert_eq!(
        read(
            json!({ "at_ms": 1, "event": "signal", "message": "HUP: reloading the policy",
                     "data": { "signal": "HUP" } })
        ),
        Event::Reload {
            signal: Signal::Hup
        }
    );
    assert_eq!(
        read(
            json!({ "at_ms": 1, "event": "signal", "message": "SIG34 forwarded",
                     "data": { "signal": "SIG34" } })
        ),
        Event::Forwarded {
            signal: "SIG34".into()
        }
    );
    assert_eq!(
        read(
            json!({ "at_ms": 1, "event": "signal", "message": "INT a third time: stopping at once" })
        ),
        Event::Interrupted
    );
    assert_eq!(
        read(json!({ "at_ms": 1, "event": "deadline", "message": "deadline reached" })),
        Event::Deadline {
            kill_pause_ms: None
        }
    );
    let snapshot = serde_json::to_value(snapshot()).unwrap();
    let answered = read(json!({ "at_ms": 1, "event": "signal",
        "message": "USR1 forwarded as USR2; the drain goes on",
        "data": { "signal": "USR1", "snapshot": snapshot } }));
    assert!(
        matches!(
            answered,
            Event::Signal {
                signal: Signal::Usr1,
                action: SignalAction::Rewrite(Signal::Usr2),
                drain_goes_on: true,
                ..
            }
        ),
        "{answered:?}"
    );
}

#[test]
fn a_kind_this_reader_does_not_know_is_left_out_and_bad_data_is_named() {
    let later = json!({ "at_ms": 1, "event": "teleported", "data": { "to": "mars" } });
    assert_eq!(Entry::from_json(later), Ok(None));
    let mut snapshot = serde_json::to_value(snapshot()).unwrap();
    snapshot["probes"][0]["value"]["connections"]["in_flight"] = json!("many");
    let bad = json!({ "at_ms": 1, "event": "decision",
        "data": { "snapshot": snapshot, "decision": serde_json::to_value(&decisions()[0]).unwrap() } });
    let error = Entry::from_json(bad).unwrap_err();
    assert!(
        error.contains("data.snapshot.probes[0].value.connections"),
        "{error}"
    );
}

#[test]
fn a_gist_has_no_figures_and_a_bound() {
    assert_eq!(
        gist("last new connection 117 ms ago, waiting for 1000 ms", 100),
        "last new connection N ms ago, waiting for N ms"
    );
    assert_eq!(gist("quiet for 1259 ms", 9), "quiet for");
    assert_eq!(gist("é".repeat(10).as_str(), 5), "éé");
}

#[test]
fn a_pull_says_where_from_and_how_to_pin_a_tag() {
    let digest = format!("sha256:{}", "cd".repeat(32));
    let pulled = |reference: &str, from, failure: Option<&str>| {
        Event::PolicyPulled {
            reference: reference.into(),
            digest: digest.clone(),
            from,
            pull_ms: 812,
            bytes: 1_000,
            failure: failure.map(str::to_string),
            shadow: false,
        }
        .describe()
    };
    let tag = pulled(
        "oci://registry.example:5000/policies/drain:stable",
        PulledFrom::Registry,
        None,
    );
    assert_eq!(
        tag,
        format!(
            "policy oci://registry.example:5000/policies/drain:stable pulled (sha256:cdcdcdcdcdcd) \
             from the registry in 812 ms, 1000 bytes; a tag is not pinned: pin \
             oci://registry.example:5000/policies/drain@{digest} to get exactly this again"
        )
    );
    let pinned = pulled(&format!("oci://r/drain@{digest}"), PulledFrom::Cache, None);
    assert!(
        pinned.ends_with("from the cache, by its pinned digest in 812 ms, 1000 bytes"),
        "{pinned}"
    );
    let fallback = pulled("oci://r/drain:v1", PulledFrom::LastPull, Some("HTTP 503"));
    assert!(
        fallback.contains("as the tag's last pull: the registry failed (HTTP 503)"),
        "{fallback}"
    );
    let failed = Event::PullFailed {
        reference: "oci://r/drain:v1".into(),
        reason: "HTTP 401".into(),
        deciding: None,
        retry_ms: Some(5_000),
        shadow: false,
    }
    .describe();
    assert_eq!(
        failed,
        "policy oci://r/drain:v1 not pulled: HTTP 401; the built-in drain logic decides; \
         tried again in 5s"
    );
}
