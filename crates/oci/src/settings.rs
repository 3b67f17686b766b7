//! How to reach registries: credentials, trust, caps and timeouts.

use std::path::PathBuf;
use std::time::Duration;

/// Everything [`crate::Registry`] needs to know, with defaults fit for a pod.
///
/// The host declares the user-facing names (`registry.auth_file`,
/// `--registry-auth`, …) and fills this in.
#[derive(Clone, Debug)]
pub struct Settings {
    /// A Docker config JSON with credentials: the `.dockerconfigjson` of a
    /// `kubernetes.io/dockerconfigjson` Secret (or an older `.dockercfg`).
    /// Registries it does not name are used anonymously. Read once, by
    /// [`crate::Registry::new`]: make a new `Registry` when the file changes.
    pub auth_file: Option<PathBuf>,
    /// A PEM bundle of CA certificates trusted in addition to the system's roots
    /// (`/etc/ssl/certs`, or `SSL_CERT_FILE`/`SSL_CERT_DIR`). An image that has
    /// no system roots (the binary alone) needs this to reach any HTTPS
    /// registry: with neither, [`crate::Registry::new`] fails ("No CA
    /// certificates were loaded from the system").
    pub ca_file: Option<PathBuf>,
    /// Registries (`host:port`, exactly as in references) spoken to over plain
    /// HTTP. Every other registry is HTTPS only.
    pub insecure: Vec<String>,
    /// Where pulled manifests and components are kept, by digest.
    pub cache_dir: PathBuf,
    /// The largest manifest accepted, in bytes (the distribution spec suggests 4 MiB).
    pub max_manifest_bytes: u64,
    /// The largest component accepted, in bytes.
    pub max_layer_bytes: u64,
    /// How long a TCP (and TLS) connection may take to open.
    pub connect_timeout: Duration,
    /// How long an answer may go without a byte before it counts as failed.
    pub stall_timeout: Duration,
    /// How long a whole pull, resolve or push may take, retries and backoff included.
    pub timeout: Duration,
    /// How many times a transient failure (network, stall, 5xx, 429) is retried.
    pub retries: u32,
    /// The pause before the first retry; it doubles for each later one, up to 8 s.
    pub backoff: Duration,
}

impl Settings {
    /// Defaults: anonymous, system roots, HTTPS everywhere, manifests up to
    /// 4 MiB, components up to 64 MiB (the Python port of `drain` is 18 MB),
    /// 5 s to connect, 15 s of silence, 2 minutes in all, 3 retries from 0.5 s.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            auth_file: None,
            ca_file: None,
            insecure: Vec::new(),
            cache_dir: cache_dir.into(),
            max_manifest_bytes: 4 << 20,
            max_layer_bytes: 64 << 20,
            connect_timeout: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(15),
            timeout: Duration::from_secs(120),
            retries: 3,
            backoff: Duration::from_millis(500),
        }
    }
}

/// The longest pause between two attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(8);
