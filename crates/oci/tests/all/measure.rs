//! Figures, not assertions: `cargo test -p lameduck-oci --release --test all
//! measure -- --ignored --nocapture`.

use std::time::Instant;

use lameduck_oci::{Registry, Source, TagFallback};

use crate::block_on;
use crate::fixture::{TestRegistry, component};

#[test]
#[ignore = "a measurement; run it by name with --ignored --nocapture"]
fn pull_18_mb_cold_and_cached() {
    let registry = TestRegistry::start();
    let bytes = component(18_400_000, 40);
    let cache = tempfile::tempdir().unwrap();
    let mut settings = registry.settings(cache.path());
    settings.timeout = std::time::Duration::from_secs(300);
    let client = Registry::new(settings.clone()).unwrap();
    let started = Instant::now();
    let pinned = block_on(client.push(&bytes, &registry.reference("python-drain:v1"))).unwrap();
    println!(
        "push  {:>8.1} ms  {} bytes",
        started.elapsed().as_secs_f64() * 1e3,
        bytes.len()
    );
    for round in 0..3 {
        // Cold: a fresh cache and a fresh client (new connections, new auth).
        let cold_cache = tempfile::tempdir().unwrap();
        let mut cold_settings = settings.clone();
        cold_settings.cache_dir = cold_cache.path().to_owned();
        let cold = Registry::new(cold_settings).unwrap();
        let pulled = block_on(cold.pull(&pinned, TagFallback::Never)).unwrap();
        assert_eq!(pulled.source, Source::Registry);
        let cached = block_on(cold.pull(&pinned, TagFallback::Never)).unwrap();
        assert_eq!(cached.source, Source::Cache);
        println!(
            "round {round}: cold pull {:>8.1} ms, from cache {:>7.1} ms",
            pulled.elapsed.as_secs_f64() * 1e3,
            cached.elapsed.as_secs_f64() * 1e3
        );
    }
}
