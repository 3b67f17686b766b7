//! Answers that are not one short exchange (issue 20), through the real
//! agent on real sockets: a streamed answer holds TERM; calls multiplexed
//! on one connection hold it while the sockets cannot tell, and the app's
//! own count tells it sooner; a long-lived stream is waited for a bounded
//! time. The app (`tests/apps/streams.py`) writes down at TERM what it was
//! still answering (`cut N`): the judge, not the client.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::util::{Agent, App, root};

const SECOND: Duration = Duration::from_secs(1);

/// The streams app in `app`'s directory, under lameduck with `args`.
fn start(app: &App, args: &[&str]) -> Agent {
    let command = [
        "python3".to_string(),
        root().join("tests/apps/streams.py").display().to_string(),
        "--log".into(),
        app.dir.join("app.log").display().to_string(),
        "--ready".into(),
        app.dir.join("port").display().to_string(),
    ];
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let agent = Agent::start(args, &command);
    app.port();
    // The policy loads beside the app (precompiled: milliseconds), and
    // learning samples begin.
    std::thread::sleep(SECOND);
    agent
}

fn calls_port(app: &App) -> u16 {
    std::fs::read_to_string(app.dir.join("port.calls"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// When the app got TERM (wall-clock seconds), and what it was still
/// answering then.
fn term(app: &App) -> (f64, u32) {
    let log = app.log();
    let at = log
        .iter()
        .find(|(_, l)| l == "SIGTERM")
        .unwrap_or_else(|| panic!("the app got no TERM: {log:?}"))
        .0;
    let cut = log
        .iter()
        .find_map(|(_, l)| l.strip_prefix("cut ")?.parse().ok())
        .unwrap();
    (at, cut)
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Reads a whole chunked answer; returns when it ended (wall clock).
fn stream(port: u16, chunks: u32, every_ms: u32) -> f64 {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "GET /stream?chunks={chunks}&every={every_ms} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = Vec::new();
    conn.read_to_end(&mut body).unwrap();
    assert!(body.ends_with(b"0\r\n\r\n"), "the answer was cut");
    now()
}

#[test]
fn a_streamed_answer_holds_term_until_it_ends() {
    let app = App::new("streamed");
    let args = [
        "--grace-period",
        "15s",
        "--policy-config",
        "min-drain=1s,quiet-max=1s",
    ];
    let mut agent = start(&app, &args);
    let port = app.port();
    let client = std::thread::spawn(move || stream(port, 30, 100));
    std::thread::sleep(Duration::from_millis(500));
    agent.signal(libc::SIGTERM);
    let ended = client.join().unwrap();
    agent.wait(15 * SECOND);
    let (at, cut) = term(&app);
    assert_eq!(cut, 0, "TERM came while the answer streamed");
    assert!(
        at > ended,
        "TERM {:.3}s before the stream ended",
        ended - at
    );
    assert!(
        at - ended < 0.6,
        "TERM {:.3}s after the stream ended",
        at - ended
    );
}

/// Two calls on one connection, the way HTTP/2 multiplexes them: a slow
/// one, and while it is owed a quicker one, answered first. `overlap` is
/// how long both are owed. Returns when the slow one was answered (wall
/// clock).
fn overlapping_calls(conn: &mut TcpStream, slow_ms: u64, overlap_ms: u64) -> f64 {
    let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    conn.write_all(format!("CALL slow {slow_ms}\n").as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    conn.write_all(format!("CALL quick {overlap_ms}\n").as_bytes())
        .unwrap();
    for want in ["DONE quick", "DONE slow"] {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line.trim_end(), want, "the connection ended early");
    }
    now()
}

/// TERM 1.2 s into a slow call: returns (TERM − the slow call's answer,
/// the answers cut). Before it, one exchange of the same shape with a
/// second of overlap, as steady HTTP/2 traffic shows the agent many: the
/// agent learns from what it sees, and a sample lands in a second.
fn multiplexed(name: &str, with_gauge: bool) -> (f64, u32) {
    let app = App::new(name);
    let config = app.dir.join("lameduck.yaml");
    let args_path = config.display().to_string();
    let mut args = vec!["--grace-period", "15s", "--policy-config"];
    let policy = if with_gauge {
        "min-drain=1s,quiet-max=1s,in-flight-metric=gauge"
    } else {
        "min-drain=1s,quiet-max=1s"
    };
    args.push(policy);
    let gauge;
    if with_gauge {
        // The metrics endpoint is on the app's HTTP port: a fixed one.
        let port = free_port();
        gauge = format!("--port={port}");
        std::fs::write(
            &config,
            format!(
                "probes:\n  - name: connections\n    connections: {{}}\n  - name: gauge\n    metrics: {{ url: 'http://127.0.0.1:{port}/metrics', name: calls_in_progress }}\n"
            ),
        )
        .unwrap();
        args.extend(["--config", &args_path]);
    } else {
        gauge = String::new();
    }
    let command = [
        "python3".to_string(),
        root().join("tests/apps/streams.py").display().to_string(),
        "--log".into(),
        app.dir.join("app.log").display().to_string(),
        "--ready".into(),
        app.dir.join("port").display().to_string(),
    ];
    let mut command: Vec<&str> = command.iter().map(String::as_str).collect();
    if with_gauge {
        command.push(&gauge);
    }
    let mut agent = Agent::start(&args, &command);
    app.port();
    std::thread::sleep(SECOND);
    let port = calls_port(&app);
    let (began, begin) = std::sync::mpsc::channel();
    let client = std::thread::spawn(move || {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
        overlapping_calls(&mut conn, 1_500, 1_000);
        began.send(Instant::now()).unwrap();
        overlapping_calls(&mut conn, 3_000, 300)
    });
    let began = begin.recv().unwrap();
    std::thread::sleep(Duration::from_millis(1_200).saturating_sub(began.elapsed()));
    agent.signal(libc::SIGTERM);
    let answered = client.join().unwrap();
    agent.wait(15 * SECOND);
    let (at, cut) = term(&app);
    (at - answered, cut)
}

#[test]
fn calls_multiplexed_on_one_connection_hold_term_and_the_apps_count_tells_it_sooner() {
    let (alone, cut) = multiplexed("multiplexed", false);
    assert_eq!(cut, 0, "TERM came with a call in progress");
    assert!(
        alone > 0.0,
        "TERM {:.3}s before the slow call was answered",
        -alone
    );
    let (counted, cut) = multiplexed("multiplexed-gauge", true);
    assert_eq!(cut, 0, "TERM came with a call in progress (gauge)");
    assert!(
        counted > 0.0,
        "TERM {:.3}s before the slow call was answered",
        -counted
    );
    assert!(
        counted < 0.6,
        "TERM {counted:.3}s after the slow call was answered"
    );
    // The sockets alone hold it while they cannot tell (5 s after the last
    // call came in); the app's count, only as long as the call lasts.
    assert!(
        counted < alone,
        "the gauge made it slower: {counted:.3} vs {alone:.3}"
    );
}

#[test]
fn a_long_lived_stream_is_waited_for_a_bounded_time_then_the_app_is_signalled() {
    let app = App::new("long-lived");
    let config = app.dir.join("lameduck.yaml");
    std::fs::write(
        &config,
        "probes:\n  - name: connections\n    connections: { long_lived: 1s }\n",
    )
    .unwrap();
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--grace-period",
        "15s",
        "--policy-config",
        "min-drain=1s,quiet-max=1s,long-lived-wait=1500ms",
    ];
    let mut agent = start(&app, &args);
    let port = app.port();
    // An event stream that lives for minutes, older than 1 s at TERM.
    std::thread::spawn(move || {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.write_all(b"GET /stream?chunks=1000&every=200 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut sink = [0; 1024];
        while conn.read(&mut sink).is_ok_and(|n| n > 0) {}
    });
    std::thread::sleep(2 * SECOND);
    let sent = now();
    agent.signal(libc::SIGTERM);
    agent.wait(15 * SECOND);
    let (at, cut) = term(&app);
    // Signalled, with the stream open (the app closes it), after the
    // bounded wait: the quiet period, then `long-lived-wait`.
    assert_eq!(cut, 1, "the stream was open at TERM");
    let waited = at - sent;
    assert!(
        (1.5..4.0).contains(&waited),
        "TERM {waited:.3}s after the kubelet's"
    );
}
