//! Hot swaps: the file watched (a ConfigMap's `..data` swap included), bad
//! policies refused while the last good one keeps deciding, `PUT /policy`.

use std::path::Path;
use std::time::Duration;

use lameduck_core::Signal;
use lameduck_core::record::{Entry, Event};
use lameduck_runtime::builtin;
use lameduck_runtime::sha256_hex;

use crate::supervision::as_strs;
use crate::util::{Agent, App, component, get_body, policy_loaded, scratch, show, variant};

const SECOND: Duration = Duration::from_secs(1);

/// Replaces `path` atomically, as a deploy tool or `mv` does.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn live_sha(admin: u16) -> String {
    let (_, body) = get_body(admin, "/status").unwrap();
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    status["status"]["policy"]["sha256"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits until the agent logs that the policy with `sha` is loaded.
fn wait_for_policy(agent: &Agent, sha: &str) {
    agent.wait_for(&format!("policy {sha}"), 20 * SECOND, |r| {
        r.iter()
            .any(|e| matches!(&e.event, Event::Policy { sha256, .. } if sha256 == sha))
    });
}

/// How many policies were loaded.
fn loads(records: &[Entry]) -> usize {
    records
        .iter()
        .filter(|e| matches!(e.event, Event::Policy { .. }))
        .count()
}

/// How many policies were refused.
fn refusals(records: &[Entry]) -> usize {
    records
        .iter()
        .filter(|e| matches!(e.event, Event::PolicyFailed { .. }))
        .count()
}

#[test]
fn a_swap_while_serving_and_bad_policies_keep_the_last_good_one() {
    let dir = scratch("reload-bad");
    let policy = dir.join("policy.wasm");
    let drain = builtin::get("drain").unwrap();
    std::fs::write(&policy, drain).unwrap();
    let mut agent = Agent::start(
        &[
            "--admin",
            "127.0.0.1:0",
            "--policy",
            policy.to_str().unwrap(),
        ],
        &["sleep", "30"],
    );
    let admin = agent.admin_port();
    wait_for_policy(&agent, &sha256_hex(drain));

    // A good swap while serving.
    let jobs = builtin::get("jobs").unwrap();
    replace(&policy, jobs);
    wait_for_policy(&agent, &sha256_hex(jobs));
    assert_eq!(live_sha(admin), sha256_hex(jobs));

    // Bad ones: each refused, with the file and the reason; jobs stays live.
    let bad: [(&str, Vec<u8>, &str); 4] = [
        (
            "garbage",
            b"\0asm\x0d\0\x01\0 garbage".to_vec(),
            "not a WebAssembly component",
        ),
        (
            "wrong world",
            component("wrong-world.wat"),
            "lameduck:policy@0.3.0",
        ),
        (
            "init error",
            component("init-error.wat"),
            "refusing every configuration",
        ),
        ("init trap", component("init-trap.wat"), "trapped"),
    ];
    for (what, bytes, reason) in bad {
        let refused = refusals(&agent.records());
        replace(&policy, &bytes);
        agent.wait_for(&format!("refusal of the {what}"), 10 * SECOND, |r| {
            refusals(r) > refused
        });
        let (_, body) = get_body(admin, "/status").unwrap();
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        let last = &status["status"]["last_refused"];
        assert_eq!(last["source"], policy.to_str().unwrap(), "{what}");
        assert!(
            last["reason"].as_str().unwrap().contains(reason),
            "{what}: {last}"
        );
        assert_eq!(live_sha(admin), sha256_hex(jobs), "{what} left jobs live");
    }
    let (_, metrics) = get_body(admin, "/metrics").unwrap();
    assert!(
        metrics.contains("lameduck_policy_reloads_total{result=\"failed\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lameduck_policy_reloads_total{result=\"ok\"} 2"),
        "{metrics}"
    );
    agent.kill();
}

#[test]
fn a_swap_in_mid_drain_changes_the_behaviour_but_not_the_deadline() {
    let dir = scratch("reload-mid-drain");
    let policy = dir.join("policy.wasm");
    std::fs::write(&policy, builtin::get("delay").unwrap()).unwrap();
    let app = App::new("reload-mid-drain-app");
    let mut agent = Agent::start(
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--grace-period",
            "20s",
        ],
        &as_strs(&app.command(&["--on-term", "drain"])),
    );
    app.port();
    wait_for_policy(&agent, &sha256_hex(builtin::get("delay").unwrap()));
    agent.signal(libc::SIGTERM);
    agent.wait_for("the drain", 5 * SECOND, |r| {
        r.iter()
            .any(|e| matches!(e.event, Event::DrainBegan { .. }))
    });
    // `delay` would wait 5 s; after 1.5 s, a policy that stops the app at
    // once takes over.
    std::thread::sleep(Duration::from_millis(1_500));
    let swapped = now();
    std::fs::write(dir.join("next.wasm"), component("now.wat")).unwrap();
    std::fs::rename(dir.join("next.wasm"), &policy).unwrap();
    assert_eq!(agent.wait(10 * SECOND).0, 0);
    let term = app
        .log()
        .into_iter()
        .find(|(_, l)| l == "SIGTERM")
        .unwrap()
        .0;
    assert!(
        term > swapped && term - swapped < 2.0,
        "TERM {:.3}s after the swap",
        term - swapped
    );
    // One drain, whose budget (the grace period less the safety margin)
    // the swap did not change.
    let records = agent.records();
    let budgets: Vec<u32> = records
        .iter()
        .filter_map(|e| match e.event {
            Event::DrainBegan { budget_ms, .. } => Some(budget_ms),
            _ => None,
        })
        .collect();
    assert_eq!(budgets, [18_000], "{}", show(&records));
}

#[test]
fn a_configmap_symlink_swap_is_seen() {
    // The kubelet's layout: ..<timestamp>/ holds the files, ..data links to
    // it, and each key is a link through ..data.
    let dir = scratch("reload-configmap");
    let first = dir.join("..2026_11_21_04_00_00.000000001");
    std::fs::create_dir(&first).unwrap();
    std::fs::write(first.join("policy.wasm"), builtin::get("drain").unwrap()).unwrap();
    std::os::unix::fs::symlink("..2026_11_21_04_00_00.000000001", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/policy.wasm", dir.join("policy.wasm")).unwrap();
    let policy = dir.join("policy.wasm");
    let mut agent = Agent::start(&["--policy", policy.to_str().unwrap()], &["sleep", "30"]);
    wait_for_policy(&agent, &sha256_hex(builtin::get("drain").unwrap()));

    // The update, as the kubelet's atomic writer does it.
    let second = dir.join("..2026_11_21_04_05_00.000000002");
    std::fs::create_dir(&second).unwrap();
    std::fs::write(second.join("policy.wasm"), builtin::get("delay").unwrap()).unwrap();
    std::os::unix::fs::symlink("..2026_11_21_04_05_00.000000002", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(&first).unwrap();
    wait_for_policy(&agent, &sha256_hex(builtin::get("delay").unwrap()));
    agent.kill();
}

#[test]
fn five_swaps_in_quick_succession_end_on_the_last() {
    let dir = scratch("reload-five");
    let policy = dir.join("policy.wasm");
    let drain = builtin::get("drain").unwrap();
    std::fs::write(&policy, drain).unwrap();
    let mut agent = Agent::start(
        &[
            "--admin",
            "127.0.0.1:0",
            "--policy",
            policy.to_str().unwrap(),
        ],
        &["sleep", "30"],
    );
    let admin = agent.admin_port();
    wait_for_policy(&agent, &sha256_hex(drain));
    let versions: Vec<Vec<u8>> = (1..=5).map(|n| variant(drain, n)).collect();
    for version in &versions {
        replace(&policy, version);
        std::thread::sleep(Duration::from_millis(5));
    }
    let last = sha256_hex(&versions[4]);
    wait_for_policy(&agent, &last);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(live_sha(admin), last);
    // The same bytes again are a no-op: no new load.
    let before = loads(&agent.records());
    replace(&policy, &versions[4]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(loads(&agent.records()), before);
    assert_eq!(refusals(&agent.records()), 0);
    agent.kill();
}

#[test]
fn put_policy_is_off_by_default_and_needs_the_token() {
    let mut agent = Agent::start(&["--admin", "127.0.0.1:0"], &["sleep", "30"]);
    let admin = agent.admin_port();
    assert_eq!(put(admin, None, b"x").0, 404);
    agent.kill();

    let mut agent = Agent::start_with_env(
        &["--admin", "127.0.0.1:0", "--policy-push", "true"],
        &[("LAMEDUCK_ADMIN_TOKEN", "s3cret")],
        &["sleep", "30"],
    );
    let admin = agent.admin_port();
    wait_for_policy(&agent, &sha256_hex(builtin::get("drain").unwrap()));
    assert_eq!(
        put(admin, Some("wrong"), builtin::get("delay").unwrap()).0,
        401
    );
    let (status, body) = put(admin, Some("s3cret"), b"\0asm\x0d\0\x01\0 garbage");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("not a WebAssembly component"), "{body}");
    let delay = builtin::get("delay").unwrap();
    let (status, body) = put(admin, Some("s3cret"), delay);
    assert_eq!(status, 200, "{body}");
    assert_eq!(live_sha(admin), sha256_hex(delay));
    let (_, status) = get_body(admin, "/status").unwrap();
    assert!(!status.contains("s3cret"), "the token is not shown");
    agent.kill();
}

#[test]
fn the_reload_signal_reloads_and_others_are_still_forwarded() {
    let app = App::new("reload-signal");
    let mut agent = Agent::start(&["--reload-signal", "HUP"], &as_strs(&app.command(&[])));
    app.port();
    agent.wait_for("the policy", 10 * SECOND, policy_loaded);
    agent.signal(libc::SIGHUP);
    agent.signal(libc::SIGUSR1);
    app.wait_for("SIGUSR1", 5 * SECOND);
    agent.wait_for("the reload on HUP", 5 * SECOND, |r| {
        r.iter().any(|e| {
            matches!(
                e.event,
                Event::Reload {
                    signal: Signal::Hup
                }
            )
        })
    });
    assert!(
        !app.log().iter().any(|(_, l)| l == "SIGHUP"),
        "HUP was not forwarded"
    );
    agent.signal(libc::SIGTERM);
    assert_eq!(agent.wait(10 * SECOND).0, 0);
}

/// PUT /policy with an optional bearer token: (status, body).
fn put(port: u16, token: Option<&str>, body: &[u8]) -> (u16, String) {
    crate::util::request(port, "PUT", "/policy", token, body).unwrap()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
