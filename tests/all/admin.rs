//! The admin server over real HTTP: readiness, `/prestop`, `/metrics`,
//! `/status`, and no port at all when it is off.

use std::time::Duration;

use crate::supervision::as_strs;
use lameduck_core::Signal;
use lameduck_core::record::Event;

use crate::util::{
    Agent, App, get_body, policy_loaded, request, scratch, serving, show, status_kib, timeline,
};

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn readiness_flips_when_the_drain_begins() {
    let app = App::new("readyz");
    let (mut agent, admin, _) = serving(&app, &["--grace-period", "5s"], &[]);
    assert_eq!(get_body(admin, "/healthz").unwrap().0, 200);
    assert_eq!(get_body(admin, "/readyz").unwrap().0, 200);
    agent.signal(libc::SIGTERM);
    agent.wait_for("the drain", 5 * SECOND, |r| {
        r.iter()
            .any(|e| matches!(e.event, Event::DrainBegan { .. }))
    });
    assert_eq!(
        get_body(admin, "/readyz").unwrap(),
        (503, "draining\n".to_string())
    );
    let (status, body) = get_body(admin, "/status").unwrap();
    assert_eq!(status, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["status"]["phase"], "draining");
    assert_eq!(status["status"]["policy"]["source"], "builtin:drain");
    assert!(
        timeline(&status)
            .iter()
            .any(|e| matches!(e.event, Event::DrainBegan { .. }))
    );
    assert_eq!(agent.wait(10 * SECOND).0, 0);
}

#[test]
fn prestop_holds_until_the_app_may_be_signalled() {
    let app = App::new("prestop");
    let config = ["--grace-period", "10s", "--policy-config", "min-drain=1s"];
    let (mut agent, admin, port) = serving(&app, &config, &[]);
    let slow = std::thread::spawn(move || crate::util::get(port, "/slow?ms=2000"));
    std::thread::sleep(Duration::from_millis(300));
    // The kubelet's preStop hook, and a second call (hooks may be retried).
    let hooks: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || (get_body(admin, "/prestop"), now())))
        .collect();
    let (status, completed) = slow.join().unwrap().unwrap();
    assert_eq!(status, 200);
    for hook in hooks {
        let (reply, released) = hook.join().unwrap();
        let (status, body) = reply.unwrap();
        assert_eq!(status, 200);
        assert!(body.starts_with("TERM sent: no request for"), "{body}");
        assert!(
            released >= completed,
            "/prestop released before the request completed"
        );
    }
    // Then the kubelet sends TERM: the drain goes on, the app has exited.
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait(10 * SECOND).0, 0);
    let records = agent.records();
    assert_eq!(
        records
            .iter()
            .filter(|e| matches!(e.event, Event::DrainBegan { .. }))
            .count(),
        1,
        "{}",
        show(&records)
    );
}

#[test]
fn metrics_parse_and_count_what_happened() {
    let app = App::new("metrics");
    let mut agent = Agent::start(
        &[
            "--admin",
            "127.0.0.1:0",
            "--policy",
            "builtin:delay",
            "--policy-config",
            "delay=1s",
            "--grace-period",
            "8s",
        ],
        &as_strs(&app.command(&["--on-term", "ignore"])),
    );
    let admin = agent.admin_port();
    app.port();
    agent.wait_for("the policy", 10 * SECOND, policy_loaded);
    agent.signal(libc::SIGUSR1);
    agent.signal(libc::SIGTERM);
    agent.wait_for("TERM sent", 5 * SECOND, |r| {
        r.iter().any(|e| {
            matches!(
                e.event,
                Event::Sent {
                    signal: Signal::Term,
                    ..
                }
            )
        })
    });
    let (status, text) = get_body(admin, "/metrics").unwrap();
    assert_eq!(status, 200);
    let samples = parse_openmetrics(&text);
    let value = |name: &str, labels: &str| -> f64 {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l == labels)
            .unwrap_or_else(|| panic!("no {name}{{{labels}}} in {samples:?}"))
            .2
    };
    assert_eq!(value("lameduck_phase", "phase=draining"), 1.0);
    assert_eq!(value("lameduck_phase", "phase=serving"), 0.0);
    assert_eq!(
        value("lameduck_decisions_total", "reason=fixed delay of N ms"),
        1.0,
        "{}",
        show(&agent.records())
    );
    assert_eq!(
        value(
            "lameduck_decisions_total",
            "reason=fixed delay of N ms is over"
        ),
        1.0
    );
    assert_eq!(
        value("lameduck_policy_reloads_total", "result=ok"),
        1.0,
        "{}",
        show(&agent.records())
    );
    assert_eq!(
        value("lameduck_policy_call_duration_seconds_count", "call=decide"),
        2.0
    );
    assert_eq!(
        value(
            "lameduck_policy_call_duration_seconds_count",
            "call=on-signal"
        ),
        2.0
    );
    assert!(value("lameduck_drain_duration_seconds", "") >= 1.0);
    agent.wait(15 * SECOND);
}

#[test]
fn with_the_admin_server_off_no_port_is_open() {
    for (admin, sockets) in [("off", 0), ("127.0.0.1:0", 1)] {
        let mut agent = Agent::start(&["--admin", admin], &["sleep", "1"]);
        std::thread::sleep(Duration::from_millis(300));
        let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", agent.pid()))
            .unwrap()
            .flatten()
            .filter_map(|fd| {
                let target = std::fs::read_link(fd.path()).ok()?;
                let target = target.to_string_lossy();
                Some(
                    target
                        .strip_prefix("socket:[")?
                        .strip_suffix(']')?
                        .to_string(),
                )
            })
            .collect();
        // Its TCP listeners (a netlink socket for the probes is no port).
        let open = ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .flat_map(|t| {
                std::fs::read_to_string(t)
                    .unwrap_or_default()
                    .lines()
                    .skip(1)
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .filter(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.get(3) == Some(&"0A")
                    && fields.get(9).is_some_and(|i| inodes.iter().any(|n| n == i))
            })
            .count();
        assert_eq!(open, sockets, "--admin {admin}");
        assert_eq!(agent.wait(10 * SECOND).0, 0);
    }
}

#[test]
fn config_errors_carry_line_and_column() {
    let dir = scratch("config-errors");
    let config = dir.join("lameduck.yaml");
    std::fs::write(&config, "grace_period: 30s\nprobes:\n  - name: idle\n    http: { url: 'http://127.0.0.1/' , timout: 1s }\n").unwrap();
    let out = std::process::Command::new(crate::util::lameduck())
        .args(["check", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("{}:4:", config.display());
    assert!(
        stderr.contains(&expected) && stderr.contains("probes[0].http.timout"),
        "{stderr}"
    );
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// (metric name, labels as `k=v,k=v`, value), by Python's prometheus_client
/// OpenMetrics parser — a real parser, strict about the format.
fn parse_openmetrics(text: &str) -> Vec<(String, String, f64)> {
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f"{s.name}\t{labels}\t{s.value}")
"#;
    use std::io::Write;
    let mut python = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    python
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "not valid OpenMetrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut parts = l.split('\t');
            let (name, labels, value) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            (name.to_string(), labels.to_string(), value.parse().unwrap())
        })
        .collect()
}

/// With `admin.prestop_auth`, a `/prestop` without the token drains nothing;
/// the kubelet's hook sends it as an `httpHeaders` entry.
#[test]
fn prestop_auth_refuses_a_call_without_the_token() {
    let app = App::new("prestop-auth");
    let (mut agent, admin, _) = serving(
        &app,
        &["--grace-period", "5s", "--prestop-auth", "true"],
        &[("LAMEDUCK_ADMIN_TOKEN", "s3cret")],
    );
    assert_eq!(get_body(admin, "/prestop").unwrap().0, 401);
    let wrong = request(admin, "GET", "/prestop", Some("guess"), b"");
    assert_eq!(wrong.unwrap().0, 401);
    assert_eq!(get_body(admin, "/readyz").unwrap().0, 200, "no drain began");
    let (status, _) = request(admin, "GET", "/prestop", Some("s3cret"), b"").unwrap();
    assert_eq!(status, 200);
    assert_eq!(get_body(admin, "/readyz").unwrap().0, 503);
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait(10 * SECOND).0, 0);
}

/// The agent's resident memory now, in KiB.
fn rss_kib(pid: i32) -> u64 {
    status_kib(&pid.to_string(), "VmRSS:").unwrap_or(0)
}

/// 3,000 clients that ask for `/status` and the picture late in a drain and
/// never read: the agent's memory stays bounded (it grew by 500 MB before
/// the admin server was bounded in total), `/healthz` answers all along,
/// and the drain ends when it would have.
#[test]
fn a_flood_of_clients_that_never_read_leaves_memory_healthz_and_the_deadline_alone() {
    // SAFETY: setrlimit on this process, with a valid struct.
    unsafe {
        let limit = libc::rlimit {
            rlim_cur: 8_192,
            rlim_max: 8_192,
        };
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    let app = App::new("admin-flood");
    let (mut agent, admin, _) = serving(
        &app,
        &["--grace-period", "12s", "--policy-config", "min-drain=6s"],
        &[],
    );
    let pid = agent.pid();
    let before = rss_kib(pid);
    agent.signal(libc::SIGTERM);
    let began = std::time::Instant::now();
    agent.wait_for("the drain", 5 * SECOND, |r| {
        r.iter()
            .any(|e| matches!(e.event, Event::DrainBegan { .. }))
    });
    // A timeline worth reading first: a second of decisions.
    std::thread::sleep(SECOND);
    let flood = std::thread::spawn(move || {
        let mut held = Vec::new();
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], admin));
        for i in 0..3_000 {
            let path = if i % 2 == 0 {
                "/status"
            } else {
                "/timeline.svg"
            };
            match std::net::TcpStream::connect_timeout(&address, SECOND) {
                Ok(mut conn) => {
                    use std::io::Write;
                    let _ = write!(conn, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
                    held.push(conn);
                }
                // The agent is gone: the drain is over.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                Err(_) => {}
            }
        }
        // Held, unread, until the drain is over.
        std::thread::sleep(6 * SECOND);
        held.len()
    });
    let (mut peak, mut slowest, mut failed, mut asked) = (before, Duration::ZERO, 0, 0);
    while began.elapsed() < 5 * SECOND {
        let asking = std::time::Instant::now();
        match get_body(admin, "/healthz") {
            Ok((200, _)) => {}
            _ => failed += 1,
        }
        asked += 1;
        slowest = slowest.max(asking.elapsed());
        peak = peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _) = agent.wait(15 * SECOND);
    let drained = began.elapsed();
    let opened = flood.join().unwrap();
    eprintln!(
        "flood: {opened} connections; /healthz: {failed} of {asked} failed, {slowest:?} at worst; memory {before} → {peak} KiB"
    );
    assert!(
        opened > 256,
        "the flood opened {opened} connections, no more than the server holds"
    );
    assert_eq!(status, 0);
    assert!(
        drained < 12 * SECOND,
        "the drain took {drained:?}, past the grace period"
    );
    // How long it took is printed, not judged: the machine is shared.
    assert_eq!(failed, 0, "/healthz failed {failed} times of {asked}");
    assert!(
        peak < before + 64 * 1024,
        "memory grew from {before} KiB to {peak} KiB"
    );
}
