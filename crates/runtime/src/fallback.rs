//! The native fallback: the `drain` policy's own code, linked into the agent,
//! answering whenever the loaded policy cannot.

use lameduck_policy_drain::Drain;
use lameduck_sdk::Policy as _;

use super::{Decision, Signal, SignalAction, Snapshot};

/// The `drain` logic, run natively. It takes the policy's config when that
/// config is also valid for `drain`, and `drain`'s defaults otherwise.
pub struct Fallback {
    drain: Drain,
}

impl Fallback {
    pub fn new(config: &[(String, String)]) -> Self {
        let drain = lameduck_sdk::init_policy::<Drain>(config.to_vec())
            .or_else(|_| lameduck_sdk::init_policy::<Drain>(Vec::new()))
            .expect("drain's defaults are valid");
        Fallback { drain }
    }

    pub fn decide(&mut self, snapshot: &Snapshot) -> Decision {
        self.drain.decide(snapshot)
    }

    pub fn on_signal(&mut self, signal: Signal, snapshot: &Snapshot) -> SignalAction {
        self.drain.on_signal(signal, snapshot)
    }
}
