//! Policies named by `oci://` references: the registry settings as
//! [`lameduck_oci`] takes them, and a client for one thread (the
//! reloader's, or a command's) that pulls, resolves tags and pushes.
//!
//! Pulled manifests and components are kept under `cache_dir/oci`, by
//! digest, so that a restart with the registry down starts from the cache;
//! their compiled code is kept by the runtime's compile cache, beside, keyed
//! by the component's sha256 and the engine's settings. Without a cache
//! directory, each pull goes through a private directory emptied after it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lameduck_core::record::PulledFrom;
use lameduck_oci::{BlockingRegistry, Digest, Error, Reference, Settings, Source, TagFallback};

use crate::config::Config;
use crate::source::{Content, PolicySource};

/// A verified component and where it came from.
pub struct Pulled {
    /// The reference as given.
    pub reference: Reference,
    /// The manifest digest it names now.
    pub digest: Digest,
    pub from: PulledFrom,
    /// Why the registry was not used (a tag served from its last pull).
    pub failure: Option<String>,
    pub took: Duration,
    pub component: Vec<u8>,
}

impl Pulled {
    /// The reference with the digest it named: what the timeline and
    /// `/status` call the policy.
    pub fn label(&self) -> String {
        label(&self.reference, &self.digest)
    }
}

/// `oci://…:TAG@sha256:…` for a tag, the reference itself when pinned.
pub fn label(reference: &Reference, digest: &Digest) -> String {
    match reference.digest() {
        Some(_) => reference.to_string(),
        None => format!("{reference}@{digest}"),
    }
}

/// A command's policy, read or pulled.
pub struct Fetched {
    /// What the command calls it: the source, or the reference with its
    /// digest.
    pub name: String,
    pub bytes: std::borrow::Cow<'static, [u8]>,
    /// How it was pulled, in words, if it was.
    pub pulled: Option<String>,
}

/// A command's policy (`check`, `replay`, `simulate`), pulled at once when
/// `source` is a reference (or a file holding one).
pub fn fetch(config: &Config, source: &PolicySource) -> Result<Fetched, String> {
    match source.read()? {
        Content::Component(bytes) => Ok(Fetched {
            name: source.to_string(),
            bytes,
            pulled: None,
        }),
        Content::Reference(reference) => {
            let pulled = Puller::new(config).pull(&reference)?;
            let from = match (&pulled.from, &pulled.failure) {
                (PulledFrom::Registry, _) => "from the registry".to_string(),
                (PulledFrom::Cache, _) => "from the cache".to_string(),
                (PulledFrom::LastPull, failure) => format!(
                    "from the cache, as the tag's last pull (the registry failed: {})",
                    failure.as_deref().unwrap_or("?")
                ),
            };
            Ok(Fetched {
                name: pulled.label(),
                pulled: Some(format!("{} {from} in {:?}", pulled.label(), pulled.took)),
                bytes: pulled.component.into(),
            })
        }
    }
}

/// A registry client for one thread, made at its first use.
pub struct Puller {
    settings: Settings,
    /// Without a cache directory: pulls go through a scratch directory,
    /// emptied after each.
    scratch: bool,
    /// Made at the first call; it reads the auth and CA files. Dropped
    /// after a failure new files may cure (a refusal of the credentials, a
    /// file that cannot be read), so that a rotated Secret is read again.
    client: Option<BlockingRegistry>,
}

impl Puller {
    /// A client with `config`'s registry settings; nothing is read yet.
    pub fn new(config: &Config) -> Puller {
        let (cache, scratch) = match &config.cache_dir {
            Some(dir) => (dir.join("oci"), false),
            None => (scratch_dir(), true),
        };
        let mut settings = Settings::new(cache);
        settings.auth_file = config.registry_auth.clone();
        settings.ca_file = config.registry_ca.clone();
        settings.insecure = config.insecure_registries.clone();
        Puller {
            settings,
            scratch,
            client: None,
        }
    }

    /// The component `reference` names, its digests checked: from the cache
    /// when the digest is pinned and cached, else from the registry (with
    /// retries and timeouts); a tag the registry fails to resolve is served
    /// from its last pull, if cached.
    pub fn pull(&mut self, reference: &Reference) -> Result<Pulled, String> {
        let pulled = self.call(|client| client.pull(reference, TagFallback::LastPulled));
        if self.scratch {
            let _ = std::fs::remove_dir_all(&self.settings.cache_dir);
        }
        let pulled = pulled?;
        let (from, failure) = match pulled.source {
            Source::Registry => (PulledFrom::Registry, None),
            Source::Cache => (PulledFrom::Cache, None),
            Source::CachedTag { failure } => (PulledFrom::LastPull, Some(failure)),
        };
        Ok(Pulled {
            reference: reference.clone(),
            digest: pulled.manifest_digest,
            from,
            failure,
            took: pulled.elapsed,
            component: pulled.component,
        })
    }

    /// The manifest digest a tag names now (a HEAD request).
    pub fn resolve(&mut self, reference: &Reference) -> Result<Digest, String> {
        self.call(|client| client.resolve(reference))
    }

    /// Pushes `component` to the tag `reference`; returns the pinned reference.
    pub fn push(&mut self, component: &[u8], reference: &Reference) -> Result<Reference, String> {
        self.call(|client| client.push(component, reference))
    }

    fn call<T>(
        &mut self,
        call: impl FnOnce(&BlockingRegistry) -> lameduck_oci::Result<T>,
    ) -> Result<T, String> {
        let client = match self.client.take() {
            Some(client) => client,
            None => BlockingRegistry::new(self.settings.clone()).map_err(|e| e.to_string())?,
        };
        let result = call(&client);
        let stale = matches!(
            &result,
            Err(Error::Unauthorized { .. } | Error::Settings { .. })
        );
        if !stale {
            self.client = Some(client);
        }
        result.map_err(|e| e.to_string())
    }
}

/// A directory of this process's own for pulls without a cache, under the
/// system's temporary directory: removed after each pull, and whatever is
/// read from it is hashed again, as from the cache.
fn scratch_dir() -> PathBuf {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "lameduck-pull-{}-{}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_labelled_with_the_digest_it_named() {
        let digest = Digest::of(b"manifest");
        let tag = Reference::parse("oci://r:5000/drain:stable").unwrap();
        assert_eq!(
            label(&tag, &digest),
            format!("oci://r:5000/drain:stable@{digest}")
        );
        let pinned = tag.pinned(digest.clone());
        assert_eq!(label(&pinned, &digest), pinned.to_string());
    }
}
