//! The drain with real traffic: the signal waits for the evidence, and for
//! work in flight.

use std::time::Duration;

use crate::supervision::as_strs;
use crate::util::{Agent, App, get, get_body};

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
    agent.wait_for_event("policy", 10 * SECOND);
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
    let held = agent
        .events()
        .into_iter()
        .filter(|(e, m)| e == "decision" && m.contains("1 request(s) in flight"))
        .count();
    assert!(
        held >= 10,
        "the drain held for the request: {held} decisions"
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
    agent.wait_for_event("policy", 10 * SECOND);
    // An idle keep-alive connection: established, in the kernel's table.
    let _open = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Learning samples every 500 ms while serving.
    std::thread::sleep(Duration::from_millis(1200));
    agent.signal(libc::SIGUSR1);
    app.wait_for("SIGUSR1", 5 * SECOND);
    let (_, body) = get_body(admin, "/status").unwrap();
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let signal = status["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "signal")
        .expect("the USR1 is in the timeline")
        .clone();
    let open = &signal["data"]["snapshot"]["probes"][0]["value"]["connections"]["open"];
    assert!(
        open.as_u64().is_some_and(|n| n >= 1),
        "on-signal saw the open connection: {signal:#}"
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
    agent.wait_for_event("policy", 10 * SECOND);
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
