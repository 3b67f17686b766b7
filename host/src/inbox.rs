//! The controller's inbox: everything the controller handles arrives as a
//! [`Message`] on one channel, from the signal thread, the admin server,
//! the reloaders, the probes' thread and the decider's thread. Those send;
//! only the controller receives.

use std::sync::Arc;

use lameduck_core::ProbeValue;
use lameduck_runtime::{Compiled, Instance};
use tokio::sync::{mpsc, oneshot};

use crate::question::{Answered, Shadowed};
use crate::supervisor::Exit;

/// Where messages for the controller are sent.
pub type Sender = mpsc::UnboundedSender<Message>;

/// Where the controller receives them.
pub type Receiver = mpsc::UnboundedReceiver<Message>;

/// A new inbox.
pub fn channel() -> (Sender, Receiver) {
    mpsc::unbounded_channel()
}

/// Whoever asked for a policy to be loaded and waits to hear that it
/// decides (`PUT /policy`): told once the swap is done, or why it was not.
pub type Swapped = oneshot::Sender<Result<String, String>>;

/// Everything the controller handles.
pub enum Message {
    /// A signal reached the agent (its number).
    Signal(i32),
    /// A `preStop` hook called; answered when the app may be signalled.
    PreStop(oneshot::Sender<String>),
    /// A policy compiled, checked and `init`-ed, to be swapped in.
    PolicyLoaded {
        role: Role,
        compiled: Arc<Compiled>,
        instance: Instance,
        swapped: Option<Swapped>,
    },
    /// A policy could not be loaded; the last good one (or, live, the
    /// built-in logic) decides.
    PolicyFailed {
        role: Role,
        source: String,
        reason: String,
    },
    /// The probes' readings.
    Sampled(Vec<(String, ProbeValue)>),
    /// Learning samples cost more CPU than their share allows: they are
    /// taken every so many ms, not every `LEARN_EVERY_MS` (`None`: back
    /// to that).
    LearningSpaced(Option<u32>),
    /// The policy's answer to a question.
    Answered(Answered),
    /// The shadow policy's answer to the same question.
    Shadowed(Shadowed),
    /// The app exited.
    AppExited(Exit),
}

/// Which policy: the live one, obeyed, or the shadow, asked the same
/// questions and only recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Live,
    Shadow,
}
