//! The CNCF TAG Runtime "Wasm OCI artifact" layout: one OCI image manifest,
//! a wasm config, exactly one layer holding the component.

use serde::{Deserialize, Serialize};

use crate::Digest;

/// The manifest's own media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The config blob's media type written on push.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The layer's media type written on push.
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The older layer media type (wasm-to-oci, Istio, Kubewarden), accepted on pull.
pub const LEGACY_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// The config media type that went with the older layer, accepted on pull.
pub const LEGACY_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v1+json";

/// Media types asked for when fetching a manifest: every kind a tag may point
/// at, so that a non-wasm one is refused with its reason, not a 404.
pub(crate) const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<serde_json::Value>,
}

#[derive(Deserialize, Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: i64,
}

/// The one component layer a wasm artifact's manifest names.
#[derive(Clone, Debug)]
pub(crate) struct Layer {
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    pub(crate) media_type: String,
}

impl Layer {
    /// The descriptor oci-client fetches a blob by.
    pub(crate) fn descriptor(&self) -> oci_client::manifest::OciDescriptor {
        oci_client::manifest::OciDescriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.to_string(),
            size: self.size as i64,
            ..Default::default()
        }
    }
}

/// Reads a manifest and returns its component layer, or why it is not a wasm artifact.
pub(crate) fn component_layer(manifest: &[u8]) -> Result<Layer, String> {
    let manifest: Manifest =
        serde_json::from_slice(manifest).map_err(|e| format!("not a JSON manifest: {e}"))?;
    if manifest.schema_version != Some(2) {
        return Err(format!(
            "schemaVersion is {:?}, not 2",
            manifest.schema_version
        ));
    }
    let media_type = manifest.media_type.as_deref();
    if manifest.manifests.is_some()
        || media_type.is_some_and(|m| m.ends_with("index.v1+json") || m.contains("manifest.list"))
    {
        return Err(format!(
            "it is an image index ({}), not a single artifact",
            media_type.unwrap_or("no mediaType")
        ));
    }
    if let Some(other) = media_type.filter(|m| *m != MANIFEST_MEDIA_TYPE) {
        return Err(format!(
            "manifest media type {other}, not {MANIFEST_MEDIA_TYPE}"
        ));
    }
    let config = manifest.config.ok_or("the manifest has no config")?;
    if config.media_type != CONFIG_MEDIA_TYPE && config.media_type != LEGACY_CONFIG_MEDIA_TYPE {
        return Err(format!(
            "config media type {}, not {CONFIG_MEDIA_TYPE} (a container image or another artifact)",
            config.media_type
        ));
    }
    let layers = manifest.layers.unwrap_or_default();
    let [layer] = layers.as_slice() else {
        return Err(format!(
            "{} layers; a wasm component artifact has exactly one",
            layers.len()
        ));
    };
    if layer.media_type != LAYER_MEDIA_TYPE && layer.media_type != LEGACY_LAYER_MEDIA_TYPE {
        return Err(format!(
            "layer media type {}, not {LAYER_MEDIA_TYPE} (or {LEGACY_LAYER_MEDIA_TYPE})",
            layer.media_type
        ));
    }
    let digest = Digest::parse(&layer.digest).map_err(|e| format!("layer {e}"))?;
    let size = u64::try_from(layer.size).map_err(|_| format!("layer size {} < 0", layer.size))?;
    Ok(Layer {
        digest,
        size,
        media_type: layer.media_type.clone(),
    })
}

/// The config blob and manifest of a pushed component, as bytes (the manifest's
/// digest is the digest of exactly these bytes).
pub(crate) struct Pushable {
    pub(crate) config: Vec<u8>,
    pub(crate) config_digest: Digest,
    pub(crate) layer_digest: Digest,
    pub(crate) manifest: Vec<u8>,
}

/// Lays out `component` as a wasm artifact: a `wasip2` component config and one layer.
pub(crate) fn pushable(component: &[u8], created: &str) -> Pushable {
    let layer_digest = Digest::of(component);
    // The fields of the TAG Runtime spec's config (the `component` summary of
    // exports and imports is optional and would need a wasm parser here).
    let config = serde_json::to_vec(&serde_json::json!({
        "created": created,
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [layer_digest.to_string()],
    }))
    .expect("a JSON value serialises");
    let config_digest = Digest::of(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": config_digest.to_string(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": layer_digest.to_string(),
            "size": component.len(),
        }],
    }))
    .expect("a JSON value serialises");
    Pushable {
        config,
        config_digest,
        layer_digest,
        manifest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_we_push_we_accept() {
        let p = pushable(b"\0asm component", "2026-01-01T00:00:00Z");
        let layer = component_layer(&p.manifest).unwrap();
        assert_eq!(layer.digest, Digest::of(b"\0asm component"));
        assert_eq!(layer.size, 14);
        assert_eq!(layer.media_type, LAYER_MEDIA_TYPE);
        assert_eq!(p.config_digest, Digest::of(&p.config));
    }

    fn manifest(config: &str, layers: &[&str]) -> Vec<u8> {
        let d = Digest::of(b"x").to_string();
        let layers: Vec<_> = layers
            .iter()
            .map(|m| serde_json::json!({"mediaType": m, "digest": d, "size": 1}))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": config, "digest": d, "size": 1},
            "layers": layers,
        }))
        .unwrap()
    }

    #[test]
    fn legacy_layer_accepted() {
        let m = manifest(LEGACY_CONFIG_MEDIA_TYPE, &[LEGACY_LAYER_MEDIA_TYPE]);
        assert_eq!(
            component_layer(&m).unwrap().media_type,
            LEGACY_LAYER_MEDIA_TYPE
        );
    }

    #[test]
    fn refusals_say_why() {
        let image = manifest(
            "application/vnd.oci.image.config.v1+json",
            &["application/vnd.oci.image.layer.v1.tar+gzip"],
        );
        assert!(
            component_layer(&image)
                .unwrap_err()
                .contains("container image")
        );
        let two = manifest(CONFIG_MEDIA_TYPE, &[LAYER_MEDIA_TYPE, LAYER_MEDIA_TYPE]);
        assert!(component_layer(&two).unwrap_err().contains("2 layers"));
        let tar = manifest(
            CONFIG_MEDIA_TYPE,
            &["application/vnd.oci.image.layer.v1.tar"],
        );
        assert!(
            component_layer(&tar)
                .unwrap_err()
                .contains("layer media type")
        );
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(component_layer(index).unwrap_err().contains("image index"));
        assert!(
            component_layer(b"<html>")
                .unwrap_err()
                .contains("not a JSON manifest")
        );
    }
}
