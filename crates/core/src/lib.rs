//! The contract between lameduck and its policies, and the drain's rules.
//!
//! * The contract's types, generated from `wit/` ([`bindings`]), with the
//!   look-ups and constructors that make them pleasant to use
//!   ([`Snapshot::connections`], [`Decision::recheck`]).
//! * [`agent`]: the agent's shutdown rules as a state machine without I/O,
//!   `(state, input, now) → effects`, driven by the agent itself, by
//!   `lameduck simulate` and by the SDK's test harness.
//! * [`record`]: the timeline's entries as typed records, written by the
//!   agent and read back by `/status`'s readers, `replay`, `simulate` and
//!   the picture.
//!
//! Nothing here sleeps, reads a socket or runs wasm: it builds for
//! `wasm32-wasip2` (the SDK's policies link it) as for the agent.

pub mod agent;
mod decision;
mod duration;
pub mod record;
mod signal;
mod snapshot;

pub use duration::{parse_duration_ms, show_duration};

/// The bindings generated from `wit/` by wit-bindgen: the contract's types
/// for everyone, and the guest's side of the world for policies (the SDK's
/// `export_policy!` uses them).
#[allow(clippy::too_many_arguments)] // generated: one argument per flattened field
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "drain-policy",
        pub_export_macro: true,
        export_macro_name: "__export_drain_policy",
        default_bindings_module: "lameduck_sdk::bindings",
        additional_derives: [PartialEq],
    });
}

pub use bindings::lameduck::policy::types::{
    Child, Connections, Decision, Evidence, FileState, HttpResponse, Level, Metrics, Mode, Next,
    Probe, ProbeValue, SentSignal, Series, Signal, SignalAction, Silences, Snapshot, Trigger,
};

/// Milliseconds, saturating at the contract's `u32`.
pub fn millis(duration: std::time::Duration) -> u32 {
    duration.as_millis().min(u128::from(u32::MAX)) as u32
}
