//! Constructors for decisions, so a policy reads like the sentence it means.

use crate::{Decision, Next, Signal};

impl Decision {
    /// Sample again and call `decide` after `ms` milliseconds.
    pub fn recheck(ms: u32, reason: impl Into<String>) -> Self {
        Self::with_next(Next::Recheck(ms), reason)
    }

    /// Wait for the app to exit; `decide` is not called again.
    pub fn wait_for_exit(reason: impl Into<String>) -> Self {
        Self::with_next(Next::WaitForExit, reason)
    }

    /// Stop now: anything still running is killed.
    pub fn exit(reason: impl Into<String>) -> Self {
        Self::with_next(Next::Exit, reason)
    }

    /// Also set the readiness flag.
    pub fn ready(mut self, ready: bool) -> Self {
        self.ready = Some(ready);
        self
    }

    /// Also send the app a signal.
    pub fn signal(mut self, signal: Signal) -> Self {
        self.signal = Some(signal);
        self
    }

    fn with_next(next: Next, reason: impl Into<String>) -> Self {
        Decision {
            ready: None,
            signal: None,
            next,
            reason: reason.into(),
        }
    }
}
