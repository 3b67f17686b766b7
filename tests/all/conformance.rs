//! The `drain` policy written again in Python, JavaScript and C decides
//! exactly as the Rust `drain` (the built-in component): same decisions, same
//! reasons, same `init` errors, on the same drains, driven closed-loop the way
//! the agent drives them. All four are drain v3, built against
//! `lameduck:policy@0.3.0`: answers that stream, calls the sockets cannot
//! tell done and the app's own count of them, long-lived connections.
//!
//! The components are built by `policies/drain-*/build.sh` (all three:
//! `policies/build-all.sh`). A missing one fails the test, naming the script:
//! the test never skips a language.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use lameduck_core::agent::Settings;
use lameduck_core::{
    Child, Decision, HttpResponse, Metrics, Mode, ProbeValue, SentSignal, Series, Signal,
    SignalAction, Silences, Snapshot, Trigger,
};
use lameduck_runtime::builtin;
use lameduck_runtime::{Compiled, Compiler, Instance, Limits, PolicyError};
use lameduck_sdk::harness::{Decider, Harness, Step, Traffic};

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

/// A policy instance whose every call must succeed: a failure is a test
/// failure, not a fallback.
struct Strict<'a> {
    language: &'a str,
    instance: Instance,
}

impl Decider for Strict<'_> {
    fn on_signal(&mut self, signal: Signal, snapshot: &Snapshot) -> SignalAction {
        let language = self.language;
        self.instance
            .on_signal(signal, snapshot)
            .unwrap_or_else(|e| panic!("{language}: `on-signal` failed: {e}"))
    }

    fn decide(&mut self, snapshot: &Snapshot) -> Decision {
        let language = self.language;
        self.instance.decide(snapshot).unwrap_or_else(|e| {
            panic!(
                "{language}: `decide` failed at {}: {e}",
                snapshot.elapsed_ms
            )
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
    /// A value of the drain's time (ms).
    Over(fn(i64) -> ProbeValue),
}

/// What a drain did: the policy's decisions, and the signals the app got
/// (the policy's, and the agent's own at its deadline).
struct Drained {
    steps: Vec<Step>,
    app_signals: Vec<SentSignal>,
}

/// Runs `scenario` against a fresh instance of `policy` through the agent's
/// own rules, on a virtual clock, as the agent would: TERM goes through
/// `on-signal`; then `decide`, rechecks, the deadline and its KILL, until
/// the app has exited.
fn drive(language: &str, policy: &Compiled, scenario: &Scenario) -> Drained {
    let instance = policy
        .instantiate(&pairs(scenario.config))
        .unwrap_or_else(|e| panic!("{language}: `init` failed in {}: {e}", scenario.name));
    let strict = Strict { language, instance };
    let mut h = Harness::with_settings(strict, Settings::new(scenario.budget_ms));
    let mut probes = scenario.probes.clone();
    let exits_after = scenario.exits_after_signal_ms;
    assert_eq!(
        h.signal(Signal::Term),
        Some(SignalAction::Drain),
        "{language}: TERM begins the drain"
    );
    h.run(scenario.budget_ms + 10_000, |elapsed, h| {
        if let (Some(first), Some(after)) = (h.app_signals().first(), exits_after)
            && h.app_signals().len() == 1
        {
            // The app stops `after` its first signal.
            h.child_exits_at(first.at_ms + after, 0);
        }
        for (name, sampled) in &mut probes {
            let value = match sampled {
                Sampled::Traffic(traffic) => traffic.sample(elapsed as i64),
                Sampled::Fixed(value) => value.clone(),
                Sampled::Over(value) => value(elapsed as i64),
            };
            h.set_probe(name, value);
        }
    });
    Drained {
        steps: h.steps().to_vec(),
        app_signals: h.app_signals().to_vec(),
    }
}

/// Drives `scenario` through every `drain` and checks each port's decisions
/// against Rust's, step by step. Returns Rust's, for checks of its own.
fn conform(scenario: &Scenario) -> Drained {
    let [(_, rust), ports @ ..] = policies() else {
        unreachable!("Rust is first")
    };
    let expected = drive("Rust", rust, scenario);
    for (language, policy) in ports {
        let got = drive(language, policy, scenario);
        for (i, (want, have)) in expected.steps.iter().zip(&got.steps).enumerate() {
            assert_eq!(
                have, want,
                "{language} differs from Rust in `{}` at step {i} (left: {language}, right: Rust)",
                scenario.name
            );
        }
        assert_eq!(
            got.steps.len(),
            expected.steps.len(),
            "{language} took a different number of steps in `{}`",
            scenario.name
        );
        assert_eq!(got.app_signals, expected.app_signals, "{language}");
    }
    expected
}

/// When the app first got `signal`, from whomever.
fn first_signal(drained: &Drained, signal: Signal) -> u32 {
    drained
        .app_signals
        .iter()
        .find(|s| s.signal == signal)
        .unwrap_or_else(|| panic!("{signal:?} was never sent"))
        .at_ms
}

/// Whether any of the policy's reasons in `drained` contains `text`.
fn said(drained: &Drained, text: &str) -> bool {
    drained
        .steps
        .iter()
        .any(|s| s.decision.reason.contains(text))
}

/// The reason of the decision that signalled the app first.
fn why_signalled(drained: &Drained) -> &str {
    let step = drained.steps.iter().find(|s| s.decision.signal.is_some());
    &step.expect("the policy signalled the app").decision.reason
}

/// Every reason in `drained`, for an assertion's message.
fn reasons(drained: &Drained) -> Vec<&str> {
    drained
        .steps
        .iter()
        .map(|s| s.decision.reason.as_str())
        .collect()
}

/// What a `metrics` probe reads of the app's gauge of calls in progress:
/// one series, whose value is the sum.
fn gauge(sum: f64) -> ProbeValue {
    ProbeValue::Metrics(Metrics {
        sum,
        series: vec![Series {
            labels: vec![("method".into(), "Watch".into())],
            value: sum,
        }],
    })
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

/// Dense traffic learned over minutes, over a keep-alive pool whose
/// connections stay open: requests every 10 ms until `removed`.
fn behind_an_ingress(removed: i64) -> Traffic {
    Traffic::new()
        .arrivals(-60_000, removed, 10, 150)
        .pool(32, 60_000)
        .learned(40)
}

#[test]
fn an_idle_young_app() {
    let drained = conform(&scenario("idle app", Traffic::new()));
    assert_eq!(first_signal(&drained, Signal::Term), 5_000);
}

#[test]
fn an_idle_keep_alive_pool_does_not_hold_the_drain() {
    let drained = conform(&scenario("keep-alive pool", behind_an_ingress(2_000)));
    // The last request, at 1.99 s, is answered at 2.14 s; seen at the next
    // look, 100 ms after the one before.
    assert_eq!(first_signal(&drained, Signal::Term), 2_200);
}

#[test]
fn a_slow_request_in_flight() {
    let slow = behind_an_ingress(500).request(400, 4_050);
    let drained = conform(&scenario("slow request in flight", slow));
    let term = first_signal(&drained, Signal::Term);
    assert!((4_050..=4_150).contains(&term), "TERM at {term}");
}

#[test]
fn new_connections_during_the_endpoint_lag() {
    let lag = Traffic::new().arrivals(-5_000, 2_500, 200, 50).learned(300);
    let drained = conform(&scenario("endpoint lag", lag));
    let term = first_signal(&drained, Signal::Term);
    assert!((3_000..=3_100).contains(&term), "TERM at {term}");
}

#[test]
fn a_learned_sparse_rhythm() {
    let sparse = Traffic::new().arrivals(-9_000, 0, 2_000, 10).learned(2_000);
    let drained = conform(&scenario("sparse rhythm", sparse));
    assert_eq!(first_signal(&drained, Signal::Term), 4_000);
}

#[test]
fn a_young_pod_with_sparse_bursts() {
    let young = Traffic::new()
        .bursts(-4_000, 4_000, 2_000, 7, 30, 20)
        .silences(Silences {
            watched_ms: 4_000,
            count: 13,
            p50_ms: Some(30),
            p99_ms: Some(1_800),
            max_ms: Some(1_800),
        });
    let drained = conform(&Scenario {
        config: &[("min-drain", "6s")],
        ..scenario("young pod, sparse bursts", young)
    });
    assert_eq!(first_signal(&drained, Signal::Term), 6_000);
}

#[test]
fn a_request_that_never_ends_meets_the_deadline_and_an_app_that_ignores_term() {
    let endless = || behind_an_ingress(0).request(-1, i64::MAX);
    let drained = conform(&Scenario {
        budget_ms: 20_000,
        exits_after_signal_ms: None,
        ..scenario("never-ending request", endless())
    });
    // The reserve (5 s) leaves the app time to stop; it does not, and the
    // agent's deadline KILLs it before the policy's own `kill-after`.
    assert_eq!(first_signal(&drained, Signal::Term), 15_000);
    assert_eq!(first_signal(&drained, Signal::Kill), 21_000);
    // A short budget keeps only a third of itself in reserve.
    let drained = conform(&Scenario {
        budget_ms: 3_000,
        ..scenario("short budget", endless())
    });
    assert_eq!(first_signal(&drained, Signal::Term), 2_000);
}

#[test]
fn a_non_default_config() {
    let config = &[
        ("probe", "web"),
        ("quiet", "1.5s"),
        ("quiet-max", "4s"),
        ("min-drain", "1s"),
        ("reserve", "2s"),
        ("recheck", "250ms"),
        ("signal", "SIGQUIT"),
        ("kill-after", "3s"),
    ];
    // Requests until 1.7 s; the learned 1.2 s silences make the quiet
    // period 2.4 s (within 1.5..4 s), over at 4.1 s, when it looks again
    // (every 250 ms before). `connections` is there to show that the
    // `probe` key is read.
    let lag = Traffic::new()
        .arrivals(-6_000, 2_000, 700, 400)
        .learned(1_200);
    let drained = conform(&Scenario {
        config,
        budget_ms: 30_000,
        probes: vec![
            ("connections", Sampled::Fixed(ProbeValue::Exec(0))),
            ("web", Sampled::Traffic(lag)),
        ],
        exits_after_signal_ms: None,
        name: "non-default config",
    });
    assert_eq!(first_signal(&drained, Signal::Quit), 4_100);
    // The app ignores QUIT: KILL after `kill-after`.
    assert_eq!(first_signal(&drained, Signal::Kill), 4_100 + 3_000);
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
        let drained = conform(&Scenario {
            probes,
            ..scenario(name, Traffic::new())
        });
        assert_eq!(first_signal(&drained, Signal::Term), 5_000, "{name}");
    }
}

/// What `init` made of a config: its error, or the decisions of two
/// drains, which show the durations, the signal and the probes it read: an
/// idle app's, and one with a WebSocket open, quiet learned, and the app's
/// gauge counting two calls for the first second.
fn outcome(language: &str, policy: &Compiled, config: &'static [(&str, &str)]) -> String {
    let idle = Scenario {
        config,
        budget_ms: 9_000,
        ..scenario("config", Traffic::new())
    };
    let websocket = Traffic::new().long_lived(-60_000, 60_000).learned(40);
    let counting = |t| gauge(if t < 1_000 { 2.0 } else { 0.0 });
    let v3 = Scenario {
        probes: vec![
            ("connections", Sampled::Traffic(websocket)),
            ("gauge", Sampled::Over(counting)),
        ],
        ..idle.clone()
    };
    match policy.instantiate(&pairs(config)) {
        Err(PolicyError::Init(why)) => format!("refused: {why}"),
        Err(e) => panic!("{language}: `init` failed with {config:?}: {e}"),
        Ok(_) => format!(
            "{:?}\n{:?}",
            drive(language, policy, &idle).steps,
            drive(language, policy, &v3).steps
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
        // A leading U+FEFF is text, not a byte order mark to drop.
        &[("quiet", "\u{feff}5s")],
        &[("\u{feff}probe", "web")],
        // drain v3's keys.
        &[("long-lived-wait", "soon")],
        &[("long-lived-wait", "-1s")],
        &[("long-lived-wait", "")],
        &[("long-lived-wait", "4294967296ms")],
        &[("long-lived-wait", "4294967295ms")],
        &[("long-lived-wait", "0s")],
        &[("long-lived-wait", "1.5s")],
        &[("long-lived-wait", "x"), ("quiet", "y")],
        &[
            ("long-lived-wait", "2s"),
            ("quiet", "5s"),
            ("quiet-max", "1s"),
        ],
        &[("in-flight-metric", "")],
        &[("in-flight-metric", "gauge")],
        &[("in-flight-metric", " gauge ")],
        &[("in-flight-metric", "gauge\0x")],
        &[("in-flight-metric", "connections")],
        &[("in-flight-metrics", "gauge")],
        &[("in-flight-metric", "gauge"), ("long-lived-wait", "1s")],
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
    // The new keys are read, and in this order.
    let refused = outcome("Rust", rust, &[("in-flight-metrics", "gauge")]);
    let known = "(known: probe, in-flight-metric, long-lived-wait, quiet,";
    assert!(refused.contains(known), "{refused}");
    let refused = outcome("Rust", rust, &[("long-lived-wait", "x"), ("quiet", "y")]);
    let first = "refused: policy.config.long-lived-wait: `x` is not a duration";
    assert!(refused.starts_with(first), "{refused}");
    // And their values show in the drain.
    let default = outcome("Rust", rust, &[]);
    let left = "1 long-lived connection(s) left for the app to close";
    assert!(default.contains(left), "{default}");
    assert!(!default.contains("the app counts"), "{default}");
    let counted = outcome("Rust", rust, &[("in-flight-metric", "gauge")]);
    assert!(
        counted.contains("2 request(s) in flight (the app counts 2)"),
        "{counted}"
    );
    let ignored = outcome("Rust", rust, &[("in-flight-metric", " gauge ")]);
    assert_eq!(ignored, default);
    let waited = outcome("Rust", rust, &[("long-lived-wait", "1.5s")]);
    assert!(waited.contains("waited for up to 1500 ms more"), "{waited}");
    let saturated = outcome("Rust", rust, &[("long-lived-wait", "4294967295ms")]);
    let bounded = "1 long-lived connection(s) waited for up to 4294967";
    assert!(saturated.contains(bounded), "{saturated}");
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
        mode: Mode::Entrypoint,
    };
    let mut expected = rust.instantiate(&[]).unwrap();
    for (language, policy) in ports {
        let mut instance = policy.instantiate(&[]).unwrap();
        for signal in lameduck_core::Signal::ALL {
            assert_eq!(
                instance.on_signal(signal, &snapshot).unwrap(),
                expected.on_signal(signal, &snapshot).unwrap(),
                "{language} on {signal:?}"
            );
        }
    }
}

#[test]
fn a_streamed_answer_holds_the_signal_until_it_ends() {
    // Requests stop at 2 s; one answer streams from 1.9 s until 5 s.
    let streamed = behind_an_ingress(2_000).stream(1_900, 5_000);
    let drained = conform(&scenario("streamed answer", streamed));
    let term = first_signal(&drained, Signal::Term);
    assert!((5_000..=5_100).contains(&term), "TERM at {term}");
    let streaming = "1 request(s) in flight (1 streaming)";
    assert!(said(&drained, streaming), "{:?}", reasons(&drained));
}

/// Requests stop at 2 s; a call arrives at 1.9 s on a multiplexed
/// connection, and the sockets cannot tell it done until 7 s.
fn multiplexed() -> Traffic {
    behind_an_ingress(2_000).unsure(1_900, 7_000)
}

/// The app's gauge: three calls in progress from 1.9 s until 3 s.
fn three_until_3s(t: i64) -> ProbeValue {
    gauge(if (1_900..3_000).contains(&t) {
        3.0
    } else {
        0.0
    })
}

#[test]
fn what_the_sockets_cannot_tell_holds_the_signal_and_the_apps_count_tells_it() {
    // The sockets alone: held while they cannot tell.
    let alone = conform(&scenario("unsure, no gauge", multiplexed()));
    let held = first_signal(&alone, Signal::Term);
    assert!((7_000..=7_100).contains(&held), "TERM at {held}");
    assert!(said(&alone, "1 request(s) in flight (1 unsure)"));

    // The app's count stands in for the unsure call: done at 3 s. The
    // larger of it and what the sockets see is in flight.
    let counting = |name, probes| Scenario {
        config: &[("in-flight-metric", "gauge")],
        probes,
        ..scenario(name, Traffic::new())
    };
    let sockets = || ("connections", Sampled::Traffic(multiplexed()));
    let counted = conform(&counting(
        "unsure, counted",
        vec![sockets(), ("gauge", Sampled::Over(three_until_3s))],
    ));
    let term = first_signal(&counted, Signal::Term);
    assert!((3_000..=3_100).contains(&term), "TERM at {term}");
    for text in [
        // The ingress's requests outnumber the count, then the count wins.
        "15 request(s) in flight (the app counts 0)",
        "15 request(s) in flight (the app counts 3)",
        "3 request(s) in flight (the app counts 3)",
    ] {
        assert!(said(&counted, text), "{text}: {:?}", reasons(&counted));
    }

    // A count that is not there is no evidence: the sockets decide, as alone.
    let refused = ProbeValue::Failed("connection refused".into());
    for (name, value) in [
        ("gauge failed", Some(Sampled::Fixed(refused))),
        (
            "gauge not metrics",
            Some(Sampled::Fixed(ProbeValue::Exec(0))),
        ),
        ("gauge missing", None),
    ] {
        let probes = [Some(sockets()), value.map(|v| ("gauge", v))];
        let drained = conform(&counting(name, probes.into_iter().flatten().collect()));
        assert_eq!(first_signal(&drained, Signal::Term), held, "{name}");
        assert_eq!(reasons(&drained), reasons(&alone), "{name}");
    }
    // A gauge that fails until 2.5 s, then reads 0: from then on, it tells.
    let late = |t: i64| match t {
        ..2_500 => ProbeValue::Failed("timeout".into()),
        _ => gauge(0.0),
    };
    let drained = conform(&counting(
        "gauge failing, then read",
        vec![sockets(), ("gauge", Sampled::Over(late))],
    ));
    let term = first_signal(&drained, Signal::Term);
    assert!((2_500..=2_600).contains(&term), "TERM at {term}");
    assert!(said(&drained, "1 request(s) in flight (1 unsure)"));

    // An answer that streams beside an unsure call, with and without the
    // count: the stream is what the sockets see.
    let both = || {
        behind_an_ingress(2_000)
            .stream(1_900, 4_000)
            .unsure(1_950, 6_000)
    };
    let drained = conform(&scenario("streaming and unsure", both()));
    let term = first_signal(&drained, Signal::Term);
    assert!((6_000..=6_100).contains(&term), "TERM at {term}");
    assert!(said(
        &drained,
        "2 request(s) in flight (1 streaming, 1 unsure)"
    ));
    let drained = conform(&counting(
        "streaming and unsure, counted",
        vec![
            ("connections", Sampled::Traffic(both())),
            ("gauge", Sampled::Over(three_until_3s)),
        ],
    ));
    let term = first_signal(&drained, Signal::Term);
    assert!((4_000..=4_100).contains(&term), "TERM at {term}");
    for text in [
        "3 request(s) in flight (1 streaming, the app counts 3)",
        "1 request(s) in flight (1 streaming, the app counts 0)",
    ] {
        assert!(said(&drained, text), "{text}: {:?}", reasons(&drained));
    }
}

#[test]
fn the_apps_count_is_read_as_rust_reads_an_f64() {
    // `sum.max(0.0).ceil().min(u32::MAX as f64) as u32`: NaN (either
    // sign), negatives and -0 are 0, fractions round up, and anything past
    // u32::MAX is u32::MAX.
    let negative_nan = f64::from_bits(f64::NAN.to_bits() | (1 << 63));
    let cases = [
        (f64::NAN, 0u32),
        (negative_nan, 0),
        (f64::NEG_INFINITY, 0),
        (-1e300, 0),
        (-2.5, 0),
        (-0.0, 0),
        (0.0, 0),
        (5e-324, 1),
        (0.5, 1),
        (2.0, 2),
        (2.000_001, 3),
        (4_294_967_294.5, 4_294_967_295),
        (4_294_967_295.0, 4_294_967_295),
        (4_294_967_295.5, 4_294_967_295),
        (4_294_967_296.0, 4_294_967_295),
        (1e300, 4_294_967_295),
        (f64::MAX, 4_294_967_295),
        (f64::INFINITY, 4_294_967_295),
    ];
    for (sum, count) in cases {
        // One answer streams for the first second, so every look says what
        // the count was read as; a count above it holds the drain until
        // the deadline (2 s of a 3 s budget).
        let drained = conform(&Scenario {
            config: &[("in-flight-metric", "gauge")],
            budget_ms: 3_000,
            probes: vec![
                (
                    "connections",
                    Sampled::Traffic(Traffic::new().stream(-1, 1_000)),
                ),
                ("gauge", Sampled::Fixed(gauge(sum))),
            ],
            ..scenario("a count of odd value", Traffic::new())
        });
        let text = format!(
            "{} request(s) in flight (1 streaming, the app counts {count})",
            count.max(1)
        );
        assert!(said(&drained, &text), "{sum}: {:?}", reasons(&drained));
    }
}

#[test]
fn long_lived_connections_are_waited_for_a_bounded_time() {
    // Two WebSockets open for an hour and a minute; requests stop at 2 s,
    // the last one at 1.99 s, so all is quiet from 2.14 s.
    let websockets = || {
        behind_an_ingress(2_000)
            .long_lived(-3_600_000, 60_000)
            .long_lived(-60_000, 60_000)
    };
    let left = "2 long-lived connection(s) left for the app to close";
    // The settings, and the earliest and latest the TERM may come.
    type Wait = (&'static [(&'static str, &'static str)], u32, u32);
    let waits: [Wait; 3] = [
        (&[("long-lived-wait", "2s")], 4_140, 4_240),
        (&[], 5_140, 5_240),
        // No wait: as if they were idle.
        (&[("long-lived-wait", "0s")], 2_140, 2_240),
    ];
    for (config, from, to) in waits {
        let drained = conform(&Scenario {
            config,
            ..scenario("long-lived", websockets())
        });
        let term = first_signal(&drained, Signal::Term);
        assert!((from..=to).contains(&term), "{config:?}: TERM at {term}");
        let why = why_signalled(&drained);
        assert!(
            why.ends_with(&format!("and none in flight; {left}")),
            "{why}"
        );
        let waited = "2 long-lived connection(s) waited for up to";
        assert_eq!(said(&drained, waited), from > 2_140, "{config:?}");
    }

    // Closed by their clients at 3 s, before the wait is over: signalled
    // as soon as they are gone, with no word of them.
    let closing = behind_an_ingress(2_000).long_lived(-60_000, 3_000);
    let drained = conform(&scenario("long-lived, closed", closing));
    let term = first_signal(&drained, Signal::Term);
    assert!((3_000..=3_100).contains(&term), "TERM at {term}");
    assert!(why_signalled(&drained).ends_with("and none in flight"));
    assert!(said(
        &drained,
        "1 long-lived connection(s) waited for up to"
    ));

    // An app that served nothing, with one WebSocket: `min-drain` first,
    // then the wait, counted from the drain's start.
    let lone = Traffic::new().long_lived(-60_000, 60_000);
    let drained = conform(&Scenario {
        config: &[("long-lived-wait", "8s")],
        ..scenario("lone WebSocket", lone)
    });
    assert_eq!(first_signal(&drained, Signal::Term), 8_150);
    assert!(said(&drained, "too little learned to trust it"));

    // A wait past u32::MAX ms is u32::MAX (saturated); the deadline ends it.
    let drained = conform(&Scenario {
        config: &[("long-lived-wait", "4294967295ms")],
        ..scenario("long-lived, endless wait", websockets())
    });
    assert_eq!(first_signal(&drained, Signal::Term), 23_000);
    let waited = "2 long-lived connection(s) waited for up to 4294967";
    assert!(said(&drained, waited), "{:?}", reasons(&drained));
    assert!(why_signalled(&drained).starts_with("deadline near"));
}
