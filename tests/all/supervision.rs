//! PID 1 duties: signals forwarded, zombies reaped, exit statuses kept, the
//! deadline enforced.

use std::time::Duration;

use lameduck_core::record::Event;
use lameduck_core::{Signal, SignalAction};

use crate::util::{Agent, App, policy_loaded, scratch, show};

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn usr1_and_hup_are_forwarded_to_the_app() {
    let app = App::new("forward");
    let mut agent = Agent::start(&["--grace-period", "5s"], &as_strs(&app.command(&[])));
    app.port();
    agent.wait_for("the policy", 10 * SECOND, policy_loaded);
    agent.signal(libc::SIGUSR1);
    app.wait_for("SIGUSR1", 5 * SECOND);
    agent.signal(libc::SIGHUP);
    app.wait_for("SIGHUP", 5 * SECOND);
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait(10 * SECOND).0, 0);
    let answered: Vec<(Signal, SignalAction)> = agent
        .records()
        .into_iter()
        .filter_map(|e| match e.event {
            Event::Signal { signal, action, .. } => Some((signal, action)),
            _ => None,
        })
        .collect();
    assert_eq!(
        answered[..2],
        [
            (Signal::Usr1, SignalAction::Forward),
            (Signal::Hup, SignalAction::Forward)
        ]
    );
}

#[test]
fn orphaned_grandchildren_are_reaped() {
    // The app's subshell leaves a `sleep` behind: an orphan the agent adopts.
    let mut agent = Agent::start(&[], &["sh", "-c", "(sleep 0.5 &); sleep 2"]);
    std::thread::sleep(Duration::from_millis(250));
    let adopted = children(agent.pid());
    assert!(
        adopted.iter().any(|(_, comm, _)| comm == "sleep"),
        "the orphan was adopted: {adopted:?}"
    );
    std::thread::sleep(Duration::from_millis(750));
    let zombies: Vec<_> = children(agent.pid())
        .into_iter()
        .filter(|(_, _, state)| *state == 'Z')
        .collect();
    assert!(zombies.is_empty(), "zombies left: {zombies:?}");
    assert_eq!(agent.wait(10 * SECOND).0, 0);
}

/// The exit-status rules of the README, one by one.
#[test]
fn exit_statuses_follow_the_table() {
    let dir = scratch("status");
    let not_executable = dir.join("not-executable");
    std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
    let cases: [(&[&str], i32); 6] = [
        (&["sh", "-c", "exit 0"], 0),
        (&["sh", "-c", "exit 3"], 3),
        (&["sh", "-c", "kill -TERM $$"], 128 + libc::SIGTERM),
        (&["sh", "-c", "kill -KILL $$"], 128 + libc::SIGKILL),
        (&["/no/such/command"], 127),
        (&[not_executable.to_str().unwrap()], 126),
    ];
    for (command, expected) in cases {
        let mut agent = Agent::start(&[], command);
        assert_eq!(agent.wait(10 * SECOND).0, expected, "{command:?}");
    }
}

#[test]
fn bad_config_or_policy_exits_2_before_the_app_starts() {
    let dir = scratch("bad-input");
    let marker = dir.join("started");
    let touch = ["touch", marker.to_str().unwrap()];
    let bad_config = dir.join("bad.yaml");
    std::fs::write(&bad_config, "grace_period: 30s\nprobes: nope\n").unwrap();
    let garbage = dir.join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm\x0d\0\x01\0 not really").unwrap();
    let cases: [&[&str]; 4] = [
        &["--config", bad_config.to_str().unwrap()],
        &["--policy", garbage.to_str().unwrap()],
        &["--policy", "builtin:nope"],
        &["--grace-period", "soon"],
    ];
    for args in cases {
        let mut agent = Agent::start(args, &touch);
        assert_eq!(agent.wait(10 * SECOND).0, 2, "{args:?}");
        assert!(!marker.exists(), "the app started despite {args:?}");
    }
}

#[test]
fn an_app_ignoring_term_is_killed_before_the_grace_period_ends() {
    let app = App::new("ignore-term");
    let mut agent = Agent::start(
        &["--grace-period", "4s", "--safety-margin", "2s"],
        &as_strs(&app.command(&["--on-term", "ignore"])),
    );
    app.port();
    agent.wait_for("the policy", 10 * SECOND, policy_loaded);
    let term = std::time::Instant::now();
    agent.signal(libc::SIGTERM);
    let (status, _) = agent.wait(10 * SECOND);
    let took = term.elapsed();
    assert_eq!(status, 128 + libc::SIGKILL);
    assert!(
        took < 4 * SECOND,
        "lameduck outlived the grace period: {took:?}"
    );
    app.wait_for("SIGTERM", SECOND);
    let records = agent.records();
    type Expected = (&'static str, fn(&Event) -> bool);
    let expected: [Expected; 5] = [
        ("drain", |e| matches!(e, Event::DrainBegan { .. })),
        ("TERM sent", |e| {
            matches!(
                e,
                Event::Sent {
                    signal: Signal::Term,
                    ..
                }
            )
        }),
        ("deadline", |e| matches!(e, Event::Deadline { .. })),
        ("killed", |e| matches!(e, Event::Killed { .. })),
        (
            "exit by KILL",
            |e| matches!(e, Event::Exited { status } if *status == 128 + libc::SIGKILL),
        ),
    ];
    for (what, happened) in expected {
        assert!(
            records.iter().any(|e| happened(&e.event)),
            "no {what}:\n{}",
            show(&records)
        );
    }
}

#[test]
fn a_third_int_kills_at_once() {
    let app = App::new("third-int");
    let mut agent = Agent::start(
        &["--grace-period", "30s"],
        &as_strs(&app.command(&["--on-term", "ignore"])),
    );
    app.port();
    agent.wait_for("the policy", 10 * SECOND, policy_loaded);
    for _ in 0..3 {
        agent.signal(libc::SIGINT);
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _) = agent.wait(5 * SECOND);
    assert_eq!(status, 128 + libc::SIGKILL);
}

#[test]
fn a_repeated_term_does_not_restart_the_drain() {
    let app = App::new("repeat-term");
    let mut agent = Agent::start(
        &["--grace-period", "4s", "--safety-margin", "2s"],
        &as_strs(&app.command(&["--on-term", "ignore"])),
    );
    app.port();
    agent.wait_for("the policy", 10 * SECOND, policy_loaded);
    agent.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(1_500));
    agent.signal(libc::SIGTERM);
    agent.wait(10 * SECOND);
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
    assert!(
        records.iter().any(|e| matches!(
            e.event,
            Event::Signal {
                signal: Signal::Term,
                action: SignalAction::Drain,
                drain_goes_on: true,
                ..
            }
        )),
        "{}",
        show(&records)
    );
}

#[test]
fn an_app_exiting_on_its_own_ends_the_agent_with_its_status() {
    let mut agent = Agent::start(&[], &["sh", "-c", "sleep 0.3; exit 7"]);
    assert_eq!(agent.wait(10 * SECOND).0, 7);
    let records = agent.records();
    assert!(
        records
            .iter()
            .any(|e| matches!(e.event, Event::Exited { status: 7 })),
        "{}",
        show(&records)
    );
}

/// (pid, command name, state) of every process whose parent is `parent`.
fn children(parent: i32) -> Vec<(i32, String, char)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: i32 = rest.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if ppid == parent {
            found.push((pid, comm, state));
        }
    }
    found
}

pub fn as_strs(command: &[String]) -> Vec<&str> {
    command.iter().map(String::as_str).collect()
}
