//! The controller: performs what the agent's shutdown rules ask for.
//!
//! The rules themselves live in [`lameduck_core::agent`], free of I/O, where
//! `simulate` and the SDK's harness run them too. This is the thin layer
//! that does the work: every input (a signal, a `/prestop` call, the
//! policy's answer, a sample, the app's exit, a timer) arrives on one
//! channel; each goes to the agent, and each effect the agent returns is
//! performed here. Nothing in this loop waits on a probe, a policy or an
//! admin client: sampling, policy calls and the admin server each run on a
//! thread of their own. So the deadline and the app's exit are always seen
//! on time.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use lameduck_core::agent::{Agent, Call, Effect, Input, Millis, Sample, Settings};
use lameduck_core::record::Event;
use lameduck_core::{Child, Evidence, Mode, ProbeValue};
use lameduck_runtime::Fallback;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::decider::Decider;
use crate::inbox::{self, Message, Pulling, Role};
use crate::probes::Probes;
use crate::question::{Answered, Question, Reply, Shadowed};
use crate::reload::Reloader;
use crate::shared::Shared;
use crate::signals;
use crate::supervisor::{self, Exit};

/// How often probes that learn do so while the app serves: often enough to
/// time the silences between requests that open and close connections
/// between two samples (their arrivals are known only to the sample).
pub const LEARN_EVERY_MS: u32 = 100;

/// The share of a core learning may take (1/20): a learning sample that
/// cost `t` of CPU is not followed by another for `t * LEARN_DUTY`. A
/// sample costs a few µs per connection on the app's ports, plus a walk of
/// the node's connection table; the one a second that reads the TIME_WAIT
/// sockets too, about 0.15 µs for each (18,000 behind a balancer without
/// keep-alive at 300 rps). CPU, not wall time: on a
/// busy node a sample waits for a core, and spacing samples out for that
/// would merge the silences learned into false long ones.
const LEARN_DUTY: u32 = 20;

/// The share of a core the samples a drain's decisions ask for may take
/// (1/5), whatever `recheck` a policy asks for: a sample that cost `t` of
/// CPU is not followed by another for `t * DECIDE_DUTY`. A few
/// milliseconds later at worst, the decision still comes; a policy asking
/// to look again every 10 ms can no longer keep a core busy.
const DECIDE_DUTY: u32 = 5;

/// How long learning must keep to its promised interval before it is said
/// to be back to it.
const SPACED_BACK_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// How many of the live policy's answers are kept for the shadow's to be
/// compared with: more than the shadow may have waiting, so that one that
/// answers from the back of its queue still finds the live answer.
const ANSWERS_KEPT: usize = 2 * crate::decider::SHADOW_QUEUE;

/// The app, as far as the controller is concerned.
#[derive(Debug, Clone, Copy)]
pub enum App {
    /// Its pid, which is also its process group.
    Child(i32),
    /// lameduck runs beside it, as a sidecar.
    Beside,
}

/// The shutdown's executor. See the module docs.
pub struct Controller {
    agent: Agent,
    start: Instant,
    app: App,
    shared: Arc<Shared>,
    decider: Decider,
    /// The question the policy is answering, and how long to wait for it.
    asking: Option<(Question, Instant)>,
    /// Answers when the policy thread does not, in time.
    fallback: Fallback,
    patience: Duration,
    sampler: mpsc::UnboundedSender<Sample>,
    prestop: Vec<oneshot::Sender<String>>,
    /// What the reload signal reloads: the live policy, and the shadow.
    reloaders: Vec<Reloader>,
    /// The live policy's latest answers, for the shadow's to be compared
    /// with: the shadow answers late, from a queue of its own.
    answers: VecDeque<(u64, Reply)>,
    /// The probes whose degraded evidence was said, not said again until
    /// they recover.
    degraded: Vec<String>,
}

impl Controller {
    /// A controller for `app`, with the agent's `settings`; `probes` sample
    /// on a task of their own, the policy answers on `decider`'s thread.
    pub fn new(
        settings: Settings,
        app: App,
        decider: Decider,
        probes: Probes,
        shared: Arc<Shared>,
        reloaders: Vec<Reloader>,
        inbox: inbox::Sender,
    ) -> Self {
        let (sampler, requests) = mpsc::unbounded_channel();
        // A thread and a runtime of their own: a probe may work synchronously
        // for a long while (the connections probe reads /proc, thousands of
        // sockets on a busy node), and on this runtime that would hold the
        // loop, and the deadline with it.
        std::thread::Builder::new()
            .name("lameduck-probes".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime");
                runtime.block_on(sample(probes, requests, inbox));
                // A probe stuck in a blocking read (a FIFO) must not hold it.
                runtime.shutdown_background();
            })
            .expect("spawn the probe thread");
        shared.metrics.set_learning_interval(LEARN_EVERY_MS);
        Controller {
            fallback: Fallback::new(decider.config()),
            patience: decider.patience(),
            agent: Agent::new(settings, 0),
            start: Instant::now(),
            app,
            shared,
            decider,
            asking: None,
            sampler,
            prestop: Vec::new(),
            reloaders,
            answers: VecDeque::with_capacity(ANSWERS_KEPT),
            degraded: Vec::new(),
        }
    }

    /// Runs until the app exits (or a sidecar stops), and returns the status
    /// to exit with.
    pub async fn run(mut self, mut inbox: inbox::Receiver) -> Exit {
        loop {
            let tick = self.agent.next_tick().map(|at| self.instant(at));
            let patience = self.asking.as_ref().map(|(_, until)| *until);
            let input = tokio::select! {
                biased;
                Some(message) = inbox.recv() => match self.message(message) {
                    Step::Input(input) => input,
                    Step::Exit(exit) => return exit,
                    Step::Nothing => continue,
                },
                () = at(patience) => self.impatient(),
                () = at(tick) => Input::Tick,
            };
            if let Some(exit) = self.handle(input) {
                return exit;
            }
        }
    }

    fn now(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }

    fn instant(&self, at: Millis) -> Instant {
        self.start + Duration::from_millis(at)
    }

    /// Hands `input` to the agent and performs its effects; returns the exit
    /// status when the agent is done.
    fn handle(&mut self, input: Input) -> Option<Exit> {
        let now = self.now();
        for effect in self.agent.handle(now, input) {
            if let Some(exit) = self.perform(effect) {
                return Some(exit);
            }
        }
        None
    }

    fn message(&mut self, message: Message) -> Step {
        match message {
            Message::Signal(number) => match signals::from_number(number) {
                Some(signal) => Step::Input(Input::Signal(signal)),
                None => {
                    // No name in the contract: nothing for a policy to say.
                    self.forward(number);
                    Step::Nothing
                }
            },
            Message::PreStop(reply) => {
                self.prestop.push(reply);
                Step::Input(Input::PreStop)
            }
            Message::PolicyLoaded {
                role,
                compiled,
                instance,
                swapped,
            } => {
                let identity = compiled.identity().clone();
                let load_ms = Some(compiled.compile_time.as_millis() as u64);
                let (source, sha256) = (identity.source.clone(), identity.sha256.clone());
                match role {
                    Role::Shadow => {
                        self.record(Event::ShadowPolicy {
                            source,
                            sha256,
                            load_ms,
                        });
                        self.shared.shadow_loaded(&identity);
                        self.decider.swap_shadow(compiled, instance, swapped);
                        Step::Nothing
                    }
                    Role::Live => {
                        self.record(Event::Policy {
                            source,
                            sha256,
                            load_ms,
                            origin: Some(compiled.origin.to_string()),
                        });
                        self.shared.policy_loaded(&identity);
                        self.decider.swap(compiled, instance, swapped);
                        Step::Input(Input::PolicyLoaded)
                    }
                }
            }
            Message::PolicyFailed {
                role,
                source,
                reason,
            } => {
                let event = match role {
                    Role::Shadow => {
                        self.shared.shadow_refused(&source, &reason);
                        Event::ShadowFailed { source, reason }
                    }
                    Role::Live => {
                        let deciding = self
                            .shared
                            .status()
                            .policy
                            .map(|p| format!("{} (sha256 {})", p.source, &p.sha256[..12]));
                        self.shared.policy_refused(&source, &reason);
                        Event::PolicyFailed {
                            source,
                            reason,
                            deciding,
                        }
                    }
                };
                let live = matches!(event, Event::PolicyFailed { .. });
                self.record(event);
                if live {
                    Step::Input(Input::PolicyRefused)
                } else {
                    Step::Nothing
                }
            }
            Message::Pulling { role, news } => self.pulling(role, news),
            Message::Sampled(values) => {
                self.say_degraded(&values);
                Step::Input(Input::Sampled(values))
            }
            Message::LearningSpaced(every) => {
                self.shared
                    .metrics
                    .set_learning_interval(every.unwrap_or(LEARN_EVERY_MS));
                if let Some(ms) = every {
                    self.record(Event::Degraded {
                        probe: "learning".into(),
                        why: format!(
                            "a learning sample costs more CPU than 1/{LEARN_DUTY} of a core allows: \
                             one every {ms} ms, not every {LEARN_EVERY_MS} ms; silences shorter than \
                             that merge into longer ones, so the quiet period learned is longer, \
                             never shorter"
                        ),
                    });
                }
                Step::Nothing
            }
            Message::Answered(answered) => match &self.asking {
                Some((question, _)) if question.id == answered.id => {
                    self.asking = None;
                    Step::Input(self.answer(answered))
                }
                // Answered after the fallback did: too late to matter.
                _ => Step::Nothing,
            },
            Message::Shadowed(shadowed) => {
                self.shadowed(shadowed);
                Step::Nothing
            }
            Message::AppExited(exit) => {
                let child = match exit {
                    Exit::Code(code) => Child::Exited(code),
                    Exit::Signal(signal) => Child::Killed(signal.clamp(0, 255) as u8),
                };
                self.handle(Input::AppExited(child));
                Step::Exit(exit)
            }
        }
    }

    /// The policy's answer, as an input, with what the metrics want of it.
    fn answer(&mut self, answered: Answered) -> Input {
        let call = Call {
            took_us: answered.took.as_micros() as u64,
            fallback: answered.failure.as_ref().map(|f| f.to_string()),
        };
        self.shared
            .metrics
            .policy_call(answered.question.call(), answered.took);
        if let Some(failure) = &answered.failure {
            self.shared.metrics.policy_failure(failure.kind());
        }
        self.keep_answer(answered.id, &answered.reply);
        answered.reply.into_input(call)
    }

    fn keep_answer(&mut self, id: u64, reply: &Reply) {
        if self.answers.len() == ANSWERS_KEPT {
            self.answers.pop_front();
        }
        self.answers.push_back((id, reply.clone()));
    }

    /// The shadow's answer: recorded beside the live one, compared, counted;
    /// never obeyed. A failure is recorded whatever the live policy answered.
    fn shadowed(&mut self, shadowed: Shadowed) {
        let live = self
            .answers
            .iter()
            .find(|(id, _)| *id == shadowed.id)
            .map(|(_, reply)| reply);
        let agrees = match (&shadowed.failure, live) {
            (Some(_), _) => None,
            (None, Some(live)) => Some(shadowed.reply.agrees(live)),
            // The live policy's answer was not taken, or is long gone:
            // nothing to compare.
            (None, None) => return,
        };
        if let Some(agreed) = agrees {
            self.shared.shadow_answered(agreed);
            if !agreed {
                self.shared.metrics.shadow_disagreement(shadowed.call);
            }
        }
        let live = live.filter(|_| agrees == Some(false)).map(Reply::answer);
        self.record(Event::Shadow {
            call: shadowed.call.to_string(),
            answer: shadowed.reply.answer(),
            live,
            agrees,
            failure: shadowed.failure.as_ref().map(ToString::to_string),
        });
    }

    /// The policy thread did not answer in time: the fallback does, and the
    /// drain goes on.
    fn impatient(&mut self) -> Input {
        let (question, _) = self.asking.take().expect("only while asking");
        let why = format!("the policy did not answer within {:?}", self.patience);
        self.shared.metrics.policy_failure("unanswered");
        let call = Call {
            took_us: self.patience.as_micros() as u64,
            fallback: Some(why),
        };
        let reply = question.ask(&mut self.fallback);
        self.keep_answer(question.id, &reply);
        reply.into_input(call)
    }

    fn perform(&mut self, effect: Effect) -> Option<Exit> {
        match effect {
            Effect::Ready(ready) => self.shared.set_ready(ready),
            Effect::Sample(kind) => {
                let _ = self.sampler.send(kind);
            }
            Effect::AskSignal(signal, snapshot) => self.ask(Question::signal(signal, snapshot)),
            Effect::AskDecide(snapshot) => self.ask(Question::decide(snapshot)),
            Effect::SignalApp(signal) => {
                if let App::Child(pid) = self.app {
                    supervisor::kill(pid, signals::number(signal));
                }
            }
            Effect::KillApp => {
                if let App::Child(pid) = self.app {
                    supervisor::kill_group(pid, libc::SIGKILL);
                }
            }
            Effect::ReleasePrestop(why) => {
                for reply in self.prestop.drain(..) {
                    let _ = reply.send(why.clone());
                }
            }
            Effect::Reload => {
                for reloader in &self.reloaders {
                    reloader.reload();
                }
            }
            Effect::Record(record) => {
                match &record.event {
                    Event::DrainBegan { .. } => self.shared.set_draining(),
                    Event::Decision { decision, .. } => {
                        self.shared.metrics.decision(&decision.reason)
                    }
                    _ => {}
                }
                self.shared.timeline.record_agent(record);
            }
            Effect::Exit(code) => return Some(Exit::Code(code.clamp(0, 255) as u8)),
        }
        None
    }

    fn ask(&mut self, question: Question) {
        self.asking = Some((question.clone(), Instant::now() + self.patience));
        self.decider.ask(question);
    }

    /// A signal with no name in the contract goes straight to the app.
    fn forward(&mut self, number: i32) {
        let name = signals::name(number);
        if let App::Child(pid) = self.app {
            supervisor::kill(pid, number);
        }
        self.record(Event::Forwarded { signal: name });
    }

    /// Says, once until it recovers, that a probe's evidence got worse: it
    /// fails, or reads connections without their activity.
    fn say_degraded(&mut self, values: &[(String, ProbeValue)]) {
        for (name, value) in values {
            let why = match value {
                ProbeValue::Failed(why) => Some(format!("failed: {why}")),
                ProbeValue::Connections(c) if c.evidence == Evidence::ProcNetTcp => Some(
                    "netlink was refused: /proc/net/tcp only, without each connection's activity; \
                     requests on kept-alive connections are not seen, and a connection counts as \
                     in flight (unsure) until its queues have been empty for 5 s"
                        .to_string(),
                ),
                _ => None,
            };
            let said = self.degraded.iter().position(|p| p == name);
            match (why, said) {
                (Some(why), None) => {
                    self.degraded.push(name.clone());
                    self.record(Event::Degraded {
                        probe: name.clone(),
                        why,
                    });
                }
                (None, Some(i)) => {
                    self.degraded.swap_remove(i);
                }
                _ => {}
            }
        }
    }

    /// Records what a reloader did with a registry, shows it in `/status`
    /// and counts it. A failed pull of the live policy releases the signals
    /// held for it: the last good policy, or the built-in logic, decides.
    fn pulling(&mut self, role: Role, news: Pulling) -> Step {
        let shadow = role == Role::Shadow;
        let (event, step) = match news {
            Pulling::Pulled {
                reference,
                digest,
                from,
                failure,
                took,
                bytes,
            } => {
                self.shared
                    .pulled(shadow, &reference, &digest, from, failure.as_deref(), took);
                let event = Event::PolicyPulled {
                    reference,
                    digest,
                    from,
                    pull_ms: took.as_millis() as u64,
                    bytes,
                    failure,
                    shadow,
                };
                (event, Step::Nothing)
            }
            Pulling::Failed {
                reference,
                reason,
                retry,
            } => {
                self.shared.pull_failed(shadow, &reference, &reason);
                let deciding = match shadow {
                    true => None,
                    false => self.shared.status().policy.map(|p| {
                        format!("{} (sha256 {})", p.source, p.sha256.get(..12).unwrap_or(""))
                    }),
                };
                let event = Event::PullFailed {
                    reference,
                    reason,
                    deciding,
                    retry_ms: retry.map(|r| r.as_millis() as u64),
                    shadow,
                };
                let step = match shadow {
                    true => Step::Nothing,
                    false => Step::Input(Input::PolicyRefused),
                };
                (event, step)
            }
            Pulling::TagMoved {
                reference,
                from,
                to,
            } => (
                Event::TagMoved {
                    reference,
                    from,
                    to,
                    shadow,
                },
                Step::Nothing,
            ),
        };
        self.record(event);
        step
    }

    /// Records what the controller itself did (the agent's rules record
    /// theirs as effects).
    fn record(&self, event: Event) {
        self.shared.timeline.record(self.drain_ms(), event);
    }

    fn drain_ms(&self) -> Option<u32> {
        let elapsed = self.agent.snapshot(self.now()).elapsed_ms;
        self.agent.draining().then_some(elapsed)
    }
}

/// What an event leads to.
enum Step {
    Input(Input),
    Exit(Exit),
    Nothing,
}

/// Samples the probes on request, on a task of its own, and sends the
/// readings back to the controller.
async fn sample(
    mut probes: Probes,
    mut requests: mpsc::UnboundedReceiver<Sample>,
    inbox: inbox::Sender,
) {
    let thread_time = || cpu_time::ThreadTime::now().as_duration();
    let mut learn_again = std::time::Instant::now();
    let mut decide_again = tokio::time::Instant::now();
    // Learning spaced out wider than promised, as last said.
    let mut spaced: Option<u32> = None;
    let mut spaced_last = std::time::Instant::now();
    while let Some(kind) = requests.recv().await {
        let values = match kind {
            // Too soon for what the last one cost: nothing learned this time.
            Sample::Learn if std::time::Instant::now() < learn_again => Vec::new(),
            Sample::Learn => {
                let (began, cpu) = (std::time::Instant::now(), thread_time());
                let values = probes.learn();
                let spacing = (thread_time() - cpu) * LEARN_DUTY;
                learn_again = began + spacing;
                // Said when it goes past the promise, and when it is back
                // (rounded to 100 ms, so a wobble is not news).
                let every =
                    lameduck_core::millis(spacing).div_ceil(LEARN_EVERY_MS) * LEARN_EVERY_MS;
                let now = (every > LEARN_EVERY_MS).then_some(every);
                if now.is_some() {
                    spaced_last = began;
                }
                // Back only once it has kept the promise for a while: a
                // look that skipped its dump cost nothing, and proves little.
                let back = now.is_none() && began - spaced_last >= SPACED_BACK_AFTER;
                if (now > spaced || back && spaced.is_some()) && now != spaced {
                    spaced = now;
                    if inbox.send(Message::LearningSpaced(now)).is_err() {
                        return;
                    }
                }
                values
            }
            Sample::All => {
                tokio::time::sleep_until(decide_again).await;
                let (began, cpu) = (tokio::time::Instant::now(), thread_time());
                let values = probes.sample().await;
                decide_again = began + (thread_time() - cpu) * DECIDE_DUTY;
                values
            }
        };
        if inbox.send(Message::Sampled(values)).is_err() {
            return;
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

/// The agent's settings for a run of the app (or beside it, as a sidecar).
pub fn settings(
    config: &crate::config::Config,
    mode: Mode,
    probes: &Probes,
    policy_loading: bool,
) -> Settings {
    Settings {
        budget_ms: lameduck_core::millis(config.drain_budget()),
        kill_pause_ms: lameduck_core::millis(config.safety_margin / 2),
        mode,
        probes: probes.names(),
        learn_every_ms: probes.learns().then_some(LEARN_EVERY_MS),
        hold_max_ms: 2_000,
        reload_signal: config.reload_signal.and_then(signals::from_number),
        policy_loading,
    }
}
