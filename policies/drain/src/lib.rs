//! `drain`: the default policy, embedded in the agent.
//!
//! Readiness goes down at once. The app is signalled when the evidence says
//! it is safe: no new connection on its ports for a quiet period (the sign that
//! the endpoint is gone from every node's rules) and no connection in flight,
//! or when the deadline leaves just the time the app needs to stop. If it has
//! not exited some time after the signal, it is killed.
//!
//! The quiet period grows with the gaps seen between arrivals while serving
//! (a sparse stream's normal silence is no evidence), within bounds.
//!
//! Config:
//! * `probe` — the `connections` probe to read (default `connections`);
//! * `quiet` — the shortest quiet period (default `1s`);
//! * `quiet-max` — the longest, whatever was learned (default `5s`);
//! * `reserve` — time left to the app after the signal (default `5s`, at most
//!   a third of the drain budget);
//! * `recheck` — how often to look again while waiting (default `100ms`);
//! * `signal` — the stop signal (default `TERM`);
//! * `kill-after` — time from the signal to KILL (default `10s`).

use lameduck_sdk::*;

/// Signals the app once traffic has moved away and work has drained.
#[derive(Debug, Clone)]
pub struct Drain {
    probe: String,
    quiet_ms: u32,
    quiet_max_ms: u32,
    reserve_ms: u32,
    recheck_ms: u32,
    signal: Signal,
    kill_after_ms: u32,
}

impl Policy for Drain {
    fn init(config: &mut Config) -> Result<Self, String> {
        let drain = Drain {
            probe: config.string("probe", "connections"),
            quiet_ms: config.duration_ms("quiet", 1_000)?,
            quiet_max_ms: config.duration_ms("quiet-max", 5_000)?,
            reserve_ms: config.duration_ms("reserve", 5_000)?,
            recheck_ms: config.duration_ms("recheck", 100)?.max(1),
            signal: config
                .signal("signal", Some(Signal::Term))?
                .unwrap_or(Signal::Term),
            kill_after_ms: config.duration_ms("kill-after", 10_000)?,
        };
        if drain.quiet_max_ms < drain.quiet_ms {
            return Err(format!(
                "policy.config.quiet-max ({} ms) is shorter than quiet ({} ms)",
                drain.quiet_max_ms, drain.quiet_ms
            ));
        }
        Ok(drain)
    }

    fn decide(&mut self, s: &Snapshot) -> Decision {
        if let Some(at) = s.sent_at(self.signal) {
            return self.after_signal(s, s.elapsed_ms.saturating_sub(at));
        }
        let reserve = self.reserve_ms.min(s.budget_ms() / 3);
        if s.remaining_ms <= reserve {
            return self.stop(format!(
                "deadline near: {} ms left, {reserve} ms kept for the app to stop",
                s.remaining_ms
            ));
        }
        // Never sleep past the moment the reserve begins.
        let recheck = self.recheck_ms.min(s.remaining_ms - reserve);
        let Some(c) = s.connections(&self.probe) else {
            let quiet = self.quiet_max_ms;
            if s.elapsed_ms >= quiet {
                return self.stop(format!(
                    "no connection evidence (probe `{}` missing or failed); waited {quiet} ms",
                    self.probe
                ));
            }
            return Decision::recheck(
                recheck,
                format!("no connection evidence; waiting {quiet} ms"),
            )
            .ready(false);
        };
        let quiet = self.quiet_period(c);
        let silent = c
            .since_last_accept_ms
            .map_or(s.elapsed_ms, |since| since.min(s.elapsed_ms));
        match (silent >= quiet, c.established) {
            (true, 0) => self.stop(format!(
                "no new connection for {silent} ms (quiet period {quiet} ms) and none in flight"
            )),
            (true, n) => Decision::recheck(recheck, format!("{n} connection(s) in flight")).ready(false),
            (false, n) => Decision::recheck(
                recheck,
                format!("last new connection {silent} ms ago, waiting for {quiet} ms of quiet; {n} in flight"),
            )
            .ready(false),
        }
    }
}

impl Drain {
    /// A learned long gap, with half again as margin, within bounds.
    fn quiet_period(&self, c: &Connections) -> u32 {
        c.typical_gap_ms
            .map_or(self.quiet_ms, |gap| gap.saturating_add(gap / 2))
            .clamp(self.quiet_ms, self.quiet_max_ms)
    }

    fn stop(&self, reason: String) -> Decision {
        Decision::recheck(self.kill_after_ms.max(1), reason)
            .ready(false)
            .signal(self.signal)
    }

    fn after_signal(&self, s: &Snapshot, since: u32) -> Decision {
        if s.sent_at(Signal::Kill).is_some() {
            return Decision::wait_for_exit("killed; waiting for the app to exit");
        }
        if since >= self.kill_after_ms {
            return Decision::wait_for_exit(format!(
                "app still running {since} ms after {}",
                self.signal.name()
            ))
            .signal(Signal::Kill);
        }
        Decision::recheck(
            self.kill_after_ms - since,
            format!(
                "signalled; waiting up to {} ms for the app to exit",
                self.kill_after_ms - since
            ),
        )
    }
}

export_policy!(Drain);

#[cfg(test)]
mod tests;
