use super::*;
use lameduck_sdk::harness::{Harness, Step, Traffic, first_signal};

/// Drives a drain that begins on TERM, with `traffic` on the app's ports,
/// through the agent's own rules (deadline included).
fn drain(
    config: &[(&str, &str)],
    budget_ms: u32,
    mut traffic: Traffic,
) -> (Vec<Step>, Harness<Drain>) {
    let mut h = Harness::<Drain>::new(config).unwrap().budget(budget_ms);
    h.set_probe("connections", traffic.sample(-1));
    assert_eq!(h.signal(Signal::Term), Some(SignalAction::Drain));
    let steps = h.run(budget_ms + 5_000, |t, h| {
        h.set_probe("connections", traffic.sample(t as i64));
    });
    (steps, h)
}

fn term_at(steps: &[Step]) -> u32 {
    first_signal(steps, Signal::Term)
        .expect("TERM was sent")
        .at_ms
}

/// Dense traffic learned over minutes: requests every 10 ms over a
/// keep-alive pool, until the endpoint is removed at `removed`.
fn behind_an_ingress(removed: i64) -> Traffic {
    Traffic::new()
        .arrivals(-60_000, removed, 10, 150)
        .pool(32, 60_000)
        .learned(40)
}

#[test]
fn an_idle_young_app_is_signalled_after_min_drain() {
    let (steps, h) = drain(&[], 28_000, Traffic::new());
    assert_eq!(steps[0].decision.ready, Some(false));
    assert!(!h.ready());
    assert_eq!(term_at(&steps), 5_000);
    let reason = &first_signal(&steps, Signal::Term).unwrap().decision.reason;
    assert!(reason.contains("at least min-drain"), "{reason}");
}

#[test]
fn behind_a_keep_alive_pool_it_signals_a_quiet_period_after_the_last_request() {
    // The pool's connections stay open (idle) for a minute: they do not
    // hold the drain; the requests on them stop at 2 s.
    let (steps, _) = drain(&[], 28_000, behind_an_ingress(2_000));
    let term = term_at(&steps);
    // Last request at 1.99 s, answered at 2.14 s; quiet 150 ms (2 × 40 ms,
    // at least `quiet`), over then too. A request in flight is looked at
    // every 100 ms: the answer is seen at 2.2 s.
    assert_eq!(term, 2_200);
}

#[test]
fn a_request_in_flight_holds_the_signal_until_it_is_answered() {
    let slow = behind_an_ingress(500).request(400, 4_050);
    let (steps, _) = drain(&[], 28_000, slow);
    let term = term_at(&steps);
    assert!((4_050..=4_150).contains(&term), "TERM at {term}");
    let waiting = &steps[steps.len() / 2].decision.reason;
    assert!(waiting.contains("1 request(s) in flight"), "{waiting}");
}

#[test]
fn requests_during_the_endpoint_lag_hold_the_signal() {
    // New requests keep coming until the endpoint is gone, 2.5 s in.
    let lag = Traffic::new().arrivals(-5_000, 2_500, 200, 50).learned(300);
    let (steps, _) = drain(&[], 28_000, lag);
    // Last request at 2.4 s, quiet 600 ms.
    let term = term_at(&steps);
    assert!((3_000..=3_100).contains(&term), "TERM at {term}");
}

/// Bursts of 7 requests every 2 s until 2.2 s into the drain, seen for only
/// a few seconds before it: a few silences learned.
fn a_young_pod() -> Traffic {
    Traffic::new()
        .bursts(-4_000, 4_000, 2_000, 7, 30, 20)
        .silences(Silences {
            watched_ms: 4_000,
            count: 13,
            p50_ms: Some(30),
            p99_ms: Some(1_800),
            max_ms: Some(1_800),
        })
}

#[test]
fn a_young_pod_with_sparse_traffic_drains_at_least_min_drain() {
    // The last request comes at 2.18 s; the quiet period is 3.6 s.
    let (steps, _) = drain(&[("min-drain", "6s")], 28_000, a_young_pod());
    assert_eq!(term_at(&steps), 6_000);
    let (steps, _) = drain(&[("min-drain", "2s")], 28_000, a_young_pod());
    assert_eq!(term_at(&steps), 5_780);
}

#[test]
fn a_learned_sparse_rhythm_lengthens_the_quiet_period_within_bounds() {
    let sparse = || Traffic::new().arrivals(-9_000, 0, 2_000, 10).learned(2_000);
    // A quiet period of twice the learned 2 s silence, counted from the drain.
    let (steps, _) = drain(&[], 28_000, sparse());
    assert_eq!(term_at(&steps), 4_000);
    // Capped at `quiet-max`: what was learned is then not trusted, so
    // `min-drain` holds too.
    let config = [("quiet-max", "3s"), ("min-drain", "4.5s")];
    let (steps, _) = drain(&config, 28_000, sparse());
    assert_eq!(term_at(&steps), 4_500);
}

#[test]
fn the_deadline_wins_over_a_request_that_never_ends() {
    let endless = || behind_an_ingress(0).request(-1, i64::MAX);
    let (steps, _) = drain(&[("reserve", "5s")], 20_000, endless());
    let term = first_signal(&steps, Signal::Term).unwrap();
    assert_eq!(term.at_ms, 15_000);
    assert!(
        term.decision.reason.contains("deadline"),
        "{}",
        term.decision.reason
    );
    // A short budget keeps only a third of itself in reserve.
    let (steps, _) = drain(&[], 3_000, endless());
    assert_eq!(term_at(&steps), 2_000);
}

#[test]
fn an_app_that_ignores_the_signal_is_killed_after_kill_after() {
    let (steps, h) = drain(&[("kill-after", "3s")], 28_000, Traffic::new());
    let kill = first_signal(&steps, Signal::Kill).unwrap();
    assert_eq!(kill.at_ms, 5_000 + 3_000);
    assert_eq!(steps.last().unwrap().decision.next, Next::WaitForExit);
    let sent: Vec<Signal> = h.app_signals().iter().map(|s| s.signal).collect();
    assert_eq!(sent, [Signal::Term, Signal::Kill]);
}

#[test]
fn without_evidence_it_waits_min_drain() {
    let mut h = Harness::<Drain>::new(&[]).unwrap();
    h.set_probe("connections", ProbeValue::Failed("no such file".into()));
    h.prestop();
    let steps = h.run(28_000, |_, _| {});
    assert_eq!(term_at(&steps), 5_000);
    assert!(steps[0].decision.reason.contains("no traffic evidence"));
}

#[test]
fn counts_alone_are_evidence_too() {
    // `/proc/net/tcp` only: every open connection counts as in flight.
    let mut h = Harness::<Drain>::new(&[]).unwrap();
    let mut reading = match Traffic::new().learned(40).sample(0) {
        ProbeValue::Connections(c) => c,
        _ => unreachable!(),
    };
    reading.evidence = Evidence::ProcNetTcp;
    reading.open = 1;
    reading.in_flight = 1;
    h.set_probe("connections", ProbeValue::Connections(reading));
    h.prestop();
    let steps = h.run(1_000, |t, h| {
        if t >= 700 {
            reading.open = 0;
            reading.in_flight = 0;
        }
        h.set_probe("connections", ProbeValue::Connections(reading));
    });
    assert_eq!(term_at(&steps), 700);
}

#[test]
fn a_custom_stop_signal_and_inverted_bounds() {
    let (steps, _) = drain(&[("signal", "QUIT")], 28_000, Traffic::new());
    assert_eq!(first_signal(&steps, Signal::Quit).unwrap().at_ms, 5_000);
    let err = Harness::<Drain>::new(&[("quiet", "5s"), ("quiet-max", "1s")])
        .err()
        .unwrap();
    assert!(err.contains("quiet-max"), "{err}");
}

#[test]
fn a_streamed_answer_holds_the_signal_until_it_ends() {
    // Requests stop at 2 s; one answer streams from 1.9 s until 5 s.
    let streamed = behind_an_ingress(2_000).stream(1_900, 5_000);
    let (steps, _) = drain(&[], 28_000, streamed);
    let term = term_at(&steps);
    assert!((5_000..=5_100).contains(&term), "{term}");
    let waiting = &steps[steps.len() / 2].decision.reason;
    assert!(waiting.contains("streaming"), "{waiting}");
}

/// A connection whose answers the sockets cannot tell done, from 1.9 s
/// until `until`: the app's gauge says its call ends at 3 s.
fn multiplexed(config: &[(&str, &str)], gauge: bool, until: i64) -> u32 {
    let mut traffic = behind_an_ingress(2_000);
    let mut h = Harness::<Drain>::new(config).unwrap().budget(28_000);
    let unsure = |t: i64, mut value: ProbeValue| {
        if let ProbeValue::Connections(c) = &mut value
            && (1_900..until).contains(&t)
        {
            c.in_flight += 1;
            c.unsure += 1;
            c.open += 1;
        }
        value
    };
    let count = |t: i64| {
        ProbeValue::Metrics(Metrics {
            sum: if (1_900..3_000).contains(&t) {
                1.0
            } else {
                0.0
            },
            series: Vec::new(),
        })
    };
    h.set_probe("connections", unsure(-1, traffic.sample(-1)));
    h.signal(Signal::Term);
    let steps = h.run(30_000, |t, h| {
        h.set_probe("connections", unsure(t as i64, traffic.sample(t as i64)));
        if gauge {
            h.set_probe("gauge", count(t as i64));
        }
    });
    term_at(&steps)
}

#[test]
fn what_the_sockets_cannot_tell_holds_the_signal_and_the_apps_count_tells_it() {
    // The sockets alone: held while unsure (here until 7 s).
    let alone = multiplexed(&[], false, 7_000);
    assert!((7_000..=7_100).contains(&alone), "{alone}");
    // The app's count: its call ended at 3 s.
    let counted = multiplexed(&[("in-flight-metric", "gauge")], true, 7_000);
    assert!((3_000..=3_100).contains(&counted), "{counted}");
    // A count that is missing (the probe failed) is no evidence: the
    // sockets decide.
    let missing = multiplexed(&[("in-flight-metric", "gauge")], false, 7_000);
    assert_eq!(missing, alone);
}

#[test]
fn long_lived_connections_are_waited_for_a_bounded_time() {
    // Two WebSockets open for hours; requests stop at 2 s.
    let websockets = behind_an_ingress(2_000)
        .long_lived(-3_600_000, 60_000)
        .long_lived(-60_000, 60_000);
    let (steps, _) = drain(&[("long-lived-wait", "2s")], 28_000, websockets);
    let term = term_at(&steps);
    // Quiet from 2.14 s (150 ms after the last request), then 2 s more.
    assert!((4_100..=4_300).contains(&term), "{term}");
    let reason = &first_signal(&steps, Signal::Term).unwrap().decision.reason;
    assert!(
        reason.contains("2 long-lived connection(s) left for the app to close"),
        "{reason}"
    );
}
