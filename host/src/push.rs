//! `lameduck push FILE oci://REGISTRY/REPO:TAG`: checks the component as
//! the agent would load it — compiled, checked against the world,
//! instantiated and `init`-ed with an empty config — then pushes it as a
//! wasm artifact (the CNCF TAG Runtime layout) and prints the reference
//! pinned to its digest, to put in a config or a ConfigMap, as the last
//! line of standard output.

use std::path::Path;

use lameduck_oci::Reference;
use lameduck_runtime::{Compiler, WORLD};

use crate::config::Config;
use crate::files;
use crate::pull::Puller;
use crate::source::MAX_POLICY_BYTES;

/// Pushes `file` to the tag `target`; returns 0, 2 if the component or
/// the target is refused (nothing is pushed), or 1 if the push failed.
pub fn push(config: &Config, file: &Path, target: &str) -> i32 {
    let line = |key: &str, value: &str| println!("{key:<10}{value}");
    let refuse = |why: &str| {
        eprintln!("lameduck push: {why}");
        2
    };
    let reference = match Reference::parse(target) {
        Ok(reference) if reference.is_pinned() => {
            return refuse(&format!(
                "{target}: push to a tag (oci://REGISTRY/REPO:TAG); the digest is what the push \
                 prints"
            ));
        }
        Ok(reference) => reference,
        Err(e) => return refuse(&e.to_string()),
    };
    let source = file.display().to_string();
    line("policy", &source);
    let bytes = match files::read_regular(file, MAX_POLICY_BYTES) {
        Ok(bytes) => bytes,
        Err(e) => return refuse(&e),
    };
    line("size", &format!("{} bytes", bytes.len()));
    let checked = Compiler::new(config.limits(), config.cache_dir.clone())
        .map_err(|e| format!("{e:#}"))
        .and_then(|compiler| compiler.compile(&source, &bytes).map_err(|e| e.to_string()))
        .and_then(|compiled| {
            line("sha256", &compiled.identity().sha256);
            line(
                "world",
                &format!("{} (this agent: {WORLD})", compiled.world),
            );
            line(
                "compiled",
                &format!("in {:?} ({})", compiled.compile_time, compiled.origin),
            );
            compiled.instantiate(&[]).map_err(|e| e.to_string())
        });
    if let Err(e) = checked {
        return refuse(&format!("{source}: not pushed: {e}"));
    }
    line("init", "ok, with an empty config");
    let started = std::time::Instant::now();
    match Puller::new(config).push(&bytes, &reference) {
        Ok(pinned) => {
            line("pushed", &format!("{reference} in {:?}", started.elapsed()));
            // The last line, alone: what scripts read.
            println!("{pinned}");
            0
        }
        Err(e) => {
            eprintln!("lameduck push: {e}");
            1
        }
    }
}
