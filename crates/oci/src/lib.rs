//! Fetches, verifies and caches lameduck policy components from OCI registries.
//!
//! A policy is named `oci://REGISTRY/REPO@sha256:DIGEST` (pinned) or
//! `oci://REGISTRY/REPO:TAG` ([`Reference`]). It is stored as the CNCF TAG
//! Runtime Wasm OCI artifact: an OCI image manifest whose config has media type
//! `application/vnd.wasm.config.v0+json` and whose one layer, `application/wasm`,
//! is the component ([`artifact`] holds the media types; the older
//! `application/vnd.wasm.content.layer.v1+wasm` layer is accepted on pull).
//!
//! [`Registry`] pulls (manifest and layer digests verified, sizes capped,
//! timeouts, stall detection, bounded retries), caches by digest on disk, so a
//! pinned reference starts without the network, resolves tags and pushes.
//! Credentials come from a `.dockerconfigjson`, extra trust from a PEM CA
//! bundle, plain HTTP only for registries listed as insecure ([`Settings`]).
//! [`BlockingRegistry`] is the same for a plain thread.
//!
//! The registry protocol is [`oci_client`]'s; this crate adds the policy
//! rules on top. It does not validate the component: the host compiles it.

#![warn(missing_docs)]

pub mod artifact;
mod auth;
mod blocking;
mod cache;
mod error;
mod reference;
mod registry;
mod settings;

pub use blocking::BlockingRegistry;
pub use error::{Error, Result};
pub use reference::{Digest, Reference, SCHEME};
pub use registry::{Pulled, Registry, Source, TagFallback};
pub use settings::Settings;
