//! A question for the policy, and its answer: what the controller asks, the
//! decider's thread answers, and the fallback answers when it does not.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lameduck_core::agent::{Call, Input};
use lameduck_core::record::Answer;
use lameduck_core::{Decision, Signal, SignalAction, Snapshot};
use lameduck_runtime::{Fallback, PolicyError};

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

    /// The answer as the timeline records it.
    pub fn answer(&self) -> Answer {
        match self {
            Reply::Signal(action) => Answer::Signal {
                signal_action: *action,
            },
            Reply::Decision(decision) => Answer::Decision(decision.clone()),
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

/// The shadow's answer to the question `id`, with why it failed, if it did.
#[derive(Debug)]
pub struct Shadowed {
    pub id: u64,
    pub call: &'static str,
    pub reply: Reply,
    pub failure: Option<PolicyError>,
}
