//! Pulling, the cache by digest, tags and their fallback, resolving, the blocking API.

use lameduck_oci::{BlockingRegistry, Error, Registry, Source, TagFallback};

use crate::block_on;
use crate::fixture::{TestRegistry, component};

#[test]
fn pinned_pull_is_verified_cached_and_then_served_offline() {
    let mut registry = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let client = Registry::new(registry.settings(cache.path())).unwrap();
    let bytes = component(200_000, 10);
    let pinned = block_on(client.push(&bytes, &registry.reference("drain:v1"))).unwrap();

    let first = block_on(client.pull(&pinned, TagFallback::Never)).unwrap();
    assert_eq!(first.source, Source::Registry);
    assert_eq!(first.component, bytes);
    assert_eq!(first.pinned, pinned);
    assert_eq!(&first.manifest_digest, pinned.digest().unwrap());

    let second = block_on(client.pull(&pinned, TagFallback::Never)).unwrap();
    assert_eq!(second.source, Source::Cache);
    assert_eq!(second.component, bytes);

    // A restart with the registry down: a new client, same cache, no network.
    registry.stop();
    let restarted = Registry::new(registry.settings(cache.path())).unwrap();
    let offline = block_on(restarted.pull(&pinned, TagFallback::Never)).unwrap();
    assert_eq!(offline.source, Source::Cache);
    assert_eq!(offline.component, bytes);
}

#[test]
fn registry_down_at_start_fails_then_cache_serves_after_one_pull() {
    let mut registry = TestRegistry::start();
    let bytes = component(50_000, 11);
    let cache = tempfile::tempdir().unwrap();
    let client = Registry::new(registry.settings(cache.path())).unwrap();
    let pinned = block_on(client.push(&bytes, &registry.reference("drain:v1"))).unwrap();
    registry.stop();

    // Nothing cached and the registry down: a clear failure, after bounded retries.
    let error = block_on(client.pull(&pinned, TagFallback::Never)).unwrap_err();
    assert!(matches!(error, Error::Unreachable { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains(&format!("cannot reach registry {}", registry.host())),
        "{text}"
    );
    assert!(
        text.contains(&pinned.to_string()),
        "names the reference: {text}"
    );

    registry.resume();
    assert_eq!(
        block_on(client.pull(&pinned, TagFallback::Never))
            .unwrap()
            .source,
        Source::Registry
    );
    registry.stop();
    assert_eq!(
        block_on(client.pull(&pinned, TagFallback::Never))
            .unwrap()
            .source,
        Source::Cache
    );
}

#[test]
fn tag_resolves_over_the_network_and_falls_back_only_when_asked() {
    let mut registry = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let client = Registry::new(registry.settings(cache.path())).unwrap();
    let tag = registry.reference("drain:stable");
    let v1 = component(30_000, 12);
    let pinned_v1 = block_on(client.push(&v1, &tag)).unwrap();
    assert_eq!(
        &block_on(client.resolve(&tag)).unwrap(),
        pinned_v1.digest().unwrap()
    );
    let pulled = block_on(client.pull(&tag, TagFallback::Never)).unwrap();
    assert_eq!(
        (pulled.source, pulled.pinned),
        (Source::Registry, pinned_v1.clone())
    );

    // The tag moves: resolve sees it, and a tag pull follows it (not the cache).
    let v2 = component(30_000, 13);
    let pinned_v2 = block_on(client.push(&v2, &tag)).unwrap();
    assert_ne!(pinned_v1, pinned_v2);
    assert_eq!(
        &block_on(client.resolve(&tag)).unwrap(),
        pinned_v2.digest().unwrap()
    );
    let pulled = block_on(client.pull(&tag, TagFallback::Never)).unwrap();
    assert_eq!(
        (pulled.source, pulled.component),
        (Source::Registry, v2.clone())
    );
    // A pinned reference resolves to its pin without the network.
    assert_eq!(
        &block_on(client.resolve(&pinned_v1)).unwrap(),
        pinned_v1.digest().unwrap()
    );

    registry.stop();
    let error = block_on(client.pull(&tag, TagFallback::Never)).unwrap_err();
    assert!(matches!(error, Error::Unreachable { .. }), "{error:?}");
    let fallback = block_on(client.pull(&tag, TagFallback::LastPulled)).unwrap();
    assert_eq!(
        fallback.component, v2,
        "the last pull of the tag, not the first"
    );
    assert_eq!(fallback.pinned, pinned_v2);
    let Source::CachedTag { failure } = &fallback.source else {
        panic!("{:?}", fallback.source)
    };
    assert!(failure.contains("cannot reach registry"), "{failure}");

    // A tag never pulled has nothing to fall back on.
    let never = registry.reference("drain:never-pulled");
    let error = block_on(client.pull(&never, TagFallback::LastPulled)).unwrap_err();
    assert!(matches!(error, Error::NoCachedTag { .. }), "{error:?}");
    assert!(error.to_string().contains("no earlier pull of"), "{error}");
}

#[test]
fn corrupt_cache_entry_is_dropped_not_used() {
    let mut registry = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let client = Registry::new(registry.settings(cache.path())).unwrap();
    let bytes = component(40_000, 14);
    let pinned = block_on(client.push(&bytes, &registry.reference("drain:v1"))).unwrap();
    let pulled = block_on(client.pull(&pinned, TagFallback::Never)).unwrap();

    let mut corrupt = bytes.clone();
    corrupt[1000] ^= 0xff;
    std::fs::write(&pulled.path, &corrupt).unwrap();
    // Re-hashed on load: the registry is asked again, and the good bytes come back.
    let again = block_on(client.pull(&pinned, TagFallback::Never)).unwrap();
    assert_eq!(again.source, Source::Registry);
    assert_eq!(again.component, bytes);
    assert_eq!(
        std::fs::read(&again.path).unwrap(),
        bytes,
        "the entry is rewritten whole"
    );

    // Corrupt again with the registry down: a failure, never the corrupt bytes.
    std::fs::write(&pulled.path, &corrupt).unwrap();
    registry.stop();
    let error = block_on(client.pull(&pinned, TagFallback::Never)).unwrap_err();
    assert!(matches!(error, Error::Unreachable { .. }), "{error:?}");
    assert!(!pulled.path.exists(), "the corrupt entry was removed");
}

#[test]
fn blocking_api_from_a_plain_thread() {
    let registry = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let settings = registry.settings(cache.path());
    let reference = registry.reference("blocking:v1");
    let bytes = component(20_000, 15);
    let (pinned, pulled) = std::thread::spawn(move || {
        let client = BlockingRegistry::new(settings).unwrap();
        let pinned = client.push(&bytes, &reference).unwrap();
        assert_eq!(
            &client.resolve(&reference).unwrap(),
            pinned.digest().unwrap()
        );
        let pulled = client.pull(&pinned, TagFallback::Never).unwrap();
        assert_eq!(pulled.component, bytes);
        (pinned, pulled)
    })
    .join()
    .unwrap();
    assert_eq!(pulled.pinned, pinned);
    assert!(pulled.elapsed > std::time::Duration::ZERO);
}
