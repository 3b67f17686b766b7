//! The agent's shutdown rules, without I/O: `(state, input, now) → effects`.
//!
//! [`Agent`] owns everything the lameduck agent decides by itself — the
//! deadline and its KILL, signals held while the policy loads, a repeated
//! TERM, the third INT, when to sample and when to ask the policy — and
//! nothing it does: it never sleeps, reads a socket or calls a policy. It
//! asks for those as [`Effect`]s and learns their outcome as [`Input`]s.
//!
//! Three drivers perform its effects: the agent itself (tokio, real probes,
//! a wasm policy on its own thread), `lameduck simulate` (a modelled world on
//! a virtual clock) and the SDK's harness (a native
//! policy on a virtual clock). They share these rules instead of copying them.
//!
//! Time is milliseconds since the driver started, given with every input.

use std::collections::VecDeque;

pub use crate::record::{Call, Event};
use crate::{
    Child, Decision, Mode, Next, Probe, ProbeValue, SentSignal, Signal, SignalAction, Snapshot,
    Trigger,
};

/// Milliseconds since the driver started.
pub type Millis = u64;

/// The shortest recheck honoured, so a policy cannot spin the agent (the
/// driver also spaces its samples by what they cost).
pub const MIN_RECHECK_MS: u32 = 10;

/// The value of a probe that has not been sampled yet.
pub const NOT_SAMPLED: &str = "not sampled yet";

/// What the agent is told when it starts.
#[derive(Debug, Clone)]
pub struct Settings {
    /// From the TERM (or `/prestop`) to the agent's own deadline: the grace
    /// period less the safety margin.
    pub budget_ms: u32,
    /// From the deadline to the KILL of the app's process group.
    pub kill_pause_ms: u32,
    /// Entrypoint or sidecar.
    pub mode: Mode,
    /// The configured probes' names, in order.
    pub probes: Vec<String>,
    /// How often to sample the probes that learn while serving; `None` if
    /// none does.
    pub learn_every_ms: Option<u32>,
    /// How long a signal that arrives while the policy loads waits for it.
    pub hold_max_ms: u32,
    /// The signal that re-reads the policy instead of reaching it.
    pub reload_signal: Option<Signal>,
    /// Whether a policy is still loading at the start (signals wait for it).
    pub policy_loading: bool,
}

impl Settings {
    /// An entrypoint agent with `budget_ms`, no probes, no policy to wait
    /// for, and the agent's defaults for the rest.
    pub fn new(budget_ms: u32) -> Self {
        Settings {
            budget_ms,
            kill_pause_ms: 1_000,
            mode: Mode::Entrypoint,
            probes: Vec::new(),
            learn_every_ms: None,
            hold_max_ms: 2_000,
            reload_signal: None,
            policy_loading: false,
        }
    }
}

/// Something that happened, for the agent to handle.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Nothing but the passing of time: a timer the agent asked for is due.
    Tick,
    /// A signal reached the agent.
    Signal(Signal),
    /// A `preStop` hook called `/prestop`.
    PreStop,
    /// The policy (first, or a new one) is loaded and answers from now on.
    PolicyLoaded,
    /// The policy could not be loaded; the fallback answers.
    PolicyRefused,
    /// The probes' readings asked for by [`Effect::Sample`], by name; probes
    /// left out were not sampled this time.
    Sampled(Vec<(String, ProbeValue)>),
    /// The policy's answer to [`Effect::AskSignal`].
    SignalAnswered(SignalAction, Call),
    /// The policy's answer to [`Effect::AskDecide`].
    Decided(Decision, Call),
    /// The app exited.
    AppExited(Child),
}

/// Which probes to sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    /// The cheap ones that learn the app's traffic while it serves.
    Learn,
    /// Every probe, for a decision.
    All,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Set the readiness flag (`/readyz`).
    Ready(bool),
    /// Sample probes and answer with [`Input::Sampled`].
    Sample(Sample),
    /// Ask the policy's `on-signal`; answer with [`Input::SignalAnswered`].
    AskSignal(Signal, Snapshot),
    /// Ask the policy's `decide`; answer with [`Input::Decided`].
    AskDecide(Snapshot),
    /// Send this signal to the app.
    SignalApp(Signal),
    /// KILL the app's whole process group.
    KillApp,
    /// Answer every held `/prestop` call with this reason.
    ReleasePrestop(String),
    /// Read the policy file again.
    Reload,
    /// Write this on the timeline.
    Record(Record),
    /// Exit now (a sidecar, which has no app to wait for), with this status.
    Exit(i32),
}

/// A timeline entry: when and what.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Since the drain began, during a drain.
    pub drain_ms: Option<u32>,
    pub event: Event,
}

/// The shutdown's owner. See the module docs.
#[derive(Debug, Clone)]
pub struct Agent {
    settings: Settings,
    ready: bool,
    probes: Vec<Slot>,
    /// Signals waiting for the policy to load, with when they arrived.
    held: Vec<(Signal, Millis)>,
    hold_until: Option<Millis>,
    /// Signals waiting for the policy's answer to an earlier question.
    queue: VecDeque<(Signal, Millis)>,
    /// The question the policy is answering.
    asking: Option<Question>,
    /// The sample in progress: what for, and when it began.
    sampling: Option<(Sample, Millis)>,
    /// A sample taken for a decision, waiting for the policy to be free:
    /// when it began.
    sampled_for_decision: Option<Millis>,
    learn_at: Option<Millis>,
    /// Armed by the kubelet's TERM or `/prestop`, whatever the policy says.
    deadline: Option<Millis>,
    deadline_passed: bool,
    kill_at: Option<Millis>,
    drain: Option<Drain>,
    /// Whether the app has had a TERM (forwarded or sent).
    term_delivered: bool,
    /// Why `/prestop` was released, once it was.
    released: Option<String>,
    /// A sidecar's TERM came while it still held the app's `preStop`.
    stop_when_released: bool,
    interrupts: u32,
    done: bool,
    effects: Vec<Effect>,
}

#[derive(Debug, Clone)]
struct Slot {
    name: String,
    value: ProbeValue,
    changed_at: Millis,
}

/// A question the policy is answering, with the snapshot it was shown.
#[derive(Debug, Clone)]
enum Question {
    /// What to do with a signal that arrived at this moment.
    Signal(Signal, Millis, Snapshot),
    /// The next step, from the probes sampled at this moment.
    Decide(Millis, Snapshot),
}

#[derive(Debug, Clone)]
struct Drain {
    began: Millis,
    trigger: Trigger,
    sent: Vec<SentSignal>,
    /// When to decide again; `None` while waiting for the exit.
    recheck_at: Option<Millis>,
    /// A decision is wanted as soon as the policy is free.
    step_wanted: bool,
}

impl Agent {
    /// An agent that starts serving at `now`.
    pub fn new(settings: Settings, now: Millis) -> Self {
        let probes = settings
            .probes
            .iter()
            .map(|name| Slot {
                name: name.clone(),
                value: ProbeValue::Failed(NOT_SAMPLED.into()),
                changed_at: now,
            })
            .collect();
        Agent {
            learn_at: settings.learn_every_ms.map(|_| now),
            ready: true,
            probes,
            held: Vec::new(),
            hold_until: None,
            queue: VecDeque::new(),
            asking: None,
            sampling: None,
            sampled_for_decision: None,
            deadline: None,
            deadline_passed: false,
            kill_at: None,
            drain: None,
            term_delivered: false,
            released: None,
            stop_when_released: false,
            interrupts: 0,
            done: false,
            effects: Vec::new(),
            settings,
        }
    }

    /// Handles `input` at `now`; returns what the driver must do, in order.
    pub fn handle(&mut self, now: Millis, input: Input) -> Vec<Effect> {
        if !self.done {
            match input {
                Input::Tick => {}
                Input::Signal(signal) => self.signal(now, signal),
                Input::PreStop => self.prestop(now),
                Input::PolicyLoaded => {
                    self.release_held();
                    // A new policy in mid-drain decides at once; the deadline stays.
                    if let Some(drain) = self.drain.as_mut().filter(|_| !self.deadline_passed) {
                        drain.recheck_at = None;
                        drain.step_wanted = true;
                    }
                }
                Input::PolicyRefused => self.release_held(),
                Input::Sampled(values) => self.sampled(values),
                Input::SignalAnswered(action, call) => self.signal_answered(now, action, call),
                Input::Decided(decision, call) => self.decided(now, decision, call),
                Input::AppExited(child) => self.app_exited(now, child),
            }
            self.timers(now);
            self.pump(now);
        }
        std::mem::take(&mut self.effects)
    }

    /// When the agent next needs an [`Input::Tick`], if ever.
    pub fn next_tick(&self) -> Option<Millis> {
        if self.done {
            return None;
        }
        let recheck = self.drain.as_ref().and_then(|d| d.recheck_at);
        let learn = self.learn_at.filter(|_| self.drain.is_none());
        [
            self.hold_until,
            self.deadline.filter(|_| !self.deadline_passed),
            self.kill_at,
            recheck.filter(|_| !self.deadline_passed),
            learn,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The snapshot the policy would be shown at `now`.
    pub fn snapshot(&self, now: Millis) -> Snapshot {
        let elapsed_ms = self
            .drain
            .as_ref()
            .map_or(0, |d| ms(now - d.began.min(now)));
        let remaining_ms = match self.deadline {
            Some(at) => ms(at.saturating_sub(now)),
            None => self.settings.budget_ms,
        };
        Snapshot {
            trigger: self.drain.as_ref().map_or(Trigger::None, |d| d.trigger),
            elapsed_ms,
            remaining_ms,
            child: Child::Running,
            signals_sent: self
                .drain
                .as_ref()
                .map_or_else(Vec::new, |d| d.sent.clone()),
            ready: self.ready,
            probes: self
                .probes
                .iter()
                .map(|slot| Probe {
                    name: slot.name.clone(),
                    value: slot.value.clone(),
                    unchanged_ms: ms(now.saturating_sub(slot.changed_at)),
                })
                .collect(),
            mode: self.settings.mode,
        }
    }

    /// Whether the readiness flag is up.
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// Whether a drain is under way (or over).
    pub fn draining(&self) -> bool {
        self.drain.is_some()
    }

    /// When the deadline falls, once the kubelet's TERM or `/prestop` came.
    pub fn deadline(&self) -> Option<Millis> {
        self.deadline
    }

    /// Whether the agent is finished: the app exited (or, for a sidecar, it
    /// exits).
    pub fn done(&self) -> bool {
        self.done
    }

    fn drain_ms(&self, now: Millis) -> Option<u32> {
        self.drain.as_ref().map(|d| ms(now.saturating_sub(d.began)))
    }

    fn record(&mut self, now: Millis, event: Event) {
        let drain_ms = self.drain_ms(now);
        self.effects
            .push(Effect::Record(Record { drain_ms, event }));
    }

    fn signal(&mut self, now: Millis, signal: Signal) {
        if Some(signal) == self.settings.reload_signal {
            self.effects.push(Effect::Reload);
            self.record(now, Event::Reload { signal });
            return;
        }
        // The kubelet's clock starts when its TERM arrives, whatever the
        // policy will say about it.
        if signal == Signal::Term {
            self.arm_deadline(now);
        }
        if self.settings.mode == Mode::Sidecar && signal == Signal::Term {
            return self.sidecar_stops(now);
        }
        if signal == Signal::Int {
            self.interrupts += 1;
            if self.interrupts >= 3 {
                self.record(now, Event::Interrupted);
                return self.kill_app(now, "a third INT");
            }
        }
        if self.settings.policy_loading {
            // The policy decides what a signal means: give it a moment.
            self.held.push((signal, now));
            self.hold_until
                .get_or_insert(now + u64::from(self.settings.hold_max_ms));
            self.record(now, Event::Held { signal });
            return;
        }
        self.queue.push_back((signal, now));
    }

    /// A sidecar's own TERM: the kubelet stops it once the app has exited
    /// (a native sidecar). If a drain still holds the app's `preStop`, it
    /// goes on until the hook is released (a sidecar stopped beside the app).
    fn sidecar_stops(&mut self, now: Millis) {
        if self.drain.is_none() || self.released.is_some() {
            self.stop_sidecar(now, "TERM: the kubelet stops the sidecar");
        } else {
            self.stop_when_released = true;
        }
    }

    fn stop_sidecar(&mut self, now: Millis, why: &str) {
        self.release_prestop(now, why.to_string());
        self.record(now, Event::Stopping { why: why.into() });
        self.effects.push(Effect::Exit(0));
        self.done = true;
    }

    fn release_held(&mut self) {
        self.settings.policy_loading = false;
        self.hold_until = None;
        self.queue.extend(self.held.drain(..));
    }

    fn prestop(&mut self, now: Millis) {
        self.arm_deadline(now);
        if self.drain.is_none() {
            self.record(now, Event::Prestop);
            self.begin(now, Trigger::Prestop, now);
        }
        if let Some(why) = &self.released {
            self.effects.push(Effect::ReleasePrestop(why.clone()));
        }
    }

    fn arm_deadline(&mut self, now: Millis) {
        self.deadline
            .get_or_insert(now + u64::from(self.settings.budget_ms));
    }

    /// Begins the drain that `trigger`, arrived at `at`, asked for:
    /// readiness goes down at once, then the policy decides.
    fn begin(&mut self, now: Millis, trigger: Trigger, at: Millis) {
        self.arm_deadline(at);
        self.set_ready(false);
        self.drain = Some(Drain {
            began: at,
            trigger,
            sent: Vec::new(),
            recheck_at: None,
            step_wanted: true,
        });
        let budget_ms = ms(self.deadline.unwrap_or(at).saturating_sub(at));
        self.record(now, Event::DrainBegan { trigger, budget_ms });
    }

    fn set_ready(&mut self, ready: bool) {
        self.ready = ready;
        self.effects.push(Effect::Ready(ready));
    }

    fn sampled(&mut self, values: Vec<(String, ProbeValue)>) {
        let Some((purpose, began)) = self.sampling.take() else {
            return;
        };
        for (name, value) in values {
            match self.probes.iter_mut().find(|slot| slot.name == name) {
                Some(slot) if slot.value != value => {
                    slot.value = value;
                    slot.changed_at = began;
                }
                Some(_) => {}
                None => self.probes.push(Slot {
                    name,
                    value,
                    changed_at: began,
                }),
            }
        }
        if purpose == Sample::All {
            self.sampled_for_decision = Some(began);
        }
    }

    fn signal_answered(&mut self, now: Millis, action: SignalAction, call: Call) {
        let (signal, arrived, snapshot) = match self.asking.take() {
            Some(Question::Signal(signal, arrived, snapshot)) => (signal, arrived, snapshot),
            // Not the question asked: ignored.
            other => return self.asking = other,
        };
        let drain_goes_on = action == SignalAction::Drain && self.drain.is_some();
        match action {
            SignalAction::Forward => self.deliver(signal),
            SignalAction::Rewrite(to) => self.deliver(to),
            SignalAction::Ignore => {}
            SignalAction::Drain => {}
        }
        self.record(
            now,
            Event::Signal {
                signal,
                action,
                drain_goes_on,
                snapshot,
                call,
            },
        );
        if action == SignalAction::Drain && self.drain.is_none() {
            // The drain's clock starts when the signal arrived.
            self.begin(now, Trigger::Signal(signal), arrived);
        }
    }

    /// Passes a signal on to the app, as `on-signal` said.
    fn deliver(&mut self, signal: Signal) {
        if self.settings.mode == Mode::Sidecar {
            return; // there is no app to pass it to
        }
        if signal == Signal::Term {
            self.term_delivered = true;
        }
        self.effects.push(Effect::SignalApp(signal));
    }

    fn decided(&mut self, now: Millis, decision: Decision, call: Call) {
        let (sampled_at, snapshot) = match self.asking.take() {
            Some(Question::Decide(sampled_at, snapshot)) => (sampled_at, snapshot),
            // Not the question asked: ignored.
            other => return self.asking = other,
        };
        if self.deadline_passed || self.drain.is_none() {
            self.record(now, Event::Late { decision });
            return;
        }
        let (ready, signal, next) = (decision.ready, decision.signal, decision.next);
        let reason = decision.reason.clone();
        self.record(
            now,
            Event::Decision {
                snapshot,
                decision,
                call,
            },
        );
        if let Some(ready) = ready {
            self.set_ready(ready);
        }
        if let Some(signal) = signal {
            self.send(now, signal, &reason);
        }
        let drain = self.drain.as_mut().expect("draining");
        match next {
            Next::Recheck(after) => {
                drain.recheck_at = Some(sampled_at + u64::from(after.max(MIN_RECHECK_MS)));
            }
            Next::WaitForExit => drain.recheck_at = None,
            Next::Exit => match self.settings.mode {
                Mode::Entrypoint => self.kill_app(now, "the policy said exit"),
                Mode::Sidecar => self.stop_sidecar(now, "the policy said exit"),
            },
        }
    }

    /// Sends the app a signal a decision (or the deadline) asked for.
    fn send(&mut self, now: Millis, signal: Signal, why: &str) {
        let name = signal.name();
        let release = match self.settings.mode {
            Mode::Entrypoint => {
                self.deliver(signal);
                format!("{name} sent: {why}")
            }
            Mode::Sidecar if signal == Signal::Kill => {
                let why = "a sidecar cannot KILL the app (it has no child)".to_string();
                self.record(now, Event::Refused { signal, why });
                return;
            }
            Mode::Sidecar => format!("the app may have {name}: {why}"),
        };
        if let Some(drain) = &mut self.drain {
            let at_ms = ms(now.saturating_sub(drain.began));
            drain.sent.push(SentSignal { signal, at_ms });
        }
        self.record(
            now,
            Event::Sent {
                signal,
                why: why.to_string(),
            },
        );
        self.release_prestop(now, release);
    }

    fn release_prestop(&mut self, now: Millis, why: String) {
        if self.released.is_none() {
            self.released = Some(why.clone());
            self.effects.push(Effect::ReleasePrestop(why));
        }
        if std::mem::take(&mut self.stop_when_released) {
            self.stop_sidecar(now, "TERM: the hook is released, the sidecar stops");
        }
    }

    fn app_exited(&mut self, now: Millis, child: Child) {
        let how = match child {
            Child::Running => return,
            Child::Exited(code) => format!("the app exited with code {code}"),
            Child::Killed(signal) => format!("the app was killed by signal {signal}"),
        };
        self.record(
            now,
            Event::Exited {
                status: child.status(),
            },
        );
        self.release_prestop(now, how);
        self.done = true;
    }

    /// KILLs the app's process group and stops deciding.
    fn kill_app(&mut self, now: Millis, why: &str) {
        if self.settings.mode == Mode::Sidecar {
            return self.stop_sidecar(now, why);
        }
        self.effects.push(Effect::KillApp);
        self.kill_at = None;
        self.deadline_passed = true;
        if let Some(drain) = &mut self.drain {
            drain.recheck_at = None;
            drain.step_wanted = false;
        }
        self.record(now, Event::Killed { why: why.into() });
    }

    /// Handles every timer that is due at `now`.
    fn timers(&mut self, now: Millis) {
        if self.hold_until.is_some_and(|at| at <= now) {
            self.release_held();
        }
        if let Some(deadline) = self.deadline
            && deadline <= now
            && !self.deadline_passed
        {
            self.deadline_reached(now);
        }
        if self.kill_at.is_some_and(|at| at <= now) {
            self.kill_app(now, "the deadline's pause is over");
        }
        if let Some(drain) = &mut self.drain
            && !self.deadline_passed
            && drain.recheck_at.is_some_and(|at| at <= now)
        {
            drain.recheck_at = None;
            drain.step_wanted = true;
        }
        if self.drain.is_none()
            && let (Some(at), Some(every)) = (self.learn_at, self.settings.learn_every_ms)
            && at <= now
        {
            self.learn_at = Some(now + u64::from(every.max(1)));
            if self.sampling.is_none() {
                self.sampling = Some((Sample::Learn, now));
                self.effects.push(Effect::Sample(Sample::Learn));
            }
        }
    }

    /// The agent's own deadline: whatever the policy said, the app gets TERM
    /// (if it has not had it) and, after a pause, its group gets KILL.
    fn deadline_reached(&mut self, now: Millis) {
        self.deadline_passed = true;
        if let Some(drain) = &mut self.drain {
            drain.recheck_at = None;
            drain.step_wanted = false;
        }
        let kill_pause_ms =
            (self.settings.mode == Mode::Entrypoint).then_some(self.settings.kill_pause_ms);
        self.kill_at = kill_pause_ms.map(|pause| now + u64::from(pause));
        self.record(now, Event::Deadline { kill_pause_ms });
        if !self.term_delivered {
            self.send(now, Signal::Term, "the deadline was reached");
        }
        self.release_prestop(now, "the deadline was reached".into());
    }

    /// Asks the next question, when the policy is free.
    fn pump(&mut self, now: Millis) {
        if self.done || self.asking.is_some() {
            return;
        }
        if let Some((signal, arrived)) = self.queue.pop_front() {
            let snapshot = self.snapshot(now);
            self.asking = Some(Question::Signal(signal, arrived, snapshot.clone()));
            self.effects.push(Effect::AskSignal(signal, snapshot));
            return;
        }
        if self.deadline_passed || self.drain.is_none() {
            return;
        }
        if let Some(sampled_at) = self.sampled_for_decision.take() {
            // The snapshot is of the moment sampling began; the policy's
            // recheck counts from that same moment.
            let snapshot = self.snapshot(sampled_at);
            self.asking = Some(Question::Decide(sampled_at, snapshot.clone()));
            self.effects.push(Effect::AskDecide(snapshot));
            return;
        }
        if self.sampling.is_some() {
            return;
        }
        if let Some(drain) = self.drain.as_mut().filter(|d| d.step_wanted) {
            drain.step_wanted = false;
            self.sampling = Some((Sample::All, now));
            self.effects.push(Effect::Sample(Sample::All));
        }
    }
}

/// Milliseconds, saturating at the contract's `u32`.
fn ms(value: Millis) -> u32 {
    value.min(u64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests;
