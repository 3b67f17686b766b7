//! What a policy costs the agent, per language: the `drain` policy in Rust
//! (built in), Python, JavaScript and C (`policies/build-all.sh` builds them).
//! Prints one table: component size, compile time without and with the
//! compile cache, instantiate (with `init`) the first time after loading and
//! then typically, the first `decide` of an instance, and `decide` p50/p99
//! once warm.
//!
//!     policies/build-all.sh
//!     cargo run --release -p lameduck --example policy_cost
//!
//! Each figure is the median of several runs, on a quiet machine ideally:
//! the CPU budget is raised so that nothing measured is cut short.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lameduck_runtime::builtin;
use lameduck_runtime::{Compiled, Compiler, Limits, Origin};

#[path = "../benches/common/snapshot.rs"]
mod common;
use common::snapshot;

/// Timed `decide` calls per language, after as many to warm up.
const CALLS: usize = 5_000;
/// Cached compiles and instantiations timed per language.
const RUNS: usize = 10;

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is in the workspace")
        .to_path_buf();
    let mut policies = vec![("Rust", not_built_in(builtin::get("drain").unwrap()))];
    for (language, dir) in [
        ("Python", "drain-py"),
        ("JavaScript", "drain-js"),
        ("C", "drain-c"),
    ] {
        let path = root.join("policies").join(dir).join("drain.wasm");
        let bytes = std::fs::read(&path).map_err(|e| {
            anyhow::anyhow!("{}: {e}; run policies/build-all.sh first", path.display())
        })?;
        policies.push((language, bytes));
    }

    let limits = Limits {
        cpu: Duration::from_secs(5),
        ..Limits::default()
    };
    let cache = std::env::temp_dir().join(format!("lameduck-policy-cost-{}", std::process::id()));
    println!(
        "| language   |     size | compile, no cache | compile, cached | first instantiate + init | instantiate + init | first decide | decide p50 | decide p99 |"
    );
    println!(
        "|------------|---------:|------------------:|----------------:|-------------------------:|-------------------:|-------------:|-----------:|-----------:|"
    );
    for (language, bytes) in &policies {
        // Without the cache: what the first start with a new policy pays.
        let cold = Compiler::new(limits, None)?;
        let start = Instant::now();
        cold.compile(language, bytes)?;
        let compile = start.elapsed();

        // With the cache: what every later start (or the same bytes again)
        // pays. A new compiler each time, as after an agent restart.
        Compiler::new(limits, Some(cache.clone()))?.compile(language, bytes)?;
        let mut compiled = None;
        let cached = median((0..RUNS).map(|_| {
            let compiler = Compiler::new(limits, Some(cache.clone())).unwrap();
            let start = Instant::now();
            let c = compiler.compile(language, bytes).unwrap();
            let took = start.elapsed();
            assert_eq!(
                c.origin,
                Origin::Cache,
                "{language}: the second compile hits the cache"
            );
            compiled = Some(c);
            took
        }));
        let compiled = compiled.expect("compiled at least once");

        let (first_instantiate, instantiate, first) = first_calls(&compiled);
        let (p50, p99) = decide_percentiles(&compiled);
        println!(
            "| {language:<10} | {:>8} | {:>17} | {:>15} | {:>24} | {:>18} | {:>12} | {:>10} | {:>10} |",
            size(bytes.len()),
            ms(compile),
            ms(cached),
            ms(first_instantiate),
            ms(instantiate),
            ms(first),
            us(p50),
            us(p99),
        );
    }
    std::fs::remove_dir_all(&cache).ok();
    println!(
        "\nlimits: the agent's default CPU budget per call is {:?}; memory {} MiB",
        Limits::default().cpu,
        Limits::default().memory >> 20
    );
    Ok(())
}

/// Instantiating (which runs `init`) the first time after loading, as a
/// start or a hot swap does, then its median, and the median of the first
/// `decide` of a fresh instance.
fn first_calls(compiled: &Compiled) -> (Duration, Duration, Duration) {
    let mut instantiate: Vec<Duration> = Vec::new();
    let mut first = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let mut instance = compiled.instantiate(&[]).unwrap();
        instantiate.push(start.elapsed());
        let start = Instant::now();
        instance.decide(&snapshot()).unwrap();
        first.push(start.elapsed());
    }
    (instantiate[0], median(instantiate), median(first))
}

/// p50 and p99 of `decide` on a warm instance.
fn decide_percentiles(compiled: &Compiled) -> (Duration, Duration) {
    let mut instance = compiled.instantiate(&[]).unwrap();
    let snapshot = snapshot();
    for _ in 0..CALLS {
        instance.decide(&snapshot).unwrap();
    }
    let mut times: Vec<Duration> = (0..CALLS)
        .map(|_| {
            let start = Instant::now();
            instance.decide(&snapshot).unwrap();
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[CALLS / 2], times[CALLS * 99 / 100])
}

fn median(times: impl IntoIterator<Item = Duration>) -> Duration {
    let mut times: Vec<Duration> = times.into_iter().collect();
    times.sort();
    times[times.len() / 2]
}

fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    } else {
        format!("{} KiB", bytes.div_ceil(1 << 10))
    }
}

fn ms(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        us(d)
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// The built-in `drain` as a user would ship it, in a file: a custom section
/// makes its bytes differ from the built-in policy's, which the binary
/// carries precompiled, so that it is compiled like any other.
fn not_built_in(component: &[u8]) -> Vec<u8> {
    let name = b"lameduck-not-built-in";
    let mut out = component.to_vec();
    out.extend_from_slice(&[0, (1 + name.len()) as u8, name.len() as u8]);
    out.extend_from_slice(name);
    out
}
