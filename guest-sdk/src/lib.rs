//! Write lameduck drain policies in Rust.
//!
//! A policy is a plain type implementing [`Policy`], exported with
//! [`export_policy!`]. Built for `wasm32-wasip2` it is a component that
//! implements the `lameduck:policy/drain-policy` world; built natively it is an
//! ordinary Rust type that [`harness::Harness`] drives on a virtual clock, so
//! policies are tested with plain `cargo test` — through the agent's own
//! shutdown rules (`lameduck_core::agent`), which the harness shares with
//! the agent.
//!
//! ```ignore
//! use lameduck_sdk::*;
//!
//! struct Now;
//!
//! impl Policy for Now {
//!     fn init(_config: &mut Config) -> Result<Self, String> {
//!         Ok(Now)
//!     }
//!     fn decide(&mut self, _snapshot: &Snapshot) -> Decision {
//!         Decision::wait_for_exit("stop at once").ready(false).signal(Signal::Term)
//!     }
//! }
//!
//! export_policy!(Now);
//! ```

mod config;
pub mod harness;
pub mod log;

pub use config::Config;
pub use lameduck_core::parse_duration_ms;

/// The bindings generated from `wit/`, kept by `lameduck-core`. Policies
/// rarely need them directly: the types are re-exported at the crate root.
pub use lameduck_core::bindings;

pub use lameduck_core::{
    Child, Connections, Decision, Evidence, FileState, HttpResponse, Level, Metrics, Mode, Next,
    Probe, ProbeValue, SentSignal, Series, Signal, SignalAction, Silences, Snapshot, Trigger,
};

/// A drain policy: decides, from a [`Snapshot`], what the agent does next.
///
/// One value lives for the whole life of the policy instance, so a policy may
/// keep state between calls; a policy that is a pure function of the snapshot
/// can be replayed against a recorded timeline.
pub trait Policy: Sized + 'static {
    /// Builds the policy from the operator's `policy.config` map. Read keys
    /// with the typed getters of [`Config`]; an error refuses the policy.
    fn init(config: &mut Config) -> Result<Self, String>;

    /// What to do with a signal the agent received. The default: `term` and
    /// `int` begin the drain, the others are forwarded to the app.
    fn on_signal(&mut self, signal: Signal, _snapshot: &Snapshot) -> SignalAction {
        default_signal_action(signal)
    }

    /// The next step of the drain.
    fn decide(&mut self, snapshot: &Snapshot) -> Decision;
}

/// The usual answer to a signal: `term` and `int` begin the drain, everything
/// else is forwarded to the app.
pub fn default_signal_action(signal: Signal) -> SignalAction {
    match signal {
        Signal::Term | Signal::Int => SignalAction::Drain,
        _ => SignalAction::Forward,
    }
}

/// Builds a policy from `init`'s config pairs, as the export does: reads the
/// config and refuses keys the policy did not read.
pub fn init_policy<P: Policy>(pairs: Vec<(String, String)>) -> Result<P, String> {
    let mut config = Config::new(pairs);
    let policy = P::init(&mut config)?;
    config.finish()?;
    Ok(policy)
}

/// Exports a [`Policy`] type as the component's `drain-policy` world.
///
/// On native targets it expands to nothing, so the same crate can be tested
/// with the harness and linked into other programs.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::bindings::Guest;
            use $crate::{Decision, Policy, Signal, SignalAction, Snapshot};

            ::std::thread_local! {
                static POLICY: ::std::cell::RefCell<Option<$policy>> =
                    const { ::std::cell::RefCell::new(None) };
            }

            struct Export;

            impl Guest for Export {
                fn init(config: Vec<(String, String)>) -> Result<(), String> {
                    let policy = $crate::init_policy::<$policy>(config)?;
                    POLICY.with(|cell| *cell.borrow_mut() = Some(policy));
                    Ok(())
                }

                fn on_signal(signal: Signal, snapshot: Snapshot) -> SignalAction {
                    POLICY.with(|cell| match cell.borrow_mut().as_mut() {
                        Some(policy) => policy.on_signal(signal, &snapshot),
                        None => $crate::default_signal_action(signal),
                    })
                }

                fn decide(snapshot: Snapshot) -> Decision {
                    POLICY.with(|cell| {
                        let mut policy = cell.borrow_mut();
                        let policy = policy.as_mut().expect("`decide` called before `init`");
                        policy.decide(&snapshot)
                    })
                }
            }

    $crate::bindings::__export_drain_policy!(Export with_types_in $crate::bindings);
        };
    };
}
