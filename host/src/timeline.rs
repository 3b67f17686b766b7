//! The timeline: every event of the agent's life and of its drain — signals,
//! snapshots, decisions with their reasons, the app's exit — as typed
//! records ([`lameduck_core::record`]), stamped with the time. Each is
//! logged as it is recorded ([`crate::log`]) and kept in memory, as JSON,
//! for `/status` and for replay: the newest, within a number of entries and
//! of bytes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use lameduck_core::agent::Record;
use lameduck_core::record::{Entry, Event};
use serde_json::value::RawValue;

use crate::log::Log;

/// Entries kept; the oldest go first (a drain is far shorter than this).
const KEPT: usize = 2_000;

/// Bytes of entries kept, as JSON: about 700 decisions with their
/// snapshots, more than a 30 s drain rechecking every 100 ms takes.
const KEPT_BYTES: usize = 512 << 10;

/// The largest entry kept whole; a larger one keeps its kind and size
/// only. Reasons, errors and probe bodies are bounded where they are made,
/// so only a snapshot of very many probes comes near it.
const MAX_ENTRY: usize = 32 << 10;

/// The timeline, shared between the controller (which writes) and the admin
/// server (which reads).
#[derive(Clone)]
pub struct Timeline {
    start: Instant,
    /// Apart from the entries, so that a log that cannot be written (a
    /// full pipe) never keeps `/status` from reading them.
    log: Arc<Mutex<Log>>,
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    /// Each entry as JSON.
    entries: VecDeque<Arc<RawValue>>,
    bytes: usize,
    /// Entries let go to stay within the bounds.
    dropped: u64,
}

/// The timeline as it was at one moment, for `/status`: cheap to take (the
/// entries are shared, not copied) and bounded.
pub struct Kept {
    /// Each entry as JSON, oldest first.
    pub entries: Vec<Arc<RawValue>>,
    /// Older entries let go.
    pub dropped: u64,
}

impl Timeline {
    /// An empty timeline whose entries are logged to `log`.
    pub fn new(log: Log) -> Self {
        Timeline {
            start: Instant::now(),
            log: Arc::new(Mutex::new(log)),
            inner: Arc::new(Mutex::new(Inner {
                entries: VecDeque::new(),
                bytes: 0,
                dropped: 0,
            })),
        }
    }

    /// Records and logs an event.
    pub fn record(&self, drain_ms: Option<u32>, event: Event) {
        let entry = Entry {
            at_ms: self.start.elapsed().as_millis() as u64,
            drain_ms,
            event,
        };
        let mut json = serde_json::to_string(&entry).expect("an entry serializes");
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.entry(&entry, &json);
        drop(log);
        if json.len() > MAX_ENTRY {
            let omitted = Entry {
                event: Event::Omitted {
                    kind: kind_of(&json),
                    bytes: json.len() as u64,
                },
                ..entry
            };
            json = serde_json::to_string(&omitted).expect("an entry serializes");
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.bytes += json.len();
        let json = RawValue::from_string(json).expect("an entry is JSON");
        inner.entries.push_back(Arc::from(json));
        while inner.entries.len() > KEPT || inner.bytes > KEPT_BYTES {
            let Some(oldest) = inner.entries.pop_front() else {
                break;
            };
            inner.bytes -= oldest.get().len();
            inner.dropped += 1;
        }
    }

    /// Records what the agent's rules did, and, when the fallback answered
    /// for a failed policy, that too.
    pub fn record_agent(&self, record: Record) {
        let (Event::Signal { call, .. } | Event::Decision { call, .. }) = &record.event else {
            return self.record(record.drain_ms, record.event);
        };
        let error = call.fallback.clone();
        self.record(record.drain_ms, record.event);
        if let Some(error) = error {
            self.record(record.drain_ms, Event::PolicyError { error });
        }
    }

    /// The entries kept.
    pub fn kept(&self) -> Kept {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Kept {
            entries: inner.entries.iter().cloned().collect(),
            dropped: inner.dropped,
        }
    }
}

/// The `event` of an entry's JSON.
fn kind_of(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v["event"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lameduck_core::record::Event;

    fn started(program: String) -> Event {
        Event::Started {
            pid: Some(1),
            program: Some(program),
        }
    }

    #[test]
    fn the_timeline_is_bounded_in_bytes_and_entries() {
        let timeline = Timeline::new(Log::new(Default::default()));
        let long = "x".repeat(1_000);
        for i in 0..3_000 {
            timeline.record(Some(i), started(format!("{long}{i}")));
        }
        let kept = timeline.kept();
        let bytes: usize = kept.entries.iter().map(|e| e.get().len()).sum();
        assert!(bytes <= KEPT_BYTES, "{bytes}");
        assert_eq!(kept.dropped as usize + kept.entries.len(), 3_000);
        // The newest are kept.
        assert!(kept.entries.last().unwrap().get().contains("x2999"));
        for _ in 0..3 {
            timeline.record(None, started("y".repeat(1 << 20)));
        }
        let kept = timeline.kept();
        let last = kept.entries.last().unwrap().get();
        assert!(last.len() <= MAX_ENTRY, "{}", last.len());
        let entry = Entry::from_json(serde_json::from_str(last).unwrap());
        assert!(
            matches!(
                entry,
                Ok(Some(Entry {
                    event: Event::Omitted { ref kind, bytes },
                    ..
                })) if kind == "started" && bytes > 1 << 20
            ),
            "{entry:?}"
        );
    }
}
