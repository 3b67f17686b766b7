//! What `inject` writes into a manifest: lameduck's containers, volumes,
//! hook and probe, and the ConfigMap holding its config. Plain data,
//! serialised with serde; [`super::write`] merges it into the document.

use std::collections::BTreeMap;

use serde::Serialize;

/// The pod annotation that marks an injected pod, with the mode as value.
pub const ANNOTATION: &str = "lameduck.dev/injected";
/// The annotation kubectl reads to pick a pod's main container.
pub const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

/// The native sidecar (sidecar mode).
pub const SIDECAR: &str = "lameduck";
/// The init container that copies the binary (entrypoint mode).
pub const INSTALL: &str = "lameduck-install";
/// The emptyDir the binary is copied into, and where it is mounted.
pub const BIN_VOLUME: &str = "lameduck-bin";
pub const BIN_DIR: &str = "/lameduck-bin";
/// The ConfigMap volume, where it is mounted, and its key.
pub const CONFIG_VOLUME: &str = "lameduck-config";
pub const CONFIG_DIR: &str = "/etc/lameduck";
pub const CONFIG_KEY: &str = "lameduck.yaml";
/// The ConfigMap's key holding the policy's reference (`--policy oci://…`),
/// a file in the config volume that `policy.file` names: the kubelet swaps
/// it when the ConfigMap changes, and lameduck, watching it, pulls and
/// swaps the policy it names.
pub const POLICY_KEY: &str = "policy.ref";
/// The environment inject sets on lameduck's container.
pub const ENV_CONFIG: &str = "LAMEDUCK_CONFIG";
pub const ENV_NODE_IP: &str = "LAMEDUCK_NODE_IP";

/// The binary's path in the lameduck image (`FROM scratch`, see Dockerfile).
const IMAGE_BINARY: &str = "/lameduck";

/// The wrapped binary in the app container.
pub fn wrapped_binary() -> String {
    format!("{BIN_DIR}/lameduck")
}

/// The ConfigMap for an object named `object`.
pub fn config_map_name(object: &str) -> String {
    format!("{object}-lameduck")
}

/// A container inject adds to the pod's `initContainers`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: &'static str,
    pub image: String,
    pub command: Vec<String>,
    /// `Always` makes an init container a native sidecar.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    pub resources: Resources,
    pub security_context: SecurityContext,
    pub volume_mounts: Vec<VolumeMount>,
}

impl Container {
    /// Entrypoint mode: copies the binary into the shared emptyDir; the
    /// image has no shell and no `cp`, so the binary copies itself.
    pub fn install(image: &str) -> Self {
        Container {
            name: INSTALL,
            image: image.into(),
            command: vec![IMAGE_BINARY.into(), "install".into(), wrapped_binary()],
            restart_policy: None,
            env: Vec::new(),
            readiness_probe: None,
            resources: Resources::new("32Mi"),
            security_context: SecurityContext::RESTRICTED,
            volume_mounts: vec![VolumeMount::new(BIN_VOLUME, BIN_DIR, false)],
        }
    }

    /// Sidecar mode: lameduck beside the app, started before it and
    /// stopped after it by the kubelet.
    pub fn sidecar(image: &str, admin_port: u16) -> Self {
        Container {
            name: SIDECAR,
            image: image.into(),
            command: vec![IMAGE_BINARY.into(), "sidecar".into()],
            restart_policy: Some("Always"),
            env: EnvVar::lameduck(),
            readiness_probe: Some(Probe::readyz(admin_port)),
            // Room for a policy compiled at start when none is precompiled.
            resources: Resources::new("64Mi"),
            security_context: SecurityContext::RESTRICTED,
            volume_mounts: vec![VolumeMount::config()],
        }
    }
}

/// An environment variable, with a value or from the downward API.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvSource>,
}

impl EnvVar {
    /// Where the config is, and the node's IP: lameduck leaves the
    /// kubelet's probes (which come from the node) out of its evidence.
    pub fn lameduck() -> Vec<EnvVar> {
        vec![
            EnvVar {
                name: ENV_CONFIG,
                value: Some(format!("{CONFIG_DIR}/{CONFIG_KEY}")),
                value_from: None,
            },
            EnvVar {
                name: ENV_NODE_IP,
                value: None,
                value_from: Some(EnvSource {
                    field_ref: FieldRef {
                        field_path: "status.hostIP",
                    },
                }),
            },
        ]
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvSource {
    pub field_ref: FieldRef,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    pub field_path: &'static str,
}

/// An HTTP GET on the admin port.
#[derive(Debug, Serialize)]
pub struct HttpGet {
    pub path: &'static str,
    pub port: u16,
}

impl HttpGet {
    /// The preStop hook: holds until the policy lets the app be signalled.
    pub fn prestop(port: u16) -> Self {
        HttpGet {
            path: "/prestop",
            port,
        }
    }

    pub fn readyz(port: u16) -> Self {
        HttpGet {
            path: "/readyz",
            port,
        }
    }
}

/// A handler with only an HTTP GET (a lifecycle hook).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpHandler {
    pub http_get: HttpGet,
}

/// A readiness probe on `/readyz`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub http_get: HttpGet,
    /// A drain turns `/readyz` 503 at once; the kubelet should see it soon.
    pub period_seconds: u32,
    pub failure_threshold: u32,
}

impl Probe {
    pub fn readyz(port: u16) -> Self {
        Probe {
            http_get: HttpGet::readyz(port),
            period_seconds: 2,
            failure_threshold: 1,
        }
    }
}

/// Small requests, and a memory limit well above lameduck's peak.
#[derive(Debug, Serialize)]
pub struct Resources {
    pub requests: BTreeMap<&'static str, &'static str>,
    pub limits: BTreeMap<&'static str, &'static str>,
}

impl Resources {
    fn new(memory_limit: &'static str) -> Self {
        Resources {
            requests: BTreeMap::from([("cpu", "10m"), ("memory", "16Mi")]),
            limits: BTreeMap::from([("memory", memory_limit)]),
        }
    }
}

/// The Pod Security Standard "restricted" profile: lameduck needs no
/// privilege, and a pod with `runAsNonRoot` must not see it run as root
/// (its image sets no user).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext {
    pub allow_privilege_escalation: bool,
    pub read_only_root_filesystem: bool,
    pub run_as_non_root: bool,
    pub run_as_user: u32,
    pub capabilities: Capabilities,
    pub seccomp_profile: SeccompProfile,
}

impl SecurityContext {
    const RESTRICTED: SecurityContext = SecurityContext {
        allow_privilege_escalation: false,
        read_only_root_filesystem: true,
        run_as_non_root: true,
        run_as_user: 65532,
        capabilities: Capabilities { drop: ["ALL"] },
        seccomp_profile: SeccompProfile {
            kind: "RuntimeDefault",
        },
    };
}

#[derive(Debug, Serialize)]
pub struct Capabilities {
    pub drop: [&'static str; 1],
}

#[derive(Debug, Serialize)]
pub struct SeccompProfile {
    #[serde(rename = "type")]
    pub kind: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    pub name: &'static str,
    pub mount_path: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

impl VolumeMount {
    pub fn new(name: &'static str, mount_path: &'static str, read_only: bool) -> Self {
        VolumeMount {
            name,
            mount_path,
            read_only,
        }
    }

    /// The ConfigMap, where `LAMEDUCK_CONFIG` points.
    pub fn config() -> Self {
        VolumeMount::new(CONFIG_VOLUME, CONFIG_DIR, true)
    }
}

/// A pod volume: the binary's emptyDir or the config's ConfigMap.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Volume {
    EmptyDir {
        name: &'static str,
        #[serde(rename = "emptyDir")]
        source: EmptyDir,
    },
    ConfigMap {
        name: &'static str,
        #[serde(rename = "configMap")]
        source: ConfigMapRef,
    },
}

impl Volume {
    /// Room for the static binary (≤ 15 MiB).
    pub fn bin() -> Self {
        Volume::EmptyDir {
            name: BIN_VOLUME,
            source: EmptyDir { size_limit: "32Mi" },
        }
    }

    pub fn config(config_map: &str) -> Self {
        Volume::ConfigMap {
            name: CONFIG_VOLUME,
            source: ConfigMapRef {
                name: config_map.into(),
            },
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDir {
    pub size_limit: &'static str,
}

#[derive(Debug, Serialize)]
pub struct ConfigMapRef {
    pub name: String,
}

/// The reference file's path, in the config volume.
pub fn policy_file() -> String {
    format!("{CONFIG_DIR}/{POLICY_KEY}")
}

/// The ConfigMap holding `lameduck.yaml`, and the policy's reference if given.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMap {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: Metadata,
    pub data: BTreeMap<&'static str, String>,
}

impl ConfigMap {
    pub fn new(
        name: String,
        namespace: Option<String>,
        config: String,
        policy: Option<&str>,
    ) -> Self {
        let mut data = BTreeMap::from([(CONFIG_KEY, config)]);
        if let Some(reference) = policy {
            data.insert(POLICY_KEY, format!("{reference}\n"));
        }
        ConfigMap {
            api_version: "v1",
            kind: "ConfigMap",
            metadata: Metadata { name, namespace },
            data,
        }
    }

    /// The lameduck config it holds.
    pub fn config(&self) -> &str {
        self.data.get(CONFIG_KEY).map_or("", String::as_str)
    }

    /// The document's text (serde_yaml writes the config as a `|` block).
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("a ConfigMap serialises")
    }
}

#[derive(Debug, Serialize)]
pub struct Metadata {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `value` as a YAML tree, for [`super::write`].
pub fn to_value(value: &impl Serialize) -> serde_yaml::Value {
    serde_yaml::to_value(value).expect("inject's objects serialise")
}
