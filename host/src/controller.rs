//! The controller: one task that owns the shutdown. Every event — a signal,
//! a `/prestop` call, the policy being ready, the app's exit, a timer —
//! arrives here. It samples the probes, builds the snapshot, asks the
//! policy, applies the decision and records it on the timeline. It alone
//! knows the deadline, and keeps it whatever the policy says.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::policy::{
    Answer, Child, Compiled, Decision, Instance, Next, Policy, PolicyError, Probe, SentSignal,
    Signal, SignalAction, Snapshot, Trigger,
};
use crate::probes::{Probes, millis};
use crate::reload::Reloader;
use crate::shared::Shared;
use crate::supervisor::{self, Exit};
use crate::timeline;
use crate::{signals, timeline::decision_json};

/// How long a signal that arrives while the policy compiles waits for it.
const HOLD_MAX: Duration = Duration::from_secs(2);
/// How often `connections` probes learn while serving.
const LEARN_EVERY: Duration = Duration::from_millis(500);
/// The shortest recheck honoured, so a policy cannot spin the agent.
const MIN_RECHECK: Duration = Duration::from_millis(5);

/// Something for the controller to handle, besides signals and the app's exit.
pub enum Event {
    /// A `preStop` hook called; answered when the app may be signalled.
    PreStop(oneshot::Sender<String>),
    /// The policy compiled, checked and `init`-ed.
    PolicyLoaded(Arc<Compiled>, Instance),
    /// The policy could not be loaded; the built-in logic decides.
    PolicyFailed { source: String, reason: String },
}

/// Timing of the drain, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// From the start of the drain to the agent's own deadline: the grace
    /// period less the safety margin.
    pub budget: Duration,
    /// From the deadline's TERM to the KILL of the app's process group.
    pub kill_pause: Duration,
}

struct Drain {
    began: Instant,
    trigger: Trigger,
    sent: Vec<SentSignal>,
    recheck_at: Option<Instant>,
    deadline_passed: bool,
    kill_at: Option<Instant>,
    /// Why the app may now be signalled, once it may: answers `/prestop`.
    released: Option<String>,
}

impl Drain {
    fn elapsed_ms(&self) -> u32 {
        millis(self.began.elapsed())
    }
}

/// The shutdown's owner. See the module docs.
pub struct Controller {
    deadlines: Deadlines,
    app: i32,
    policy: Policy,
    policy_loading: bool,
    probes: Probes,
    shared: Arc<Shared>,
    drain: Option<Drain>,
    held: Vec<i32>,
    held_until: Option<Instant>,
    prestop: Vec<oneshot::Sender<String>>,
    interrupts: u32,
    reload: Option<(i32, Reloader)>,
}

impl Controller {
    /// A controller for the app `app` (its pid, which is also its process
    /// group). `policy_loading` holds early signals until the policy is in.
    pub fn new(
        deadlines: Deadlines,
        app: i32,
        policy: Policy,
        policy_loading: bool,
        probes: Probes,
        shared: Arc<Shared>,
        reload: Option<(i32, Reloader)>,
    ) -> Self {
        Controller {
            deadlines,
            app,
            policy,
            policy_loading,
            probes,
            shared,
            drain: None,
            held: Vec::new(),
            held_until: None,
            prestop: Vec::new(),
            interrupts: 0,
            reload,
        }
    }

    /// Runs until the app exits, and returns how it did.
    pub async fn run(
        mut self,
        mut signals: mpsc::UnboundedReceiver<i32>,
        mut events: mpsc::UnboundedReceiver<Event>,
        mut app_exit: oneshot::Receiver<Exit>,
    ) -> Exit {
        let mut learn = tokio::time::interval(LEARN_EVERY);
        learn.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let learns = self.probes.learns();
        loop {
            let serving = self.drain.is_none();
            tokio::select! {
                biased;
                exit = &mut app_exit => {
                    let exit = exit.expect("the reaper outlives the controller");
                    self.app_exited(exit);
                    return exit;
                }
                Some(signal) = signals.recv() => self.signal(signal).await,
                Some(event) = events.recv() => self.event(event).await,
                () = at(self.held_until) => self.release_held().await,
                () = at(self.drain.as_ref().and_then(|d| d.kill_at)) => self.kill_all("the deadline's pause is over"),
                () = at(self.deadline()) => self.deadline_reached(),
                () = at(self.drain.as_ref().and_then(|d| d.recheck_at)) => self.step().await,
                _ = learn.tick(), if serving && learns => self.probes.learn(),
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let drain = self.drain.as_ref().filter(|d| !d.deadline_passed)?;
        Some(drain.began + self.deadlines.budget)
    }

    fn drain_ms(&self) -> Option<u32> {
        self.drain.as_ref().map(Drain::elapsed_ms)
    }

    fn record(&self, event: &'static str, message: String, data: serde_json::Value) {
        self.shared
            .timeline
            .record(self.drain_ms(), event, message, data);
    }

    async fn event(&mut self, event: Event) {
        match event {
            Event::PreStop(reply) => {
                if self.drain.is_none() {
                    self.record("prestop", "preStop hook called".into(), json!(null));
                    self.begin(Trigger::Prestop).await;
                }
                match self.drain.as_ref().and_then(|d| d.released.clone()) {
                    Some(why) => {
                        let _ = reply.send(why);
                    }
                    None => self.prestop.push(reply),
                }
            }
            Event::PolicyLoaded(compiled, instance) => {
                let identity = compiled.identity().clone();
                self.record(
                    "policy",
                    format!(
                        "policy {identity} loaded in {:?} ({})",
                        compiled.compile_time, compiled.origin
                    ),
                    json!({ "source": identity.source, "sha256": identity.sha256 }),
                );
                self.shared.policy_loaded(&identity);
                let mid_drain = self.drain.as_ref().is_some_and(|d| !d.deadline_passed);
                self.policy.swap(compiled, instance);
                self.policy_loaded().await;
                // A new policy in mid-drain decides at once; the deadline stays.
                if mid_drain {
                    self.step().await;
                }
            }
            Event::PolicyFailed { source, reason } => {
                tracing::error!(target: "lameduck", policy = source, "policy refused: {reason}");
                self.record(
                    "policy-failed",
                    format!("policy {source} refused: {reason}; the built-in drain decides"),
                    json!({ "source": source, "reason": reason }),
                );
                self.shared.policy_refused(&source, &reason);
                self.policy_loaded().await;
            }
        }
    }

    async fn policy_loaded(&mut self) {
        if self.policy_loading {
            self.policy_loading = false;
            self.release_held().await;
        }
    }

    async fn signal(&mut self, number: i32) {
        if self.policy_loading {
            // The policy decides what a signal means: give it a moment.
            self.held.push(number);
            self.held_until.get_or_insert(Instant::now() + HOLD_MAX);
            return;
        }
        self.handle_signal(number).await;
    }

    async fn release_held(&mut self) {
        self.held_until = None;
        self.policy_loading = false;
        for number in std::mem::take(&mut self.held) {
            self.handle_signal(number).await;
        }
    }

    async fn handle_signal(&mut self, number: i32) {
        let name = signals::name(number);
        if let Some((_, reloader)) = self.reload.as_ref().filter(|(s, _)| *s == number) {
            reloader.reload();
            self.record(
                "signal",
                format!("{name}: reloading the policy"),
                json!({ "signal": name }),
            );
            return;
        }
        if number == libc::SIGINT {
            self.interrupts += 1;
            if self.interrupts >= 3 {
                self.record(
                    "signal",
                    format!("{name} a third time: stopping at once"),
                    json!(null),
                );
                self.kill_all("a third INT");
                return;
            }
        }
        let Some(signal) = signals::from_number(number) else {
            supervisor::kill(self.app, number);
            self.record(
                "signal",
                format!("{name} forwarded"),
                json!({ "signal": name }),
            );
            return;
        };
        let snapshot = self.snapshot(self.probes.latest(), Instant::now());
        let answer = self.policy.on_signal(signal, &snapshot);
        self.shared.metrics.policy_call("on-signal", answer.took);
        self.note_failure(&answer);
        let mut message = timeline::describe_signal(signal, &answer.value);
        let drain = match answer.value {
            SignalAction::Forward => {
                supervisor::kill(self.app, number);
                false
            }
            SignalAction::Rewrite(to) => {
                supervisor::kill(self.app, signals::number(to));
                false
            }
            SignalAction::Ignore => false,
            SignalAction::Drain if self.drain.is_some() => {
                message.push_str("; the drain goes on");
                false
            }
            SignalAction::Drain => true,
        };
        self.record(
            "signal",
            message,
            json!({ "signal": name, "snapshot": timeline::snapshot_json(&snapshot) }),
        );
        if drain {
            self.begin(Trigger::Signal(signal)).await;
        }
    }

    /// Begins the drain: readiness goes down at once, then the policy decides.
    async fn begin(&mut self, trigger: Trigger) {
        self.shared.set_ready(false);
        self.shared.set_draining();
        self.drain = Some(Drain {
            began: Instant::now(),
            trigger,
            sent: Vec::new(),
            recheck_at: None,
            deadline_passed: false,
            kill_at: None,
            released: None,
        });
        self.record(
            "drain",
            format!("drain began; deadline in {:?}", self.deadlines.budget),
            json!({ "budget_ms": millis(self.deadlines.budget) }),
        );
        self.step().await;
    }

    /// One decision: sample, snapshot, decide, apply.
    async fn step(&mut self) {
        match &mut self.drain {
            Some(drain) if !drain.deadline_passed => drain.recheck_at = None,
            _ => return,
        }
        // The snapshot is of the moment sampling began; the policy's
        // recheck counts from that same moment.
        let sampled_at = Instant::now();
        let probes = self.probes.sample().await;
        let snapshot = self.snapshot(probes, sampled_at);
        let answer = self.policy.decide(&snapshot);
        self.shared.metrics.policy_call("decide", answer.took);
        self.note_failure(&answer);
        let decision = answer.value;
        self.shared.metrics.decision(&decision.reason);
        self.record(
            "decision",
            describe(&decision, &snapshot),
            json!({
                "snapshot": timeline::snapshot_json(&snapshot),
                "decision": decision_json(&decision),
                "call_us": answer.took.as_micros() as u64,
                "fallback": answer.failure.as_ref().map(|f| f.to_string()),
            }),
        );
        self.apply(decision, sampled_at);
    }

    /// Applies a decision; a recheck counts from `sampled_at`, so sampling
    /// time does not stretch the interval.
    fn apply(&mut self, decision: Decision, sampled_at: Instant) {
        if let Some(ready) = decision.ready {
            self.shared.set_ready(ready);
        }
        if let Some(signal) = decision.signal {
            self.send(signal, &decision.reason);
        }
        match decision.next {
            Next::Recheck(ms) => {
                let after = Duration::from_millis(ms.into()).max(MIN_RECHECK);
                if let Some(drain) = &mut self.drain {
                    drain.recheck_at = Some(sampled_at + after);
                }
            }
            Next::WaitForExit => {}
            Next::Exit => self.kill_all("the policy said exit"),
        }
    }

    fn send(&mut self, signal: Signal, why: &str) {
        supervisor::kill(self.app, signals::number(signal));
        let name = signals::name(signals::number(signal));
        if let Some(drain) = &mut self.drain {
            drain.sent.push(SentSignal {
                signal,
                at_ms: drain.elapsed_ms(),
            });
        }
        self.record(
            "sent",
            format!("sent {name} to the app"),
            json!({ "signal": name }),
        );
        self.release_prestop(format!("{name} sent: {why}"));
    }

    fn release_prestop(&mut self, why: String) {
        if let Some(drain) = &mut self.drain {
            drain.released.get_or_insert(why.clone());
        }
        for reply in self.prestop.drain(..) {
            let _ = reply.send(why.clone());
        }
    }

    /// The agent's own deadline: whatever the policy said, the app gets TERM
    /// (if it has not had it) and, after a pause, its group gets KILL.
    fn deadline_reached(&mut self) {
        let Some(drain) = &mut self.drain else { return };
        drain.deadline_passed = true;
        drain.recheck_at = None;
        drain.kill_at = Some(Instant::now() + self.deadlines.kill_pause);
        let term_sent = drain.sent.iter().any(|s| s.signal == Signal::Term);
        self.record(
            "deadline",
            format!(
                "deadline reached; KILL in {:?} if the app is still running",
                self.deadlines.kill_pause
            ),
            json!(null),
        );
        if !term_sent {
            self.send(Signal::Term, "the deadline was reached");
        }
        self.release_prestop("the deadline was reached".into());
    }

    fn kill_all(&mut self, why: &str) {
        supervisor::kill_group(self.app, libc::SIGKILL);
        if let Some(drain) = &mut self.drain {
            drain.kill_at = None;
            drain.recheck_at = None;
            drain.deadline_passed = true;
        }
        self.record(
            "killed",
            format!("KILL sent to the app's process group: {why}"),
            json!(null),
        );
    }

    fn app_exited(&mut self, exit: Exit) {
        let how = match exit {
            Exit::Code(code) => format!("exited with code {code}"),
            Exit::Signal(signal) => format!("was killed by {}", signals::name(signal)),
        };
        self.record(
            "exit",
            format!("the app {how}"),
            json!({ "status": exit.status() }),
        );
        self.release_prestop(format!("the app {how}"));
    }

    fn note_failure<T>(&self, answer: &Answer<T>) {
        match &answer.failure {
            None | Some(PolicyError::Unloaded) => {}
            Some(failure) => {
                self.shared.metrics.policy_failure(failure.kind());
                self.record(
                    "policy-error",
                    format!("policy {failure}; the built-in drain answered instead"),
                    json!({ "kind": failure.kind(), "error": failure.to_string() }),
                );
            }
        }
    }

    /// The snapshot as of `at`.
    fn snapshot(&self, probes: Vec<Probe>, at: Instant) -> Snapshot {
        let budget = millis(self.deadlines.budget);
        let (trigger, elapsed_ms, sent) = match &self.drain {
            Some(d) => (
                d.trigger,
                millis(at.saturating_duration_since(d.began)),
                d.sent.clone(),
            ),
            None => (Trigger::None, 0, Vec::new()),
        };
        Snapshot {
            trigger,
            elapsed_ms,
            remaining_ms: budget.saturating_sub(elapsed_ms),
            child: Child::Running,
            signals_sent: sent,
            ready: self.shared.ready(),
            probes,
        }
    }
}

/// Sleeps until `when`, or forever.
async fn at(when: Option<Instant>) {
    match when {
        Some(when) => tokio::time::sleep_until(when).await,
        None => std::future::pending().await,
    }
}

/// A decision in words, with what was seen.
fn describe(d: &Decision, s: &Snapshot) -> String {
    let mut text = timeline::describe_decision(d);
    let probes = timeline::probes_summary(s);
    if !probes.is_empty() {
        text.push_str(&format!(" [{probes}]"));
    }
    text
}
