//! The `drain` policy written again in Python, JavaScript and C decides
//! exactly as the Rust `drain` (the built-in component): same decisions, same
//! reasons, same `init` errors, on the same drains, driven closed-loop the way
//! the agent drives them.
//!
//! The components are built by `policies/drain-*/build.sh` (all three:
//! `policies/build-all.sh`). A missing one fails the test, naming the script:
//! the test never skips a language.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use lameduck::builtin;
use lameduck::policy::{
    Child, Compiled, Compiler, Connections, Decision, HttpResponse, Limits, Next, PolicyError,
    Probe, ProbeValue, SentSignal, Signal, SignalAction, Snapshot, Trigger,
};

use crate::util::root;

/// A port of `drain` to another language: where its sources and its build are.
struct Port {
    language: &'static str,
    dir: &'static str,
    source: &'static str,
}

const PORTS: [Port; 3] = [
    Port {
        language: "Python",
        dir: "drain-py",
        source: "drain.py",
    },
    Port {
        language: "JavaScript",
        dir: "drain-js",
        source: "drain.js",
    },
    Port {
        language: "C",
        dir: "drain-c",
        source: "drain.c",
    },
];

/// Every `drain` under test, compiled once for the whole test binary: the
/// Rust reference first, then each port.
fn policies() -> &'static [(&'static str, Compiled)] {
    static POLICIES: OnceLock<Vec<(&'static str, Compiled)>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        // The CPU budget is wall-clock time: on a loaded machine (tests run
        // in parallel) a JavaScript or Python first call can pass 10 ms.
        // This test is about what the policies decide; their costs are
        // measured by host/examples/policy_cost.rs.
        let limits = Limits {
            cpu: Duration::from_secs(2),
            ..Limits::default()
        };
        // The large Python and JavaScript components take seconds to compile:
        // the agent's compile cache keeps reruns fast.
        let cache = root().join("target").join("conformance-cache");
        let compiler = Compiler::new(limits, Some(cache)).unwrap();
        let rust = builtin::get("drain").unwrap();
        let mut all = vec![("Rust", compiler.compile("builtin:drain", rust).unwrap())];
        for port in &PORTS {
            let path = built(port);
            let bytes = std::fs::read(&path).unwrap();
            let compiled = compiler
                .compile(&path.display().to_string(), &bytes)
                .unwrap_or_else(|e| panic!("{}: {} does not load: {e}", port.language, port.dir));
            all.push((port.language, compiled));
        }
        all
    })
}

/// The component `build.sh` left in the port's directory; fails with the
/// command to run when it is missing or older than its source.
fn built(port: &Port) -> PathBuf {
    let dir = root().join("policies").join(port.dir);
    let wasm = dir.join("drain.wasm");
    let build = format!(
        "run `policies/{}/build.sh` (or `policies/build-all.sh` for every language)",
        port.dir
    );
    let modified = |path: &PathBuf| std::fs::metadata(path).and_then(|m| m.modified());
    let Ok(built_at) = modified(&wasm) else {
        panic!("{}: {} is missing: {build}", port.language, wasm.display());
    };
    for input in [dir.join(port.source), root().join("wit").join("policy.wit")] {
        let changed_at = modified(&input).unwrap();
        assert!(
            changed_at <= built_at,
            "{}: {} is older than {}: {build}",
            port.language,
            wasm.display(),
            input.display()
        );
    }
    wasm
}

fn pairs(config: &[(&str, &str)]) -> Vec<(String, String)> {
    config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Connections to the app's ports over time, sampled as the agent's
/// `connections` probe would see them (the same model as the SDK's harness).
/// Times are ms relative to the drain's start; negative times are before it.
#[derive(Clone, Default)]
struct Traffic {
    spans: Vec<(i64, i64)>,
    typical_gap_ms: Option<u32>,
    last_sample: Option<i64>,
}

impl Traffic {
    fn connection(mut self, from: i64, to: i64) -> Self {
        self.spans.push((from, to));
        self
    }

    /// A connection every `every` ms in `[from, until)`, each open `lasting` ms.
    fn arrivals(mut self, from: i64, until: i64, every: i64, lasting: i64) -> Self {
        self.spans.extend(
            (from..until)
                .step_by(every as usize)
                .map(|t| (t, t + lasting)),
        );
        self
    }

    fn typical_gap(mut self, ms: u32) -> Self {
        self.typical_gap_ms = Some(ms);
        self
    }

    fn sample(&mut self, t: i64) -> ProbeValue {
        let since = self.last_sample.replace(t).unwrap_or(i64::MIN);
        let open = self.spans.iter().filter(|(a, b)| *a <= t && t < *b);
        let arrived = self.spans.iter().filter(|(a, _)| since < *a && *a <= t);
        let last_arrival = self.spans.iter().map(|(a, _)| *a).filter(|a| *a <= t).max();
        ProbeValue::Connections(Connections {
            established: open.count() as u32,
            accepted: arrived.count() as u32,
            since_last_accept_ms: last_arrival.map(|a| (t - a).clamp(0, u32::MAX as i64) as u32),
            typical_gap_ms: self.typical_gap_ms,
        })
    }
}

/// A drain to replay: the operator's config, the budget, what the probes see,
/// and how the app reacts to a signal.
#[derive(Clone)]
struct Scenario {
    name: &'static str,
    config: &'static [(&'static str, &'static str)],
    budget_ms: u32,
    /// The probes by name, sampled before each decision.
    probes: Vec<(&'static str, Sampled)>,
    /// The app exits this long after the first signal it gets; `None`: it
    /// ignores every signal but KILL.
    exits_after_signal_ms: Option<u32>,
}

/// A probe's value over time.
#[derive(Clone)]
enum Sampled {
    Traffic(Traffic),
    Fixed(ProbeValue),
}

/// One call to `decide`: when, and what came back.
type Step = (u32, Decision);

/// Runs `scenario` against a fresh instance of `policy` the way the agent
/// does: TERM goes through `on-signal`; then `decide`, apply the readiness
/// and the signal, follow `recheck` on a virtual clock; stop when the policy
/// waits for the exit or exits, or when the app has exited.
fn drive(language: &str, policy: &Compiled, scenario: &Scenario) -> Vec<Step> {
    let mut instance = policy
        .instantiate(&pairs(scenario.config))
        .unwrap_or_else(|e| panic!("{language}: `init` failed in {}: {e}", scenario.name));
    let mut probes = scenario.probes.clone();
    // Each probe's reading, with when its value last changed.
    let mut readings: Vec<(Probe, u32)> = Vec::new();
    let mut signals_sent: Vec<SentSignal> = Vec::new();
    let mut ready = true;
    let mut steps = Vec::new();
    let mut elapsed = 0;

    let serving = Snapshot {
        trigger: Trigger::None,
        elapsed_ms: 0,
        remaining_ms: scenario.budget_ms,
        child: Child::Running,
        signals_sent: Vec::new(),
        ready,
        probes: Vec::new(),
    };
    let action = instance.on_signal(Signal::Term, &serving).unwrap();
    assert_eq!(
        action,
        SignalAction::Drain,
        "{language}: TERM begins the drain"
    );

    loop {
        if let (Some(first), Some(after)) = (signals_sent.first(), scenario.exits_after_signal_ms)
            && elapsed >= first.at_ms + after
        {
            return steps; // the app exited: `decide` is not called again
        }
        for (name, sampled) in &mut probes {
            let value = match sampled {
                Sampled::Traffic(traffic) => traffic.sample(elapsed as i64),
                Sampled::Fixed(value) => value.clone(),
            };
            match readings.iter_mut().find(|(p, _)| p.name == *name) {
                Some((probe, changed)) if probe.value != value => {
                    probe.value = value;
                    *changed = elapsed;
                }
                Some(_) => {}
                None => readings.push((
                    Probe {
                        name: name.to_string(),
                        value,
                        unchanged_ms: 0,
                    },
                    elapsed,
                )),
            }
        }
        let snapshot = Snapshot {
            trigger: Trigger::Signal(Signal::Term),
            elapsed_ms: elapsed,
            remaining_ms: scenario.budget_ms.saturating_sub(elapsed),
            child: Child::Running,
            signals_sent: signals_sent.clone(),
            ready,
            probes: readings
                .iter()
                .map(|(probe, changed)| Probe {
                    unchanged_ms: elapsed - changed,
                    ..probe.clone()
                })
                .collect(),
        };
        let decision = instance.decide(&snapshot).unwrap_or_else(|e| {
            panic!(
                "{language}: `decide` failed at {elapsed} ms in {}: {e}",
                scenario.name
            )
        });
        if let Some(now) = decision.ready {
            ready = now;
        }
        if let Some(signal) = decision.signal {
            signals_sent.push(SentSignal {
                signal,
                at_ms: elapsed,
            });
        }
        let next = decision.next;
        steps.push((elapsed, decision));
        match next {
            Next::Recheck(ms) if elapsed < scenario.budget_ms => elapsed += ms.max(1),
            _ => return steps,
        }
    }
}

/// Drives `scenario` through every `drain` and checks each port's decisions
/// against Rust's, step by step. Returns Rust's, for checks of its own.
fn conform(scenario: &Scenario) -> Vec<Step> {
    let [(_, rust), ports @ ..] = policies() else {
        unreachable!("Rust is first")
    };
    let expected = drive("Rust", rust, scenario);
    for (language, policy) in ports {
        let got = drive(language, policy, scenario);
        for (i, (want, have)) in expected.iter().zip(&got).enumerate() {
            assert_eq!(
                have, want,
                "{language} differs from Rust in `{}` at step {i} (left: {language}, right: Rust)",
                scenario.name
            );
        }
        assert_eq!(
            got.len(),
            expected.len(),
            "{language} took a different number of steps in `{}`",
            scenario.name
        );
    }
    expected
}

fn first_signal(steps: &[Step], signal: Signal) -> u32 {
    steps
        .iter()
        .find(|(_, d)| d.signal == Some(signal))
        .unwrap_or_else(|| panic!("{signal:?} was never sent"))
        .0
}

/// A drain with the defaults: 28 s of budget, `traffic` on the app's ports,
/// and an app that exits 300 ms after its signal.
fn scenario(name: &'static str, traffic: Traffic) -> Scenario {
    Scenario {
        name,
        config: &[],
        budget_ms: 28_000,
        probes: vec![("connections", Sampled::Traffic(traffic))],
        exits_after_signal_ms: Some(300),
    }
}

#[test]
fn an_idle_app() {
    let steps = conform(&scenario("idle app", Traffic::default()));
    assert_eq!(first_signal(&steps, Signal::Term), 1_000);
}

#[test]
fn a_slow_in_flight_request() {
    let slow = Traffic::default().connection(-500, 4_050);
    let steps = conform(&scenario("slow in-flight request", slow));
    assert!((4_050..=4_150).contains(&first_signal(&steps, Signal::Term)));
}

#[test]
fn late_connections_during_the_endpoint_lag() {
    // New connections keep coming until the endpoint is gone, 2.5 s in.
    let lag = Traffic::default().arrivals(-5_000, 2_500, 200, 50);
    let steps = conform(&scenario("endpoint lag", lag));
    assert!((3_300..=3_500).contains(&first_signal(&steps, Signal::Term)));
}

#[test]
fn a_learned_sparse_rhythm() {
    let sparse = Traffic::default()
        .arrivals(-9_000, 0, 2_000, 10)
        .typical_gap(2_000);
    let steps = conform(&scenario("sparse rhythm", sparse));
    assert_eq!(first_signal(&steps, Signal::Term), 3_000);
}

#[test]
fn a_request_that_never_ends_meets_the_deadline_and_an_app_that_ignores_term() {
    let steps = conform(&Scenario {
        budget_ms: 20_000,
        exits_after_signal_ms: None,
        ..scenario(
            "never-ending request",
            Traffic::default().connection(-1, i64::MAX),
        )
    });
    assert_eq!(first_signal(&steps, Signal::Term), 15_000);
    assert_eq!(first_signal(&steps, Signal::Kill), 25_000);
    // A short budget keeps only a third of itself in reserve.
    let steps = conform(&Scenario {
        budget_ms: 3_000,
        ..scenario("short budget", Traffic::default().connection(-1, i64::MAX))
    });
    assert_eq!(first_signal(&steps, Signal::Term), 2_000);
}

#[test]
fn a_non_default_config() {
    let config = &[
        ("probe", "web"),
        ("quiet", "1.5s"),
        ("quiet-max", "4s"),
        ("reserve", "2s"),
        ("recheck", "250ms"),
        ("signal", "SIGQUIT"),
        ("kill-after", "3s"),
    ];
    // Arrivals until 1.7 s; the learned gap makes the quiet period 3.6 s
    // (1.5 × 2.4 s, within 1.5..4 s), looked at every 250 ms. `connections`
    // is there to show that the `probe` key is read.
    let lag = Traffic::default()
        .arrivals(-6_000, 2_000, 700, 400)
        .typical_gap(2_400);
    let steps = conform(&Scenario {
        config,
        budget_ms: 30_000,
        probes: vec![
            ("connections", Sampled::Fixed(ProbeValue::Exec(0))),
            ("web", Sampled::Traffic(lag)),
        ],
        exits_after_signal_ms: None,
        name: "non-default config",
    });
    assert_eq!(first_signal(&steps, Signal::Quit), 5_500);
    // The app ignores QUIT: KILL after `kill-after`.
    assert_eq!(first_signal(&steps, Signal::Kill), 5_500 + 3_000);
}

#[test]
fn missing_failed_or_mistyped_evidence() {
    let failed = ProbeValue::Failed("timeout".into());
    let http = ProbeValue::Http(HttpResponse {
        status: 200,
        body: "ok".into(),
    });
    for (name, probes) in [
        ("no probe", vec![]),
        (
            "failed probe",
            vec![("connections", Sampled::Fixed(failed))],
        ),
        (
            "not a connections probe",
            vec![("connections", Sampled::Fixed(http))],
        ),
    ] {
        let steps = conform(&Scenario {
            probes,
            ..scenario(name, Traffic::default())
        });
        assert_eq!(first_signal(&steps, Signal::Term), 5_000, "{name}");
    }
}

/// What `init` made of a config: its error, or the first decisions of an
/// idle drain (which show the durations and the signal it read).
fn outcome(language: &str, policy: &Compiled, config: &'static [(&str, &str)]) -> String {
    match policy.instantiate(&pairs(config)) {
        Err(PolicyError::Init(why)) => format!("refused: {why}"),
        Err(e) => panic!("{language}: `init` failed with {config:?}: {e}"),
        Ok(_) => format!(
            "{:?}",
            drive(
                language,
                policy,
                &Scenario {
                    config,
                    budget_ms: 9_000,
                    ..scenario("config", Traffic::default())
                }
            )
        ),
    }
}

#[test]
fn init_reads_and_refuses_config_exactly_as_rust() {
    let configs: &[&[(&str, &str)]] = &[
        &[("no-such-key", "1")],
        &[("quiet", "2s"), ("qiuet-max", "9s"), ("extra", "")],
        &[("quiet", "5s"), ("quiet-max", "1s")],
        &[("quiet", "soon")],
        &[("quiet", "30")],
        &[("quiet", "s")],
        &[("quiet", ".")],
        &[("quiet", "1.2.3s")],
        &[("quiet", "9999999h")],
        &[("recheck", " 250ms ")],
        &[("recheck", "1.5s")],
        &[("recheck", "1.s")],
        &[("recheck", ".25s")],
        &[("recheck", "0.0005s")],
        &[("recheck", "2 ms")],
        &[("recheck", "0ms")],
        &[("recheck", "\u{a0}300ms\u{2003}")],
        &[("recheck", "300MS")],
        &[("kill-after", "0s")],
        &[("quiet", "2m"), ("quiet-max", "1h"), ("reserve", "3s")],
        &[("signal", "usr1")],
        &[("signal", " SigTerm ")],
        &[("signal", "none")],
        &[("signal", "NoNe")],
        &[("signal", "SIGFOO")],
        &[("signal", "ſigterm")],
        &[("signal", "KILL")],
        &[("probe", "")],
        // Host strings may hold NULs; C must not stop at them.
        &[("probe", "web\0x")],
        &[("quiet", "1\0s")],
        &[("bad\0key", "1")],
        &[("probe", "connections"), ("probe", "other")],
    ];
    let [(_, rust), ports @ ..] = policies() else {
        unreachable!("Rust is first")
    };
    for config in configs {
        let expected = outcome("Rust", rust, config);
        for (language, policy) in ports {
            assert_eq!(
                outcome(language, policy, config),
                expected,
                "{language} reads {config:?} differently (left: {language}, right: Rust)"
            );
        }
    }
    let refused = outcome("Rust", rust, &[("no-such-key", "1")]);
    assert!(refused.contains("unknown key no-such-key"), "{refused}");
}

#[test]
fn on_signal_answers_as_rust() {
    let [(_, rust), ports @ ..] = policies() else {
        unreachable!("Rust is first")
    };
    let snapshot = Snapshot {
        trigger: Trigger::None,
        elapsed_ms: 0,
        remaining_ms: 28_000,
        child: Child::Running,
        signals_sent: Vec::new(),
        ready: true,
        probes: Vec::new(),
    };
    let mut expected = rust.instantiate(&[]).unwrap();
    for (language, policy) in ports {
        let mut instance = policy.instantiate(&[]).unwrap();
        for signal in lameduck::signals::all() {
            assert_eq!(
                instance.on_signal(signal, &snapshot).unwrap(),
                expected.on_signal(signal, &snapshot).unwrap(),
                "{language} on {signal:?}"
            );
        }
    }
}
