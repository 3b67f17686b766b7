//! `drain`: the default policy, embedded in the agent.
//!
//! Readiness goes down at once. The app is signalled when the evidence says
//! it is safe: no request has arrived on any connection for a quiet period
//! (the sign that the endpoint is gone from every load balancer), and no
//! request is awaiting its response; or when the deadline leaves just the
//! time the app needs to stop. Idle keep-alive connections do not hold it
//! (with the host's per-connection evidence, `sock-diag`; from
//! `/proc/net/tcp` every open connection counts as in flight). If the app
//! has not exited some time after the signal, it is killed.
//!
//! The quiet period is sized from the silences between requests learned
//! while serving: twice their 99th percentile, within bounds. Until enough
//! has been learned (a pod that served only seconds, traffic too sparse for
//! a silence to mean anything) the drain also lasts at least `min-drain`,
//! as a fixed `preStop: sleep` would: never less safe than the sleep it
//! replaces.
//!
//! A request is in flight until its answer is done: answers that stream,
//! and those the sockets cannot tell done (calls multiplexed on HTTP/2
//! connections), hold the signal like any other. Where the app counts its
//! own work in progress (a gauge on its metrics endpoint, read by a
//! `metrics` probe named by `in-flight-metric`), that count stands in for
//! what the sockets cannot tell, and the larger of it and what the sockets
//! do see is in flight. Long-lived connections (WebSockets, event streams)
//! never finish by themselves: they are waited for `long-lived-wait` after
//! the rest is quiet, then the app is signalled, which closes them.
//!
//! Config:
//! * `probe` — the `connections` probe to read (default `connections`);
//! * `in-flight-metric` — a `metrics` probe counting the app's work in
//!   progress (default none);
//! * `long-lived-wait` — how long long-lived connections are waited for
//!   once the rest is quiet (default `3s`);
//! * `quiet` — the shortest quiet period (default `150ms`: longer than the
//!   100 ms scheduler period a CPU-throttled balancer can stall for);
//! * `quiet-max` — the longest, whatever was learned (default `5s`);
//! * `min-drain` — the shortest drain until enough has been learned (default
//!   `5s`);
//! * `reserve` — time left to the app after the signal (default `5s`, at most
//!   a third of the drain budget);
//! * `recheck` — the longest it waits before it looks again (default
//!   `100ms`); sooner when the quiet period or `min-drain` would end;
//! * `signal` — the stop signal (default `TERM`);
//! * `kill-after` — time from the signal to KILL (default `10s`).

use lameduck_sdk::*;

/// Silences measured before the learned ones are trusted.
const SILENCES_NEEDED: u32 = 50;

/// Signals the app once traffic has moved away and work has drained.
#[derive(Debug, Clone)]
pub struct Drain {
    probe: String,
    in_flight_metric: Option<String>,
    long_lived_wait_ms: u32,
    quiet_ms: u32,
    quiet_max_ms: u32,
    min_drain_ms: u32,
    reserve_ms: u32,
    recheck_ms: u32,
    signal: Signal,
    kill_after_ms: u32,
}

impl Policy for Drain {
    fn init(config: &mut Config) -> Result<Self, String> {
        let drain = Drain {
            probe: config.string("probe", "connections"),
            in_flight_metric: Some(config.string("in-flight-metric", ""))
                .filter(|name| !name.is_empty()),
            long_lived_wait_ms: config.duration_ms("long-lived-wait", 3_000)?,
            quiet_ms: config.duration_ms("quiet", 150)?,
            quiet_max_ms: config.duration_ms("quiet-max", 5_000)?,
            min_drain_ms: config.duration_ms("min-drain", 5_000)?,
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
            let floor = self.min_drain_ms;
            if s.elapsed_ms >= floor {
                return self.stop(format!(
                    "no traffic evidence (probe `{}` missing or failed); waited {floor} ms",
                    self.probe
                ));
            }
            return Decision::recheck(
                recheck.min(floor - s.elapsed_ms),
                format!("no traffic evidence; waiting {floor} ms"),
            )
            .ready(false);
        };
        let (quiet, learned) = self.quiet_period(&c.silences);
        // Only silence during the drain is evidence that traffic moved away.
        let silent = c
            .since_last_request_ms
            .map_or(s.elapsed_ms, |since| since.min(s.elapsed_ms));
        let floor = if learned { 0 } else { self.min_drain_ms };
        let (in_flight, of_which) = self.in_flight(s, c);
        // Long-lived connections are waited for a while once all is quiet.
        let long_lived_quiet = quiet.saturating_add(self.long_lived_wait_ms);
        // Look again when the wait could be over, and no later than `recheck`.
        let (over_in, waiting) = if in_flight > 0 {
            (
                recheck,
                format!("{in_flight} request(s) in flight{of_which}"),
            )
        } else if silent < quiet {
            (
                quiet - silent,
                format!("last request {silent} ms ago, waiting for {quiet} ms of quiet"),
            )
        } else if s.elapsed_ms < floor {
            (
                floor - s.elapsed_ms,
                format!(
                    "quiet for {silent} ms, but too little learned to trust it: draining at least {floor} ms"
                ),
            )
        } else if c.long_lived > 0 && silent < long_lived_quiet {
            (
                long_lived_quiet - silent,
                format!(
                    "quiet for {silent} ms; {} long-lived connection(s) waited for up to {} ms more",
                    c.long_lived,
                    long_lived_quiet - silent
                ),
            )
        } else {
            let long_lived = match c.long_lived {
                0 => String::new(),
                n => format!("; {n} long-lived connection(s) left for the app to close"),
            };
            return self.stop(format!(
                "no request for {silent} ms (quiet period {quiet} ms{}) and none in flight{long_lived}",
                if learned { "" } else { ", at least min-drain" }
            ));
        };
        Decision::recheck(recheck.min(over_in), waiting).ready(false)
    }
}

impl Drain {
    /// The requests in flight, and what they are made of, in words. With
    /// the app's own count, it stands in for what the sockets cannot tell
    /// (`unsure`); the larger of it and what they see wins.
    fn in_flight(&self, s: &Snapshot, c: &Connections) -> (u32, String) {
        let seen = c.in_flight - c.unsure.min(c.in_flight);
        let counted = self
            .in_flight_metric
            .as_deref()
            .and_then(|name| s.metrics(name))
            .map(|m| m.sum.max(0.0).ceil().min(f64::from(u32::MAX)) as u32);
        let detail = |n: u32, what: &str| (n > 0).then(|| format!("{n} {what}"));
        match counted {
            Some(count) => {
                let parts = [
                    detail(c.streaming, "streaming"),
                    Some(format!("the app counts {count}")),
                ];
                let parts: Vec<String> = parts.into_iter().flatten().collect();
                (seen.max(count), format!(" ({})", parts.join(", ")))
            }
            None => {
                let parts = [detail(c.streaming, "streaming"), detail(c.unsure, "unsure")];
                let parts: Vec<String> = parts.into_iter().flatten().collect();
                let of_which = if parts.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", parts.join(", "))
                };
                (c.in_flight, of_which)
            }
        }
    }

    /// The quiet period, and whether it rests on enough learned silences:
    /// twice their 99th percentile, within bounds. With nothing learned at
    /// all, the shortest: `min-drain` stands in for the evidence then.
    fn quiet_period(&self, silences: &Silences) -> (u32, bool) {
        let Some(p99) = silences.p99_ms else {
            return (self.quiet_ms, false);
        };
        let wanted = p99.saturating_mul(2).max(self.quiet_ms);
        let learned = silences.count >= SILENCES_NEEDED && wanted <= self.quiet_max_ms;
        (wanted.min(self.quiet_max_ms), learned)
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
