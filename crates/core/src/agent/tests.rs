//! Every rule of the agent, with plain values and a hand-moved clock.

use super::*;

fn settings(budget_ms: u32) -> Settings {
    Settings {
        probes: vec!["connections".into()],
        ..Settings::new(budget_ms)
    }
}

fn wait(ms: u32) -> Decision {
    Decision::recheck(ms, "waiting").ready(false)
}

fn term_now() -> Decision {
    Decision::recheck(10_000, "done").signal(Signal::Term)
}

fn decided(decision: Decision) -> Input {
    Input::Decided(decision, Call::default())
}

fn answered(action: SignalAction) -> Input {
    Input::SignalAnswered(action, Call::default())
}

fn sampled() -> Input {
    Input::Sampled(vec![("connections".into(), ProbeValue::Exec(0))])
}

fn has(effects: &[Effect], wanted: &Effect) -> bool {
    effects.contains(wanted)
}

fn asks_decide(effects: &[Effect]) -> Option<&Snapshot> {
    effects.iter().find_map(|e| match e {
        Effect::AskDecide(s) => Some(s),
        _ => None,
    })
}

fn events(effects: &[Effect]) -> Vec<&Event> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Record(r) => Some(&r.event),
            _ => None,
        })
        .collect()
}

/// An agent draining since `at` after TERM: asked, answered, sampled, and
/// asked to decide.
fn draining(budget_ms: u32, at: Millis) -> Agent {
    let mut agent = Agent::new(settings(budget_ms), 0);
    let effects = agent.handle(at, Input::Signal(Signal::Term));
    assert!(matches!(effects[..], [Effect::AskSignal(Signal::Term, _)]));
    let effects = agent.handle(at, answered(SignalAction::Drain));
    assert!(has(&effects, &Effect::Ready(false)));
    assert!(has(&effects, &Effect::Sample(Sample::All)));
    let effects = agent.handle(at, sampled());
    assert!(asks_decide(&effects).is_some());
    agent
}

#[test]
fn term_begins_the_drain_readiness_first_then_a_decision() {
    let mut agent = draining(10_000, 100);
    assert!(!agent.ready());
    assert_eq!(agent.deadline(), Some(10_100));
    let effects = agent.handle(150, decided(wait(200)));
    assert!(has(&effects, &Effect::Ready(false)));
    // The recheck counts from the moment sampling began (100), not 150.
    assert_eq!(agent.next_tick(), Some(300));
    let effects = agent.handle(300, Input::Tick);
    assert_eq!(effects, vec![Effect::Sample(Sample::All)]);
    let effects = agent.handle(320, sampled());
    let snapshot = asks_decide(&effects).unwrap();
    assert_eq!(snapshot.elapsed_ms, 200);
    assert_eq!(snapshot.remaining_ms, 9_800);
    assert_eq!(snapshot.trigger, Trigger::Signal(Signal::Term));
}

#[test]
fn a_decision_signals_the_app_and_releases_prestop() {
    let mut agent = draining(10_000, 0);
    let effects = agent.handle(5, decided(term_now()));
    assert!(has(&effects, &Effect::SignalApp(Signal::Term)));
    assert!(
        effects.iter().any(
            |e| matches!(e, Effect::ReleasePrestop(why) if why.starts_with("TERM sent: done"))
        )
    );
    // The next snapshot shows it, at the time of the decision.
    agent.handle(10_000 - 1, Input::Tick);
    assert_eq!(agent.snapshot(6).signals_sent[0].signal, Signal::Term);
    // A later /prestop is answered at once.
    let effects = agent.handle(20, Input::PreStop);
    assert!(matches!(&effects[..], [Effect::ReleasePrestop(_)]));
}

#[test]
fn the_deadline_sends_term_then_kills_after_the_pause() {
    let mut agent = draining(3_000, 0);
    agent.handle(1, decided(wait(5_000)));
    assert_eq!(agent.next_tick(), Some(3_000));
    let effects = agent.handle(3_000, Input::Tick);
    assert!(has(&effects, &Effect::SignalApp(Signal::Term)));
    assert!(events(&effects).contains(&&Event::Deadline {
        kill_pause_ms: Some(1_000)
    }));
    assert_eq!(agent.next_tick(), Some(4_000));
    assert_eq!(agent.handle(4_000, Input::Tick)[0], Effect::KillApp);
    assert_eq!(agent.next_tick(), None);
}

#[test]
fn the_deadline_does_not_term_twice() {
    let mut agent = draining(3_000, 0);
    agent.handle(1, decided(term_now()));
    let effects = agent.handle(3_000, Input::Tick);
    assert!(!has(&effects, &Effect::SignalApp(Signal::Term)));
    assert_eq!(agent.next_tick(), Some(4_000));
}

#[test]
fn an_answer_after_the_deadline_is_not_applied() {
    let mut agent = draining(3_000, 0);
    agent.handle(3_000, Input::Tick);
    let effects = agent.handle(3_100, decided(term_now().signal(Signal::Usr1)));
    assert!(!has(&effects, &Effect::SignalApp(Signal::Usr1)));
    assert!(matches!(events(&effects)[..], [Event::Late { .. }]));
}

#[test]
fn term_starts_the_clock_whatever_on_signal_answers() {
    for action in [
        SignalAction::Ignore,
        SignalAction::Forward,
        SignalAction::Rewrite(Signal::Usr2),
    ] {
        let mut agent = Agent::new(settings(5_000), 0);
        agent.handle(100, Input::Signal(Signal::Term));
        agent.handle(101, answered(action));
        assert!(!agent.draining(), "{action:?}");
        assert_eq!(agent.next_tick(), Some(5_100), "{action:?}");
        let effects = agent.handle(5_100, Input::Tick);
        // A forwarded TERM is not sent twice.
        let termed = has(&effects, &Effect::SignalApp(Signal::Term));
        assert_eq!(termed, action != SignalAction::Forward, "{action:?}");
        assert_eq!(agent.handle(6_100, Input::Tick)[0], Effect::KillApp);
    }
}

#[test]
fn other_signals_do_not_start_the_clock() {
    let mut agent = Agent::new(settings(5_000), 0);
    agent.handle(0, Input::Signal(Signal::Usr1));
    let effects = agent.handle(0, answered(SignalAction::Forward));
    assert!(has(&effects, &Effect::SignalApp(Signal::Usr1)));
    assert_eq!(agent.deadline(), None);
}

#[test]
fn signals_wait_for_the_policy_but_the_clock_starts_on_arrival() {
    let mut agent = Agent::new(
        Settings {
            policy_loading: true,
            ..settings(5_000)
        },
        0,
    );
    let effects = agent.handle(100, Input::Signal(Signal::Term));
    assert!(matches!(
        events(&effects)[..],
        [Event::Held {
            signal: Signal::Term
        }]
    ));
    assert_eq!(agent.next_tick(), Some(2_100));
    // The policy comes in at 1.5 s: the TERM is asked about then.
    let effects = agent.handle(1_500, Input::PolicyLoaded);
    assert!(matches!(effects[..], [Effect::AskSignal(Signal::Term, _)]));
    agent.handle(1_500, answered(SignalAction::Drain));
    // The drain began when the TERM arrived, and so did the deadline.
    assert_eq!(agent.deadline(), Some(5_100));
    assert_eq!(agent.snapshot(1_500).elapsed_ms, 1_400);
}

#[test]
fn held_signals_go_on_after_the_hold_if_the_policy_never_comes() {
    let mut agent = Agent::new(
        Settings {
            policy_loading: true,
            ..settings(5_000)
        },
        0,
    );
    agent.handle(0, Input::Signal(Signal::Usr1));
    agent.handle(10, Input::Signal(Signal::Hup));
    let effects = agent.handle(2_000, Input::Tick);
    assert!(matches!(effects[..], [Effect::AskSignal(Signal::Usr1, _)]));
    // One question at a time, in order.
    let effects = agent.handle(2_001, answered(SignalAction::Forward));
    assert!(has(&effects, &Effect::SignalApp(Signal::Usr1)));
    assert!(matches!(
        effects.last(),
        Some(Effect::AskSignal(Signal::Hup, _))
    ));
}

#[test]
fn a_repeated_term_does_not_restart_the_drain() {
    let mut agent = draining(5_000, 0);
    agent.handle(1, decided(wait(1_000)));
    agent.handle(2_000, Input::Signal(Signal::Term));
    let effects = agent.handle(2_000, answered(SignalAction::Drain));
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Record(Record {
            event: Event::Signal {
                drain_goes_on: true,
                ..
            },
            ..
        })
    )));
    assert_eq!(agent.deadline(), Some(5_000));
    assert_eq!(agent.snapshot(2_000).elapsed_ms, 2_000);
}

#[test]
fn a_third_int_kills_at_once_without_asking() {
    let mut agent = Agent::new(settings(5_000), 0);
    for _ in 0..2 {
        agent.handle(0, Input::Signal(Signal::Int));
        agent.handle(0, answered(SignalAction::Ignore));
    }
    let effects = agent.handle(0, Input::Signal(Signal::Int));
    assert_eq!(
        effects[0],
        Effect::Record(Record {
            drain_ms: None,
            event: Event::Interrupted
        })
    );
    assert!(has(&effects, &Effect::KillApp));
}

#[test]
fn the_app_exiting_ends_everything_and_releases_prestop() {
    let mut agent = draining(5_000, 0);
    agent.handle(1, decided(wait(100)));
    let effects = agent.handle(50, Input::AppExited(Child::Exited(0)));
    assert!(has(
        &effects,
        &Effect::ReleasePrestop("the app exited with code 0".into())
    ));
    assert!(agent.done());
    assert_eq!(agent.next_tick(), None);
    assert!(agent.handle(60, Input::Tick).is_empty());
}

#[test]
fn a_new_policy_mid_drain_decides_at_once() {
    let mut agent = draining(5_000, 0);
    agent.handle(1, decided(Decision::wait_for_exit("waiting")));
    assert_eq!(agent.next_tick(), Some(5_000));
    let effects = agent.handle(1_000, Input::PolicyLoaded);
    assert_eq!(effects, vec![Effect::Sample(Sample::All)]);
    // But not after the deadline.
    let mut agent = draining(5_000, 0);
    agent.handle(5_000, Input::Tick);
    assert!(!has(
        &agent.handle(5_001, Input::PolicyLoaded),
        &Effect::Sample(Sample::All)
    ));
}

#[test]
fn prestop_begins_the_drain_and_holds_until_a_signal() {
    let mut agent = Agent::new(settings(5_000), 0);
    let effects = agent.handle(10, Input::PreStop);
    assert!(has(&effects, &Effect::Ready(false)));
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::ReleasePrestop(_)))
    );
    assert_eq!(agent.deadline(), Some(5_010));
    agent.handle(10, sampled());
    let effects = agent.handle(11, decided(term_now()));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ReleasePrestop(_)))
    );
    // The kubelet's TERM after the hook finds the drain under way.
    agent.handle(20, Input::Signal(Signal::Term));
    let effects = agent.handle(20, answered(SignalAction::Drain));
    assert!(!has(&effects, &Effect::Sample(Sample::All)));
    assert_eq!(agent.deadline(), Some(5_010));
}

#[test]
fn serving_learns_on_its_own_rhythm_and_stops_when_draining() {
    let mut agent = Agent::new(
        Settings {
            learn_every_ms: Some(500),
            ..settings(5_000)
        },
        0,
    );
    assert_eq!(
        agent.handle(0, Input::Tick),
        vec![Effect::Sample(Sample::Learn)]
    );
    agent.handle(1, sampled());
    assert_eq!(agent.next_tick(), Some(500));
    // on-signal sees what was learned, with how long it has not changed.
    agent.handle(900, Input::Tick);
    agent.handle(901, sampled());
    let effects = agent.handle(1_200, Input::Signal(Signal::Term));
    let Effect::AskSignal(_, snapshot) = &effects[0] else {
        panic!("{effects:?}")
    };
    assert_eq!(snapshot.probes[0].value, ProbeValue::Exec(0));
    assert_eq!(snapshot.probes[0].unchanged_ms, 1_200);
    agent.handle(1_200, answered(SignalAction::Drain));
    agent.handle(1_201, sampled());
    agent.handle(1_202, decided(Decision::wait_for_exit("")));
    assert_eq!(agent.next_tick(), Some(6_200));
}

#[test]
fn a_probe_never_sampled_says_so() {
    let agent = Agent::new(settings(5_000), 0);
    let probe = &agent.snapshot(70).probes[0];
    assert_eq!(probe.value, ProbeValue::Failed(NOT_SAMPLED.into()));
    assert_eq!(probe.unchanged_ms, 70);
}

#[test]
fn the_reload_signal_reloads_and_is_not_asked_about() {
    let mut agent = Agent::new(
        Settings {
            reload_signal: Some(Signal::Hup),
            ..settings(5_000)
        },
        0,
    );
    let effects = agent.handle(0, Input::Signal(Signal::Hup));
    assert_eq!(effects[0], Effect::Reload);
    assert!(!effects.iter().any(|e| matches!(e, Effect::AskSignal(..))));
}

#[test]
fn a_sidecar_releases_the_hook_instead_of_signalling_and_cannot_kill() {
    let mut agent = Agent::new(
        Settings {
            mode: Mode::Sidecar,
            ..settings(5_000)
        },
        0,
    );
    agent.handle(0, Input::PreStop);
    agent.handle(0, sampled());
    let effects = agent.handle(1, decided(term_now()));
    assert!(!has(&effects, &Effect::SignalApp(Signal::Term)));
    assert!(effects.iter().any(
        |e| matches!(e, Effect::ReleasePrestop(why) if why.starts_with("the app may have TERM"))
    ));
    // The policy sees the hook's release as the signal it asked for.
    assert_eq!(agent.snapshot(2).signals_sent[0].signal, Signal::Term);
    // KILL is refused, and the deadline kills nothing.
    agent.handle(10_000, Input::Tick);
    assert_eq!(agent.next_tick(), None);
    // The kubelet's TERM to the sidecar, once the app is gone: exit at once.
    let effects = agent.handle(20_000, Input::Signal(Signal::Term));
    assert_eq!(effects.last(), Some(&Effect::Exit(0)));
    assert!(agent.done());
}

#[test]
fn a_sidecar_stopped_beside_the_app_holds_until_the_hook_is_released() {
    let mut agent = Agent::new(
        Settings {
            mode: Mode::Sidecar,
            ..settings(5_000)
        },
        0,
    );
    agent.handle(0, Input::PreStop);
    agent.handle(0, sampled());
    agent.handle(1, decided(wait(100)));
    let effects = agent.handle(50, Input::Signal(Signal::Term));
    assert!(!has(&effects, &Effect::Exit(0)));
    // The deadline still counts from /prestop.
    assert_eq!(agent.deadline(), Some(5_000));
    agent.handle(101, Input::Tick);
    agent.handle(101, sampled());
    let effects = agent.handle(102, decided(term_now()));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::ReleasePrestop(_)))
    );
    assert_eq!(effects.last(), Some(&Effect::Exit(0)));
}

#[test]
fn a_signal_while_sampling_is_asked_first_and_the_decision_waits_its_turn() {
    let mut agent = draining(5_000, 0);
    agent.handle(1, decided(wait(100)));
    assert_eq!(
        agent.handle(100, Input::Tick),
        vec![Effect::Sample(Sample::All)]
    );
    let effects = agent.handle(110, Input::Signal(Signal::Term));
    assert!(matches!(effects[..], [Effect::AskSignal(Signal::Term, _)]));
    // The sample comes back while the policy answers about the signal.
    assert!(agent.handle(120, sampled()).is_empty());
    let effects = agent.handle(130, answered(SignalAction::Drain));
    let snapshot = asks_decide(&effects).expect("then the decision");
    assert_eq!(snapshot.elapsed_ms, 100);
}
