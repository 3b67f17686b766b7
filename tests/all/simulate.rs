//! `lameduck simulate`: a policy rehearsed on a virtual clock against the
//! scenarios shipped under `scenarios/`, through the agent's own rules.

use std::process::Command;

use crate::util::{lameduck, root, scratch};

/// Runs `lameduck simulate ARGS`: (status, stdout, stderr).
fn simulate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(lameduck())
        .arg("simulate")
        .args(["--cache-dir", "off"])
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// The value of a figure line (`key     value`).
fn figure<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .filter(|_| l.len() > 10 && &l[..key.len()] == key)
        })
        .map(str::trim)
        .unwrap_or_else(|| panic!("no `{key}` in:\n{out}"))
}

#[test]
fn behind_an_ingress_the_drain_signals_once_requests_stop_and_loses_none() {
    let dir = scratch("simulate-ingress");
    let svg = dir.join("drain.svg");
    let (status, out, err) = simulate(&[
        "--svg",
        svg.to_str().unwrap(),
        "scenarios/web-behind-ingress.yaml",
    ]);
    assert_eq!(status, 0, "{err}");
    assert_eq!(figure(&out, "failed"), "0");
    assert!(figure(&out, "waste").starts_with('+'), "{out}");
    assert!(figure(&out, "exit").contains("kept"), "{out}");
    assert_eq!(figure(&out, "killed"), "no");
    let picture = std::fs::read_to_string(svg).unwrap();
    assert!(
        picture.starts_with("<svg") && picture.contains("TERM"),
        "{picture:.200}"
    );
}

#[test]
fn a_self_draining_young_pod_with_sparse_traffic_is_signalled_after_the_endpoint_is_gone() {
    let (status, out, err) = simulate(&["scenarios/spring-self-draining.yaml"]);
    assert_eq!(status, 0, "{err}");
    assert_eq!(figure(&out, "failed"), "0");
    assert!(figure(&out, "waste").starts_with('+'), "{out}");
}

#[test]
fn a_queue_worker_is_told_to_stop_taking_work_then_stopped_when_idle() {
    let (status, out, err) = simulate(&[
        "--config",
        "scenarios/queue-worker.lameduck.yaml",
        "scenarios/queue-worker.yaml",
    ]);
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("sent USR1 to the app"), "{out}");
    assert_eq!(figure(&out, "signal"), "TERM at 40000 ms into the drain");
    assert_eq!(figure(&out, "failed"), "0");
}

#[test]
fn an_app_that_ignores_term_is_killed_and_the_deadline_kept() {
    let dir = scratch("simulate-ignore");
    let scenario = dir.join("ignore.yaml");
    std::fs::write(
        &scenario,
        "traffic: { rate: 5, duration: { min: 10ms, max: 20ms } }\n\
         drain: { endpoint_removed: 1s, app: { on_term: ignore } }\n",
    )
    .unwrap();
    let (status, out, err) = simulate(&["--grace-period", "12s", scenario.to_str().unwrap()]);
    assert_eq!(status, 0, "{err}");
    assert_eq!(figure(&out, "killed"), "yes");
    assert!(figure(&out, "exit").contains("kept"), "{out}");
}

#[test]
fn a_bad_scenario_is_refused_with_its_file_line_and_field() {
    let dir = scratch("simulate-bad");
    let scenario = dir.join("bad.yaml");
    std::fs::write(
        &scenario,
        "traffic: { rate: 5, duration: { min: 10ms, max: 20ms } }\n\
         drain:\n  endpoint_removed: 1s\n  app: { on_term: sleep }\n",
    )
    .unwrap();
    let (status, out, err) = simulate(&[scenario.to_str().unwrap()]);
    assert_eq!(status, 2, "{out}");
    let at = format!("{}:4:", scenario.display());
    assert!(
        err.contains(&at) && err.contains("drain.app.on_term"),
        "{err}"
    );
    std::fs::write(
        &scenario,
        "traffic: { rate: 5, duration: { min: 1s, max: 1ms } }\ndrain: { endpoint_removed: 1s }\n",
    )
    .unwrap();
    let (status, _, err) = simulate(&[scenario.to_str().unwrap()]);
    assert_eq!(status, 2);
    assert!(err.contains("traffic.duration"), "{err}");
}
