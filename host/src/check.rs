//! `lameduck check`: load a policy exactly as the agent would — compile,
//! check against the world, `init` with the configured `policy.config` —
//! then ask it about a TERM and the first step of a drain, and print a
//! one-screen verdict.

use std::path::Path;

use crate::config::Config;
use lameduck_core::millis;
use lameduck_core::record::printable;
use lameduck_core::{Child, Mode, Next, Probe, ProbeValue, Signal, Snapshot, Trigger};
use lameduck_runtime::{Compiler, WORLD};

/// Prints the verdict on `config`'s policy; returns 0 if it can be used, 2
/// if not.
pub fn check(config: &Config, config_file: Option<&Path>) -> i32 {
    // Reasons and errors are the policy's words: escaped for the terminal.
    let line = |key: &str, value: &str| println!("{key:<10}{}", printable(value));
    let reject = |why: &str| {
        line("verdict", &format!("REJECTED: {why}"));
        2
    };
    line(
        "config",
        &config_file.map_or("(defaults)".into(), |p| p.display().to_string()),
    );
    line("policy", &config.policy.to_string());
    let (source, bytes) = match crate::pull::fetch(config, &config.policy) {
        Ok(fetched) => {
            if let Some(pulled) = &fetched.pulled {
                line("pulled", pulled);
            }
            (fetched.name, fetched.bytes)
        }
        Err(e) => return reject(&e),
    };
    line("size", &format!("{} bytes", bytes.len()));
    let compiler = match Compiler::new(config.limits(), config.cache_dir.clone()) {
        Ok(compiler) => compiler,
        Err(e) => return reject(&format!("{e:#}")),
    };
    let compiled = match compiler.compile(&source, &bytes) {
        Ok(compiled) => compiled,
        Err(e) => return reject(&e.to_string()),
    };
    line("sha256", &compiled.identity().sha256);
    line(
        "world",
        &format!("{} (this agent: {WORLD})", compiled.world),
    );
    line("exports", "init, on-signal, decide");
    line(
        "compiled",
        &format!("in {:?} ({})", compiled.compile_time, compiled.origin),
    );
    let mut instance = match compiled.instantiate(&config.policy_config) {
        Ok(instance) => instance,
        Err(e) => return reject(&e.to_string()),
    };
    line(
        "init",
        &format!("ok, {} config key(s)", config.policy_config.len()),
    );
    let budget = millis(config.drain_budget());
    let mut snapshot = sample_snapshot(config, budget);
    match instance.on_signal(Signal::Term, &snapshot) {
        Ok(action) => line("on-signal", &format!("TERM → {action:?}")),
        Err(e) => return reject(&format!("on-signal: {e}")),
    }
    snapshot.trigger = Trigger::Signal(Signal::Term);
    snapshot.ready = false;
    match instance.decide(&snapshot) {
        Ok(d) => {
            let next = match d.next {
                Next::Recheck(ms) => format!("recheck in {ms}ms"),
                Next::WaitForExit => "wait for the app to exit".into(),
                Next::Exit => "exit".into(),
            };
            let signal = d.signal.map_or(String::new(), |s| format!("send {s:?}, "));
            line("decide", &format!("{signal}{next}: {}", d.reason));
        }
        Err(e) => return reject(&format!("decide: {e}")),
    }
    line("verdict", "OK");
    0
}

/// The agent's view at the start of a drain. `check` samples nothing, and
/// says so: every configured probe reads `failed`, so the verdict shows what
/// the policy does without evidence, not a made-up idle app.
fn sample_snapshot(config: &Config, budget: u32) -> Snapshot {
    let probes = config
        .probes
        .iter()
        .map(|p| Probe {
            name: p.name.clone(),
            value: ProbeValue::Failed("not sampled: `lameduck check` runs no probes".into()),
            unchanged_ms: 0,
        })
        .collect();
    Snapshot {
        trigger: Trigger::None,
        elapsed_ms: 0,
        remaining_ms: budget,
        child: Child::Running,
        signals_sent: Vec::new(),
        ready: true,
        probes,
        mode: Mode::Entrypoint,
    }
}
