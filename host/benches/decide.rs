//! `decide` through wasmtime vs the native fallback, on the same snapshot
//! with 4 probes. Prints p50 and p99 per call and the ratio.
//!
//!     cargo bench -p lameduck --bench decide

use std::time::{Duration, Instant};

use lameduck_runtime::builtin;
use lameduck_runtime::{Compiler, Limits, Policy};

#[path = "common/snapshot.rs"]
mod common;
use common::snapshot;

const CALLS: usize = 20_000;

/// p50 and p99 of `CALLS` timed calls, after a warm-up.
fn measure(mut call: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..1_000 {
        call();
    }
    let mut times: Vec<Duration> = (0..CALLS)
        .map(|_| {
            let start = Instant::now();
            call();
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    (times[CALLS / 2], times[CALLS * 99 / 100])
}

fn main() {
    let s = snapshot();
    let compiled = Compiler::new(Limits::default(), None)
        .unwrap()
        .compile("builtin:drain", builtin::get("drain").unwrap())
        .unwrap();
    let instance = compiled.instantiate(&[]).unwrap();
    let mut wasm = Policy::fallback_only(Vec::new());
    wasm.swap(compiled.into(), instance);
    let mut native = Policy::fallback_only(Vec::new());
    assert_eq!(wasm.decide(&s).failure, None);
    assert_eq!(wasm.decide(&s).value, native.decide(&s).value);

    let (wasm_p50, wasm_p99) = measure(|| {
        std::hint::black_box(wasm.decide(std::hint::black_box(&s)));
    });
    let (native_p50, native_p99) = measure(|| {
        std::hint::black_box(native.decide(std::hint::black_box(&s)));
    });
    println!("decide, snapshot with 4 probes, {CALLS} calls each");
    println!("  wasm (wasmtime)   p50 {wasm_p50:>10.2?}   p99 {wasm_p99:>10.2?}");
    println!("  native fallback   p50 {native_p50:>10.2?}   p99 {native_p99:>10.2?}");
    println!(
        "  ratio wasm/native p50 {:.1}x   (goal: wasm p50 <= 5us: {})",
        wasm_p50.as_secs_f64() / native_p50.as_secs_f64(),
        if wasm_p50 <= Duration::from_micros(5) {
            "met"
        } else {
            "NOT met"
        }
    );
}
