//! A native test harness: drive a policy through a drain on a virtual clock.
//!
//! The harness runs the agent's own rules ([`Agent`]) — the same code
//! the lameduck agent runs — and performs their effects itself: it asks the
//! policy natively, answers samples with the probe values a test sets, and
//! moves a virtual clock from one timer to the next. Tests set probe values,
//! run the drain and assert on decisions; no wasm, no processes, no waiting.
//!
//! ```ignore
//! let mut h = Harness::<Drain>::new(&[("min-drain", "1s")])?.budget(28_000);
//! let mut traffic = Traffic::new().request(-500, 4_050);
//! h.signal(Signal::Term);
//! let steps = h.run(10_000, |elapsed, h| {
//!     h.set_probe("connections", traffic.sample(elapsed as i64));
//! });
//! assert_eq!(h.app_signals()[0].signal, Signal::Term);
//! ```

use crate::{
    Child, Connections, Decision, Evidence, Policy, ProbeValue, SentSignal, Signal, SignalAction,
    Silences, Snapshot,
};
use lameduck_core::agent::{Agent, Call, Effect, Input, Millis, Record, Sample, Settings};

/// What the harness asks of a policy: the two calls of the contract. Every
/// [`Policy`] is one; the agent's runtime makes a wasm component one too.
pub trait Decider {
    /// `on-signal`.
    fn on_signal(&mut self, signal: Signal, snapshot: &Snapshot) -> SignalAction;
    /// `decide`.
    fn decide(&mut self, snapshot: &Snapshot) -> Decision;
}

impl<P: Policy> Decider for P {
    fn on_signal(&mut self, signal: Signal, snapshot: &Snapshot) -> SignalAction {
        Policy::on_signal(self, signal, snapshot)
    }

    fn decide(&mut self, snapshot: &Snapshot) -> Decision {
        Policy::decide(self, snapshot)
    }
}

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
    agent: Agent,
    now: Millis,
    /// What a sample returns: the values the test set, by name.
    probes: Vec<(String, ProbeValue)>,
    /// A sample the agent asked for, answered when the test's world has
    /// had its say.
    sample_due: bool,
    steps: Vec<Step>,
    app_signals: Vec<SentSignal>,
    records: Vec<(Millis, Record)>,
    child: Child,
    /// When the app will exit by itself, on the virtual clock.
    exit_at: Option<(Millis, Child)>,
}

impl<P: Policy> Harness<P> {
    /// Initialises the policy with `config`, as `init` would be called.
    pub fn new(config: &[(&str, &str)]) -> Result<Self, String> {
        let pairs = config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(Harness::with(crate::init_policy::<P>(pairs)?))
    }
}

impl<P: Decider> Harness<P> {
    /// Drives `policy` (already initialised) with the agent's defaults and a
    /// drain budget of 28 s.
    pub fn with(policy: P) -> Self {
        Harness::with_settings(policy, Settings::new(28_000))
    }

    /// Drives `policy` with these settings.
    pub fn with_settings(policy: P, settings: Settings) -> Self {
        Harness {
            policy,
            agent: Agent::new(settings, 0),
            now: 0,
            probes: Vec::new(),
            sample_due: false,
            steps: Vec::new(),
            app_signals: Vec::new(),
            records: Vec::new(),
            child: Child::Running,
            exit_at: None,
        }
    }

    /// Sets the drain budget (grace period minus safety margin); default
    /// 28 s. Call it before anything happens.
    pub fn budget(self, ms: u32) -> Self {
        Harness::with_settings(self.policy, Settings::new(ms))
    }

    /// Sets what the probe called `name` reads from now on.
    pub fn set_probe(&mut self, name: &str, value: ProbeValue) -> &mut Self {
        match self.probes.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value,
            None => self.probes.push((name.to_string(), value)),
        }
        self
    }

    /// Moves the virtual clock forward by `ms`, handling every timer on the
    /// way (the deadline, a recheck) as the agent would.
    pub fn advance(&mut self, ms: u32) -> &mut Self {
        let until = self.now + u64::from(ms);
        self.run_until(until, &mut |_, _| {});
        self.now = until;
        self
    }

    /// The app exits with `code`.
    pub fn child_exits(&mut self, code: u8) -> &mut Self {
        self.exited(Child::Exited(code));
        self
    }

    /// The app will exit with `code` when `at_ms` of drain have passed (or
    /// at once, if that is past): between samples, when it would.
    pub fn child_exits_at(&mut self, at_ms: u32, code: u8) -> &mut Self {
        let began = self.now - u64::from(self.snapshot().elapsed_ms);
        self.exit_at = Some((began + u64::from(at_ms), Child::Exited(code)));
        self
    }

    /// A `preStop` hook calls `/prestop`: the drain begins.
    pub fn prestop(&mut self) -> &mut Self {
        self.input(Input::PreStop, &mut |_, _| {});
        self
    }

    /// Delivers a signal to the agent: the policy's `on-signal` answers, and
    /// the agent does what it says (a drain begins on `drain`). `None` if
    /// the agent did not ask the policy (a third INT).
    pub fn signal(&mut self, signal: Signal) -> Option<SignalAction> {
        let before = self.records.len();
        self.input(Input::Signal(signal), &mut |_, _| {});
        self.records[before..]
            .iter()
            .find_map(|(_, record)| match &record.event {
                lameduck_core::agent::Event::Signal { action, .. } => Some(*action),
                _ => None,
            })
    }

    /// The snapshot the agent would show the policy now.
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = self.agent.snapshot(self.now);
        snapshot.child = self.child;
        snapshot
    }

    /// Runs the drain the way the agent does, until the app has exited or
    /// `until_ms` of drain have passed (or nothing is left to happen).
    /// Before every sample, and after every signal the app gets,
    /// `world(elapsed_ms, harness)` may change the probes or say when the app
    /// exits. Returns the decisions taken during this run.
    pub fn run(&mut self, until_ms: u32, mut world: impl FnMut(u32, &mut Self)) -> Vec<Step> {
        let first = self.steps.len();
        let began = self.now - u64::from(self.snapshot().elapsed_ms);
        self.run_until(began + u64::from(until_ms), &mut world);
        self.steps[first..].to_vec()
    }

    /// Readiness as the agent would report it now.
    pub fn ready(&self) -> bool {
        self.agent.ready()
    }

    /// The signals the agent sent the app (the policy's, and the agent's own
    /// at the deadline), with when, in ms since the drain began.
    pub fn app_signals(&self) -> &[SentSignal] {
        &self.app_signals
    }

    /// The signals sent so far, as the policy sees them in its snapshot.
    pub fn signals_sent(&self) -> Vec<SentSignal> {
        self.snapshot().signals_sent
    }

    /// Every decision taken so far.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Everything the agent recorded, with when (ms on the virtual clock).
    pub fn records(&self) -> &[(Millis, Record)] {
        &self.records
    }

    /// The virtual clock: ms since the harness started.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// The policy, for assertions on its state.
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// The agent's own state.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    fn run_until(&mut self, until: Millis, world: &mut dyn FnMut(u32, &mut Self)) {
        loop {
            if self.sample_due {
                self.sample(world);
                continue;
            }
            if self.agent.done() {
                return;
            }
            let tick = self.agent.next_tick();
            match self.exit_at {
                Some((at, child)) if at <= until && tick.is_none_or(|tick| at <= tick) => {
                    self.now = self.now.max(at);
                    self.exit_at = None;
                    self.exited(child);
                }
                _ => match tick {
                    Some(at) if at <= until => {
                        self.now = self.now.max(at);
                        self.input(Input::Tick, world);
                    }
                    _ => return,
                },
            }
        }
    }

    fn sample(&mut self, world: &mut dyn FnMut(u32, &mut Self)) {
        self.sample_due = false;
        let elapsed = self.snapshot().elapsed_ms;
        world(elapsed, self);
        if !self.agent.done() {
            let values = self.probes.clone();
            self.input(Input::Sampled(values), world);
        }
    }

    fn exited(&mut self, child: Child) {
        self.child = child;
        self.input(Input::AppExited(child), &mut |_, _| {});
    }

    /// Hands `input` to the agent and performs what it asks, at once.
    fn input(&mut self, input: Input, world: &mut dyn FnMut(u32, &mut Self)) {
        let effects = self.agent.handle(self.now, input);
        for effect in effects {
            self.perform(effect, world);
        }
    }

    fn perform(&mut self, effect: Effect, world: &mut dyn FnMut(u32, &mut Self)) {
        match effect {
            Effect::Ready(_) | Effect::ReleasePrestop(_) | Effect::Reload | Effect::Exit(_) => {}
            Effect::Sample(Sample::Learn) => {
                let values = self.probes.clone();
                self.input(Input::Sampled(values), world);
            }
            // The test's world changes the probes first, in `run_until`.
            Effect::Sample(Sample::All) => self.sample_due = true,
            Effect::AskSignal(signal, snapshot) => {
                let action = self.policy.on_signal(signal, &snapshot);
                self.input(Input::SignalAnswered(action, Call::default()), world);
            }
            Effect::AskDecide(snapshot) => {
                let decision = self.policy.decide(&snapshot);
                self.steps.push(Step {
                    at_ms: snapshot.elapsed_ms,
                    decision: decision.clone(),
                });
                self.input(Input::Decided(decision, Call::default()), world);
            }
            Effect::SignalApp(signal) => {
                let elapsed = self.snapshot().elapsed_ms;
                self.app_signals.push(SentSignal {
                    signal,
                    at_ms: elapsed,
                });
                if signal == Signal::Kill {
                    self.exited(Child::Killed(9));
                } else {
                    world(elapsed, self);
                }
            }
            Effect::KillApp => {
                self.app_signals.push(SentSignal {
                    signal: Signal::Kill,
                    at_ms: self.snapshot().elapsed_ms,
                });
                self.exited(Child::Killed(9));
            }
            Effect::Record(record) => self.records.push((self.now, record)),
        }
    }
}

/// A `connections` reading, for tests: `in_flight` requests awaiting their
/// response (each on its own connection), the last request
/// `since_last_request_ms` ago, nothing learned.
pub fn connections(in_flight: u32, since_last_request_ms: Option<u32>) -> ProbeValue {
    ProbeValue::Connections(Connections {
        evidence: Evidence::SockDiag,
        open: in_flight,
        in_flight,
        idle: 0,
        accepted: 0,
        since_last_request_ms,
        since_last_accept_ms: since_last_request_ms,
        silences: NOTHING_LEARNED,
        excluded: 0,
        streaming: 0,
        unsure: 0,
        long_lived: 0,
        long_lived_oldest_ms: None,
        multiplexed: false,
    })
}

const NOTHING_LEARNED: Silences = Silences {
    watched_ms: 0,
    count: 0,
    p50_ms: None,
    p99_ms: None,
    max_ms: None,
};

/// The first step that sends `signal`, if any.
pub fn first_signal(steps: &[Step], signal: Signal) -> Option<&Step> {
    steps.iter().find(|s| s.decision.signal == Some(signal))
}

/// The app's traffic over time, sampled as the agent's `connections` probe
/// would see it. Times are ms relative to the drain's start; negative times
/// are before it.
///
/// Each request is its own connection (accepted when it arrives, closed when
/// it is answered) unless a keep-alive [`pool`](Traffic::pool) is open: then
/// requests travel over the pool's connections, which stay open, idle
/// between requests, until the pool closes them.
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    requests: Vec<(i64, i64)>,
    /// Answers streaming (their requests are among `requests`).
    streams: Vec<(i64, i64)>,
    /// Answers the sockets cannot tell done (their requests are among
    /// `requests`).
    unsure: Vec<(i64, i64)>,
    /// Long-lived connections (WebSockets, event streams): open from, until.
    long_lived: Vec<(i64, i64)>,
    /// Connections held open by a keep-alive pool, and until when.
    pool: Option<(u32, i64)>,
    silences: Option<Silences>,
    last_sample: Option<i64>,
}

impl Traffic {
    /// No traffic at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// One request, arriving at `from` and answered at `to`.
    pub fn request(mut self, from: i64, to: i64) -> Self {
        self.requests.push((from, to));
        self
    }

    /// A request arriving every `every` ms in `[from, until)`, each taking
    /// `lasting` ms.
    pub fn arrivals(mut self, from: i64, until: i64, every: i64, lasting: i64) -> Self {
        let mut t = from;
        while t < until {
            self.requests.push((t, t + lasting));
            t += every.max(1);
        }
        self
    }

    /// Bursts of `size` requests `spacing` ms apart, one burst every `every`
    /// ms in `[from, until)`, each request taking `lasting` ms.
    pub fn bursts(
        mut self,
        from: i64,
        until: i64,
        every: i64,
        size: u32,
        spacing: i64,
        lasting: i64,
    ) -> Self {
        let mut burst = from;
        while burst < until {
            let last = burst + spacing * i64::from(size.max(1) - 1);
            self = self.arrivals(burst, last + 1, spacing, lasting);
            burst += every.max(1);
        }
        self
    }

    /// A request arriving at `from` whose answer streams until `to`: in
    /// flight, and streaming, all along.
    pub fn stream(mut self, from: i64, to: i64) -> Self {
        self.requests.push((from, to));
        self.streams.push((from, to));
        self
    }

    /// A call arriving at `from` on a multiplexed connection (HTTP/2,
    /// gRPC) and answered at `to`, which the sockets cannot tell done: in
    /// flight, and unsure, all along.
    pub fn unsure(mut self, from: i64, to: i64) -> Self {
        self.requests.push((from, to));
        self.unsure.push((from, to));
        self
    }

    /// A long-lived connection (a WebSocket, an event stream), open from
    /// `from` until `until` (when the app closes it, at its signal, or the
    /// client does).
    pub fn long_lived(mut self, from: i64, until: i64) -> Self {
        self.long_lived.push((from, until));
        self
    }

    /// Requests travel over `size` pooled keep-alive connections, open from
    /// before the first request until `until`.
    pub fn pool(mut self, size: u32, until: i64) -> Self {
        self.pool = Some((size, until));
        self
    }

    /// What the agent learned while serving: silences whose 99th percentile
    /// (and longest) is `p99_ms`.
    pub fn learned(mut self, p99_ms: u32) -> Self {
        self.silences = Some(Silences {
            watched_ms: 600_000,
            count: 1_000,
            p50_ms: Some(p99_ms / 4),
            p99_ms: Some(p99_ms),
            max_ms: Some(p99_ms),
        });
        self
    }

    /// What the agent learned while serving, in full.
    pub fn silences(mut self, silences: Silences) -> Self {
        self.silences = Some(silences);
        self
    }

    /// The probe's value at `t`; `accepted` counts the connections opened
    /// since the previous sample.
    pub fn sample(&mut self, t: i64) -> ProbeValue {
        let since = self.last_sample.replace(t).unwrap_or(i64::MIN);
        let in_flight = self.requests.iter().filter(|(a, b)| *a <= t && t < *b);
        let in_flight = in_flight.count() as u32;
        let last_request = self.requests.iter().map(|(a, _)| *a).filter(|a| *a <= t);
        let since_last_request_ms = last_request.max().map(|a| ms_since(t, a));
        let (open, accepted, since_last_accept_ms) = match self.pool {
            Some((size, until)) => {
                let open = if t < until { size.max(in_flight) } else { 0 };
                (open, 0, None)
            }
            None => {
                let arrived = self.requests.iter().filter(|(a, _)| since < *a && *a <= t);
                (in_flight, arrived.count() as u32, since_last_request_ms)
            }
        };
        let streaming = self.streams.iter().filter(|(a, b)| *a <= t && t < *b);
        let streaming = streaming.count() as u32;
        let unsure = self.unsure.iter().filter(|(a, b)| *a <= t && t < *b);
        let unsure = unsure.count() as u32;
        let lived: Vec<i64> = self
            .long_lived
            .iter()
            .filter(|(a, b)| *a <= t && t < *b)
            .map(|(a, _)| *a)
            .collect();
        ProbeValue::Connections(Connections {
            evidence: Evidence::SockDiag,
            open: open + lived.len() as u32,
            in_flight,
            idle: open - in_flight.min(open),
            accepted,
            since_last_request_ms,
            since_last_accept_ms,
            silences: self.silences.unwrap_or(NOTHING_LEARNED),
            excluded: 0,
            streaming,
            unsure,
            long_lived: lived.len() as u32,
            long_lived_oldest_ms: lived.iter().min().map(|a| ms_since(t, *a)),
            multiplexed: !self.unsure.is_empty(),
        })
    }
}

fn ms_since(t: i64, then: i64) -> u32 {
    (t - then).clamp(0, u32::MAX as i64) as u32
}
