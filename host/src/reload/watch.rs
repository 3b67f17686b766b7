//! The watch on the policy file's directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Reloader, Request};

/// While the watched directory is gone, how often to look for it.
pub(super) const REWATCH_EVERY: Duration = Duration::from_millis(250);

/// The watch on the directory holding the policy file: a ConfigMap volume
/// replaces the file by swapping a `..data` symlink beside it, which a
/// watch on the file itself would never see. Every event in the directory
/// asks for a reload; unchanged bytes cost a read and a hash. When the
/// directory itself is removed or renamed, the watch goes with it: it is
/// set up again on the same path once the directory is back.
pub(super) struct Watch {
    dir: PathBuf,
    reloader: Reloader,
    watcher: Option<notify::RecommendedWatcher>,
    /// The loss of the watch was logged; its return will be.
    lost_logged: bool,
}

impl Watch {
    pub(super) fn start(path: &Path, reloader: Reloader) -> Watch {
        let dir: PathBuf = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut watch = Watch {
            dir,
            reloader,
            watcher: None,
            lost_logged: false,
        };
        watch.renew();
        watch
    }

    pub(super) fn lost(&self) -> bool {
        self.watcher.is_none()
    }

    /// Watches the directory afresh; returns whether it is watched.
    pub(super) fn renew(&mut self) -> bool {
        use notify::Watcher;
        use notify::event::{EventKind, ModifyKind};
        self.watcher = None;
        let dir = self.dir.clone();
        let reloader = self.reloader.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            let request = match event {
                // The directory itself went away (or was renamed): the
                // watch went with it.
                Ok(e)
                    if e.paths.iter().any(|p| p == &dir)
                        && matches!(
                            e.kind,
                            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
                        ) =>
                {
                    Request::Rewatch
                }
                Ok(e) if e.kind.is_access() => return,
                // A missed event (a queue overflow) may have been a change.
                Ok(_) | Err(_) => Request::Source { deliberate: false },
            };
            let _ = reloader.requests.send(request);
        };
        let watched = notify::recommended_watcher(handler).and_then(|mut watcher| {
            watcher.watch(&self.dir, notify::RecursiveMode::NonRecursive)?;
            Ok(watcher)
        });
        let dir = self.dir.display();
        match watched {
            Ok(watcher) => {
                self.watcher = Some(watcher);
                if std::mem::take(&mut self.lost_logged) {
                    tracing::info!(dir = %dir, "the policy's directory is back: watching it again");
                }
                true
            }
            Err(e) => {
                if !std::mem::replace(&mut self.lost_logged, true) {
                    tracing::warn!(
                        dir = %dir,
                        "the policy's directory cannot be watched ({e}): looking for it every {REWATCH_EVERY:?}"
                    );
                }
                false
            }
        }
    }
}
