//! The thread that asks the policy. Policy calls run here, off the
//! controller's loop: a call is bounded by its CPU budget, but the loop must
//! never wait even for that, and a guest that prints or polls needs a plain
//! thread (wasmtime-wasi's blocking calls start a runtime of their own, which
//! cannot be done inside the controller's).
//!
//! A shadow policy, if one is loaded, is asked each question after the live
//! one has answered, in its own sandbox and budget; its answers only ever
//! reach the timeline, the metrics and `/status`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lameduck_sdk::agent::{Call, Input};
use tokio::sync::mpsc;

use crate::controller::Event;
use crate::policy::{
    Compiled, Decision, Fallback, Instance, Policy, PolicyError, Signal, SignalAction, Snapshot,
};
use crate::timeline;

/// A question for the policy.
#[derive(Debug, Clone)]
pub struct Question {
    /// Answers are matched to questions by this.
    pub id: u64,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub enum Kind {
    OnSignal(Signal, Snapshot),
    Decide(Snapshot),
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Question {
    pub fn signal(signal: Signal, snapshot: Snapshot) -> Self {
        Question::new(Kind::OnSignal(signal, snapshot))
    }

    pub fn decide(snapshot: Snapshot) -> Self {
        Question::new(Kind::Decide(snapshot))
    }

    fn new(kind: Kind) -> Self {
        Question {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            kind,
        }
    }

    /// The export it calls, for the metrics.
    pub fn call(&self) -> &'static str {
        match self.kind {
            Kind::OnSignal(..) => "on-signal",
            Kind::Decide(_) => "decide",
        }
    }

    /// Asks the native fallback.
    pub fn ask(&self, fallback: &mut Fallback) -> Reply {
        match &self.kind {
            Kind::OnSignal(signal, snapshot) => {
                Reply::Signal(fallback.on_signal(*signal, snapshot))
            }
            Kind::Decide(snapshot) => Reply::Decision(fallback.decide(snapshot)),
        }
    }
}

/// What the policy answered.
#[derive(Debug, Clone)]
pub enum Reply {
    Signal(SignalAction),
    Decision(Decision),
}

impl Reply {
    /// Whether two answers do the same (readiness, signal and what next for
    /// a decision; the action for a signal), whatever their reasons.
    pub fn agrees(&self, other: &Reply) -> bool {
        match (self, other) {
            (Reply::Signal(a), Reply::Signal(b)) => a == b,
            (Reply::Decision(a), Reply::Decision(b)) => {
                (a.ready, a.signal, a.next) == (b.ready, b.signal, b.next)
            }
            _ => false,
        }
    }

    /// The answer in words.
    pub fn describe(&self) -> String {
        match self {
            Reply::Signal(action) => format!("{action:?}").to_lowercase(),
            Reply::Decision(decision) => timeline::describe_decision(decision),
        }
    }

    /// The answer as data.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Reply::Signal(action) => {
                serde_json::json!({ "signal_action": format!("{action:?}").to_lowercase() })
            }
            Reply::Decision(decision) => timeline::decision_json(decision),
        }
    }

    /// The answer as the agent takes it.
    pub fn into_input(self, call: Call) -> Input {
        match self {
            Reply::Signal(action) => Input::SignalAnswered(action, call),
            Reply::Decision(decision) => Input::Decided(decision, call),
        }
    }
}

/// The shadow's answer to the question `id`, with why it failed, if it did.
#[derive(Debug)]
pub struct Shadowed {
    pub id: u64,
    pub call: &'static str,
    pub reply: Reply,
    pub failure: Option<PolicyError>,
}

/// An answer, with how the call went.
#[derive(Debug)]
pub struct Answered {
    pub id: u64,
    pub question: Question,
    pub reply: Reply,
    /// Why the fallback answered, if it did.
    pub failure: Option<PolicyError>,
    pub took: Duration,
}

enum Request {
    Ask(Question),
    Swap(Arc<Compiled>, Instance),
    SwapShadow(Arc<Compiled>, Instance),
}

/// The handle of the policy thread.
pub struct Decider {
    requests: std::sync::mpsc::Sender<Request>,
    config: Vec<(String, String)>,
    patience: Duration,
}

impl Decider {
    /// Starts the thread around `policy`; answers go to `events`. The
    /// controller waits `patience` for an answer before the fallback gives
    /// one.
    pub fn start(policy: Policy, patience: Duration, events: mpsc::UnboundedSender<Event>) -> Self {
        let config = policy.config().to_vec();
        let (requests, inbox) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("lameduck-policy".into())
            .spawn(move || serve(policy, inbox, events))
            .expect("spawn the policy thread");
        Decider {
            requests,
            config,
            patience,
        }
    }

    /// Asks a question; the answer comes back as [`Event::Answered`].
    pub fn ask(&self, question: Question) {
        let _ = self.requests.send(Request::Ask(question));
    }

    /// Swaps in a new policy: questions asked from now on go to it.
    pub fn swap(&self, compiled: Arc<Compiled>, instance: Instance) {
        let _ = self.requests.send(Request::Swap(compiled, instance));
    }

    /// Swaps in a new shadow policy.
    pub fn swap_shadow(&self, compiled: Arc<Compiled>, instance: Instance) {
        let _ = self.requests.send(Request::SwapShadow(compiled, instance));
    }

    /// The config given to the policy's `init`.
    pub fn config(&self) -> &[(String, String)] {
        &self.config
    }

    pub fn patience(&self) -> Duration {
        self.patience
    }
}

fn serve(
    mut policy: Policy,
    inbox: std::sync::mpsc::Receiver<Request>,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut shadow: Option<Policy> = None;
    while let Ok(request) = inbox.recv() {
        let question = match request {
            Request::Swap(compiled, instance) => {
                policy.swap(compiled, instance);
                continue;
            }
            Request::SwapShadow(compiled, instance) => {
                let shadow =
                    shadow.get_or_insert_with(|| Policy::fallback_only(policy.config().to_vec()));
                shadow.swap(compiled, instance);
                continue;
            }
            Request::Ask(question) => question,
        };
        let (reply, failure, took) = ask(&mut policy, &question);
        // No policy loaded yet is not a failure: the fallback is the policy.
        let failure = failure.filter(|f| *f != PolicyError::Unloaded);
        let (id, call) = (question.id, question.call());
        // The shadow is asked after the live answer has gone: it can delay
        // the next question by its budget at most, never this one.
        let for_shadow = shadow.is_some().then(|| question.clone());
        let answered = Answered {
            id,
            question,
            reply,
            failure,
            took,
        };
        if events.send(Event::Answered(answered)).is_err() {
            return;
        }
        if let (Some(shadow), Some(question)) = (&mut shadow, for_shadow) {
            let (reply, failure, _) = ask(shadow, &question);
            let shadowed = Shadowed {
                id,
                call,
                reply,
                failure,
            };
            if events.send(Event::Shadowed(shadowed)).is_err() {
                return;
            }
        }
    }
}

fn ask(policy: &mut Policy, question: &Question) -> (Reply, Option<PolicyError>, Duration) {
    match &question.kind {
        Kind::OnSignal(signal, snapshot) => {
            let answer = policy.on_signal(*signal, snapshot);
            (Reply::Signal(answer.value), answer.failure, answer.took)
        }
        Kind::Decide(snapshot) => {
            let answer = policy.decide(snapshot);
            (Reply::Decision(answer.value), answer.failure, answer.took)
        }
    }
}
