//! The same API for a plain thread: each call runs on a runtime of its own.

use crate::{Digest, Pulled, Reference, Registry, Result, Settings, TagFallback};

/// [`Registry`] for callers without an async runtime (the agent's reload and
/// pull threads): each method blocks the calling thread until done.
///
/// Must not be called from inside a tokio runtime (tokio forbids nesting).
#[derive(Debug)]
pub struct BlockingRegistry {
    runtime: tokio::runtime::Runtime,
    registry: Registry,
}

impl BlockingRegistry {
    /// Builds the client and a current-thread runtime for it.
    pub fn new(settings: Settings) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("lameduck-oci")
            .build()
            .map_err(crate::Error::Runtime)?;
        let registry = Registry::new(settings)?;
        Ok(Self { runtime, registry })
    }

    /// The async client underneath.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// [`Registry::pull`], blocking.
    pub fn pull(&self, reference: &Reference, fallback: TagFallback) -> Result<Pulled> {
        self.runtime
            .block_on(self.registry.pull(reference, fallback))
    }

    /// [`Registry::resolve`], blocking.
    pub fn resolve(&self, reference: &Reference) -> Result<Digest> {
        self.runtime.block_on(self.registry.resolve(reference))
    }

    /// [`Registry::push`], blocking.
    pub fn push(&self, component: &[u8], reference: &Reference) -> Result<Reference> {
        self.runtime
            .block_on(self.registry.push(component, reference))
    }
}
