//! The engine settings every compiled policy is made with. They live in a
//! crate of their own so that the agent and the build-time precompiler of
//! the built-in policies (`lameduck-precompile`) cannot disagree: code
//! compiled with other settings would not load.

use wasmtime::{Config, OptLevel, Strategy};

/// The settings for compiling on and for this machine (`target: None`), or,
/// ahead of time, for any CPU of the `target` triple: an explicit target
/// leaves out the build machine's CPU features, so the code loads on every
/// CPU of that architecture.
pub fn config(target: Option<&str>) -> wasmtime::Result<Config> {
    let mut config = Config::new();
    let x86_64 = match target {
        Some(triple) => {
            config.target(triple)?;
            triple.starts_with("x86_64")
        }
        None => cfg!(target_arch = "x86_64"),
    };
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // Traps are reported by kind; backtraces would cost time on every trap.
    config.wasm_backtrace_max_frames(None);
    // A policy is a little logic; what dominates a call is the component
    // boundary, not its code. What matters is how fast it compiles: a hot
    // swap and a first start wait for that. Winch, the baseline compiler,
    // compiles 2-5x faster than Cranelift and with less memory (tier 1 on
    // x86_64 only); Cranelift, unoptimised, compiles the component's
    // trampolines, and everything on other architectures.
    if x86_64 {
        config.strategy(Strategy::Winch);
    }
    config.cranelift_opt_level(OptLevel::None);
    Ok(config)
}
