//! Policies from a real registry (Debian's `docker-registry` with TLS from a
//! test CA and htpasswd auth, started as `lameduck-oci`'s own tests start
//! it): `lameduck push`, then `lameduck run` pulling by digest; a reference
//! file swapped while the app serves; a restart with the registry down; a
//! registry that stalls mid-blob during a drain; a tag moved to garbage.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lameduck_core::record::{Entry, Event, PulledFrom};
use lameduck_oci::{BlockingRegistry, Digest, Reference};
use lameduck_oci_testing::{StallingProxy, TestRegistry, oci_layout, write_auth_file_for};
use lameduck_runtime::{builtin, sha256_hex};
use serde_json::Value;

use crate::supervision::as_strs;
use crate::util::{Agent, App, get_body, lameduck, root, scratch, show};

const SECOND: Duration = Duration::from_secs(1);

/// Long enough for a cold pull and compile of the 18 MB Python component
/// on a loaded machine (a few seconds on a quiet one).
const PYTHON: Duration = Duration::from_secs(120);

/// The Python port of `drain`, as `policies/build-all.sh` builds it.
fn python_drain() -> PathBuf {
    let wasm = root().join("policies/drain-py/drain.wasm");
    assert!(
        wasm.exists(),
        "{} is missing: run `policies/drain-py/build.sh` (or `policies/build-all.sh`)",
        wasm.display()
    );
    wasm
}

/// The flags that reach `registry`: its credentials and its CA.
fn access(registry: &TestRegistry) -> Vec<String> {
    vec![
        "--registry-auth".into(),
        registry.auth_file().display().to_string(),
        "--registry-ca".into(),
        registry.ca_file().display().to_string(),
    ]
}

/// `lameduck push FILE TARGET` with the registry's flags; returns the
/// pinned reference it printed last, and everything it printed.
fn push(registry: &TestRegistry, file: &Path, target: &str, cache: &Path) -> (String, String) {
    let output = std::process::Command::new(lameduck())
        .arg("push")
        .args(access(registry))
        .args(["--cache-dir", cache.to_str().unwrap()])
        .arg(file)
        .arg(target)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "push {}: {}\n{stdout}\n{}",
        file.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let pinned = stdout.lines().last().unwrap_or_default().to_string();
    (pinned, stdout)
}

/// A built-in policy's component, in a file of its own.
fn builtin_file(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, builtin::get(name).unwrap()).unwrap();
    path
}

/// Writes `text` to `path` as the kubelet updates a ConfigMap key: a new
/// timestamped directory, then the `..data` link swapped to it.
fn configmap_write(dir: &Path, key: &str, text: &str, generation: u32) {
    let data = format!("..2026_12_07_12_00_00.{generation:09}");
    std::fs::create_dir_all(dir.join(&data)).unwrap();
    std::fs::write(dir.join(&data).join(key), text).unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(&data, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let link = dir.join(key);
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink(format!("..data/{key}"), &link).unwrap();
    }
}

fn admin_status(admin: u16) -> Value {
    let (_, body) = get_body(admin, "/status").unwrap();
    serde_json::from_str::<Value>(&body).unwrap()["status"].clone()
}

/// The timeline entries of kind `event` so far, as the log has them.
fn entries(agent: &Agent, event: &str) -> Vec<Value> {
    agent
        .logs()
        .into_iter()
        .filter(|l| l["event"] == event)
        .collect()
}

/// Whether `records` hold a policy loaded from a source naming `what`.
fn loaded(records: &[Entry], what: &str) -> bool {
    records
        .iter()
        .any(|e| matches!(&e.event, Event::Policy { source, .. } if source.contains(what)))
}

/// Waits until a policy whose source names `what` is loaded.
fn wait_for_policy(agent: &Agent, what: &str, limit: Duration) {
    agent.wait_for(&format!("policy {what}"), limit, |r| loaded(r, what));
}

/// Waits until an entry of kind `kind` is recorded; returns its words.
fn wait_for_kind(agent: &Agent, kind: &str, limit: Duration) -> String {
    let records = agent.wait_for(&format!("`{kind}`"), limit, |r| {
        r.iter().any(|e| e.event.kind() == kind)
    });
    let first = records.iter().find(|e| e.event.kind() == kind).unwrap();
    first.event.describe()
}

fn count(agent: &Agent, kind: &str) -> usize {
    agent
        .records()
        .iter()
        .filter(|e| e.event.kind() == kind)
        .count()
}

#[test]
fn the_python_port_pushed_then_pulled_by_digest_decides_a_real_drain() {
    let registry = TestRegistry::start();
    let dir = scratch("registry-python");
    let cache = dir.join("cache");
    let target = format!("oci://{}/policies/drain-py:v1", registry.host());
    let (pinned, printed) = push(&registry, &python_drain(), &target, &cache);
    let prefix = format!("oci://{}/policies/drain-py@sha256:", registry.host());
    assert!(pinned.starts_with(&prefix), "{printed}");
    assert!(printed.contains("init      ok"), "checked first: {printed}");
    // What lameduck pushed, skopeo (an independent client) reads as pinned.
    let manifest = registry.skopeo_manifest("policies/drain-py:v1");
    assert_eq!(
        pinned.strip_prefix(&format!("oci://{}/policies/drain-py@", registry.host())),
        Some(Digest::of(&manifest).to_string().as_str())
    );

    let app = App::new("registry-python-app");
    let mut args = vec!["--admin", "127.0.0.1:0", "--policy", &pinned];
    let cache_flag = ["--cache-dir", cache.to_str().unwrap()];
    args.extend(cache_flag);
    let access = access(&registry);
    args.extend(as_strs(&access));
    let mut agent = Agent::start(&args, &as_strs(&app.command(&["--on-term", "drain"])));
    let port = app.port();
    let admin = agent.admin_port();
    let records = agent.wait_for("the Python policy", PYTHON, |r| loaded(r, &pinned));
    // The app did not wait for the registry, nor for the compile.
    let kinds: Vec<_> = records.iter().map(|e| e.event.kind()).collect();
    let started = kinds.iter().position(|k| *k == "started");
    let pulled = kinds.iter().position(|k| *k == "policy-pulled");
    assert!(started < pulled, "{}", show(&records));
    let pulled = &entries(&agent, "policy-pulled")[0];
    assert_eq!(pulled["data"]["from"], "registry");
    assert_eq!(pulled["data"]["reference"], pinned.as_str());
    let status = admin_status(admin);
    assert_eq!(status["policy"]["source"], pinned.as_str());
    let python = std::fs::read(python_drain()).unwrap();
    assert_eq!(status["policy"]["sha256"], sha256_hex(&python).as_str());
    assert_eq!(status["pull"]["reference"], pinned.as_str());
    assert_eq!(status["pull"]["from"], "registry");
    assert_eq!(status["pull"]["from_cache"], false);
    assert!(status["pull"]["pull_ms"].as_u64().is_some(), "{status}");
    let (_, metrics) = get_body(admin, "/metrics").unwrap();
    assert!(
        metrics.contains("lameduck_policy_pulls_total{result=\"pull\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lameduck_policy_pull_duration_seconds "),
        "{metrics}"
    );

    // A real drain, decided by the Python policy (never by the fallback).
    assert_eq!(get_body(port, "/").unwrap().0, 200);
    agent.signal(libc::SIGTERM);
    let (code, _) = agent.wait(40 * SECOND);
    assert_eq!(code, 0, "{}", show(&agent.records()));
    assert!(app.log().iter().any(|(_, l)| l == "SIGTERM"));
    let decisions = entries(&agent, "decision");
    assert!(!decisions.is_empty(), "{}", show(&agent.records()));
    assert!(
        decisions.iter().all(|d| d["data"]["fallback"].is_null()),
        "{decisions:#?}"
    );
    assert_eq!(
        count(&agent, "policy-error"),
        0,
        "{}",
        show(&agent.records())
    );
}

#[test]
fn a_changed_reference_in_the_watched_file_swaps_the_policy_while_the_app_serves() {
    let registry = TestRegistry::start();
    let dir = scratch("registry-swap");
    let cache = dir.join("cache");
    let (delay, _) = push(
        &registry,
        &builtin_file(&dir, "delay"),
        &format!("oci://{}/policies/delay:v1", registry.host()),
        &cache,
    );
    let (jobs, _) = push(
        &registry,
        &builtin_file(&dir, "jobs"),
        &format!("oci://{}/policies/jobs:v1", registry.host()),
        &cache,
    );
    // The ConfigMap, as the kubelet mounts it: a reference file.
    let volume = dir.join("configmap");
    std::fs::create_dir_all(&volume).unwrap();
    configmap_write(&volume, "policy.ref", &format!("{delay}\n"), 1);
    let file = volume.join("policy.ref");

    let app = App::new("registry-swap-app");
    let mut args = vec!["--admin", "127.0.0.1:0", "--policy", file.to_str().unwrap()];
    args.extend(["--cache-dir", cache.to_str().unwrap()]);
    let access = access(&registry);
    args.extend(as_strs(&access));
    let mut agent = Agent::start(&args, &as_strs(&app.command(&["--on-term", "drain"])));
    let port = app.port();
    let admin = agent.admin_port();
    let app_pid = agent.app_pid();
    wait_for_policy(&agent, &delay, 30 * SECOND);

    // The reference changes; the app serves all along.
    configmap_write(&volume, "policy.ref", &format!("{jobs}\n"), 2);
    let until = Instant::now() + 30 * SECOND;
    let mut served = 0;
    while !loaded(&agent.records(), &jobs) {
        assert!(
            Instant::now() < until,
            "no swap:\n{}",
            show(&agent.records())
        );
        assert_eq!(get_body(port, "/").unwrap().0, 200);
        served += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(served > 0);
    assert_eq!(agent.app_pid(), app_pid, "the app was never restarted");
    let status = admin_status(admin);
    assert_eq!(status["policy"]["source"], jobs.as_str());
    assert_eq!(
        status["policy"]["sha256"],
        sha256_hex(builtin::get("jobs").unwrap()).as_str()
    );
    assert_eq!(status["pull"]["reference"], jobs.as_str());

    // A reference that cannot be pulled is refused with its reason, and
    // jobs keeps deciding.
    let missing = Reference::parse(&jobs)
        .unwrap()
        .pinned(Digest::of(b"nothing"));
    configmap_write(&volume, "policy.ref", &format!("{missing}\n"), 3);
    let failed = wait_for_kind(&agent, "pull-failed", 30 * SECOND);
    let status = admin_status(admin);
    assert_eq!(status["policy"]["source"], jobs.as_str());
    let failure = &status["pull"]["last_failure"];
    assert_eq!(failure["source"], missing.to_string().as_str());
    assert!(
        failure["reason"]
            .as_str()
            .unwrap()
            .contains("not found on registry"),
        "{failure}"
    );
    assert!(
        failed.contains(&format!("the last good policy, {jobs}")) && failed.contains("tried again"),
        "{failed}"
    );
    agent.kill();
}

#[test]
fn restarted_with_the_registry_stopped_it_starts_from_the_cache() {
    let mut registry = TestRegistry::start();
    let dir = scratch("registry-restart");
    let cache = dir.join("cache");
    let target = format!("oci://{}/policies/drain-py:v1", registry.host());
    let (pinned, _) = push(&registry, &python_drain(), &target, &cache);
    let access = access(&registry);
    let run = |name: &str| {
        let app = App::new(name);
        let mut args = vec!["--admin", "127.0.0.1:0", "--policy", &pinned];
        args.extend(["--cache-dir", cache.to_str().unwrap()]);
        args.extend(as_strs(&access));
        let agent = Agent::start(&args, &as_strs(&app.command(&["--on-term", "exit"])));
        app.port();
        wait_for_policy(&agent, &pinned, PYTHON);
        (agent, app)
    };
    let (mut first, _app) = run("registry-restart-first");
    assert_eq!(
        entries(&first, "policy-pulled")[0]["data"]["from"],
        "registry"
    );
    first.kill();

    // The registry goes away; the pod's container restarts.
    registry.stop();
    let (mut second, _app) = run("registry-restart-second");
    let pulled = &entries(&second, "policy-pulled")[0]["data"];
    assert_eq!(pulled["from"], "cache", "{pulled}");
    let policy = &entries(&second, "policy")[0]["data"];
    assert_eq!(policy["origin"], "from the compile cache", "{policy}");
    let status = admin_status(second.admin_port());
    assert_eq!(status["pull"]["from_cache"], true);
    assert_eq!(status["pull"]["digest"], pinned.rsplit('@').next().unwrap());
    assert!(status["pull"]["last_failure"].is_null(), "{status}");
    assert_eq!(count(&second, "pull-failed"), 0);
    second.kill();
}

#[test]
fn a_registry_that_stalls_mid_blob_during_a_drain_leaves_its_deadline_alone() {
    let registry = TestRegistry::start();
    let dir = scratch("registry-stall");
    let cache = dir.join("cache");
    let (delay, _) = push(
        &registry,
        &builtin_file(&dir, "delay"),
        &format!("oci://{}/policies/delay:v1", registry.host()),
        &cache,
    );
    let python = python_drain();
    let (pinned, _) = push(
        &registry,
        &python,
        &format!("oci://{}/policies/drain-py:v1", registry.host()),
        &cache,
    );
    // The same registry through a proxy that stops sending after 256 KiB of
    // each connection: the 18 MB blob stalls in its middle.
    let proxy = StallingProxy::start(registry.port, 256 << 10);
    let stalling = pinned.replace(&registry.host(), &proxy.host());
    let auth = dir.join("auth.json");
    let hosts = [registry.host(), proxy.host()];
    write_auth_file_for(
        &auth,
        &[&hosts[0], &hosts[1]],
        lameduck_oci_testing::PASSWORD,
    );

    let file = dir.join("policy.ref");
    std::fs::write(&file, format!("{delay}\n")).unwrap();
    let app = App::new("registry-stall-app");
    let ca = registry.ca_file();
    let args = [
        "--policy",
        file.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
        "--registry-auth",
        auth.to_str().unwrap(),
        "--registry-ca",
        ca.to_str().unwrap(),
        "--grace-period",
        "6s",
        "--safety-margin",
        "2s",
    ];
    // The app ignores TERM: the drain lasts until its deadline, 4 s.
    let mut agent = Agent::start(&args, &as_strs(&app.command(&["--on-term", "ignore"])));
    app.port();
    wait_for_policy(&agent, &delay, 30 * SECOND);
    agent.signal(libc::SIGTERM);
    let sent = Instant::now();
    wait_for_kind(&agent, "drain", 5 * SECOND);
    std::fs::write(dir.join("next.ref"), format!("{stalling}\n")).unwrap();
    std::fs::rename(dir.join("next.ref"), &file).unwrap();
    let until = Instant::now() + 3 * SECOND;
    while proxy.stalled() == 0 {
        assert!(
            Instant::now() < until,
            "the pull never reached the blob:\n{}",
            show(&agent.records())
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let stalled_at = sent.elapsed();
    let (code, _) = agent.wait(10 * SECOND);
    let took = sent.elapsed();
    assert_eq!(code, 128 + libc::SIGKILL, "the app ignored TERM");
    assert!(
        stalled_at < 4 * SECOND,
        "stalled {stalled_at:?} into the drain"
    );
    // The deadline was 4 s after TERM; the kubelet's KILL would come at 6 s.
    assert!(took < 6 * SECOND, "exited {took:?} after TERM");
    assert!(took > 3 * SECOND, "exited {took:?} after TERM");
    let deadline = entries(&agent, "deadline");
    assert_eq!(deadline.len(), 1, "{}", show(&agent.records()));
    let at = deadline[0]["drain_ms"].as_u64().unwrap();
    assert!((4_000..4_100).contains(&at), "the deadline at {at} ms");
    // Nothing came of the stalled pull: delay decided to the end.
    assert!(
        !loaded(&agent.records(), "drain-py"),
        "{}",
        show(&agent.records())
    );
    assert!(
        entries(&agent, "decision")
            .iter()
            .all(|d| d["data"]["fallback"].is_null())
    );
}

#[test]
fn a_tag_moved_to_garbage_keeps_the_last_good() {
    let registry = TestRegistry::start();
    let dir = scratch("registry-tag");
    let cache = dir.join("cache");
    let tag = format!("oci://{}/policies/drain:stable", registry.host());
    let (delay, _) = push(&registry, &builtin_file(&dir, "delay"), &tag, &cache);
    let delay_digest = delay.rsplit('@').next().unwrap();
    let delay_sha = sha256_hex(builtin::get("delay").unwrap());

    let mut args = vec!["--admin", "127.0.0.1:0", "--policy", &tag];
    args.extend(["--registry-refresh", "200ms"]);
    args.extend(["--cache-dir", cache.to_str().unwrap()]);
    let access = access(&registry);
    args.extend(as_strs(&access));
    let mut agent = Agent::start(&args, &["sleep", "60"]);
    let admin = agent.admin_port();
    // Loaded as the tag, labelled with the digest it named.
    wait_for_policy(&agent, &format!("{tag}@{delay_digest}"), 30 * SECOND);
    let pulled = wait_for_kind(&agent, "policy-pulled", SECOND);
    assert!(
        pulled.contains(&format!("a tag is not pinned: pin {delay}")),
        "{pulled}"
    );

    // 1. skopeo moves the tag to a container image.
    let layout = dir.join("image");
    let tar = vec![0u8; 1024];
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [Digest::of(&tar).to_string()] },
    }))
    .unwrap();
    oci_layout(
        &layout,
        "stable",
        ("application/vnd.oci.image.config.v1+json", &config),
        &[("application/vnd.oci.image.layer.v1.tar", &tar)],
    );
    registry.skopeo_push_layout(&layout, "stable", "policies/drain");
    let image = Digest::of(&registry.skopeo_manifest("policies/drain:stable"));
    wait_for_kind(&agent, "tag-moved", 10 * SECOND);
    agent.wait_for("the fallback to the last pull", 30 * SECOND, |r| {
        r.iter().any(|e| {
            matches!(
                e.event,
                Event::PolicyPulled {
                    from: PulledFrom::LastPull,
                    ..
                }
            )
        })
    });
    let status = admin_status(admin);
    assert_eq!(status["policy"]["sha256"], delay_sha.as_str(), "{status}");
    let failure = status["pull"]["last_failure"]["reason"].as_str().unwrap();
    assert!(
        failure.contains(&format!("manifest {image}"))
            && failure.contains("is not a wasm component artifact"),
        "{failure}"
    );
    assert_eq!(status["pull"]["from"], "last-pull");

    // 2. A wasm artifact whose bytes are not a component, pushed past
    //    `lameduck push`'s check: pulled, refused by the compiler.
    let client = BlockingRegistry::new(registry.settings(&dir.join("pusher-cache"))).unwrap();
    let tagged = Reference::parse(&tag).unwrap();
    let garbage = b"\0asm\x0d\0\x01\0 not a component".to_vec();
    client.push(&garbage, &tagged).unwrap();
    wait_for_kind(&agent, "policy-failed", 30 * SECOND);
    let status = admin_status(admin);
    assert_eq!(status["policy"]["sha256"], delay_sha.as_str(), "{status}");
    let refused = &status["last_refused"];
    assert!(
        refused["source"].as_str().unwrap().starts_with(&tag),
        "{refused}"
    );
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("not a WebAssembly component"),
        "{refused}"
    );
    // Refused once: the tag still names it, and it is not tried again.
    std::thread::sleep(SECOND);
    assert_eq!(
        count(&agent, "policy-failed"),
        1,
        "{}",
        show(&agent.records())
    );

    // 3. A good policy under the tag again: swapped in.
    let jobs = builtin::get("jobs").unwrap();
    let pinned = client.push(jobs, &tagged).unwrap();
    wait_for_policy(&agent, &pinned.digest().unwrap().to_string(), 30 * SECOND);
    assert_eq!(
        admin_status(admin)["policy"]["sha256"],
        sha256_hex(jobs).as_str()
    );
    let (_, metrics) = get_body(admin, "/metrics").unwrap();
    for result in ["pull", "last-pull"] {
        assert!(
            metrics.contains(&format!(
                "lameduck_policy_pulls_total{{result=\"{result}\"}}"
            )),
            "{result}: {metrics}"
        );
    }
    agent.kill();
}

#[test]
fn nothing_pullable_at_start_the_built_in_logic_decides_until_the_registry_is_back() {
    let mut registry = TestRegistry::start();
    let dir = scratch("registry-down");
    let (jobs, _) = push(
        &registry,
        &builtin_file(&dir, "jobs"),
        &format!("oci://{}/policies/jobs:v1", registry.host()),
        &dir.join("pusher-cache"),
    );
    registry.stop();
    // A cache of its own, empty: nothing to fall back on.
    let cache = dir.join("cache");
    let mut args = vec!["--admin", "127.0.0.1:0", "--policy", &jobs];
    args.extend(["--cache-dir", cache.to_str().unwrap()]);
    let access = access(&registry);
    args.extend(as_strs(&access));
    let app = App::new("registry-down-app");
    let mut agent = Agent::start(&args, &as_strs(&app.command(&["--on-term", "drain"])));
    app.port();
    let admin = agent.admin_port();
    let failed = wait_for_kind(&agent, "pull-failed", 30 * SECOND);
    assert!(
        failed.contains(&format!("cannot reach registry {}", registry.host()))
            && failed.contains("the built-in drain logic decides")
            && failed.contains("tried again in 5s"),
        "{failed}"
    );
    let status = admin_status(admin);
    assert!(status["policy"].is_null(), "{status}");
    assert!(
        status["pull"]["last_failure"]["reason"]
            .as_str()
            .unwrap()
            .contains("cannot reach registry"),
        "{status}"
    );
    // The registry is back: the next try pulls it.
    registry.resume();
    wait_for_policy(&agent, &jobs, 30 * SECOND);
    assert_eq!(admin_status(admin)["pull"]["from"], "registry");
    agent.kill();
}

/// Figures, not assertions (README, "Distributing policies"): `cargo test
/// -p lameduck-tests --test all registry::pull_and_compile -- --ignored
/// --nocapture`.
#[test]
#[ignore = "a measurement; run it by name with --ignored --nocapture"]
fn pull_and_compile_the_python_port_cold_and_cached() {
    let registry = TestRegistry::start();
    let dir = scratch("registry-measure");
    let target = format!("oci://{}/policies/drain-py:v1", registry.host());
    let (pinned, _) = push(&registry, &python_drain(), &target, &dir.join("pusher"));
    let cache = dir.join("cache");
    for round in ["cold", "cached", "cached"] {
        let output = std::process::Command::new(lameduck())
            .arg("check")
            .args(access(&registry))
            .args(["--cache-dir", cache.to_str().unwrap(), "--policy", &pinned])
            .output()
            .unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(output.status.success(), "{stdout}");
        for line in stdout.lines() {
            if line.starts_with("pulled") || line.starts_with("compiled") {
                println!("{round:<7}{line}");
            }
        }
    }
}
