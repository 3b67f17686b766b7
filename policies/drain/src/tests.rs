use super::*;
use lameduck_sdk::harness::{Harness, Step, Traffic, first_signal};

/// Drives a drain that begins on TERM, with `traffic` on the app's ports.
fn drain(
    config: &[(&str, &str)],
    budget_ms: u32,
    mut traffic: Traffic,
) -> (Vec<Step>, Harness<Drain>) {
    let mut h = Harness::<Drain>::new(config).unwrap().budget(budget_ms);
    h.set_probe("connections", traffic.sample(-1));
    assert_eq!(h.signal(Signal::Term), SignalAction::Drain);
    let steps = h.run(budget_ms, |t, h| {
        h.set_probe("connections", traffic.sample(t as i64));
    });
    (steps, h)
}

fn term_at(steps: &[Step]) -> u32 {
    first_signal(steps, Signal::Term)
        .expect("TERM was sent")
        .at_ms
}

#[test]
fn an_idle_app_is_signalled_after_the_quiet_period() {
    let (steps, h) = drain(&[], 28_000, Traffic::new());
    assert_eq!(steps[0].decision.ready, Some(false));
    assert!(!h.ready());
    assert_eq!(term_at(&steps), 1_000);
}

#[test]
fn a_slow_request_holds_the_signal_until_it_completes() {
    // One request arrived before the drain and finishes 4.05 s into it.
    let (steps, _) = drain(&[], 28_000, Traffic::new().connection(-500, 4_050));
    let term = term_at(&steps);
    assert!((4_050..=4_150).contains(&term), "TERM at {term}");
    let waiting = &steps[steps.len() / 2].decision.reason;
    assert!(waiting.contains("1 connection(s) in flight"), "{waiting}");
}

#[test]
fn late_connections_during_the_endpoint_lag_hold_the_signal() {
    // The endpoint is removed from the nodes' rules 2.5 s into the drain:
    // new connections keep coming until then, each lasting 50 ms.
    let (steps, _) = drain(&[], 28_000, Traffic::new().arrivals(-5_000, 2_500, 200, 50));
    let term = term_at(&steps);
    assert!((3_300..=3_500).contains(&term), "TERM at {term}");
}

#[test]
fn a_learned_sparse_rhythm_lengthens_the_quiet_period_within_bounds() {
    let sparse = || Traffic::new().arrivals(-9_000, 0, 2_000, 10);
    let (steps, _) = drain(&[], 28_000, sparse().typical_gap(2_000));
    // A quiet period of 1.5 × the learned 2 s gap, counted from the drain.
    assert_eq!(term_at(&steps), 3_000);
    let (steps, _) = drain(&[("quiet-max", "2s")], 28_000, sparse().typical_gap(2_000));
    assert_eq!(term_at(&steps), 2_000);
}

#[test]
fn the_deadline_wins_over_a_request_that_never_ends() {
    let (steps, _) = drain(
        &[("reserve", "5s")],
        20_000,
        Traffic::new().connection(-1, i64::MAX),
    );
    let term = first_signal(&steps, Signal::Term).unwrap();
    assert_eq!(term.at_ms, 15_000);
    assert!(
        term.decision.reason.contains("deadline"),
        "{}",
        term.decision.reason
    );
    // A short budget keeps only a third of itself in reserve.
    let (steps, _) = drain(&[], 3_000, Traffic::new().connection(-1, i64::MAX));
    assert_eq!(term_at(&steps), 2_000);
}

#[test]
fn an_app_that_ignores_the_signal_is_killed_after_kill_after() {
    let (steps, _) = drain(&[("kill-after", "3s")], 28_000, Traffic::new());
    let kill = first_signal(&steps, Signal::Kill).unwrap();
    assert_eq!(kill.at_ms, 1_000 + 3_000);
    assert_eq!(steps.last().unwrap().decision.next, Next::WaitForExit);
}

#[test]
fn without_evidence_it_waits_the_longest_quiet_period() {
    let mut h = Harness::<Drain>::new(&[]).unwrap();
    h.set_probe("connections", ProbeValue::Failed("no such file".into()));
    h.begin(Trigger::Prestop);
    let steps = h.run(28_000, |_, _| {});
    assert_eq!(term_at(&steps), 5_000);
    assert!(steps[0].decision.reason.contains("no connection evidence"));
}

#[test]
fn a_custom_stop_signal_and_inverted_bounds() {
    let (steps, _) = drain(&[("signal", "QUIT")], 28_000, Traffic::new());
    assert_eq!(first_signal(&steps, Signal::Quit).unwrap().at_ms, 1_000);
    let err = Harness::<Drain>::new(&[("quiet", "5s"), ("quiet-max", "1s")])
        .err()
        .unwrap();
    assert!(err.contains("quiet-max"), "{err}");
}
