//! Loading and reloading the policy, off the controller's path.
//!
//! One thread does every load: the first one at start-up, a change of the
//! policy file (watched, including a Kubernetes ConfigMap volume's atomic
//! `..data` symlink swap), a reload signal, a `PUT /policy`, and the pulls
//! of a policy named by a reference ([`remote`]). Each new component is
//! compiled, checked against the world, instantiated and `init`-ed with the
//! configured config; only then is it handed to the controller, which
//! swaps it in between two calls. A component that fails any step is
//! refused and the last good policy keeps deciding. The same bytes again
//! are a no-op.

mod remote;
mod watch;

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::config::Config;
use crate::inbox::{self, Message, Role, Swapped};
use crate::pull::Puller;
use crate::source::{Content, PolicySource};
use lameduck_runtime::{Compiled, Compiler, Instance, MAX_ERROR, PolicyError, bounded, sha256_hex};
use remote::Remote;
use watch::{REWATCH_EVERY, Watch};

/// File events closer together than this are one change (an editor's or
/// the kubelet's several steps). Correctness does not depend on it — every
/// event re-reads the file, and the same bytes are a no-op — it only spares
/// reading a file that is still being written.
const SETTLE: Duration = Duration::from_millis(2);

/// What the reloader is asked to do.
pub enum Request {
    /// Read the policy source again. `deliberate`: an operator asked (the
    /// reload signal), so a policy refused before is tried again; a file
    /// event is not, and bytes refused before are left alone.
    Source { deliberate: bool },
    /// Load these bytes (from `PUT /policy`); the reply says how it went,
    /// once the policy decides (or why it does not).
    Bytes { bytes: Vec<u8>, reply: Swapped },
    /// The watched directory itself was removed or renamed: watch it again.
    Rewatch,
    /// Time to look the tag up again (`registry.refresh`).
    Refresh,
    /// Time to try a failed pull again.
    Retry,
}

/// A handle to send the reloader requests.
#[derive(Clone)]
pub struct Reloader {
    requests: mpsc::Sender<Request>,
}

impl Reloader {
    /// Starts the reloader thread of the `role` policy, read from `source`
    /// with `config`'s budgets, cache, policy config and registry settings;
    /// it sets up the engine, loads the policy (pulling it, if a reference
    /// names it), and watches it if it is a file.
    pub fn start(
        role: Role,
        source: PolicySource,
        config: &Config,
        inbox: inbox::Sender,
    ) -> Reloader {
        let (requests, queue) = mpsc::channel();
        let reloader = Reloader { requests };
        let watch = match &source {
            PolicySource::File(path) => Some(Watch::start(path, reloader.clone())),
            PolicySource::Builtin(_) | PolicySource::Oci(_) => None,
        };
        let (limits, cache_dir) = (config.limits(), config.cache_dir.clone());
        let policy_config = config.policy_config.clone();
        let puller = Puller::new(config);
        let refresh = config.registry_refresh;
        std::thread::Builder::new()
            .name("lameduck-reload".into())
            .spawn(move || {
                let compiler = match Compiler::new(limits, cache_dir) {
                    Ok(compiler) => compiler,
                    Err(e) => {
                        let reason = format!("cannot set up the WebAssembly engine: {e:#}");
                        let source = source.to_string();
                        let _ = inbox.send(Message::PolicyFailed {
                            role,
                            source,
                            reason,
                        });
                        return;
                    }
                };
                let mut loader = Loader {
                    role,
                    compiler,
                    source,
                    config: policy_config,
                    inbox,
                    current: None,
                    refused: None,
                    watch,
                    puller,
                    refresh,
                    remote: None,
                };
                loader.load_source(true);
                loader.serve(queue)
            })
            .expect("spawn the reload thread");
        reloader
    }

    /// Asks for the policy source to be read again, deliberately: a policy
    /// refused before is tried again.
    pub fn reload(&self) {
        let _ = self.requests.send(Request::Source { deliberate: true });
    }

    /// Loads `bytes` as the new policy; answers with its identity once it
    /// decides, or why it was refused.
    pub async fn push(&self, bytes: Vec<u8>) -> Result<String, String> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Bytes { bytes, reply })
            .map_err(|_| "the reloader has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the reloader has stopped".to_string())?
    }
}

/// How many times a policy whose instantiation or `init` ran past its CPU
/// budget is tried before it is refused: one slow moment of a loaded
/// machine must not refuse a policy for the whole run.
const ATTEMPTS: usize = 3;

struct Loader {
    role: Role,
    compiler: Compiler,
    source: PolicySource,
    config: Vec<(String, String)>,
    inbox: inbox::Sender,
    /// The sha256 of the policy deciding now.
    current: Option<String>,
    /// What was refused last (the sha256 of its bytes, or why the file could
    /// not be read), so that an unrelated change in its directory does not
    /// refuse it again.
    refused: Option<String>,
    watch: Option<Watch>,
    /// The registry client, for policies named by a reference.
    puller: Puller,
    /// How often a tag is looked up again.
    refresh: Option<Duration>,
    /// The reference the source names now, if it names one.
    remote: Option<Remote>,
}

impl Loader {
    fn serve(&mut self, queue: mpsc::Receiver<Request>) {
        loop {
            // Wait for a request, or until the next thing to do on time.
            let request = match self.next_timer() {
                Some((at, timer)) => {
                    match queue.recv_timeout(at.saturating_duration_since(Instant::now())) {
                        Ok(request) => request,
                        Err(mpsc::RecvTimeoutError::Timeout) => timer,
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
                None => match queue.recv() {
                    Ok(request) => request,
                    Err(_) => return,
                },
            };
            match request {
                Request::Source { mut deliberate } => {
                    // Let a burst of file events settle into one reload.
                    while let Ok(next) = queue.recv_timeout(SETTLE) {
                        match next {
                            Request::Source { deliberate: d } => deliberate |= d,
                            other => self.handle(other),
                        }
                    }
                    self.load_source(deliberate);
                }
                other => self.handle(other),
            }
        }
    }

    /// Any request but a read of the source.
    fn handle(&mut self, request: Request) {
        match request {
            Request::Source { deliberate } => self.load_source(deliberate),
            Request::Bytes { bytes, reply } => {
                self.load("PUT /policy", &bytes, true, Some(reply));
            }
            Request::Rewatch => {
                if self.rewatch() {
                    // The file may have changed while nobody looked.
                    self.load_source(false);
                }
            }
            Request::Refresh => self.refresh(),
            Request::Retry => self.retry(),
        }
    }

    /// The next thing to do on time, and when: look for the watched
    /// directory again while it is gone, try a failed pull again, look a
    /// tag up again.
    fn next_timer(&self) -> Option<(Instant, Request)> {
        let mut timers = Vec::new();
        if self.watch.as_ref().is_some_and(Watch::lost) {
            timers.push((Instant::now() + REWATCH_EVERY, Request::Rewatch));
        }
        if let Some(remote) = &self.remote {
            if let Some(at) = remote.retry_at() {
                timers.push((at, Request::Retry));
            }
            if let Some(at) = remote.refresh_at() {
                timers.push((at, Request::Refresh));
            }
        }
        timers.into_iter().min_by_key(|(at, _)| *at)
    }

    /// Watches the policy's directory again, if it exists; returns whether
    /// it is watched now.
    fn rewatch(&mut self) -> bool {
        self.watch.as_mut().is_some_and(Watch::renew)
    }

    /// Reads the policy source and loads it; a reference is pulled first.
    fn load_source(&mut self, deliberate: bool) {
        let label = self.source.to_string();
        match self.source.read() {
            Ok(Content::Component(bytes)) => {
                self.remote = None;
                self.load(&label, &bytes, deliberate, None);
            }
            Ok(Content::Reference(reference)) => self.follow(reference, deliberate),
            Err(e) => {
                let key = format!("unreadable: {e}");
                if deliberate || self.refused.as_deref() != Some(&key) {
                    self.refused = Some(key);
                    self.refuse(&label, e);
                }
            }
        }
    }

    /// Compiles, checks, instantiates and `init`s; hands the result to the
    /// controller to swap in. `swapped` hears when it decides, or why not.
    /// Returns whether these bytes are the policy now (loaded, or already
    /// live).
    fn load(
        &mut self,
        label: &str,
        bytes: &[u8],
        deliberate: bool,
        swapped: Option<Swapped>,
    ) -> bool {
        let answer = |swapped: Option<Swapped>, result: Result<String, String>| {
            if let Some(swapped) = swapped {
                let _ = swapped.send(result);
            }
        };
        let sha256 = sha256_hex(bytes);
        if self.current.as_deref() == Some(&sha256) {
            tracing::debug!(policy = label, "the same policy again: nothing to do");
            self.refused = None;
            answer(
                swapped,
                Ok(format!(
                    "{label} (sha256 {}) is already live",
                    &sha256[..12]
                )),
            );
            return true;
        }
        if !deliberate && self.refused.as_deref() == Some(&sha256) {
            tracing::debug!(
                policy = label,
                "refused before, and unchanged: not loaded again until it changes or a reload is asked for"
            );
            answer(swapped, Err("refused before, and unchanged".into()));
            return false;
        }
        let loaded = self
            .compiler
            .compile(label, bytes)
            .map_err(|e| e.to_string())
            .and_then(|compiled| {
                let instance = instantiate(&compiled, &self.config).map_err(|e| e.to_string())?;
                Ok((compiled, instance))
            });
        match loaded {
            Ok((compiled, instance)) => {
                self.current = Some(sha256);
                self.refused = None;
                let _ = self.inbox.send(Message::PolicyLoaded {
                    role: self.role,
                    compiled: Arc::new(compiled),
                    instance,
                    swapped,
                });
                true
            }
            Err(reason) => {
                let reason = bounded(reason, 2 * MAX_ERROR);
                self.refused = Some(sha256);
                self.refuse(label, reason.clone());
                answer(swapped, Err(reason));
                false
            }
        }
    }

    fn refuse(&self, label: &str, reason: String) {
        let _ = self.inbox.send(Message::PolicyFailed {
            role: self.role,
            source: label.to_string(),
            reason: bounded(reason, 2 * MAX_ERROR),
        });
    }
}

/// A first instance, `init`-ed; an overrun of its CPU budget is tried again.
fn instantiate(compiled: &Compiled, config: &[(String, String)]) -> Result<Instance, PolicyError> {
    retrying(|attempt| {
        let result = compiled.instantiate(config);
        if let Err(PolicyError::Timeout(budget)) = &result
            && attempt < ATTEMPTS
        {
            tracing::warn!(
                policy = compiled.identity().source,
                "instantiating and `init` ran past {budget:?} (attempt {attempt} of {ATTEMPTS}); trying again"
            );
        }
        result
    })
}

/// `attempt` (numbered from 1) until it does not run past its budget, at
/// most [`ATTEMPTS`] times. Every other failure is final at once.
fn retrying<T>(mut attempt: impl FnMut(usize) -> Result<T, PolicyError>) -> Result<T, PolicyError> {
    let mut n = 1;
    loop {
        match attempt(n) {
            Err(PolicyError::Timeout(_)) if n < ATTEMPTS => n += 1,
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overrun_is_tried_again_before_a_refusal() {
        let timeout = || PolicyError::Timeout(Duration::from_millis(10));
        // Twice too slow, then in time: loaded.
        let mut calls = 0;
        let result = retrying(|_| {
            calls += 1;
            if calls < 3 { Err(timeout()) } else { Ok(calls) }
        });
        assert_eq!(result, Ok(3));
        // Always too slow: refused after the last attempt.
        let mut calls = 0;
        let result: Result<(), _> = retrying(|_| {
            calls += 1;
            Err(timeout())
        });
        assert_eq!((result, calls), (Err(timeout()), ATTEMPTS));
        // Anything else is not tried again.
        let mut calls = 0;
        let result: Result<(), _> = retrying(|_| {
            calls += 1;
            Err(PolicyError::Init("no".into()))
        });
        assert_eq!((result, calls), (Err(PolicyError::Init("no".into())), 1));
    }
}
