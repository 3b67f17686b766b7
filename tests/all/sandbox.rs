//! The policy runtime with real wasmtime: built-in policies on snapshot
//! sequences, and hostile policies held to their budgets.

use std::time::{Duration, Instant};

use lameduck_core::{
    Child, Decision, Mode, Next, Probe, ProbeValue, SentSignal, Signal, SignalAction, Snapshot,
    Trigger,
};
use lameduck_runtime::builtin;
use lameduck_runtime::{
    Compiler, Limits, LoadError, MAX_ERROR, MAX_REASON, Origin, Policy, PolicyError,
};
use lameduck_sdk::harness::connections as conns;

use crate::util::{component, with_wasi};

fn compiler() -> Compiler {
    Compiler::new(Limits::default(), None).unwrap()
}

fn snapshot(elapsed_ms: u32, sent: &[(Signal, u32)], probes: Vec<(&str, ProbeValue)>) -> Snapshot {
    Snapshot {
        trigger: Trigger::Signal(Signal::Term),
        elapsed_ms,
        remaining_ms: 28_000 - elapsed_ms,
        child: Child::Running,
        signals_sent: sent
            .iter()
            .map(|&(signal, at_ms)| SentSignal { signal, at_ms })
            .collect(),
        ready: elapsed_ms == 0,
        probes: probes
            .into_iter()
            .map(|(name, value)| Probe {
                name: name.into(),
                value,
                unchanged_ms: 0,
            })
            .collect(),
        mode: Mode::Entrypoint,
    }
}

/// A loaded built-in policy, with `config`.
fn builtin_policy(name: &str, config: &[(&str, &str)]) -> Policy {
    let config: Vec<(String, String)> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let compiled = compiler()
        .compile(&format!("builtin:{name}"), builtin::get(name).unwrap())
        .unwrap();
    let instance = compiled.instantiate(&config).unwrap();
    let mut policy = Policy::fallback_only(config);
    policy.swap(compiled.into(), instance);
    policy
}

fn decide(policy: &mut Policy, snapshot: &Snapshot) -> Decision {
    let answer = policy.decide(snapshot);
    assert_eq!(answer.failure, None, "the policy itself answered");
    answer.value
}

#[test]
fn drain_in_wasm_decides_exactly_as_the_native_fallback() {
    let mut wasm = builtin_policy("drain", &[]);
    let mut native = Policy::fallback_only(Vec::new());
    let sequence = [
        snapshot(0, &[], vec![("connections", conns(2, Some(30)))]),
        snapshot(400, &[], vec![("connections", conns(1, Some(100)))]),
        snapshot(1_500, &[], vec![("connections", conns(1, Some(1_200)))]),
        snapshot(5_000, &[], vec![("connections", conns(0, Some(1_700)))]),
        snapshot(5_100, &[(Signal::Term, 5_000)], vec![]),
        snapshot(15_000, &[(Signal::Term, 5_000)], vec![]),
        snapshot(
            3_000,
            &[],
            vec![("connections", ProbeValue::Failed("timeout".into()))],
        ),
        snapshot(6_000, &[], vec![]),
    ];
    for s in &sequence {
        let ours = decide(&mut wasm, s);
        let fallback = native.decide(s).value;
        assert_eq!(ours, fallback, "at {} ms", s.elapsed_ms);
    }
    let term = decide(&mut wasm, &sequence[3]);
    assert_eq!(term.signal, Some(Signal::Term));
    assert_eq!(term.ready, Some(false));
    let kill = decide(&mut wasm, &sequence[5]);
    assert_eq!(kill.signal, Some(Signal::Kill));
}

#[test]
fn delay_in_wasm_waits_its_delay() {
    let mut policy = builtin_policy("delay", &[("delay", "3s")]);
    let first = decide(&mut policy, &snapshot(0, &[], vec![]));
    assert_eq!(
        (first.ready, first.signal, first.next),
        (Some(false), None, Next::Recheck(3_000))
    );
    let then = decide(&mut policy, &snapshot(3_000, &[], vec![]));
    assert_eq!(
        (then.signal, then.next),
        (Some(Signal::Term), Next::WaitForExit)
    );
}

#[test]
fn jobs_in_wasm_stops_work_then_waits_for_idle() {
    let mut policy = builtin_policy("jobs", &[("stop-taking-work", "USR2")]);
    let busy = ProbeValue::Exec(1);
    let first = decide(&mut policy, &snapshot(0, &[], vec![("idle", busy.clone())]));
    assert_eq!(first.signal, Some(Signal::Usr2));
    let still = decide(
        &mut policy,
        &snapshot(250, &[(Signal::Usr2, 0)], vec![("idle", busy)]),
    );
    assert_eq!(still.signal, None);
    let idle = decide(
        &mut policy,
        &snapshot(
            500,
            &[(Signal::Usr2, 0)],
            vec![("idle", ProbeValue::Exec(0))],
        ),
    );
    assert_eq!(idle.signal, Some(Signal::Term));
}

#[test]
fn signals_go_through_on_signal() {
    let mut policy = builtin_policy("drain", &[]);
    let serving = Snapshot {
        trigger: Trigger::None,
        ..snapshot(0, &[], vec![])
    };
    assert_eq!(
        policy.on_signal(Signal::Term, &serving).value,
        SignalAction::Drain
    );
    assert_eq!(
        policy.on_signal(Signal::Usr1, &serving).value,
        SignalAction::Forward
    );
}

#[test]
fn every_builtin_policy_loads_and_refuses_unknown_config() {
    for (name, bytes) in builtin::ALL {
        let compiled = compiler().compile(name, bytes).unwrap();
        compiled.instantiate(&[]).unwrap();
        let bad = [("no-such-key".to_string(), "1".to_string())];
        match compiled.instantiate(&bad) {
            Err(PolicyError::Init(why)) => assert!(why.contains("no-such-key"), "{why}"),
            other => panic!("{name}: expected an init error, got {:?}", other.err()),
        }
    }
}

/// Runs a hostile fixture's `decide` and checks the error and that the
/// fallback decided in its place, within a bound that only a hang breaks.
fn hostile(fixture: &str) -> PolicyError {
    hostile_bytes(fixture, &component(fixture))
}

fn hostile_bytes(fixture: &str, bytes: &[u8]) -> PolicyError {
    let compiled = compiler().compile(fixture, bytes).unwrap();
    let instance = compiled.instantiate(&[]).unwrap();
    let mut policy = Policy::fallback_only(Vec::new());
    policy.swap(compiled.into(), instance);
    let s = snapshot(0, &[], vec![("connections", conns(0, None))]);
    let start = Instant::now();
    let answer = policy.decide(&s);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{fixture} was stopped"
    );
    assert_eq!(
        answer.value,
        Policy::fallback_only(Vec::new()).decide(&s).value
    );
    // The instance was replaced: the next call fails the same way, again
    // answered by the fallback.
    let again = policy.decide(&s);
    assert_eq!(again.failure, answer.failure);
    answer.failure.expect("the fallback answered")
}

#[test]
fn an_infinite_loop_times_out_within_the_cpu_budget() {
    assert_eq!(
        hostile("loop.wat"),
        PolicyError::Timeout(Limits::default().cpu)
    );
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    assert_eq!(
        hostile("memory-bomb.wat"),
        PolicyError::Memory(Limits::default().memory)
    );
}

#[test]
fn deep_recursion_overflows_the_stack() {
    assert_eq!(hostile("recursion.wat"), PolicyError::StackOverflow);
}

#[test]
fn a_trap_is_reported_as_a_trap() {
    match hostile("trap.wat") {
        PolicyError::Trap(why) => assert!(why.contains("unreachable"), "{why}"),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn a_policy_cannot_wait_a_sleep_returns_at_once() {
    let bytes = with_wasi("sleep.wat", &["wasi:clocks/monotonic-clock@0.2.0"]);
    let compiled = compiler().compile("sleep", &bytes).unwrap();
    let mut instance = compiled.instantiate(&[]).unwrap();
    let start = Instant::now();
    let decision = instance.decide(&snapshot(0, &[], vec![])).unwrap();
    assert!(start.elapsed() < Duration::from_secs(5), "the policy slept");
    assert_eq!(decision.next, Next::WaitForExit);
}

/// Straight-line code between two checks of the budget: 2,000 fills of
/// 16 MB ran 5 s against a budget of 10 ms before the rewrite.
#[test]
fn straight_line_fills_are_stopped_within_the_budget() {
    assert_eq!(
        hostile("fill.wat"),
        PolicyError::Timeout(Limits::default().cpu)
    );
}

/// 64 memories of 16 MiB each held 1 GB when the cap was per memory.
#[test]
fn memories_count_together_against_the_cap() {
    assert_eq!(
        hostile("memories.wat"),
        PolicyError::Memory(Limits::default().memory)
    );
}

#[test]
fn a_huge_request_for_random_bytes_is_refused() {
    let bytes = with_wasi("random.wat", &["wasi:random/random@0.2.0"]);
    match hostile_bytes("random", &bytes) {
        PolicyError::Trap(why) => assert!(why.contains("exceeds limit"), "{why}"),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn host_resources_are_bounded() {
    let bytes = with_wasi("handles.wat", &["wasi:cli/stdout@0.2.0"]);
    match hostile_bytes("handles", &bytes) {
        PolicyError::Trap(_) => {}
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn init_has_a_larger_budget_of_its_own() {
    let compiled = compiler().compile("spin", &component("spin.wat")).unwrap();
    // `init` spins as long as `decide` does: it is done within its budget.
    let mut instance = compiled.instantiate(&[]).unwrap();
    assert_eq!(
        instance.decide(&snapshot(0, &[], vec![])).unwrap_err(),
        PolicyError::Timeout(Limits::default().cpu)
    );
}

#[test]
fn what_a_policy_returns_is_bounded() {
    let compiled = compiler()
        .compile("reasons", &component("reasons.wat"))
        .unwrap();
    let mut instance = compiled.instantiate(&[]).unwrap();
    let reason = instance.decide(&snapshot(0, &[], vec![])).unwrap().reason;
    assert!(reason.len() <= MAX_REASON + 40, "{}", reason.len());
    assert!(reason.ends_with("[truncated: 1048576 bytes]"), "{reason}");
    let compiled = compiler()
        .compile("init-error-huge", &component("init-error-huge.wat"))
        .unwrap();
    match compiled.instantiate(&[]) {
        Err(PolicyError::Init(why)) => {
            assert!(why.len() <= MAX_ERROR + 40, "{}", why.len());
            assert!(why.ends_with("[truncated: 1048576 bytes]"), "{why}");
        }
        other => panic!("expected an init error, got {:?}", other.err()),
    }
}

/// `/status` and the log show `init`'s refusal; a config value it quotes
/// may be a secret.
#[test]
fn an_init_error_does_not_show_config_values() {
    let compiled = compiler()
        .compile("init-echo", &component("init-echo.wat"))
        .unwrap();
    let config = [("token".to_string(), "s3cr3t-t0ken-value".to_string())];
    match compiled.instantiate(&config) {
        Err(PolicyError::Init(why)) => assert_eq!(why, "<the value of token>"),
        other => panic!("expected an init error, got {:?}", other.err()),
    }
}

#[test]
fn a_tighter_cpu_budget_is_kept() {
    let limits = Limits {
        cpu: Duration::from_millis(3),
        ..Limits::default()
    };
    let compiled = Compiler::new(limits, None)
        .unwrap()
        .compile("loop", &component("loop.wat"))
        .unwrap();
    let mut instance = compiled.instantiate(&[]).unwrap();
    let err = instance.decide(&snapshot(0, &[], vec![])).unwrap_err();
    assert_eq!(err, PolicyError::Timeout(Duration::from_millis(3)));
}

#[test]
fn init_errors_and_traps_refuse_the_policy() {
    let compiled = compiler()
        .compile("init-error", &component("init-error.wat"))
        .unwrap();
    match compiled.instantiate(&[]) {
        Err(PolicyError::Init(why)) => assert_eq!(why, "refusing every configuration"),
        other => panic!("expected an init error, got {:?}", other.err()),
    }
    let compiled = compiler()
        .compile("init-trap", &component("init-trap.wat"))
        .unwrap();
    assert!(matches!(
        compiled.instantiate(&[]),
        Err(PolicyError::Trap(_))
    ));
}

#[test]
fn the_wrong_world_is_named() {
    let err = compiler()
        .compile("wrong-world", &component("wrong-world.wat"))
        .err()
        .unwrap();
    assert!(matches!(err, LoadError::Version { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("lameduck:policy@0.4.0") && text.contains("newer"),
        "{text}"
    );
}

#[test]
fn a_missing_export_is_named() {
    let err = compiler()
        .compile("missing-export", &component("missing-export.wat"))
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        LoadError::MissingExport("on-signal").to_string()
    );
}

#[test]
fn garbage_and_core_modules_are_not_components() {
    for bytes in [
        &b"\0asm garbage"[..],
        b"hello",
        &wat::parse_str("(module)").unwrap(),
    ] {
        let err = compiler().compile("garbage", bytes).err().unwrap();
        assert!(matches!(err, LoadError::Invalid(_)), "{err}");
    }
}

#[test]
fn the_compile_cache_is_used_on_the_second_load() {
    let dir = std::env::temp_dir().join(format!("lameduck-cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // `delay`: the default policy ships precompiled and needs no cache.
    let delay = builtin::get("delay").unwrap();
    let compiler = Compiler::new(Limits::default(), Some(dir.clone())).unwrap();
    let first = compiler.compile("delay", delay).unwrap();
    let second = compiler.compile("delay", delay).unwrap();
    assert_eq!(
        (first.origin, second.origin),
        (Origin::Compiled, Origin::Cache)
    );
    assert_eq!(first.identity(), second.identity());
    second.instantiate(&[]).unwrap();
    // A new engine with the same settings (an agent restart) uses it too.
    let restarted = Compiler::new(Limits::default(), Some(dir.clone())).unwrap();
    assert_eq!(
        restarted.compile("delay", delay).unwrap().origin,
        Origin::Cache
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The default policy's code, compiled at build time for any CPU of this
/// architecture, loads in the agent's engine: a first start compiles nothing.
#[test]
fn the_default_policy_ships_precompiled() {
    let drain = builtin::get(builtin::DEFAULT).unwrap();
    let compiled = compiler().compile("builtin:drain", drain).unwrap();
    assert_eq!(compiled.origin, Origin::Precompiled);
    let mut instance = compiled.instantiate(&[]).unwrap();
    let decision = instance.decide(&snapshot(0, &[], vec![])).unwrap();
    assert!(!decision.reason.is_empty());
}

/// A policy built against the first version of the world still loads and
/// decides, on evidence adapted for it: `tests/fixtures/drain-0.1.wasm` is
/// the built-in `drain` as it was at 0.1.0 (waiting for one second without a
/// new connection and for no established one), and behind a keep-alive pool
/// it is shown requests where it looked for connections.
#[test]
fn a_policy_built_against_0_1_0_still_decides() {
    let old = std::fs::read(crate::util::fixture("drain-0.1.wasm")).unwrap();
    let compiled = compiler().compile("drain-0.1.wasm", &old).unwrap();
    assert_eq!(compiled.world, "lameduck:policy@0.1.0");
    let instance = compiled.instantiate(&[]).unwrap();
    let mut policy = Policy::fallback_only(Vec::new());
    policy.swap(compiled.into(), instance);
    // 32 pooled connections stay open; requests stopped 300 ms ago, then 1.3 s ago.
    let pooled = |since: u32| match lameduck_sdk::harness::Traffic::new()
        .pool(32, 60_000)
        .sample(0)
    {
        ProbeValue::Connections(mut c) => {
            c.since_last_request_ms = Some(since);
            ProbeValue::Connections(c)
        }
        _ => unreachable!(),
    };
    let waiting = decide(
        &mut policy,
        &snapshot(300, &[], vec![("connections", pooled(300))]),
    );
    assert_eq!(waiting.signal, None, "{}", waiting.reason);
    let term = decide(
        &mut policy,
        &snapshot(1_300, &[], vec![("connections", pooled(1_300))]),
    );
    assert_eq!(term.signal, Some(Signal::Term), "{}", term.reason);
    assert!(term.reason.contains("none in flight"), "{}", term.reason);
}
