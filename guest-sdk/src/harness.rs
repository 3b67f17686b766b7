//! A native test harness: drive a policy through a drain on a virtual clock.
//!
//! The harness plays the host: it keeps the clock, the readiness flag, the
//! signals sent and the probes, builds each [`Snapshot`] and applies each
//! [`Decision`] the way the agent does. Tests set probe values, advance the
//! clock and assert on decisions; no wasm, no processes, no waiting.
//!
//! ```ignore
//! let mut h = Harness::<Drain>::new(&[("quiet", "1s")])?.budget(28_000);
//! h.set_probe("connections", conns(1, 0, Some(5_000)));
//! h.begin(Trigger::Signal(Signal::Term));
//! let steps = h.run(10_000, |elapsed, h| {
//!     if elapsed >= 300 { h.set_probe("connections", conns(0, 0, Some(5_300))) }
//! });
//! assert_eq!(steps.last().unwrap().decision.signal, Some(Signal::Term));
//! ```

use crate::{
    Child, Connections, Decision, Next, Policy, Probe, ProbeValue, SentSignal, Signal,
    SignalAction, Snapshot, Trigger,
};

/// One decision taken during [`Harness::run`].
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// When it was taken, in ms since the drain began.
    pub at_ms: u32,
    /// What the policy decided.
    pub decision: Decision,
}

/// Plays the agent around a policy, on a virtual clock.
pub struct Harness<P> {
    policy: P,
    now_ms: u32,
    drain_began_ms: Option<u32>,
    budget_ms: u32,
    trigger: Trigger,
    child: Child,
    ready: bool,
    signals_sent: Vec<SentSignal>,
    probes: Vec<(Probe, u32)>,
}

impl<P: Policy> Harness<P> {
    /// Initialises the policy with `config`, as `init` would be called.
    pub fn new(config: &[(&str, &str)]) -> Result<Self, String> {
        let pairs = config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(Harness {
            policy: crate::init_policy::<P>(pairs)?,
            now_ms: 0,
            drain_began_ms: None,
            budget_ms: 28_000,
            trigger: Trigger::None,
            child: Child::Running,
            ready: true,
            signals_sent: Vec::new(),
            probes: Vec::new(),
        })
    }

    /// Sets the drain budget (grace period minus safety margin); default 28 s.
    pub fn budget(mut self, ms: u32) -> Self {
        self.budget_ms = ms;
        self
    }

    /// Sets a probe's value. Its `unchanged-ms` restarts only if it differs.
    pub fn set_probe(&mut self, name: &str, value: ProbeValue) -> &mut Self {
        let now = self.now_ms;
        match self.probes.iter_mut().find(|(p, _)| p.name == name) {
            Some((probe, changed)) if probe.value != value => {
                probe.value = value;
                *changed = now;
            }
            Some(_) => {}
            None => self.probes.push((
                Probe {
                    name: name.to_string(),
                    value,
                    unchanged_ms: 0,
                },
                now,
            )),
        }
        self
    }

    /// Moves the virtual clock forward.
    pub fn advance(&mut self, ms: u32) -> &mut Self {
        self.now_ms = self.now_ms.saturating_add(ms);
        self
    }

    /// Marks the app as exited with `code`.
    pub fn child_exits(&mut self, code: u8) -> &mut Self {
        self.child = Child::Exited(code);
        self
    }

    /// Begins the drain now, as the agent does on TERM or `/prestop`.
    pub fn begin(&mut self, trigger: Trigger) -> &mut Self {
        if self.drain_began_ms.is_none() {
            self.drain_began_ms = Some(self.now_ms);
            self.trigger = trigger;
        }
        self
    }

    /// Delivers a signal to the agent: asks `on-signal`, and begins the drain
    /// if the policy says so.
    pub fn signal(&mut self, signal: Signal) -> SignalAction {
        let snapshot = self.snapshot();
        let action = self.policy.on_signal(signal, &snapshot);
        if action == SignalAction::Drain {
            self.begin(Trigger::Signal(signal));
        }
        action
    }

    /// The snapshot the agent would send now.
    pub fn snapshot(&self) -> Snapshot {
        let elapsed_ms = self
            .drain_began_ms
            .map_or(0, |began| self.now_ms.saturating_sub(began));
        Snapshot {
            trigger: self.trigger,
            elapsed_ms,
            remaining_ms: self.budget_ms.saturating_sub(elapsed_ms),
            child: self.child,
            signals_sent: self.signals_sent.clone(),
            ready: self.ready,
            probes: self
                .probes
                .iter()
                .map(|(probe, changed)| Probe {
                    unchanged_ms: self.now_ms - changed,
                    ..probe.clone()
                })
                .collect(),
        }
    }

    /// Calls `decide` and applies the decision's readiness and signal.
    pub fn decide(&mut self) -> Decision {
        let snapshot = self.snapshot();
        let decision = self.policy.decide(&snapshot);
        if let Some(ready) = decision.ready {
            self.ready = ready;
        }
        if let Some(signal) = decision.signal {
            self.signals_sent.push(SentSignal {
                signal,
                at_ms: snapshot.elapsed_ms,
            });
        }
        decision
    }

    /// Runs the drain the way the agent does: decide, then follow each
    /// `recheck` on the virtual clock, until the policy waits for the exit,
    /// exits, or `until_ms` of drain have passed. Before every decision,
    /// `world(elapsed_ms, harness)` may change the probes or the child.
    pub fn run(&mut self, until_ms: u32, mut world: impl FnMut(u32, &mut Self)) -> Vec<Step> {
        let mut steps = Vec::new();
        loop {
            let elapsed = self.snapshot().elapsed_ms;
            world(elapsed, self);
            if self.child != Child::Running {
                return steps;
            }
            let decision = self.decide();
            let next = decision.next;
            steps.push(Step {
                at_ms: elapsed,
                decision,
            });
            match next {
                Next::Recheck(ms) if elapsed < until_ms => {
                    self.advance(ms.max(1));
                }
                _ => return steps,
            }
        }
    }

    /// Readiness as the agent would report it now.
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// The signals sent so far.
    pub fn signals_sent(&self) -> &[SentSignal] {
        &self.signals_sent
    }

    /// The policy, for assertions on its state.
    pub fn policy(&self) -> &P {
        &self.policy
    }
}

/// A `connections` probe value, for tests.
pub fn conns(established: u32, accepted: u32, since_last_accept_ms: Option<u32>) -> ProbeValue {
    ProbeValue::Connections(Connections {
        established,
        accepted,
        since_last_accept_ms,
        typical_gap_ms: None,
    })
}

/// The first step that sends `signal`, if any.
pub fn first_signal(steps: &[Step], signal: Signal) -> Option<&Step> {
    steps.iter().find(|s| s.decision.signal == Some(signal))
}

/// Connections to the app's ports over time, sampled as the agent's
/// `connections` probe would see them. Times are ms relative to the drain's
/// start; negative times are before it.
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    spans: Vec<(i64, i64)>,
    typical_gap_ms: Option<u32>,
    last_sample: Option<i64>,
}

impl Traffic {
    /// No traffic at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// One connection, open from `from` to `to`.
    pub fn connection(mut self, from: i64, to: i64) -> Self {
        self.spans.push((from, to));
        self
    }

    /// A connection arriving every `every` ms in `[from, until)`, each open
    /// for `lasting` ms.
    pub fn arrivals(mut self, from: i64, until: i64, every: i64, lasting: i64) -> Self {
        let mut t = from;
        while t < until {
            self.spans.push((t, t + lasting));
            t += every.max(1);
        }
        self
    }

    /// The gap the agent learned while serving.
    pub fn typical_gap(mut self, ms: u32) -> Self {
        self.typical_gap_ms = Some(ms);
        self
    }

    /// The probe's value at `t`; `accepted` counts arrivals since the
    /// previous sample.
    pub fn sample(&mut self, t: i64) -> ProbeValue {
        let since = self.last_sample.replace(t).unwrap_or(i64::MIN);
        let established = self.spans.iter().filter(|(a, b)| *a <= t && t < *b).count();
        let accepted = self
            .spans
            .iter()
            .filter(|(a, _)| since < *a && *a <= t)
            .count();
        let last_arrival = self.spans.iter().map(|(a, _)| *a).filter(|a| *a <= t).max();
        ProbeValue::Connections(Connections {
            established: established as u32,
            accepted: accepted as u32,
            since_last_accept_ms: last_arrival.map(|a| (t - a).clamp(0, u32::MAX as i64) as u32),
            typical_gap_ms: self.typical_gap_ms,
        })
    }
}
