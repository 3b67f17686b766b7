//! The threads that ask the policies. Policy calls run here, off the
//! controller's loop: a call is bounded by its CPU budget, but the loop must
//! never wait even for that, and a guest that prints or polls needs a plain
//! thread (wasmtime-wasi's blocking calls start a runtime of their own, which
//! cannot be done inside the controller's).
//!
//! The live policy has a thread of its own; a shadow policy, if one is
//! loaded, another: it is asked each question the live one answered, in its
//! own sandbox and budget, and nothing it does — a slow `init`, a trap, a
//! loop — can delay, replace or reorder a live answer. Its answers only
//! ever reach the timeline, the metrics and `/status`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lameduck_runtime::{Compiled, Instance, Policy, PolicyError};

use crate::inbox::{self, Message, Swapped};
use crate::question::{Answered, Kind, Question, Reply, Shadowed};

/// Questions the shadow may have waiting; more are not asked of it (it is
/// slower than the drain, and only its answers to the drain's questions of
/// the moment are worth comparing).
pub(crate) const SHADOW_QUEUE: usize = 4;

/// After this many failures in a row, the shadow rests before it is asked
/// again: each rest twice the last, from [`SHADOW_REST`] to
/// [`SHADOW_REST_MAX`].
const SHADOW_FAILURES: u32 = 3;
const SHADOW_REST: Duration = Duration::from_millis(500);
const SHADOW_REST_MAX: Duration = Duration::from_secs(30);

enum Request {
    Ask(Question),
    Swap(Arc<Compiled>, Instance, Option<Swapped>),
}

/// The way to the shadow's thread: its requests, and how many questions
/// wait in them. Nothing sent here ever waits: a swap always goes, a
/// question only if few wait.
#[derive(Clone)]
struct ToShadow {
    requests: mpsc::Sender<Request>,
    waiting: Arc<AtomicUsize>,
}

impl ToShadow {
    /// Asks, unless [`SHADOW_QUEUE`] questions wait already; returns
    /// whether the shadow's thread is still there.
    fn ask(&self, question: Question) -> bool {
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= SHADOW_QUEUE {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return true;
        }
        self.requests.send(Request::Ask(question)).is_ok()
    }
}

/// The handle of the policy threads.
pub struct Decider {
    live: mpsc::Sender<Request>,
    /// The shadow's thread, when a shadow is configured.
    shadow: Option<ToShadow>,
    config: Vec<(String, String)>,
    patience: Duration,
}

impl Decider {
    /// Starts the thread around `policy`, and the shadow's if `shadowed`
    /// (its policy swapped in when loaded); answers go to `inbox`. The
    /// controller waits `patience` for an answer before the fallback gives
    /// one.
    pub fn start(policy: Policy, shadowed: bool, patience: Duration, inbox: inbox::Sender) -> Self {
        let config = policy.config().to_vec();
        let shadow = shadowed.then(|| {
            let (sender, requests) = mpsc::channel();
            let shadow = ToShadow {
                requests: sender,
                waiting: Arc::new(AtomicUsize::new(0)),
            };
            let (inbox, config, waiting) = (inbox.clone(), config.clone(), shadow.waiting.clone());
            std::thread::Builder::new()
                .name("lameduck-shadow".into())
                .spawn(move || {
                    serve_shadow(Policy::fallback_only(config), requests, waiting, inbox)
                })
                .expect("spawn the shadow policy thread");
            shadow
        });
        let (live, requests) = mpsc::channel();
        let to_shadow = shadow.clone();
        std::thread::Builder::new()
            .name("lameduck-policy".into())
            .spawn(move || serve_live(policy, requests, inbox, to_shadow))
            .expect("spawn the policy thread");
        Decider {
            live,
            shadow,
            config,
            patience,
        }
    }

    /// Asks a question; the answer comes back as [`Message::Answered`].
    pub fn ask(&self, question: Question) {
        let _ = self.live.send(Request::Ask(question));
    }

    /// Swaps in a new policy: questions asked from now on go to it.
    /// `swapped` hears when it is done.
    pub fn swap(&self, compiled: Arc<Compiled>, instance: Instance, swapped: Option<Swapped>) {
        let _ = self.live.send(Request::Swap(compiled, instance, swapped));
    }

    /// Swaps in a new shadow policy.
    pub fn swap_shadow(
        &self,
        compiled: Arc<Compiled>,
        instance: Instance,
        swapped: Option<Swapped>,
    ) {
        // Never dropped and never waits: the channel has no bound for swaps.
        if let Some(shadow) = &self.shadow {
            let _ = shadow
                .requests
                .send(Request::Swap(compiled, instance, swapped));
        }
    }

    /// The config given to the policy's `init`.
    pub fn config(&self) -> &[(String, String)] {
        &self.config
    }

    pub fn patience(&self) -> Duration {
        self.patience
    }
}

fn serve_live(
    mut policy: Policy,
    requests: mpsc::Receiver<Request>,
    inbox: inbox::Sender,
    shadow: Option<ToShadow>,
) {
    while let Ok(request) = requests.recv() {
        let question = match request {
            Request::Swap(compiled, instance, swapped) => {
                let identity = compiled.identity().to_string();
                policy.swap(compiled, instance);
                if let Some(swapped) = swapped {
                    let _ = swapped.send(Ok(identity));
                }
                continue;
            }
            Request::Ask(question) => question,
        };
        let (reply, failure, took) = ask(&mut policy, &question);
        // No policy loaded yet is not a failure: the fallback is the policy.
        let failure = failure.filter(|f| *f != PolicyError::Unloaded);
        let for_shadow = shadow.as_ref().map(|_| question.clone());
        let answered = Answered {
            id: question.id,
            question,
            reply,
            failure,
            took,
        };
        if inbox.send(Message::Answered(answered)).is_err() {
            return;
        }
        // The shadow has its own thread: if it is behind, it skips this one.
        if let (Some(shadow), Some(question)) = (&shadow, for_shadow)
            && !shadow.ask(question)
        {
            return;
        }
        // An instance that failed is made anew now, not when the next
        // question is waiting for it.
        policy.prepare();
    }
}

fn serve_shadow(
    mut shadow: Policy,
    requests: mpsc::Receiver<Request>,
    waiting: Arc<AtomicUsize>,
    inbox: inbox::Sender,
) {
    let mut failures = 0;
    let mut rest = SHADOW_REST;
    let mut resting_until: Option<Instant> = None;
    while let Ok(request) = requests.recv() {
        let question = match request {
            Request::Swap(compiled, instance, swapped) => {
                let identity = compiled.identity().to_string();
                shadow.swap(compiled, instance);
                (failures, rest, resting_until) = (0, SHADOW_REST, None);
                if let Some(swapped) = swapped {
                    let _ = swapped.send(Ok(identity));
                }
                continue;
            }
            Request::Ask(question) => {
                waiting.fetch_sub(1, Ordering::SeqCst);
                question
            }
        };
        // Not loaded yet, or resting after failures: not asked.
        if shadow.identity().is_none() || resting_until.is_some_and(|t| Instant::now() < t) {
            continue;
        }
        let (reply, failure, _) = ask(&mut shadow, &question);
        if failure.is_some() {
            failures += 1;
            if failures >= SHADOW_FAILURES {
                resting_until = Some(Instant::now() + rest);
                rest = (rest * 2).min(SHADOW_REST_MAX);
            }
        } else {
            (failures, rest) = (0, SHADOW_REST);
        }
        let shadowed = Shadowed {
            id: question.id,
            call: question.call(),
            reply,
            failure,
        };
        if inbox.send(Message::Shadowed(shadowed)).is_err() {
            return;
        }
        shadow.prepare();
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
