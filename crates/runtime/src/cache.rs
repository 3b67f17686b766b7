//! The compile cache: compiled policies on disk, keyed by the component's
//! sha256 and the engine's compatibility hash, so that a restart (or the same
//! bytes again) does not recompile.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of compiled components. Every failure to read or write it is
/// logged and ignored: the cache only ever saves time.
#[derive(Clone)]
pub struct Cache {
    dir: Option<PathBuf>,
    engine: Engine,
    engine_hash: String,
}

impl Cache {
    pub fn new(dir: Option<PathBuf>, engine: &Engine) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        // Code compiled from another rewrite of the same bytes is not ours.
        super::instrument::VERSION.hash(&mut hasher);
        Cache {
            dir,
            engine: engine.clone(),
            engine_hash: format!("{:016x}", hasher.finish()),
        }
    }

    fn path(&self, sha256: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{sha256}-{}.cwasm", self.engine_hash)))
    }

    /// The cached compilation of the component with this sha256, if any.
    pub fn load(&self, sha256: &str) -> Option<Component> {
        let path = self.path(sha256)?;
        if !path.exists() {
            return None;
        }
        // SAFETY: the file is one this cache wrote (below, from the engine's
        // own serialization) in a directory only the agent writes to; the
        // engine checks its header and compatibility hash before use.
        match unsafe { Component::deserialize_file(&self.engine, &path) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring unreadable cache entry: {e}");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Saves a compiled component, atomically.
    pub fn store(&self, sha256: &str, component: &Component) {
        let Some(path) = self.path(sha256) else {
            return;
        };
        if let Err(e) = write_atomically(&path, component) {
            tracing::debug!(path = %path.display(), "compile cache not written: {e}");
        }
    }
}

fn write_atomically(path: &Path, component: &Component) -> anyhow::Result<()> {
    let dir = path.parent().expect("cache paths have a parent");
    // Only the agent's user may write native code that the agent will load.
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(dir)?;
    let bytes = component.serialize()?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
