//! A shadow policy: asked every question the live one is, on the same
//! snapshots, in its own sandbox; its answers recorded, compared and
//! counted, never obeyed.

use std::time::Duration;

use lameduck_core::Signal;
use lameduck_core::record::{Call, Entry, Event};

use crate::util::{App, component, get_body, scratch, serving, show, term_sent};

const SECOND: Duration = Duration::from_secs(1);

/// Whether a shadow policy has been loaded (`at_least` of them).
fn shadows_loaded(records: &[Entry], at_least: usize) -> bool {
    records
        .iter()
        .filter(|e| matches!(e.event, Event::ShadowPolicy { .. }))
        .count()
        >= at_least
}

/// `/status` as JSON.
fn status(admin: u16) -> serde_json::Value {
    let (_, body) = get_body(admin, "/status").unwrap();
    serde_json::from_str(&body).unwrap()
}

#[test]
fn a_disagreeing_shadow_shows_in_metrics_timeline_and_status_while_the_live_decisions_stand() {
    let dir = scratch("shadow-disagrees");
    let shadow = dir.join("now.wasm");
    // The shadow would stop the app at once; the live `drain` waits at least
    // `min-drain`.
    std::fs::write(&shadow, component("now.wat")).unwrap();
    let app = App::new("shadow-disagrees-app");
    let (mut agent, admin, _) = serving(
        &app,
        &[
            "--grace-period",
            "10s",
            "--policy-config",
            "min-drain=1500ms",
            "--shadow-policy",
            shadow.to_str().unwrap(),
        ],
        &[],
    );
    agent.wait_for("the shadow", 10 * SECOND, |r| shadows_loaded(r, 1));
    let began = std::time::Instant::now();
    agent.signal(libc::SIGTERM);
    agent.wait_for("a disagreement", 10 * SECOND, |r| {
        r.iter().any(|e| {
            matches!(
                e.event,
                Event::Shadow {
                    agrees: Some(false),
                    ..
                }
            )
        })
    });
    let seen = status(admin);
    let shadow_status = &seen["status"]["shadow"];
    assert!(
        shadow_status["disagreed"].as_u64().unwrap() >= 1,
        "{seen:#}"
    );
    assert!(
        shadow_status["policy"]["source"]
            .as_str()
            .unwrap()
            .ends_with("now.wasm")
    );
    assert_eq!(seen["status"]["policy"]["source"], "builtin:drain");
    let (_, metrics) = get_body(admin, "/metrics").unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("lameduck_shadow_disagreements_total{call=\"decide\"}")),
        "{metrics}"
    );
    // The live policy decided: the app got its TERM after min-drain, not at
    // once as the shadow would have had it.
    assert_eq!(agent.wait(10 * SECOND).0, 0);
    let term = app
        .log()
        .into_iter()
        .find(|(_, l)| l == "SIGTERM")
        .expect("the app got TERM");
    assert!(
        began.elapsed() >= Duration::from_millis(1_500),
        "the drain kept min-drain"
    );
    let records = agent.records();
    let sent = records
        .iter()
        .find(|e| {
            matches!(&e.event, Event::Decision { decision, .. }
                if decision.signal == Some(Signal::Term))
        })
        .unwrap_or_else(|| panic!("the live decision sent TERM:\n{}", show(&records)));
    // The live policy's own answer, once min-drain had passed.
    let Event::Decision { snapshot, call, .. } = &sent.event else {
        unreachable!()
    };
    assert!(
        call.fallback.is_none() && snapshot.elapsed_ms >= 1_500,
        "{sent:?} at {term:?}"
    );
}

#[test]
fn a_failing_shadow_changes_nothing() {
    let dir = scratch("shadow-fails");
    let shadow = dir.join("loop.wasm");
    std::fs::write(&shadow, component("loop.wat")).unwrap();
    let app = App::new("shadow-fails-app");
    let (mut agent, _, _) = serving(
        &app,
        &[
            "--grace-period",
            "6s",
            "--policy-config",
            "min-drain=1s",
            "--shadow-policy",
            shadow.to_str().unwrap(),
        ],
        &[],
    );
    agent.wait_for("the shadow", 10 * SECOND, |r| shadows_loaded(r, 1));
    let term = std::time::Instant::now();
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait(10 * SECOND).0, 0);
    let took = term.elapsed();
    assert!(took < 6 * SECOND, "the deadline was kept: {took:?}");
    let records = agent.records();
    assert!(
        records.iter().any(|e| matches!(
            e.event,
            Event::Shadow {
                failure: Some(_),
                agrees: None,
                ..
            }
        )),
        "the shadow's failures are recorded:\n{}",
        show(&records)
    );
    assert!(
        live_answered_alone(&records),
        "the live policy answered for itself:\n{}",
        show(&records)
    );
}

/// The live policy answered every call itself: no fallback, no policy
/// error.
fn live_answered_alone(records: &[Entry]) -> bool {
    !records.iter().any(|e| {
        matches!(
            e.event,
            Event::PolicyError { .. }
                | Event::Signal {
                    call: Call {
                        fallback: Some(_),
                        ..
                    },
                    ..
                }
                | Event::Decision {
                    call: Call {
                        fallback: Some(_),
                        ..
                    },
                    ..
                }
        )
    })
}

/// A drain of the built-in `drain` that holds 3 s (`min-drain`).
const DRAIN: &[&str] = &["--grace-period", "20s", "--policy-config", "min-drain=3s"];

/// A drain by `live` (arguments of `run`), beside `shadow` if any: (when
/// the app got TERM, the records).
fn drain_beside(name: &str, live: &[&str], shadow: Option<&std::path::Path>) -> (u64, Vec<Entry>) {
    let app = App::new(name);
    let mut args = live.to_vec();
    let shadow = shadow.map(|s| s.to_str().unwrap().to_string());
    if let Some(shadow) = &shadow {
        args.extend(["--shadow-policy", shadow]);
    }
    let (mut agent, _, _) = serving(&app, &args, &[]);
    if shadow.is_some() {
        agent.wait_for("the shadow", 10 * SECOND, |r| shadows_loaded(r, 1));
    }
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait(20 * SECOND).0, 0);
    let records = agent.records();
    let term = term_sent(&records).unwrap_or_else(|| panic!("no TERM:\n{}", show(&records)));
    (term, records)
}

/// How many times the shadow failed.
fn shadow_failures(records: &[Entry]) -> usize {
    records
        .iter()
        .filter(|e| {
            matches!(
                e.event,
                Event::Shadow {
                    failure: Some(_),
                    ..
                }
            )
        })
        .count()
}

#[test]
fn a_shadow_slow_to_start_that_traps_does_not_touch_the_live_drain() {
    // The live drain held as long as without the shadow: min-drain, then
    // the built-in's decision (a tick of 100 ms), give or take a loaded
    // machine's scheduling.
    alone_and_beside_the_slow_trap("shadow-slow-trap", DRAIN, 3_000);
}

/// Runs `live` alone, then beside the slow-starting, trapping shadow: the
/// live policy answers every call itself, the shadow fails (and again once
/// made anew), and TERM comes no sooner than `at_least` ms and within 500 ms
/// of the run alone.
fn alone_and_beside_the_slow_trap(name: &str, live: &[&str], at_least: u64) {
    let dir = scratch(name);
    let shadow = dir.join("slow-init-trap.wasm");
    std::fs::write(&shadow, component("slow-init-trap.wat")).unwrap();
    let (alone, alone_records) = drain_beside(&format!("{name}-alone"), live, None);
    let (beside, records) = drain_beside(&format!("{name}-app"), live, Some(&shadow));
    for records in [&alone_records, &records] {
        assert!(
            live_answered_alone(records),
            "the live policy answered for itself:\n{}",
            show(records)
        );
    }
    assert!(
        shadow_failures(&records) >= 2,
        "the shadow failed, and again once made anew:\n{}",
        show(&records)
    );
    assert!(
        alone >= at_least && beside >= at_least,
        "TERM at {alone} ms alone, {beside} ms beside the shadow"
    );
    assert!(
        beside.abs_diff(alone) < 500,
        "TERM at {alone} ms alone, {beside} ms beside the shadow:\n{}",
        show(&records)
    );
}

/// The same shadow beside the built-in `jobs`, whose worker stays busy (its
/// `idle` file never appears): the live policy holds TERM until the time the
/// app needs to stop is all that is left, as it does alone. (The fallback,
/// had it answered for the live policy, would have signalled the busy
/// worker as soon as it was quiet on the network, seconds early.)
#[test]
fn a_shadow_slow_to_start_that_traps_does_not_touch_a_live_jobs_drain() {
    let dir = scratch("shadow-slow-trap-jobs-config");
    let config = dir.join("lameduck.yaml");
    std::fs::write(
        &config,
        format!(
            "probes:\n  - name: idle\n    file: {{ path: '{}' }}\n",
            dir.join("idle").display()
        ),
    )
    .unwrap();
    let jobs = [
        "--config",
        config.to_str().unwrap(),
        "--policy",
        "builtin:jobs",
        "--grace-period",
        "10s",
        "--policy-config",
        "reserve=1s",
    ];
    // `jobs` leaves the app its `reserve`: TERM about 7 s into the 10 s
    // grace period. The fallback would have sent it at 5 s (`min-drain`).
    alone_and_beside_the_slow_trap("shadow-slow-trap-jobs", &jobs, 6_000);
}

#[test]
fn a_shadow_is_swapped_by_a_file_change_and_a_bad_one_keeps_the_last_good() {
    let dir = scratch("shadow-swaps");
    let shadow = dir.join("candidate.wasm");
    std::fs::write(&shadow, component("now.wat")).unwrap();
    let app = App::new("shadow-swaps-app");
    let (agent, admin, _) = serving(&app, &["--shadow-policy", shadow.to_str().unwrap()], &[]);
    agent.wait_for("the shadow", 10 * SECOND, |r| shadows_loaded(r, 1));
    let first = status(admin)["status"]["shadow"]["policy"]["sha256"].clone();
    assert!(first.is_string(), "{first}");

    // A new candidate, written beside and renamed in, as `kubectl` updates a
    // ConfigMap: the shadow swaps, the live policy stays.
    let next = dir.join("next.wasm.tmp");
    std::fs::write(&next, component("ignore-term.wat")).unwrap();
    std::fs::rename(&next, &shadow).unwrap();
    agent.wait_for("a second shadow", 10 * SECOND, |r| shadows_loaded(r, 2));
    let seen = status(admin);
    let second = &seen["status"]["shadow"]["policy"]["sha256"];
    assert_ne!(&first, second, "{seen:#}");
    assert_eq!(seen["status"]["policy"]["source"], "builtin:drain");

    // Garbage is refused; the last good shadow stays, and says why.
    std::fs::write(&shadow, b"not a component").unwrap();
    agent.wait_for("the shadow refused", 10 * SECOND, |r| {
        r.iter()
            .any(|e| matches!(e.event, Event::ShadowFailed { .. }))
    });
    let seen = status(admin);
    assert_eq!(
        &seen["status"]["shadow"]["policy"]["sha256"], second,
        "{seen:#}"
    );
    assert!(
        seen["status"]["shadow"]["last_refused"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{seen:#}"
    );
    let records = agent.records();
    assert!(
        !records
            .iter()
            .any(|e| matches!(e.event, Event::PolicyFailed { .. })),
        "{}",
        show(&records)
    );
}
