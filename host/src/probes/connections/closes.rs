//! The closes a dump without TIME_WAIT cannot date, and the learning
//! samples that wait for them.
//!
//! A connection that came and went between two samples, or closed since the
//! last one, is left only as a socket in TIME_WAIT, whose timer dates the end
//! of its exchange. An app served without keep-alive has one on its port
//! for every request of the last minute (18,000 at 300 requests a second),
//! and a dump that asks for them gets every one back, each sample. So
//! learning samples leave them out and are held here, in order, until a
//! second request reads them and the new ones are dated, each into the
//! held sample whose span it falls in. They are read at the first sample
//! without an accept, or after a second ([`SETTLE_EVERY`]) of accepts: so
//! soon after a close that the TIME_WAIT clock, learned from the freshest
//! socket read, stays as true as when every sample read them. The silences
//! learned are as fine, at up to a tenth of the cost where accepts never
//! pause, and reach the log a second late at most. The drain reads them
//! at every sample.

use std::collections::{HashMap, HashSet, VecDeque};
use std::mem;
use std::time::{Duration, Instant};

use super::super::silences::SilenceLog;
use super::super::sockets::Socket;
use super::look::SAME_ARRIVAL;

/// How long learning samples may wait for their closes to be dated.
pub(super) const SETTLE_EVERY: Duration = Duration::from_secs(1);

/// The most learning samples held (each a few arrivals): past it, the
/// TIME_WAIT sockets are read whatever the time.
const MOST_HELD: usize = 64;

/// One learning sample's span, `(since, at]`, and what it saw.
struct Held {
    since: Option<Instant>,
    at: Instant,
    arrivals: Vec<Instant>,
    /// Connections accepted in the span and not seen: dated by their
    /// TIME_WAIT sockets, or left as activity at a moment not known.
    owed: u32,
    /// Activity at a moment not known, whatever TIME_WAIT tells.
    unseen: bool,
}

/// A close dated from a TIME_WAIT socket read for the first time.
pub(super) struct Close {
    /// When the exchange ended, as late as it can have been.
    pub at: Instant,
    /// When the connection was last seen open, if it was: otherwise it came
    /// and went between two samples.
    pub opened: Option<Instant>,
}

/// The closes not dated yet, and the learning samples that wait for them.
#[derive(Default)]
pub(super) struct Closes {
    clock: TimeWaitClock,
    /// Whether TIME_WAIT sockets were read once: the ones there before are
    /// no close of the agent's watch.
    read: bool,
    /// The cookies of the TIME_WAIT sockets at the last read, and at this
    /// one.
    known: HashSet<u64>,
    next: HashSet<u64>,
    /// Connections gone from a dump since the last read: when last seen,
    /// if established then (their TIME_WAIT sockets date their ends), by
    /// cookie. Those seen closing were timed then.
    closing: HashMap<u64, Option<Instant>>,
    held: VecDeque<Held>,
    /// When the latest learning sample was taken: where the next one's span
    /// begins.
    last: Option<Instant>,
}

impl Closes {
    /// Whether the TIME_WAIT sockets should be read at a learning sample
    /// taken `at` (`quiet`: nothing accepted since the previous one): the
    /// first time, or where samples wait and accepts paused or went on
    /// long enough.
    pub fn due(&self, at: Instant, quiet: bool) -> bool {
        let Some(first) = self.held.front() else {
            return !self.read;
        };
        quiet
            || self.held.len() >= MOST_HELD
            || at.saturating_duration_since(first.at) >= SETTLE_EVERY
    }

    /// A connection seen at `seen` (`established` then) and gone from the
    /// dump after.
    pub fn gone(&mut self, key: u64, seen: Instant, established: bool) {
        self.closing.insert(key, established.then_some(seen));
    }

    /// Starts a read of the TIME_WAIT `sockets`: the clock learns from all
    /// of them before any is dated.
    pub fn begin(&mut self, sockets: &[Socket]) {
        self.next.clear();
        for left in sockets.iter().filter_map(|s| s.time_wait_left_ms) {
            self.clock.learn(left);
        }
    }

    /// A TIME_WAIT socket of this read: its close, if it was not dated at
    /// an earlier read (nor there at the first).
    pub fn date(&mut self, s: &Socket, at: Instant) -> Option<Close> {
        self.next.insert(s.key);
        let left = s.time_wait_left_ms?;
        let began = self.clock.began(left, at);
        if !self.read || self.known.contains(&s.key) {
            return None;
        }
        match self.closing.remove(&s.key) {
            // Seen closing: its end was timed then.
            Some(None) => None,
            opened => Some(Close {
                at: began,
                opened: opened.flatten(),
            }),
        }
    }

    /// When a TIME_WAIT socket found otherwise than by a read of them (a
    /// lookup) entered it, as late as it can have been: dated now, so the
    /// next read leaves it.
    pub fn dated(&mut self, key: u64, left: u32, at: Instant) -> Instant {
        self.known.insert(key);
        self.clock.began(left, at)
    }

    /// Ends a read of the TIME_WAIT sockets.
    pub fn end(&mut self) {
        mem::swap(&mut self.known, &mut self.next);
        self.read = true;
    }

    /// Whether learning samples are held.
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// The earliest a close not dated yet can be: where the first held
    /// sample's span begins.
    pub fn floor(&self) -> Option<Instant> {
        self.held.front().and_then(|h| h.since)
    }

    /// The held sample a close dated `t` is of, if any (else this
    /// sample's): the one whose span it falls in, or, for one that
    /// `came_and_went`, the one before where that owes an accept and ended
    /// within the TIME_WAIT clock's blur of `t` (it dates as late as can
    /// be).
    pub fn held_for(&self, t: Instant, came_and_went: bool) -> Option<usize> {
        let mut index = self
            .held
            .iter()
            .position(|h| t <= h.at)
            .unwrap_or(self.held.len());
        while came_and_went
            && index > 0
            && self.held[index - 1].owed > 0
            && t <= self.held[index - 1].at + SAME_ARRIVAL
        {
            index -= 1;
        }
        (index < self.held.len()).then_some(index)
    }

    /// A close dated at `t`, into held sample `index`: an arrival if it was
    /// the app's, and one fewer accept owed if it `came_and_went`.
    pub fn settle(&mut self, index: usize, t: Instant, came_and_went: bool, app: bool) {
        let held = &mut self.held[index];
        if came_and_went {
            held.owed = held.owed.saturating_sub(1);
        }
        if app {
            held.arrivals.push(t.min(held.at));
        }
    }

    /// A learning sample taken `at`: observed at once where none waits
    /// before it and it waits for nothing, held otherwise. `settled`: the
    /// TIME_WAIT sockets were read with it, so whatever is owed stays
    /// unknown. `arrivals` are taken (left empty).
    pub fn learn(
        &mut self,
        at: Instant,
        arrivals: &mut Vec<Instant>,
        owed: u32,
        unseen: bool,
        settled: bool,
        log: &mut SilenceLog,
    ) {
        if settled {
            self.observe_held(log);
        }
        let since = self.last.replace(at);
        if settled || !self.holding() && owed == 0 && self.closing.is_empty() {
            log.observe(at, arrivals, unseen || owed > 0);
            arrivals.clear();
            return;
        }
        self.held.push_back(Held {
            since,
            at,
            arrivals: mem::take(arrivals),
            owed,
            unseen,
        });
    }

    /// Observes the held samples, in order, after a read of the TIME_WAIT
    /// sockets (or where none can be): what they still owe is activity at a
    /// moment not known, measured long.
    pub fn observe_held(&mut self, log: &mut SilenceLog) {
        for mut held in self.held.drain(..) {
            log.observe(held.at, &mut held.arrivals, held.unseen || held.owed > 0);
        }
        self.closing.clear();
    }
}

/// Dates a socket's entry into TIME_WAIT from the time it has left.
#[derive(Default)]
struct TimeWaitClock {
    /// The most a TIME_WAIT socket was seen to have left: how long the
    /// kernel keeps one (60 s in Linux), learned rather than assumed, from
    /// below, so a date is never earlier than it was.
    len: u32,
}

impl TimeWaitClock {
    /// A socket seen with `left` ms of TIME_WAIT to go: it lasts that long
    /// at least.
    fn learn(&mut self, left: u32) {
        self.len = self.len.max(left);
    }

    /// When a socket with `left` ms of TIME_WAIT to go at `at` entered it,
    /// as late as it can have been.
    fn began(&mut self, left: u32, at: Instant) -> Instant {
        self.learn(left);
        let ago = Duration::from_millis((self.len - left).into());
        at.checked_sub(ago).unwrap_or(at)
    }
}
