//! The agent's log of its timeline: each entry a line, in words (`text`)
//! or as its typed record (`json`, the same JSON `/status` keeps, with a
//! timestamp and a level).
//!
//! In words, a decision that says what the previous one said, but for its
//! figures ("last request 120 ms ago" / "… 220 ms ago"), is written once and
//! then folded: the next different line is preceded by "… again ×N over
//! T". A 5 s drain rechecking every 100 ms would otherwise write 50 near
//! identical lines. Every change, signal and exit is written at once; the
//! JSON log and `/status` keep every decision.

use std::io::Write;

use lameduck_core::record::{Entry, Event};
use tracing::Level;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};

/// Log line format.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Writes the timeline's entries as log lines.
pub struct Log {
    format: LogFormat,
    /// Decisions folded since the last line written.
    folded: Option<Folded>,
}

struct Folded {
    /// What the decision said, without its figures.
    gist: String,
    first_ms: u64,
    last_ms: u64,
    count: u32,
}

impl Log {
    pub fn new(format: LogFormat) -> Self {
        Log {
            format,
            folded: None,
        }
    }

    /// Logs `entry`, whose JSON is `json`.
    pub fn entry(&mut self, entry: &Entry, json: &str) {
        let level = level(&entry.event);
        let enabled = match level {
            Level::ERROR => tracing::enabled!(target: "lameduck", Level::ERROR),
            Level::WARN => tracing::enabled!(target: "lameduck", Level::WARN),
            _ => tracing::enabled!(target: "lameduck", Level::INFO),
        };
        if !enabled {
            return;
        }
        match self.format {
            LogFormat::Json => write_json(level, json),
            LogFormat::Text => self.text(level, entry),
        }
    }

    fn text(&mut self, level: Level, entry: &Entry) {
        let gist = match &entry.event {
            Event::Decision { decision, .. } => Some(gist(&decision.reason, decision)),
            _ => None,
        };
        if let (Some(gist), Some(folded)) = (&gist, &mut self.folded)
            && *gist == folded.gist
        {
            folded.count += 1;
            folded.last_ms = entry.at_ms;
            return;
        }
        if let Some(folded) = self.folded.take().filter(|f| f.count > 0) {
            let over = std::time::Duration::from_millis(folded.last_ms - folded.first_ms);
            tracing::info!(target: "lameduck", "… again ×{} over {over:.1?}", folded.count);
        }
        self.folded = gist.map(|gist| Folded {
            gist,
            first_ms: entry.at_ms,
            last_ms: entry.at_ms,
            count: 0,
        });
        let message = entry.event.describe();
        let event = entry.event.kind();
        let drain_ms = entry.drain_ms;
        match level {
            Level::ERROR => tracing::error!(target: "lameduck", event, drain_ms, "{message}"),
            Level::WARN => tracing::warn!(target: "lameduck", event, drain_ms, "{message}"),
            _ => tracing::info!(target: "lameduck", event, drain_ms, "{message}"),
        }
    }
}

/// How much an event matters: what went wrong is a warning or an error.
fn level(event: &Event) -> Level {
    match event {
        Event::PolicyFailed { .. } => Level::ERROR,
        Event::ShadowFailed { .. }
        | Event::PolicyError { .. }
        | Event::Late { .. }
        | Event::Refused { .. }
        | Event::Deadline { .. }
        | Event::Killed { .. }
        | Event::Degraded { .. }
        | Event::Omitted { .. }
        | Event::PullFailed { .. }
        | Event::PolicyPulled {
            failure: Some(_), ..
        } => Level::WARN,
        _ => Level::INFO,
    }
}

/// What a decision does and says, without the figures in its reason.
fn gist(reason: &str, decision: &lameduck_core::Decision) -> String {
    let next = match decision.next {
        lameduck_core::Next::Recheck(_) => "recheck",
        lameduck_core::Next::WaitForExit => "wait",
        lameduck_core::Next::Exit => "exit",
    };
    let reason = lameduck_core::record::gist(reason, usize::MAX);
    format!("{reason} {:?} {:?} {next}", decision.ready, decision.signal)
}

/// One JSON line: the entry's record, stamped like the agent's other JSON
/// log lines.
fn write_json(level: Level, json: &str) {
    let mut timestamp = String::new();
    let _ = SystemTime.format_time(&mut Writer::new(&mut timestamp));
    let line = format!(
        "{{\"timestamp\":\"{timestamp}\",\"level\":\"{level}\",\"target\":\"lameduck\",{}}}\n",
        &json[1..json.len() - 1]
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use lameduck_core::Decision;

    #[test]
    fn the_gist_of_a_decision_has_no_figures() {
        let quiet = |ms: &str| {
            let reason = format!("quiet for {ms} ms, but too little learned");
            gist(
                &reason,
                &Decision::recheck(100, reason.clone()).ready(false),
            )
        };
        assert_eq!(quiet("1259"), quiet("7"));
        let signalled =
            Decision::recheck(100, "quiet for 7 ms").signal(lameduck_core::Signal::Term);
        assert_ne!(quiet("7"), gist(&signalled.reason, &signalled));
    }
}
