//! `delay`: the `preStop: sleep N` equivalent, and the baseline the other
//! policies are measured against. Readiness goes down, the policy waits a
//! fixed time whatever the evidence, signals the app and waits for it to exit.
//!
//! Config: `delay` (default `5s`), `signal` (default `TERM`).

use lameduck_sdk::*;

/// Waits a fixed delay, then signals.
pub struct Delay {
    delay_ms: u32,
    signal: Signal,
}

impl Policy for Delay {
    fn init(config: &mut Config) -> Result<Self, String> {
        Ok(Delay {
            delay_ms: config.duration_ms("delay", 5_000)?,
            signal: config
                .signal("signal", Some(Signal::Term))?
                .unwrap_or(Signal::Term),
        })
    }

    fn decide(&mut self, s: &Snapshot) -> Decision {
        if s.sent_at(self.signal).is_some() {
            return Decision::wait_for_exit("signalled; waiting for the app to exit");
        }
        if s.elapsed_ms < self.delay_ms {
            return Decision::recheck(
                self.delay_ms - s.elapsed_ms,
                format!("fixed delay of {} ms", self.delay_ms),
            )
            .ready(false);
        }
        Decision::wait_for_exit(format!("fixed delay of {} ms is over", self.delay_ms))
            .ready(false)
            .signal(self.signal)
    }
}

export_policy!(Delay);

#[cfg(test)]
mod tests {
    use super::*;
    use lameduck_sdk::harness::{Harness, first_signal};

    #[test]
    fn waits_the_delay_whatever_the_evidence_then_terms() {
        let mut h = Harness::<Delay>::new(&[("delay", "3s")]).unwrap();
        assert_eq!(h.signal(Signal::Term), Some(SignalAction::Drain));
        let steps = h.run(10_000, |_, _| {});
        assert!(!h.ready());
        let term = first_signal(&steps, Signal::Term).unwrap();
        assert_eq!(term.at_ms, 3_000);
        assert_eq!(term.decision.next, Next::WaitForExit);
    }

    #[test]
    fn other_signals_are_forwarded() {
        let mut h = Harness::<Delay>::new(&[]).unwrap();
        assert_eq!(h.signal(Signal::Usr1), Some(SignalAction::Forward));
        assert!(!h.snapshot().draining());
    }

    #[test]
    fn bad_config_is_refused() {
        let err = Harness::<Delay>::new(&[("delay", "ten")]).err().unwrap();
        assert!(err.contains("policy.config.delay"), "{err}");
        let err = Harness::<Delay>::new(&[("dely", "10s")]).err().unwrap();
        assert!(err.contains("unknown key dely"), "{err}");
    }
}
