//! Loading and reloading the policy, off the controller's path.
//!
//! One thread does every load: the first one at start-up, a change of the
//! policy file (watched, including a Kubernetes ConfigMap volume's atomic
//! `..data` symlink swap), a reload signal, a `PUT /policy`. Each new
//! component is compiled, checked against the world, instantiated and
//! `init`-ed with the configured config; only then is it handed to the
//! controller, which swaps it in between two calls. A component that fails
//! any step is refused and the last good policy keeps deciding. The same
//! bytes again are a no-op.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::{mpsc as tokio_mpsc, oneshot};

use crate::config::PolicySource;
use crate::controller::Event;
use crate::policy::{Compiler, Limits, sha256_hex};

/// File events closer together than this are one change (an editor's or
/// the kubelet's several steps). Correctness does not depend on it — every
/// event re-reads the file, and the same bytes are a no-op — it only spares
/// reading a file that is still being written.
const SETTLE: Duration = Duration::from_millis(2);

/// What the reloader is asked to do.
pub enum Request {
    /// Read the policy source again.
    Source,
    /// Load these bytes (from `PUT /policy`); the reply says how it went.
    Bytes {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<String, String>>,
    },
}

/// A handle to send the reloader requests.
#[derive(Clone)]
pub struct Reloader {
    requests: mpsc::Sender<Request>,
}

impl Reloader {
    /// Starts the reloader thread; it sets up the engine, loads `source`,
    /// and watches it if it is a file.
    pub fn start(
        limits: Limits,
        cache_dir: Option<PathBuf>,
        source: PolicySource,
        config: Vec<(String, String)>,
        events: tokio_mpsc::UnboundedSender<Event>,
    ) -> Reloader {
        let (requests, inbox) = mpsc::channel();
        let reloader = Reloader { requests };
        let watcher = match &source {
            PolicySource::File(path) => watch(path, reloader.clone()),
            PolicySource::Builtin(_) => None,
        };
        std::thread::Builder::new()
            .name("lameduck-reload".into())
            .spawn(move || {
                let _watcher = watcher;
                let compiler = match Compiler::new(limits, cache_dir) {
                    Ok(compiler) => compiler,
                    Err(e) => {
                        let reason = format!("cannot set up the WebAssembly engine: {e:#}");
                        let source = source.to_string();
                        let _ = events.send(Event::PolicyFailed { source, reason });
                        return;
                    }
                };
                let mut loader = Loader {
                    compiler,
                    source,
                    config,
                    events,
                    current: None,
                };
                loader.load_source();
                loader.serve(inbox)
            })
            .expect("spawn the reload thread");
        reloader
    }

    /// Asks for the policy source to be read again.
    pub fn reload(&self) {
        let _ = self.requests.send(Request::Source);
    }

    /// Loads `bytes` as the new policy; answers with its identity or why it
    /// was refused.
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

struct Loader {
    compiler: Compiler,
    source: PolicySource,
    config: Vec<(String, String)>,
    events: tokio_mpsc::UnboundedSender<Event>,
    /// The sha256 of the policy deciding now.
    current: Option<String>,
}

impl Loader {
    fn serve(&mut self, inbox: mpsc::Receiver<Request>) {
        while let Ok(request) = inbox.recv() {
            match request {
                Request::Source => {
                    // Let a burst of file events settle into one reload.
                    while let Ok(next) = inbox.recv_timeout(SETTLE) {
                        if let Request::Bytes { bytes, reply } = next {
                            let _ = reply.send(self.load("PUT /policy", &bytes));
                        }
                    }
                    self.load_source();
                }
                Request::Bytes { bytes, reply } => {
                    let _ = reply.send(self.load("PUT /policy", &bytes));
                }
            }
        }
    }

    /// Reads the policy source and loads it.
    fn load_source(&mut self) {
        let label = self.source.to_string();
        match self.source.read() {
            Ok(bytes) => {
                let _ = self.load(&label, &bytes);
            }
            Err(e) => self.refuse(&label, e),
        }
    }

    /// Compiles, checks, instantiates and `init`s; hands the result to the
    /// controller. Returns the identity, or why it was refused.
    fn load(&mut self, label: &str, bytes: &[u8]) -> Result<String, String> {
        let sha256 = sha256_hex(bytes);
        if self.current.as_deref() == Some(&sha256) {
            tracing::debug!(policy = label, "the same policy again: nothing to do");
            return Ok(format!(
                "{label} (sha256 {}) is already live",
                &sha256[..12]
            ));
        }
        let loaded = self
            .compiler
            .compile(label, bytes)
            .map_err(|e| e.to_string())
            .and_then(|compiled| {
                let instance = compiled
                    .instantiate(&self.config)
                    .map_err(|e| e.to_string())?;
                Ok((compiled, instance))
            });
        match loaded {
            Ok((compiled, instance)) => {
                let identity = compiled.identity().to_string();
                self.current = Some(sha256);
                let _ = self
                    .events
                    .send(Event::PolicyLoaded(Arc::new(compiled), instance));
                Ok(identity)
            }
            Err(reason) => {
                self.refuse(label, reason.clone());
                Err(reason)
            }
        }
    }

    fn refuse(&self, label: &str, reason: String) {
        let _ = self.events.send(Event::PolicyFailed {
            source: label.to_string(),
            reason,
        });
    }
}

/// Watches the directory holding `path`: a ConfigMap volume replaces the
/// file by swapping a `..data` symlink beside it, which a watch on the file
/// itself would never see. Every event in the directory asks for a reload;
/// unchanged bytes cost a read and a hash.
fn watch(path: &Path, reloader: Reloader) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let dir: PathBuf = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let handler = move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            reloader.reload();
        }
    };
    let watched = notify::recommended_watcher(handler).and_then(|mut watcher| {
        watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
        Ok(watcher)
    });
    match watched {
        Ok(watcher) => Some(watcher),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), "cannot watch the policy's directory: {e}");
            None
        }
    }
}
