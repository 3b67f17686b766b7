//! What lameduck-oci pushes, skopeo reads; what skopeo pushes, lameduck-oci pulls.

use lameduck_oci::artifact::{
    CONFIG_MEDIA_TYPE, LAYER_MEDIA_TYPE, LEGACY_CONFIG_MEDIA_TYPE, LEGACY_LAYER_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
};
use lameduck_oci::{Digest, Registry, Source, TagFallback};

use crate::block_on;
use crate::fixture::{TestRegistry, component, oci_layout};

#[test]
fn skopeo_reads_what_we_push() {
    let registry = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let client = Registry::new(registry.settings(cache.path())).unwrap();
    let bytes = component(100_000, 1);
    let pinned = block_on(client.push(&bytes, &registry.reference("policies/drain:v1"))).unwrap();
    assert_eq!(
        pinned.to_string(),
        format!(
            "oci://{}/policies/drain@{}",
            registry.host(),
            pinned.digest().unwrap()
        )
    );

    // skopeo fetches the manifest by tag: the bytes hash to the digest push returned.
    let raw = registry.skopeo_manifest("policies/drain:v1");
    assert_eq!(&Digest::of(&raw), pinned.digest().unwrap());
    let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
    assert_eq!(manifest["config"]["mediaType"], CONFIG_MEDIA_TYPE);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["mediaType"], LAYER_MEDIA_TYPE);
    assert_eq!(layers[0]["digest"], Digest::of(&bytes).to_string());
    assert_eq!(layers[0]["size"], bytes.len());

    // skopeo copies it by digest into an OCI layout: the layer is our bytes,
    // the config says wasm/wasip2 and names the layer.
    let out = tempfile::tempdir().unwrap();
    let access = registry.skopeo_access("src-");
    let source = format!(
        "docker://{}/policies/drain@{}",
        registry.host(),
        pinned.digest().unwrap()
    );
    let target = format!("oci:{}:copy", out.path().display());
    let mut args = vec!["copy", "--quiet"];
    args.extend(access.iter().map(String::as_str));
    args.extend([source.as_str(), target.as_str()]);
    registry.skopeo(&args);
    let blob = |digest: &str| {
        std::fs::read(
            out.path()
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    assert_eq!(blob(layers[0]["digest"].as_str().unwrap()), bytes);
    let config: serde_json::Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip2");
    assert_eq!(config["layerDigests"][0], Digest::of(&bytes).to_string());
}

#[test]
fn we_pull_what_skopeo_pushes() {
    let registry = TestRegistry::start();
    let cache = tempfile::tempdir().unwrap();
    let client = Registry::new(registry.settings(cache.path())).unwrap();
    for (tag, config_type, layer_type, seed) in [
        ("current", CONFIG_MEDIA_TYPE, LAYER_MEDIA_TYPE, 2),
        (
            "legacy",
            LEGACY_CONFIG_MEDIA_TYPE,
            LEGACY_LAYER_MEDIA_TYPE,
            3,
        ),
    ] {
        let layout = tempfile::tempdir().unwrap();
        let bytes = component(70_000, seed);
        let config = serde_json::to_vec(&serde_json::json!({
            "created": "2026-01-01T00:00:00Z", "architecture": "wasm", "os": "wasip2",
            "layerDigests": [Digest::of(&bytes).to_string()],
        }))
        .unwrap();
        let digest = oci_layout(
            layout.path(),
            tag,
            (config_type, &config),
            &[(layer_type, &bytes)],
        );
        registry.skopeo_push_layout(layout.path(), tag, "from-skopeo");

        let by_tag = block_on(client.pull(
            &registry.reference(&format!("from-skopeo:{tag}")),
            TagFallback::Never,
        ))
        .unwrap();
        assert_eq!(by_tag.component, bytes, "{tag}");
        assert_eq!(
            by_tag.manifest_digest, digest,
            "{tag}: skopeo kept the manifest as built"
        );
        assert_eq!(by_tag.component_digest, Digest::of(&bytes));
        assert_eq!(by_tag.source, Source::Registry);
        assert_eq!(
            std::fs::read(&by_tag.path).unwrap(),
            bytes,
            "the cache file holds the component"
        );

        let by_digest = block_on(client.pull(&by_tag.pinned, TagFallback::Never)).unwrap();
        assert_eq!(by_digest.source, Source::Cache);
        assert_eq!(by_digest.component, bytes);
    }
}
