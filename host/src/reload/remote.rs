//! A policy named by a reference (`oci://…`), given as the setting or as
//! the content of the policy file: pulled on the reloader's thread, beside
//! the app and never on the controller's path, then loaded as any other.
//!
//! What decides, in order: the pinned digest from the cache (no network),
//! else from the registry; when the pull fails, the last good policy, else
//! the built-in `drain` logic; a failed pull is tried again later, less and
//! less often. A tag is served from its last pull when the registry fails,
//! and, with `registry.refresh`, looked up again on that period: a new
//! digest is pulled and swapped in, and one refused is not tried again
//! until the tag moves on.

use std::time::{Duration, Instant};

use lameduck_oci::{Digest, Reference};

use super::Loader;
use crate::inbox::{Message, Pulling};

/// The first pause before a failed pull is tried again; it doubles each
/// time, up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(5);
const MAX_RETRY: Duration = Duration::from_secs(300);

/// A reference, as the loader follows it.
pub(super) struct Remote {
    reference: Reference,
    /// The manifest digest deciding now, pulled by this reference.
    live: Option<Digest>,
    /// A digest refused (its pull or its load): not tried again until the
    /// tag names another.
    refused: Option<Digest>,
    /// After a failed pull: when it is tried again, and the pause it took.
    retry: Option<(Instant, Duration)>,
    /// When the tag is looked up next.
    refresh: Option<Instant>,
    /// Why the tag could not be looked up last, reported once.
    refresh_failed: Option<String>,
}

impl Remote {
    fn new(reference: Reference) -> Remote {
        Remote {
            reference,
            live: None,
            refused: None,
            retry: None,
            refresh: None,
            refresh_failed: None,
        }
    }

    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.retry.map(|(at, _)| at)
    }

    pub(super) fn refresh_at(&self) -> Option<Instant> {
        self.refresh
    }
}

impl Loader {
    /// The source names `reference`: pulled and loaded, unless it is the
    /// one followed already and nobody asked (a file event in the policy's
    /// directory): its timers do the rest.
    pub(super) fn follow(&mut self, reference: Reference, deliberate: bool) {
        let same = self
            .remote
            .as_ref()
            .is_some_and(|r| r.reference == reference);
        if same && !deliberate {
            return;
        }
        if !same {
            if !reference.is_pinned() {
                tracing::warn!(
                    %reference,
                    "a tag is not pinned: what it names may change under the same name; pin a \
                     digest (oci://REGISTRY/REPO@sha256:…) to get the same policy every time"
                );
            }
            self.remote = Some(Remote::new(reference));
        }
        self.pull_and_load(deliberate, None);
    }

    /// Time to try a failed pull again (the pull sets the next time, or
    /// none once it succeeds).
    pub(super) fn retry(&mut self) {
        self.pull_and_load(false, None);
    }

    /// Time to look the tag up again: a new digest is pulled and loaded.
    pub(super) fn refresh(&mut self) {
        let Some(remote) = &mut self.remote else {
            return;
        };
        remote.refresh = self.refresh.map(|every| Instant::now() + every);
        let reference = remote.reference.clone();
        let resolved = self.puller.resolve(&reference);
        let Some(remote) = &mut self.remote else {
            return;
        };
        match resolved {
            Ok(digest) => {
                remote.refresh_failed = None;
                if Some(&digest) == remote.live.as_ref() || Some(&digest) == remote.refused.as_ref()
                {
                    return;
                }
                let from = remote.live.as_ref().map(ToString::to_string);
                self.news(Pulling::TagMoved {
                    reference: reference.to_string(),
                    from,
                    to: digest.to_string(),
                });
                self.pull_and_load(false, Some(digest));
            }
            Err(reason) => {
                if remote.refresh_failed.as_ref() == Some(&reason) {
                    tracing::debug!(%reference, "the tag still cannot be looked up: {reason}");
                    return;
                }
                remote.refresh_failed = Some(reason.clone());
                let retry = self.refresh;
                self.news(Pulling::Failed {
                    reference: reference.to_string(),
                    reason,
                    retry,
                });
            }
        }
    }

    /// Pulls the reference followed and loads what it names. `moved_to`: the
    /// digest a tag was just seen to name, refused if the pull cannot get it.
    fn pull_and_load(&mut self, deliberate: bool, moved_to: Option<Digest>) {
        let Some(remote) = &self.remote else {
            return;
        };
        let reference = remote.reference.clone();
        let pulled = self.puller.pull(&reference);
        let refresh = self.refresh.filter(|_| !reference.is_pinned());
        let next_refresh = refresh.map(|every| Instant::now() + every);
        let pulled = match pulled {
            Ok(pulled) => pulled,
            Err(reason) => {
                let remote = self.remote.as_mut().expect("followed");
                let pause = remote
                    .retry
                    .map_or(FIRST_RETRY, |(_, pause)| (pause * 2).min(MAX_RETRY));
                remote.retry = Some((Instant::now() + pause, pause));
                remote.refresh = next_refresh;
                self.news(Pulling::Failed {
                    reference: reference.to_string(),
                    reason,
                    retry: Some(pause),
                });
                return;
            }
        };
        self.news(Pulling::Pulled {
            reference: reference.to_string(),
            digest: pulled.digest.to_string(),
            from: pulled.from,
            failure: pulled.failure.clone(),
            took: pulled.took,
            bytes: pulled.component.len() as u64,
        });
        let live = self.load(&pulled.label(), &pulled.component, deliberate, None);
        let remote = self.remote.as_mut().expect("followed");
        remote.retry = None;
        remote.refresh = next_refresh;
        if live {
            remote.live = Some(pulled.digest.clone());
        } else {
            remote.refused = Some(pulled.digest.clone());
        }
        // The registry failed and the tag's last pull was served instead:
        // what the tag names now is refused until it moves on.
        if let Some(moved_to) = moved_to.filter(|d| *d != pulled.digest) {
            remote.refused = Some(moved_to);
        }
    }

    fn news(&self, news: Pulling) {
        let _ = self.inbox.send(Message::Pulling {
            role: self.role,
            news,
        });
    }
}
