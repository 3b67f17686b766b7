//! What can go wrong, each saying what failed and where (registry, repository, digest).

use std::path::PathBuf;
use std::time::Duration;

use crate::{Digest, Reference};

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a reference could not be parsed, pulled, resolved, pushed or cached.
///
/// Every network variant carries the reference (which names the registry and
/// repository and the tag or digest asked for); blob variants also name the
/// blob's digest. [`Error::is_transient`] tells which ones a retry may cure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not an `oci://` reference.
    #[error("invalid OCI reference {input:?}: {reason}")]
    Reference {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A setting cannot be used (an unreadable auth file, a CA file without certificates…).
    #[error("registry settings: {what} {path}: {reason}")]
    Settings {
        /// Which setting (`auth file`, `CA file`, …).
        what: &'static str,
        /// The file named by the setting.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// No connection could be made (refused, no route, DNS, TLS handshake).
    #[error("{reference}: cannot reach registry {registry}: {detail}")]
    Unreachable {
        /// What was being fetched or pushed.
        reference: Box<Reference>,
        /// `host:port`.
        registry: String,
        /// The underlying error chain.
        detail: String,
    },

    /// The registry refused the credentials, or there were none and it wants some.
    #[error(
        "{reference}: registry {registry} refused access to {repository} \
         (HTTP {status}{}): {detail}",
        if *.had_credentials { ", with the credentials of the auth file" } else { ", anonymously" }
    )]
    Unauthorized {
        /// What was being fetched or pushed.
        reference: Box<Reference>,
        /// `host:port`.
        registry: String,
        /// The repository.
        repository: String,
        /// 401 or 403.
        status: u16,
        /// Whether credentials for this registry were found in the auth file.
        had_credentials: bool,
        /// The registry's own words.
        detail: String,
    },

    /// The repository, tag, manifest or blob does not exist.
    #[error("{reference}: {what} not found on registry {registry} (HTTP 404): {detail}")]
    NotFound {
        /// What was being fetched.
        reference: Box<Reference>,
        /// `host:port`.
        registry: String,
        /// `manifest` or `blob sha256:…`.
        what: String,
        /// The registry's own words.
        detail: String,
    },

    /// Any other unexpected HTTP status.
    #[error("{reference}: registry {registry} answered HTTP {status} for {what}: {detail}")]
    Status {
        /// What was being fetched or pushed.
        reference: Box<Reference>,
        /// `host:port`.
        registry: String,
        /// What was asked (`manifest`, `blob sha256:…`, `push`).
        what: String,
        /// The HTTP status.
        status: u16,
        /// The registry's own words.
        detail: String,
    },

    /// Bytes did not hash to the digest that names them.
    #[error(
        "{reference}: {what} digest mismatch on registry {registry}: expected {expected}, got {actual}"
    )]
    DigestMismatch {
        /// What was being fetched.
        reference: Box<Reference>,
        /// `host:port`.
        registry: String,
        /// `manifest` or `blob`.
        what: &'static str,
        /// The digest asked for.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },

    /// A manifest or blob is larger than its cap (or than its descriptor says).
    #[error(
        "{reference}: {what} on registry {registry} is {size} bytes or more, over the limit of {limit} bytes"
    )]
    TooLarge {
        /// What was being fetched.
        reference: Box<Reference>,
        /// `host:port`.
        registry: String,
        /// `manifest` or `blob sha256:…`.
        what: String,
        /// How many bytes it has (or at least).
        size: u64,
        /// The cap (or the size the descriptor declared).
        limit: u64,
    },

    /// The registry sent nothing for the stall timeout in the middle of an answer.
    #[error("{reference}: {what} from registry {registry} stalled: no bytes for {after:?}")]
    Stalled {
        /// What was being fetched.
        reference: Box<Reference>,
        /// `host:port`.
        registry: String,
        /// `manifest` or `blob sha256:…`.
        what: String,
        /// The stall timeout.
        after: Duration,
    },

    /// The whole operation ran out of time (all attempts included).
    #[error("{reference}: gave up after {after:?} and {attempts} attempt(s) on registry {registry}{}", match .last { Some(last) => format!("; last failure: {last}"), None => String::new() })]
    TimedOut {
        /// What was being fetched or pushed.
        reference: Box<Reference>,
        /// `host:port`.
        registry: String,
        /// The total timeout.
        after: Duration,
        /// How many attempts were started.
        attempts: u32,
        /// The last attempt's failure, if one had finished.
        last: Option<Box<Error>>,
    },

    /// The manifest is not a WebAssembly component artifact (an image, an index, two layers…).
    #[error(
        "{reference}: manifest {digest} on registry {registry} is not a wasm component artifact: {reason}"
    )]
    NotWasm {
        /// What was being fetched.
        reference: Box<Reference>,
        /// `host:port`.
        registry: String,
        /// The manifest's digest.
        digest: Digest,
        /// What is wrong with it.
        reason: String,
    },

    /// The registry answered something the protocol does not allow.
    #[error("{reference}: registry {registry}: {reason}")]
    Protocol {
        /// What was being fetched or pushed.
        reference: Box<Reference>,
        /// `host:port`.
        registry: String,
        /// What was wrong.
        reason: String,
    },

    /// Any other failure of the HTTP exchange (a broken connection mid-answer…).
    #[error("{reference}: talking to registry {registry}: {detail}")]
    Transport {
        /// What was being fetched or pushed.
        reference: Box<Reference>,
        /// `host:port`.
        registry: String,
        /// The underlying error chain.
        detail: String,
    },

    /// The cache directory cannot be written.
    #[error("policy cache {path}: {source}")]
    Cache {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A tag could not be resolved and no earlier resolution of it is cached.
    #[error("{failure}; no earlier pull of {reference} is cached to fall back on")]
    NoCachedTag {
        /// The tag reference.
        reference: Box<Reference>,
        /// Why the registry could not be used.
        failure: Box<Error>,
    },

    /// The blocking wrapper could not start its runtime.
    #[error("cannot start a runtime for registry calls: {0}")]
    Runtime(#[source] std::io::Error),

    /// A push was asked with a reference that cannot take it.
    #[error("cannot push to {reference}: {reason}")]
    PushTarget {
        /// The reference given.
        reference: Box<Reference>,
        /// Why it cannot be pushed to.
        reason: String,
    },
}

impl Error {
    /// Whether another attempt may succeed: the network, a stall, a 5xx or 429.
    /// Credentials, missing content, bad digests, caps and layouts are final.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::Stalled { .. } | Error::Transport { .. } => true,
            Error::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            _ => false,
        }
    }
}

/// An error and its sources on one line, `a: b: c` (reqwest hides the cause otherwise).
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}
