//! The rolling-update benchmark's smoke cell (`bench/rollout/run --smoke`),
//! with the binary under test: one balancer, one lag, the bare app and
//! lameduck. Only what noise cannot flip is asserted: the harness bites (the
//! bare app fails requests) and lameduck fails none. No timings.

use crate::util::{lameduck, root, scratch};

#[test]
fn a_rolling_update_fails_requests_of_a_bare_app_and_none_behind_lameduck() {
    let json = scratch("rollout").join("rollout.json");
    // --no-install: a machine without root, ip, nginx or hey fails here,
    // naming what to install, instead of installing behind the test's back.
    let run = std::process::Command::new(root().join("bench/rollout/run"))
        .args(["--smoke", "--no-install", "--json"])
        .arg(&json)
        .arg("--lameduck")
        .arg(lameduck())
        .output()
        .expect("run bench/rollout/run");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "bench/rollout/run --smoke failed ({}):\n{stderr}",
        run.status
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON report")).unwrap();
    let failed = |variant: &str| {
        let result = report["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["variant"] == variant)
            .unwrap_or_else(|| panic!("no {variant} in the report: {report:#}"));
        (result["failed"].as_u64().unwrap(), result.clone())
    };
    let (bare, result) = failed("bare");
    assert!(
        bare > 0,
        "the bare app failed no request: the harness does not bite\n{result:#}"
    );
    let (behind_lameduck, result) = failed("lameduck");
    assert_eq!(
        behind_lameduck, 0,
        "requests failed behind lameduck\n{result:#}"
    );
}
