//! `lameduck replay`: a recorded shutdown asked again of a policy.

use std::process::Command;
use std::time::Duration;

use lameduck_core::record::Event;

use crate::util::{App, get, get_body, lameduck, scratch, serving};

const SECOND: Duration = Duration::from_secs(1);

/// `/status` in the middle of a drain held by a slow request.
fn recorded_drain() -> String {
    let app = App::new("replay");
    let (mut agent, admin, port) = serving(
        &app,
        &["--grace-period", "10s", "--policy-config", "min-drain=1s"],
        &[],
    );
    let slow = std::thread::spawn(move || get(port, "/slow?ms=3000"));
    std::thread::sleep(Duration::from_millis(300));
    agent.signal(libc::SIGTERM);
    // Several decisions while the request holds the drain (however busy
    // the machine, and so however long each takes).
    agent.wait_for("three decisions", 10 * SECOND, |r| {
        r.iter()
            .filter(|e| matches!(e.event, Event::Decision { .. }))
            .count()
            >= 3
    });
    let (code, status) = get_body(admin, "/status").unwrap();
    assert_eq!(code, 200);
    slow.join().unwrap().unwrap();
    assert_eq!(agent.wait(10 * SECOND).0, 0);
    status
}

fn replay(args: &[&str], status: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(lameduck())
        .arg("replay")
        .args(args)
        .arg(status)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_recorded_drain_replays_the_same_and_another_policy_differs() {
    let dir = scratch("replay");
    let status = dir.join("status.json");
    std::fs::write(&status, recorded_drain()).unwrap();

    // The policy that decided: every answer again, the TERM's included.
    let (code, out, err) = replay(&[], &status);
    assert_eq!(code, 0, "{out}{err}");
    let summary = out.lines().last().unwrap();
    let asked: u32 = summary.split(' ').next().unwrap().parse().unwrap();
    assert!(asked >= 4, "the TERM and several decisions: {out}");
    assert!(summary.contains("; 0 answer(s) differ"), "{out}");
    assert!(out.contains("replayed: TERM received"), "{out}");

    // `delay` would have held the app for 10s instead.
    let (code, out, err) = replay(
        &["--policy", "builtin:delay", "--policy-config", "delay=10s"],
        &status,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("; 0 answer(s) differ"), "{out}");
    assert!(out.lines().any(|l| l.starts_with('*')), "{out}");
}

#[test]
fn a_broken_recording_is_refused_with_the_field_at_fault() {
    let dir = scratch("replay-broken");
    let status = dir.join("status.json");
    std::fs::write(
        &status,
        r#"{"timeline": [{"at_ms": 5, "event": "decision", "data": {"snapshot": {
            "trigger": "TERM", "elapsed_ms": 0, "remaining_ms": 1000, "child": "running",
            "signals_sent": [], "ready": false,
            "probes": [{"name": "connections", "unchanged_ms": 0, "value": {"http": {"status": 200}}}]
        }}}]}"#,
    )
    .unwrap();
    let (code, out, err) = replay(&[], &status);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("timeline[0].data.snapshot.probes[0].value.http: missing field `body`"),
        "{err}"
    );

    std::fs::write(&status, "[1, 2").unwrap();
    let (code, _, err) = replay(&[], &status);
    assert_eq!(code, 2);
    assert!(err.contains("status.json: EOF while parsing"), "{err}");
}

/// A drain recorded by an agent of the first contract (connections, not
/// requests) still replays: its readings are read as that agent meant them.
#[test]
fn a_recording_of_the_first_contract_replays() {
    let status = crate::util::fixture("status-0.1.json");
    let (code, out, err) = replay(&["--cache-dir", "off"], &status);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("21 call(s) replayed"), "{out}");
}
