//! `lameduck sidecar`: the agent beside an app it did not start, as a native
//! sidecar in the app's pod. The test plays the kubelet: the app's preStop
//! hook calls `/prestop`, then the app gets TERM, then the sidecar does.

use std::process::{Child, Command};
use std::time::Duration;

use lameduck_core::Signal;
use lameduck_core::record::Event;

use crate::util::{Agent, App, get, get_body, policy_loaded, show};

const SECOND: Duration = Duration::from_secs(1);

/// The app, started by the test (the kubelet), not by lameduck.
struct Sibling {
    app: App,
    child: Child,
}

impl Sibling {
    fn start(name: &str) -> Sibling {
        let app = App::new(name);
        let command = app.command(&["--on-term", "exit"]);
        let child = Command::new(&command[0])
            .args(&command[1..])
            .spawn()
            .expect("start the app");
        Sibling { app, child }
    }

    /// The kubelet's TERM to the app, and its exit.
    fn stop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap();
    }
}

impl Drop for Sibling {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sidecar watching `port`, with a grace period of `grace`, once its
/// policy is in: (sidecar, admin port).
fn sidecar(app: &App, port: u16, grace: &str) -> (Agent, u16) {
    let config = app.dir.join("lameduck.yaml");
    let probes =
        format!("probes:\n  - name: connections\n    connections: {{ ports: [{port}] }}\n");
    std::fs::write(&config, probes).unwrap();
    let agent = Agent::sidecar(&[
        "--admin",
        "127.0.0.1:0",
        "--grace-period",
        grace,
        "--policy-config",
        "min-drain=1s,quiet-max=1s",
        "--config",
        config.to_str().unwrap(),
    ]);
    let admin = agent.admin_port();
    agent.wait_for("the policy", 10 * SECOND, policy_loaded);
    (agent, admin)
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn the_prestop_hook_holds_until_the_request_in_flight_is_answered() {
    let mut app = Sibling::start("sidecar-app");
    let port = app.app.port();
    let (mut agent, admin) = sidecar(&app.app, port, "10s");
    assert_eq!(get_body(admin, "/readyz").unwrap().0, 200);

    let slow = std::thread::spawn(move || get(port, "/slow?ms=2000"));
    std::thread::sleep(Duration::from_millis(300));
    // The kubelet runs the app's preStop hook: it holds.
    let hook = std::thread::spawn(move || (get_body(admin, "/prestop"), now()));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        get_body(admin, "/readyz").unwrap().0,
        503,
        "not ready once draining"
    );
    let (status, answered) = slow.join().unwrap().expect("the slow request was served");
    assert_eq!(status, 200);
    let (reply, released) = hook.join().unwrap();
    let (status, body) = reply.unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with("the app may have TERM"), "{body}");
    assert!(
        released >= answered,
        "/prestop released before the request was answered"
    );
    assert!(
        released - answered < 1.0,
        "released {:.3}s late",
        released - answered
    );

    // Then the kubelet TERMs the app, and once it is gone, the sidecar.
    app.stop();
    let stopped = std::time::Instant::now();
    agent.signal(libc::SIGTERM);
    let (status, _) = agent.wait(5 * SECOND);
    assert_eq!(status, 0);
    assert!(stopped.elapsed() < SECOND, "the sidecar stopped at once");
    // In sidecar mode, "sent" is the hook released for the app's TERM.
    let records = agent.records();
    assert!(
        records.iter().any(|e| matches!(
            e.event,
            Event::Sent {
                signal: Signal::Term,
                ..
            }
        )),
        "{}",
        show(&records)
    );
}

/// A sidecar that is an ordinary container gets its TERM beside the app's
/// preStop: it keeps the hook's promise, then stops.
#[test]
fn a_term_while_the_hook_holds_waits_for_the_release() {
    let app = Sibling::start("sidecar-term-early");
    let port = app.app.port();
    let (mut agent, admin) = sidecar(&app.app, port, "10s");
    let slow = std::thread::spawn(move || get(port, "/slow?ms=1500"));
    std::thread::sleep(Duration::from_millis(200));
    let hook = std::thread::spawn(move || (get_body(admin, "/prestop"), now()));
    std::thread::sleep(Duration::from_millis(200));
    agent.signal(libc::SIGTERM);
    let (_, answered) = slow.join().unwrap().unwrap();
    let (reply, released) = hook.join().unwrap();
    assert_eq!(reply.unwrap().0, 200);
    assert!(released >= answered);
    assert_eq!(agent.wait(5 * SECOND).0, 0);
}

/// The kubelet's clock starts with the preStop hook: if the evidence never
/// allows it, the hook is released at the agent's deadline, before the
/// grace period ends, and a sidecar never KILLs.
#[test]
fn the_deadline_releases_the_hook_and_nothing_is_killed() {
    let mut app = Sibling::start("sidecar-deadline");
    let port = app.app.port();
    let (mut agent, admin) = sidecar(&app.app, port, "4s");
    let _endless = std::thread::spawn(move || get(port, "/slow?ms=30000"));
    std::thread::sleep(Duration::from_millis(200));
    let began = std::time::Instant::now();
    let (status, body) = get_body(admin, "/prestop").unwrap();
    assert_eq!(status, 200);
    let held = began.elapsed();
    assert!(held < 4 * SECOND, "held {held:?}, past the grace period");
    assert!(body.contains("deadline") || body.contains("TERM"), "{body}");
    app.stop();
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait(5 * SECOND).0, 0);
    let records = agent.records();
    assert!(
        !records
            .iter()
            .any(|e| matches!(e.event, Event::Killed { .. })),
        "a sidecar kills nothing:\n{}",
        show(&records)
    );
}
