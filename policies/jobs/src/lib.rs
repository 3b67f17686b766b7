//! `jobs`: for queue workers. The app is told to stop taking work (a signal
//! of the operator's choice, or none), the policy waits until a probe says the
//! app is idle, then signals it to stop; if the deadline comes first, the app
//! is signalled with the time it needs to stop still left.
//!
//! Config:
//! * `stop-taking-work` — the signal that means "take no new job" (default
//!   `USR1`; `none` sends nothing);
//! * `probe` — the probe that says the app is idle (default `idle`): an HTTP
//!   2xx, an existing file, an exec that exits 0, or no connections;
//! * `reserve` — time left to the app after the stop signal (default `5s`,
//!   at most a third of the drain budget);
//! * `recheck` — how often to look again (default `250ms`);
//! * `signal` — the stop signal (default `TERM`).

use lameduck_sdk::*;

/// Waits for the worker to go idle, then stops it.
pub struct Jobs {
    stop_taking_work: Option<Signal>,
    probe: String,
    reserve_ms: u32,
    recheck_ms: u32,
    signal: Signal,
}

impl Policy for Jobs {
    fn init(config: &mut Config) -> Result<Self, String> {
        Ok(Jobs {
            stop_taking_work: config.signal("stop-taking-work", Some(Signal::Usr1))?,
            probe: config.string("probe", "idle"),
            reserve_ms: config.duration_ms("reserve", 5_000)?,
            recheck_ms: config.duration_ms("recheck", 250)?.max(1),
            signal: config
                .signal("signal", Some(Signal::Term))?
                .unwrap_or(Signal::Term),
        })
    }

    fn decide(&mut self, s: &Snapshot) -> Decision {
        if s.sent_at(self.signal).is_some() {
            return Decision::wait_for_exit("signalled; waiting for the app to exit");
        }
        let reserve = self.reserve_ms.min(s.budget_ms() / 3);
        if s.remaining_ms <= reserve {
            return self.stop(format!("deadline near: {} ms left", s.remaining_ms));
        }
        let recheck = self.recheck_ms.min(s.remaining_ms - reserve);
        if let Some(stop_taking_work) = self.stop_taking_work
            && s.sent_at(stop_taking_work).is_none()
        {
            return Decision::recheck(
                recheck,
                format!(
                    "told the app to take no new work ({})",
                    stop_taking_work.name()
                ),
            )
            .ready(false)
            .signal(stop_taking_work);
        }
        match s.probe(&self.probe) {
            Some(value) if value.is_idle() => {
                self.stop(format!("probe `{}` says idle", self.probe))
            }
            Some(ProbeValue::Failed(why)) => {
                Decision::recheck(recheck, format!("probe `{}` failed: {why}", self.probe))
                    .ready(false)
            }
            Some(_) => {
                Decision::recheck(recheck, format!("probe `{}` says busy", self.probe)).ready(false)
            }
            None => {
                Decision::recheck(recheck, format!("no probe named `{}`", self.probe)).ready(false)
            }
        }
    }
}

impl Jobs {
    fn stop(&self, reason: String) -> Decision {
        Decision::wait_for_exit(reason)
            .ready(false)
            .signal(self.signal)
    }
}

export_policy!(Jobs);

#[cfg(test)]
mod tests {
    use super::*;
    use lameduck_sdk::harness::{Harness, first_signal};

    fn busy() -> ProbeValue {
        ProbeValue::Http(HttpResponse {
            status: 503,
            body: "1 job".into(),
        })
    }

    fn idle() -> ProbeValue {
        ProbeValue::Http(HttpResponse {
            status: 200,
            body: "idle".into(),
        })
    }

    #[test]
    fn stops_taking_work_then_waits_for_idle_then_terms() {
        let mut h = Harness::<Jobs>::new(&[]).unwrap();
        h.set_probe("idle", busy());
        h.signal(Signal::Term);
        let steps = h.run(20_000, |t, h| {
            if t >= 2_000 {
                h.set_probe("idle", idle());
            }
        });
        assert_eq!(steps[0].decision.signal, Some(Signal::Usr1));
        assert_eq!(steps[0].at_ms, 0);
        assert!(!h.ready());
        let term = first_signal(&steps, Signal::Term).unwrap();
        assert_eq!(term.at_ms, 2_000);
        assert!(
            term.decision.reason.contains("idle"),
            "{}",
            term.decision.reason
        );
    }

    #[test]
    fn a_worker_that_never_idles_is_stopped_with_the_reserve_left() {
        let mut h = Harness::<Jobs>::new(&[("reserve", "4s")])
            .unwrap()
            .budget(20_000);
        h.set_probe("idle", busy());
        h.signal(Signal::Term);
        let steps = h.run(30_000, |_, _| {});
        let term = first_signal(&steps, Signal::Term).unwrap();
        assert_eq!(term.at_ms, 16_000);
    }

    #[test]
    fn no_stop_signal_and_a_failing_probe() {
        let mut h = Harness::<Jobs>::new(&[("stop-taking-work", "none"), ("probe", "busy-file")])
            .unwrap()
            .budget(9_000);
        h.set_probe("busy-file", ProbeValue::Failed("timed out".into()));
        h.signal(Signal::Term);
        let steps = h.run(30_000, |_, _| {});
        assert!(
            steps
                .iter()
                .all(|s| s.decision.signal != Some(Signal::Usr1))
        );
        assert!(steps[0].decision.reason.contains("timed out"));
        assert_eq!(first_signal(&steps, Signal::Term).unwrap().at_ms, 6_000);
    }
}
