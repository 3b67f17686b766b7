//! Hot swap: from a new policy file landing (rename) to the first decision
//! by the new policy, over 25 swaps. Each swap is a component never seen
//! before (a custom section makes its bytes unique) and the compile cache is
//! off, so every swap is a full compile, check, instantiate and `init`.
//!
//!     cargo bench -p lameduck --bench reload

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SWAPS: u32 = 25;

fn main() {
    let dir = std::env::temp_dir().join(format!("lameduck-reload-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.wasm");
    let delay = lameduck_runtime::builtin::get("delay").unwrap();
    std::fs::write(&policy, variant(delay, 0)).unwrap();

    // A drain that lasts: `delay` waits 10 minutes, and every swap makes the
    // new policy decide at once.
    let mut agent = Command::new(env!("CARGO_BIN_EXE_lameduck"))
        .args([
            "run",
            "--log-format",
            "json",
            "--admin",
            "off",
            "--cache-dir",
            "off",
        ])
        .args([
            "--grace-period",
            "20m",
            "--policy-config",
            "delay=10m",
            "--policy",
        ])
        .arg(&policy)
        .args(["--", "sleep", "600"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel::<serde_json::Value>();
    let stderr = agent.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(value) = serde_json::from_str(&line) {
                let _ = tx.send(value);
            }
        }
    });
    wait_for(&lines, |l| l["event"] == "policy");
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    wait_for(&lines, |l| l["event"] == "decision");

    let mut latencies = Vec::new();
    for n in 1..=SWAPS {
        let bytes = variant(delay, n);
        let sha = lameduck_runtime::sha256_hex(&bytes);
        let tmp = dir.join("next.wasm");
        std::fs::write(&tmp, &bytes).unwrap();
        let landed = now();
        std::fs::rename(&tmp, &policy).unwrap();
        wait_for(&lines, |l| {
            l["event"] == "policy" && l["message"].as_str().unwrap().contains(&sha[..12])
        });
        let decision = wait_for(&lines, |l| l["event"] == "decision");
        let decided = timestamp(decision["timestamp"].as_str().unwrap());
        latencies.push(Duration::from_secs_f64(decided - landed));
    }
    let _ = agent.kill();
    let _ = agent.wait();
    let _ = std::fs::remove_dir_all(&dir);

    latencies.sort_unstable();
    let p50 = latencies[latencies.len() / 2];
    let max = *latencies.last().unwrap();
    println!(
        "hot swap, rename → first decision by the new policy, {SWAPS} swaps, no compile cache"
    );
    println!(
        "  p50 {p50:>10.2?}   max {max:>10.2?}   min {:>10.2?}",
        latencies[0]
    );
    println!(
        "  goal: p50 <= 50ms: {}",
        if p50 <= Duration::from_millis(50) {
            "met"
        } else {
            "NOT met"
        }
    );
}

fn wait_for(
    lines: &mpsc::Receiver<serde_json::Value>,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("the agent went quiet");
        if wanted(&line) {
            return line;
        }
    }
}

/// `bytes` with a custom section appended: the same policy, other bytes.
fn variant(bytes: &[u8], n: u32) -> Vec<u8> {
    let name = b"lameduck-bench";
    let mut out = bytes.to_vec();
    out.extend_from_slice(&[0, (1 + name.len() + 4) as u8, name.len() as u8]);
    out.extend_from_slice(name);
    out.extend_from_slice(&n.to_le_bytes());
    out
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Seconds since the epoch of an RFC 3339 UTC timestamp like
/// `2026-11-21T04:44:55.139951Z`.
fn timestamp(text: &str) -> f64 {
    let (date, time) = text.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|p| p.parse().unwrap()).collect();
    let t: Vec<f64> = time.split(':').map(|p| p.parse().unwrap()).collect();
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m, day) = (if d[1] <= 2 { d[0] - 1 } else { d[0] }, d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days as f64 * 86_400.0 + t[0] * 3_600.0 + t[1] * 60.0 + t[2]
}
