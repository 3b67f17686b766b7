//! `lameduck simulate SCENARIO`: the configured policy rehearsed against a
//! scenario ([`lameduck_simulate`]), with the agent's own settings.

use std::path::Path;

use lameduck_core::record::printable;
use lameduck_runtime::{Compiler, Policy};
use lameduck_simulate::Setup;

use crate::config::Config;
use crate::files;
use crate::probes::Spec;

/// The largest scenario file taken.
const MAX_SCENARIO_BYTES: u64 = 1 << 20;

/// Runs the scenario in the file `scenario` against `config`'s policy;
/// returns 0, or 2 with what is wrong and where.
pub fn simulate(config: &Config, scenario: &Path, svg: Option<&Path>) -> i32 {
    let setup =
        files::read_text(scenario, MAX_SCENARIO_BYTES).and_then(|text| Ok((text, setup(config)?)));
    match setup {
        Ok((text, setup)) => lameduck_simulate::simulate(setup, (scenario, &text), svg),
        Err(e) => {
            eprintln!("lameduck simulate: {}", printable(&e));
            2
        }
    }
}

fn setup(config: &Config) -> Result<Setup, String> {
    Ok(Setup {
        policy: load_policy(config)?,
        probes: config
            .probes
            .iter()
            .map(|p| (p.name.clone(), matches!(p.kind, Spec::Connections(_))))
            .collect(),
        grace_period: config.grace_period,
        safety_margin: config.safety_margin,
    })
}

/// The configured policy, compiled and `init`-ed, with the native fallback
/// answering for it when it fails and a fresh instance made for the next
/// call, as in the agent.
pub fn load_policy(config: &Config) -> Result<Policy, String> {
    let fetched = crate::pull::fetch(config, &config.policy)?;
    if let Some(pulled) = &fetched.pulled {
        eprintln!("pulled {pulled}");
    }
    let (source, bytes) = (fetched.name, fetched.bytes);
    let compiler =
        Compiler::new(config.limits(), config.cache_dir.clone()).map_err(|e| format!("{e:#}"))?;
    let compiled = compiler
        .compile(&source, &bytes)
        .map_err(|e| format!("{source}: {e}"))?;
    let instance = compiled
        .instantiate(&config.policy_config)
        .map_err(|e| format!("{source}: {e}"))?;
    let mut policy = Policy::fallback_only(config.policy_config.clone());
    policy.swap(compiled.into(), instance);
    Ok(policy)
}
