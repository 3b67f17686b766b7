//! The drain with real traffic: the signal waits for the evidence, and for
//! work in flight.

use std::time::Duration;

use crate::supervision::as_strs;
use lameduck_core::record::Event;
use lameduck_core::{Next, Signal};

use crate::util::{Agent, App, get, get_body, policy_loaded, show, timeline};

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn a_slow_request_in_flight_holds_term_until_it_completes() {
    let app = App::new("slow-request");
    let mut agent = Agent::start(
        &[
            "--grace-period",
            "10s",
            "--policy-config",
            "min-drain=1s,quiet-max=1s",
        ],
        &as_strs(&app.command(&["--on-term", "drain"])),
    );
    let port = app.port();
    agent.wait_for("the policy", 10 * SECOND, policy_loaded);
    let slow = std::thread::spawn(move || get(port, "/slow?ms=2500"));
    std::thread::sleep(Duration::from_millis(300));
    agent.signal(libc::SIGTERM);
    let (status, completed) = slow.join().unwrap().expect("the slow request was served");
    assert_eq!(status, 200);
    assert_eq!(agent.wait(10 * SECOND).0, 0);
    let term = app
        .log()
        .into_iter()
        .find(|(_, l)| l == "SIGTERM")
        .expect("the app got TERM")
        .0;
    // TERM only after the request completed, and within a recheck (100 ms)
    // of it, give or take a sampling.
    assert!(
        term > completed,
        "TERM came {:.3}s before the response",
        completed - term
    );
    assert!(
        term - completed < 0.5,
        "TERM came {:.3}s after the response",
        term - completed
    );
    // Decisions that held the drain (no signal, look again) while the
    // probe saw the request in flight.
    let records = agent.records();
    let held = records
        .iter()
        .filter(|e| match &e.event {
            Event::Decision {
                snapshot, decision, ..
            } => {
                decision.signal.is_none()
                    && matches!(decision.next, Next::Recheck(_))
                    && snapshot
                        .connections("connections")
                        .is_some_and(|c| c.in_flight == 1)
            }
            _ => false,
        })
        .count();
    assert!(
        held >= 10,
        "the drain held for the request: {held} decisions\n{}",
        show(&records)
    );
}

/// `on-signal` is asked with the probes as last learned while serving, not
/// with an empty snapshot.
#[test]
fn on_signal_sees_the_connections_of_the_moment() {
    let app = App::new("on-signal-probes");
    let mut agent = Agent::start(
        &["--admin", "127.0.0.1:0", "--grace-period", "5s"],
        &as_strs(&app.command(&[])),
    );
    let admin = agent.admin_port();
    let port = app.port();
    agent.wait_for("the policy", 10 * SECOND, policy_loaded);
    // An idle keep-alive connection: established, in the kernel's table.
    let _open = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Learning samples every 500 ms while serving.
    std::thread::sleep(Duration::from_millis(1200));
    agent.signal(libc::SIGUSR1);
    app.wait_for("SIGUSR1", 5 * SECOND);
    let (_, body) = get_body(admin, "/status").unwrap();
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let timeline = timeline(&status);
    let snapshot = timeline
        .iter()
        .find_map(|e| match &e.event {
            Event::Signal {
                signal: Signal::Usr1,
                snapshot,
                ..
            } => Some(snapshot),
            _ => None,
        })
        .expect("the USR1 is in the timeline");
    assert!(
        snapshot
            .connections("connections")
            .is_some_and(|c| c.open >= 1),
        "on-signal saw the open connection: {snapshot:#?}"
    );
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait(10 * SECOND).0, 0);
}

#[test]
fn the_jobs_policy_stops_work_then_waits_for_the_idle_probe() {
    let app = App::new("jobs");
    let port = free_port();
    let config = app.dir.join("lameduck.yaml");
    std::fs::write(
        &config,
        format!("probes:\n  - name: idle\n    http: {{ url: 'http://127.0.0.1:{port}/idle' }}\n"),
    )
    .unwrap();
    let port_arg = port.to_string();
    let mut agent = Agent::start(
        &[
            "--config",
            config.to_str().unwrap(),
            "--policy",
            "builtin:jobs",
            "--grace-period",
            "10s",
        ],
        &as_strs(&app.command(&["--jobs", "1500", "--port", &port_arg])),
    );
    app.wait_for("job-start", 10 * SECOND);
    agent.wait_for("the policy", 10 * SECOND, policy_loaded);
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait(15 * SECOND).0, 0);
    let log: Vec<String> = app.log().into_iter().map(|(_, l)| l).collect();
    let at = |line: &str| {
        log.iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("no {line}: {log:?}"))
    };
    let usr1 = at("SIGUSR1");
    let term = at("SIGTERM");
    assert!(usr1 < term, "{log:?}");
    assert_eq!(
        log[term - 1],
        "job-done",
        "TERM came only once the job was done: {log:?}"
    );
    assert!(
        !log[usr1..].contains(&"job-start".to_string()),
        "no new job after USR1: {log:?}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A 5 s drain asks the policy every 100 ms. In words, the decisions that
/// say the same thing but for their figures are folded ("… again ×N over
/// T"): a person reads a dozen lines at most. The JSON log, for machines,
/// keeps every decision.
#[test]
fn a_five_second_drain_logs_a_dozen_lines_in_text_and_every_decision_in_json() {
    // A fresh app has taught nothing: the built-in drain holds it for
    // min-drain, "quiet for N ms, but too little learned to trust it".
    let config = ["--grace-period", "20s", "--policy-config", "min-drain=5s"];

    // This half reads what a person reads: the text log's lines, words and
    // all.
    let app = App::new("log-lines-text");
    let mut agent = Agent::start(
        &[&["--log-format", "text"], &config[..]].concat(),
        &as_strs(&app.command(&["--on-term", "drain"])),
    );
    app.port();
    let deadline = std::time::Instant::now() + 10 * SECOND;
    while !agent.raw().iter().any(|l| l.contains("event=\"policy\"")) {
        assert!(
            std::time::Instant::now() < deadline,
            "no policy: {:#?}",
            agent.raw()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = agent.raw().len();
    let term = std::time::Instant::now();
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait(15 * SECOND).0, 0);
    let drained = term.elapsed();
    let lines = agent.raw().split_off(before);
    assert!(drained >= 5 * SECOND, "a drain of {drained:?}: {lines:#?}");
    assert!(
        lines
            .first()
            .is_some_and(|l| l.contains("event=\"signal\"")),
        "the TERM is the first line after it: {lines:#?}"
    );
    assert!(
        lines.len() <= 12,
        "{} lines for a {drained:?} drain: {lines:#?}",
        lines.len()
    );
    // "… again ×N over T": the decisions folded, most of the drain's in one.
    let folded = lines
        .iter()
        .filter_map(|l| {
            l.split_once("… again ×")?
                .1
                .split_once(" over ")?
                .0
                .parse()
                .ok()
        })
        .max();
    assert!(
        folded.is_some_and(|n: u32| n >= 30),
        "no fold of the drain's decisions: {lines:#?}"
    );

    // The same drain in JSON: every decision, each a record.
    let app = App::new("log-lines-json");
    let mut agent = Agent::start(&config, &as_strs(&app.command(&["--on-term", "drain"])));
    app.port();
    agent.wait_for("the policy", 10 * SECOND, policy_loaded);
    let term = std::time::Instant::now();
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait(15 * SECOND).0, 0);
    let drained = term.elapsed();
    let records = agent.records();
    let decisions = records
        .iter()
        .filter(|e| matches!(e.event, Event::Decision { .. }))
        .count();
    assert!(drained >= 5 * SECOND, "a drain of {drained:?}");
    assert!(
        decisions >= 40,
        "{decisions} decisions logged in a {drained:?} drain:\n{}",
        show(&records)
    );
}
