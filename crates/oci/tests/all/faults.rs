//! Each fault is refused with a reason that names what failed and where.

use std::time::{Duration, Instant};

use lameduck_oci::{Digest, Error, Registry, Source, TagFallback};

use crate::block_on;
use crate::fixture::{StallingProxy, TestRegistry, component, oci_layout, write_auth_file};

#[test]
fn wrong_password_is_401_and_anonymous_too() {
    let registry = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let good = Registry::new(registry.settings(cache.path())).unwrap();
    let pinned =
        block_on(good.push(&component(1000, 20), &registry.reference("drain:v1"))).unwrap();

    let auth = cache.path().join("wrong.json");
    write_auth_file(&auth, &registry.host(), "not the password");
    let mut settings = registry.settings(cache.path());
    settings.auth_file = Some(auth);
    let wrong = Registry::new(settings).unwrap();
    let error = block_on(wrong.pull(&pinned, TagFallback::Never)).unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(
            error,
            Error::Unauthorized {
                status: 401,
                had_credentials: true,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        text.contains("HTTP 401, with the credentials of the auth file"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "registry {} refused access to drain",
            registry.host()
        )),
        "{text}"
    );
    let error = block_on(wrong.push(b"x", &registry.reference("drain:v2"))).unwrap_err();
    assert!(matches!(error, Error::Unauthorized { .. }), "{error:?}");

    let mut settings = registry.settings(cache.path());
    settings.auth_file = None;
    let anonymous = Registry::new(settings).unwrap();
    let error = block_on(anonymous.pull(&pinned, TagFallback::Never)).unwrap_err();
    assert!(
        error.to_string().contains("HTTP 401, anonymously"),
        "{error}"
    );
}

#[test]
fn missing_repository_tag_and_digest_are_404() {
    let registry = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let client = Registry::new(registry.settings(cache.path())).unwrap();
    block_on(client.push(&component(1000, 21), &registry.reference("drain:v1"))).unwrap();
    for missing in ["no/such/repo:v1", "drain:no-such-tag"] {
        let reference = registry.reference(missing);
        let error = block_on(client.pull(&reference, TagFallback::Never)).unwrap_err();
        assert!(
            matches!(error, Error::NotFound { .. }),
            "{missing}: {error:?}"
        );
        let text = error.to_string();
        assert!(
            text.contains("manifest not found on registry") && text.contains(missing),
            "{text}"
        );
    }
    let absent = registry
        .reference("drain:v1")
        .pinned(Digest::of(b"nothing"));
    let error = block_on(client.pull(&absent, TagFallback::Never)).unwrap_err();
    assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains(&Digest::of(b"nothing").to_string()),
        "{error}"
    );
    let error = block_on(client.resolve(&registry.reference("drain:no-such-tag"))).unwrap_err();
    assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
}

#[test]
fn blob_tampered_on_the_registry_disk_is_refused() {
    let registry = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let client = Registry::new(registry.settings(cache.path())).unwrap();
    let bytes = component(300_000, 22);
    let pinned = block_on(client.push(&bytes, &registry.reference("drain:v1"))).unwrap();
    let data = registry.blob_data(&Digest::of(&bytes));
    let mut tampered = std::fs::read(&data).unwrap();
    assert_eq!(tampered, bytes);
    tampered[150_000] ^= 0x01;
    std::fs::write(&data, &tampered).unwrap();

    let error = block_on(client.pull(&pinned, TagFallback::Never)).unwrap_err();
    assert!(
        matches!(error, Error::DigestMismatch { what: "blob", .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains(&format!("expected {}", Digest::of(&bytes))),
        "{text}"
    );
    assert!(
        text.contains(&format!("got {}", Digest::of(&tampered))),
        "{text}"
    );
    assert!(
        std::fs::read_dir(cache.path().join("blobs/sha256"))
            .map_or(true, |mut d| d.next().is_none()),
        "nothing tampered reaches the cache"
    );
}

#[test]
fn manifest_tampered_on_the_registry_disk_is_refused() {
    let registry = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let client = Registry::new(registry.settings(cache.path())).unwrap();
    let pinned =
        block_on(client.push(&component(1000, 23), &registry.reference("drain:v1"))).unwrap();
    // The registry keeps manifests as blobs too; add a space the JSON parser ignores.
    let data = registry.blob_data(pinned.digest().unwrap());
    let mut manifest = std::fs::read(&data).unwrap();
    manifest.push(b' ');
    std::fs::write(&data, &manifest).unwrap();

    let error = block_on(client.pull(&pinned, TagFallback::Never)).unwrap_err();
    assert!(matches!(error, Error::DigestMismatch { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("manifest") && text.contains(&pinned.digest().unwrap().to_string()),
        "{text}"
    );
}

#[test]
fn blob_and_manifest_over_their_caps_are_refused() {
    let registry = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let mut settings = registry.settings(cache.path());
    let client = Registry::new(settings.clone()).unwrap();
    let bytes = component(64 * 1024, 24);
    let pinned = block_on(client.push(&bytes, &registry.reference("big:v1"))).unwrap();

    settings.max_layer_bytes = 16 * 1024;
    let capped = Registry::new(settings.clone()).unwrap();
    let error = block_on(capped.pull(&pinned, TagFallback::Never)).unwrap_err();
    assert!(
        matches!(
            error,
            Error::TooLarge {
                size: 65536,
                limit: 16384,
                ..
            }
        ),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains(&format!("blob {}", Digest::of(&bytes))),
        "{text}"
    );
    assert!(text.contains("over the limit of 16384 bytes"), "{text}");

    settings.max_layer_bytes = 1 << 20;
    settings.max_manifest_bytes = 100;
    let capped = Registry::new(settings).unwrap();
    let error = block_on(capped.pull(&pinned, TagFallback::Never)).unwrap_err();
    assert!(
        matches!(error, Error::TooLarge { limit: 100, .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("manifest on registry"),
        "{error}"
    );
}

#[test]
fn registry_that_stalls_mid_blob_fails_within_the_stall_timeout() {
    let registry = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let client = Registry::new(registry.settings(cache.path())).unwrap();
    let bytes = component(2 << 20, 25);
    block_on(client.push(&bytes, &registry.reference("drain:v1"))).unwrap();

    // The proxy passes each connection's first 64 KiB (TLS handshake, the
    // manifest), then sends nothing more, holding the connection open.
    let proxy = StallingProxy::start(registry.port, 64 * 1024);
    let host = format!("127.0.0.1:{}", proxy.port);
    let auth = cache.path().join("proxy-auth.json");
    write_auth_file(&auth, &host, crate::fixture::PASSWORD);
    let mut settings = registry.settings(cache.path());
    settings.auth_file = Some(auth);
    settings.stall_timeout = Duration::from_secs(1);
    settings.retries = 1;
    let client = Registry::new(settings).unwrap();
    let reference = lameduck_oci::Reference::parse(&format!("oci://{host}/drain:v1")).unwrap();

    let started = Instant::now();
    let error = block_on(client.pull(&reference, TagFallback::Never)).unwrap_err();
    let took = started.elapsed();
    assert!(matches!(error, Error::Stalled { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains(&format!("blob {}", Digest::of(&bytes))),
        "{text}"
    );
    assert!(text.contains("stalled: no bytes for 1s"), "{text}");
    // Two attempts of one 1 s stall each, and a 100 ms pause: far from the 60 s total.
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[test]
fn tag_moved_to_a_container_image_is_refused_and_last_good_kept() {
    let registry = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let client = Registry::new(registry.settings(cache.path())).unwrap();
    let tag = registry.reference("drain:stable");
    let good = component(5000, 26);
    let pinned = block_on(client.push(&good, &tag)).unwrap();
    block_on(client.pull(&tag, TagFallback::Never)).unwrap();

    // skopeo moves the tag to a container image: an empty tar layer and an image config.
    let layout = tempfile::tempdir().unwrap();
    let tar = vec![0u8; 1024];
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [Digest::of(&tar).to_string()] },
    }))
    .unwrap();
    oci_layout(
        layout.path(),
        "stable",
        ("application/vnd.oci.image.config.v1+json", &config),
        &[("application/vnd.oci.image.layer.v1.tar", &tar)],
    );
    registry.skopeo_push_layout(layout.path(), "stable", "drain");
    // skopeo compresses the tar on the way: the digest is what the registry now holds.
    let garbage = Digest::of(&registry.skopeo_manifest("drain:stable"));
    assert_ne!(&garbage, pinned.digest().unwrap());

    let error = block_on(client.pull(&tag, TagFallback::Never)).unwrap_err();
    assert!(matches!(error, Error::NotWasm { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains(&garbage.to_string()) && text.contains("not a wasm component artifact"),
        "{text}"
    );
    assert!(
        text.contains("config media type application/vnd.oci.image.config.v1+json"),
        "{text}"
    );
    assert_eq!(
        &block_on(client.resolve(&tag)).unwrap(),
        &garbage,
        "resolve only reports the digest"
    );

    let kept = block_on(client.pull(&tag, TagFallback::LastPulled)).unwrap();
    assert_eq!((kept.component, kept.pinned), (good, pinned));
    let Source::CachedTag { failure } = kept.source else {
        panic!()
    };
    assert!(
        failure.contains("not a wasm component artifact"),
        "{failure}"
    );

    // Pinned to the garbage's digest: refused the same way.
    let error = block_on(client.pull(&tag.pinned(garbage), TagFallback::Never)).unwrap_err();
    assert!(matches!(error, Error::NotWasm { .. }), "{error:?}");
}
