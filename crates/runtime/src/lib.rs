//! The policy runtime: loads `drain-policy` components, checks them against
//! the world, and calls them in a sandbox with a CPU, memory and stack budget.
//! When a call fails, the native fallback (the `drain` logic) decides instead.
//!
//! It knows nothing about signals, processes or HTTP: snapshots in, decisions
//! out.

pub mod builtin;
mod cache;
mod compile;
mod convert;
mod fallback;
mod instance;
mod instrument;
mod output;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use compile::{Compiled, Compiler, Origin, inspect, sha256_hex};
pub use fallback::Fallback;
pub use instance::Instance;

/// The world's bindings, one module per version the agent loads.
mod bindings {
    pub mod v0_3 {
        wasmtime::component::bindgen!({ path: "../../wit", world: "drain-policy" });
    }
    pub mod v0_2 {
        wasmtime::component::bindgen!({ path: "../../wit/v0.2", world: "drain-policy" });
    }
    pub mod v0_1 {
        wasmtime::component::bindgen!({ path: "../../wit/v0.1", world: "drain-policy" });
    }
}

// The agent's own types are the contract's: the same WIT, converted at the
// wasm boundary for each version of the world.
use lameduck_core::{Decision, Level, Signal, SignalAction, Snapshot};

/// The package and version of the world this agent implements.
pub const WORLD: &str = "lameduck:policy@0.3.0";

/// The older versions it still loads, adapting what it shows them.
pub const OLDER_WORLDS: [&str; 2] = ["lameduck:policy@0.2.0", "lameduck:policy@0.1.0"];

/// The budgets every policy call runs within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// CPU time per call, enforced by epoch interruption.
    pub cpu: Duration,
    /// CPU time for instantiating and `init`: once per instance, off the
    /// drain's path, and a large component's start-up (JavaScript, Python)
    /// must not be refused for one slow moment of a loaded machine.
    pub init: Duration,
    /// Linear memories and tables of an instance, together, in bytes.
    pub memory: usize,
    /// Wasm stack, in bytes.
    pub stack: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu: Duration::from_millis(10),
            init: Duration::from_secs(1),
            memory: 16 << 20,
            stack: 512 << 10,
        }
    }
}

/// The longest reason kept from a decision; the agent logs, counts and
/// keeps every reason, so a policy must not choose their size.
pub const MAX_REASON: usize = 512;

/// The longest error text kept from a policy (`init`'s refusal, a trap).
pub const MAX_ERROR: usize = 1024;

/// `text` cut to at most `max` bytes (at a character boundary), saying so.
pub fn bounded(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let total = text.len();
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&format!("… [truncated: {total} bytes]"));
    text
}

/// Why a component cannot be used as a policy.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a WebAssembly component: {0}")]
    Invalid(String),
    #[error("built against lameduck:policy@{found}, {} than this agent's {WORLD} (it also loads {})", relation(.found), OLDER_WORLDS.join(", "))]
    Version { found: String },
    #[error("export `{0}` is missing (a policy exports `init`, `on-signal` and `decide`)")]
    MissingExport(&'static str),
    #[error("imports `{0}`, which the sandbox does not provide")]
    UnknownImport(String),
    #[error("does not match the {WORLD} world: {0}")]
    Mismatch(String),
}

fn relation(found: &str) -> &'static str {
    if compile::is_newer(found) {
        "a newer version"
    } else {
        "an older version"
    }
}

/// Why a call into a policy failed. Each is also a metrics label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("ran past its CPU budget of {0:?}")]
    Timeout(Duration),
    #[error("tried to grow its memory past the limit of {0} bytes")]
    Memory(usize),
    #[error("overflowed its stack")]
    StackOverflow,
    #[error("trapped: {0}")]
    Trap(String),
    #[error("`init` refused the config: {0}")]
    Init(String),
    #[error("no policy is loaded yet")]
    Unloaded,
}

impl PolicyError {
    /// A short, stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PolicyError::Timeout(_) => "timeout",
            PolicyError::Memory(_) => "memory",
            PolicyError::StackOverflow => "stack",
            PolicyError::Trap(_) => "trap",
            PolicyError::Init(_) => "init",
            PolicyError::Unloaded => "unloaded",
        }
    }
}

/// Where a policy came from and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `builtin:drain`, or the file it was read from.
    pub source: String,
    /// The sha256 of the component's bytes, in hex.
    pub sha256: String,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (sha256 {})", self.source, &self.sha256[..12])
    }
}

/// An answer from the policy, or from the fallback when the policy failed.
#[derive(Debug, Clone)]
pub struct Answer<T> {
    pub value: T,
    /// Set when the fallback answered because the policy failed.
    pub failure: Option<PolicyError>,
    /// How long the call took.
    pub took: Duration,
}

/// The live policy: a loaded component with its instance, and the fallback.
/// Calls never fail: when the component does, the fallback answers and the
/// component is instantiated afresh for the next call.
pub struct Policy {
    compiled: Option<Arc<Compiled>>,
    config: Vec<(String, String)>,
    instance: Option<Instance>,
    fallback: Fallback,
}

impl Policy {
    /// A policy with nothing loaded yet: the fallback decides.
    pub fn fallback_only(config: Vec<(String, String)>) -> Self {
        Policy {
            compiled: None,
            fallback: Fallback::new(&config),
            config,
            instance: None,
        }
    }

    /// Swaps in a compiled component and its ready instance (`init` already
    /// ran with `config`). The next call uses it.
    pub fn swap(&mut self, compiled: Arc<Compiled>, instance: Instance) {
        self.compiled = Some(compiled);
        self.instance = Some(instance);
    }

    /// The loaded component's identity, if one is loaded.
    pub fn identity(&self) -> Option<&Identity> {
        self.compiled.as_deref().map(Compiled::identity)
    }

    /// The config given to `init`.
    pub fn config(&self) -> &[(String, String)] {
        &self.config
    }

    /// The next step of the drain.
    pub fn decide(&mut self, snapshot: &Snapshot) -> Answer<Decision> {
        self.call(
            |instance| instance.decide(snapshot),
            |fallback| fallback.decide(snapshot),
        )
    }

    /// What to do with a signal.
    pub fn on_signal(&mut self, signal: Signal, snapshot: &Snapshot) -> Answer<SignalAction> {
        self.call(
            |instance| instance.on_signal(signal, snapshot),
            |fallback| fallback.on_signal(signal, snapshot),
        )
    }

    fn call<T>(
        &mut self,
        wasm: impl FnOnce(&mut Instance) -> Result<T, PolicyError>,
        native: impl FnOnce(&mut Fallback) -> T,
    ) -> Answer<T> {
        let start = std::time::Instant::now();
        let result = match self.ready_instance() {
            Ok(instance) => wasm(instance),
            Err(e) => Err(e),
        };
        let (value, failure) = match result {
            Ok(value) => (value, None),
            Err(failure) => {
                // A failed instance may be left inconsistent: start afresh next time.
                self.instance = None;
                (native(&mut self.fallback), Some(failure))
            }
        };
        Answer {
            value,
            failure,
            took: start.elapsed(),
        }
    }

    /// Makes a fresh instance now if the last call failed, so that the next
    /// call does not wait for it. A failure here is met again, and answered
    /// by the fallback, at that call.
    pub fn prepare(&mut self) {
        let _ = self.ready_instance();
    }

    fn ready_instance(&mut self) -> Result<&mut Instance, PolicyError> {
        let Some(compiled) = &self.compiled else {
            return Err(PolicyError::Unloaded);
        };
        if self.instance.is_none() {
            self.instance = Some(compiled.instantiate(&self.config)?);
        }
        Ok(self.instance.as_mut().expect("just set"))
    }
}
