//! The timeline: every event of the agent's life and of its drain — signals,
//! snapshots, decisions with their reasons, the app's exit — with timestamps.
//! Each entry is logged as it is recorded and kept in memory, as JSON, for
//! `/status` and for replay: the newest, within a number of entries and of
//! bytes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};

use lameduck_sdk::agent::{Call, Event, Record};

use crate::policy::{
    Child, Connections, Decision, Evidence, FileState, HttpResponse, Mode, Next, Probe, ProbeValue,
    SentSignal, Signal, SignalAction, Silences, Snapshot, Trigger, bounded,
};
use crate::signals;

/// Entries kept; the oldest go first (a drain is far shorter than this).
const KEPT: usize = 2_000;

/// Bytes of entries kept, as JSON: about 700 decisions with their
/// snapshots, more than a 30 s drain rechecking every 100 ms takes.
const KEPT_BYTES: usize = 512 << 10;

/// The largest entry kept whole; a larger one keeps its words, not its data.
const MAX_ENTRY: usize = 32 << 10;

/// One thing that happened.
#[derive(Debug, Clone, Serialize)]
struct Entry {
    /// Since the agent started.
    pub at_ms: u64,
    /// Since the drain began, during a drain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_ms: Option<u32>,
    /// What kind of event: `started`, `signal`, `drain`, `decision`, …
    pub event: &'static str,
    /// The event in words.
    pub message: String,
    /// The event as data (a decision carries its snapshot).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

/// The timeline, shared between the controller (which writes) and the admin
/// server (which reads).
#[derive(Clone)]
pub struct Timeline {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    start: Instant,
    /// Each entry as JSON.
    entries: VecDeque<Arc<str>>,
    bytes: usize,
    /// Entries let go to stay within the bounds.
    dropped: u64,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            inner: Arc::new(Mutex::new(Inner {
                start: Instant::now(),
                entries: VecDeque::new(),
                bytes: 0,
                dropped: 0,
            })),
        }
    }
}

/// The timeline as it was at one moment, for `/status`: cheap to take (the
/// entries are shared, not copied) and bounded.
pub struct Kept {
    /// Each entry as JSON, oldest first.
    pub entries: Vec<Arc<str>>,
    /// Older entries let go.
    pub dropped: u64,
}

impl Timeline {
    /// Records and logs an entry.
    pub fn record(&self, drain_ms: Option<u32>, event: &'static str, message: String, data: Value) {
        match drain_ms {
            Some(drain_ms) => tracing::info!(target: "lameduck", event, drain_ms, "{message}"),
            None => tracing::info!(target: "lameduck", event, "{message}"),
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut entry = Entry {
            at_ms: inner.start.elapsed().as_millis() as u64,
            drain_ms,
            event,
            message,
            data,
        };
        let mut json = serde_json::to_string(&entry).expect("an entry serializes");
        if json.len() > MAX_ENTRY {
            entry.data = json!({ "omitted": format!("{} bytes of data", json.len()) });
            entry.message = bounded(entry.message, MAX_ENTRY / 2);
            json = serde_json::to_string(&entry).expect("an entry serializes");
        }
        inner.bytes += json.len();
        inner.entries.push_back(Arc::from(json));
        while inner.entries.len() > KEPT || inner.bytes > KEPT_BYTES {
            let Some(oldest) = inner.entries.pop_front() else {
                break;
            };
            inner.bytes -= oldest.len();
            inner.dropped += 1;
        }
    }

    /// Records what the agent's rules did (see [`entry`]).
    pub fn record_agent(&self, record: &Record) {
        let (event, message, data) = entry(&record.event);
        self.record(record.drain_ms, event, message, data);
        if let Some(error) = policy_error(&record.event) {
            self.record(record.drain_ms, "policy-error", error.0, error.1);
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

/// An agent's event as a timeline entry: its kind, its words, its data.
pub fn entry(event: &Event) -> (&'static str, String, Value) {
    let name = |s: Signal| s.name();
    match event {
        Event::Held(signal) => (
            "signal",
            format!("{}: held until the policy is loaded", name(*signal)),
            json!({ "signal": name(*signal), "held": true }),
        ),
        Event::Reload(signal) => (
            "signal",
            format!("{}: reloading the policy", name(*signal)),
            json!({ "signal": name(*signal) }),
        ),
        Event::Signal {
            signal,
            action,
            drain_goes_on,
            snapshot,
            ..
        } => {
            let mut message = describe_signal(*signal, action);
            if *drain_goes_on {
                message.push_str("; the drain goes on");
            }
            let data = json!({ "signal": name(*signal), "snapshot": snapshot_json(snapshot) });
            ("signal", message, data)
        }
        Event::ThirdInterrupt => (
            "signal",
            "INT a third time: stopping at once".into(),
            Value::Null,
        ),
        Event::PreStop => ("prestop", "preStop hook called".into(), Value::Null),
        Event::DrainBegan { budget_ms, .. } => (
            "drain",
            format!(
                "drain began; deadline in {:?}",
                std::time::Duration::from_millis((*budget_ms).into())
            ),
            json!({ "budget_ms": budget_ms }),
        ),
        Event::Decision {
            snapshot,
            decision,
            call,
        } => {
            let mut message = describe_decision(decision);
            let probes = probes_summary(snapshot);
            if !probes.is_empty() {
                message.push_str(&format!(" [{probes}]"));
            }
            let data = json!({
                "snapshot": snapshot_json(snapshot),
                "decision": decision_json(decision),
                "call_us": call.took_us,
                "fallback": call.fallback,
            });
            ("decision", message, data)
        }
        Event::Late { decision } => (
            "late",
            format!(
                "an answer after the deadline, not applied: {}",
                describe_decision(decision)
            ),
            json!({ "decision": decision_json(decision) }),
        ),
        Event::Sent { signal, .. } => (
            "sent",
            format!("sent {} to the app", name(*signal)),
            json!({ "signal": name(*signal) }),
        ),
        Event::Refused { signal, why } => (
            "refused",
            format!("{} not sent: {why}", name(*signal)),
            json!({ "signal": name(*signal) }),
        ),
        Event::Deadline { kill_pause_ms } => (
            "deadline",
            match kill_pause_ms {
                Some(ms) => format!("deadline reached; KILL in {ms}ms if the app is still running"),
                None => "deadline reached".into(),
            },
            Value::Null,
        ),
        Event::Killed { why } => (
            "killed",
            format!("KILL sent to the app's process group: {why}"),
            Value::Null,
        ),
        Event::Exited(child) => {
            let (how, status) = match child {
                Child::Exited(code) => (format!("exited with code {code}"), i32::from(*code)),
                Child::Killed(n) => (
                    format!("was killed by {}", signals::name(i32::from(*n))),
                    128 + i32::from(*n),
                ),
                Child::Running => ("is running".into(), 0),
            };
            (
                "exit",
                format!("the app {how}"),
                json!({ "status": status }),
            )
        }
        Event::Stopping { why } => ("stopping", format!("stopping: {why}"), Value::Null),
    }
}

/// The entry that says the fallback answered for a failed policy, if it did.
fn policy_error(event: &Event) -> Option<(String, Value)> {
    let (Event::Signal { call, .. } | Event::Decision { call, .. }) = event else {
        return None;
    };
    let Call {
        fallback: Some(error),
        ..
    } = call
    else {
        return None;
    };
    Some((
        format!("policy {error}; the built-in drain answered instead"),
        json!({ "error": error }),
    ))
}

/// A snapshot as data.
pub fn snapshot_json(s: &Snapshot) -> Value {
    json!({
        "trigger": match s.trigger {
            Trigger::None => "none".to_string(),
            Trigger::Signal(signal) => signals::name(signals::number(signal)),
            Trigger::Prestop => "prestop".to_string(),
        },
        "elapsed_ms": s.elapsed_ms,
        "remaining_ms": s.remaining_ms,
        "child": match s.child {
            Child::Running => json!("running"),
            Child::Exited(code) => json!({ "exited": code }),
            Child::Killed(signal) => json!({ "killed": signal }),
        },
        "signals_sent": s.signals_sent.iter().map(|sent| json!({
            "signal": signals::name(signals::number(sent.signal)),
            "at_ms": sent.at_ms,
        })).collect::<Vec<_>>(),
        "ready": s.ready,
        "mode": match s.mode {
            Mode::Entrypoint => "entrypoint",
            Mode::Sidecar => "sidecar",
        },
        "probes": s.probes.iter().map(|p| json!({
            "name": p.name,
            "value": probe_json(&p.value),
            "unchanged_ms": p.unchanged_ms,
        })).collect::<Vec<_>>(),
    })
}

fn probe_json(value: &ProbeValue) -> Value {
    match value {
        ProbeValue::Connections(c) => json!({ "connections": {
            "evidence": match c.evidence {
                Evidence::SockDiag => "sock-diag",
                Evidence::ProcNetTcp => "proc-net-tcp",
            },
            "open": c.open,
            "in_flight": c.in_flight,
            "idle": c.idle,
            "accepted": c.accepted,
            "since_last_request_ms": c.since_last_request_ms,
            "since_last_accept_ms": c.since_last_accept_ms,
            "silences": {
                "watched_ms": c.silences.watched_ms,
                "count": c.silences.count,
                "p50_ms": c.silences.p50_ms,
                "p99_ms": c.silences.p99_ms,
                "max_ms": c.silences.max_ms,
            },
            "excluded": c.excluded,
        }}),
        ProbeValue::Http(r) => json!({ "http": { "status": r.status, "body": r.body } }),
        ProbeValue::File(f) => json!({ "file": { "exists": f.exists, "contents": f.contents } }),
        ProbeValue::Exec(code) => json!({ "exec": code }),
        ProbeValue::Failed(why) => json!({ "failed": why }),
    }
}

/// A decision as data.
pub fn decision_json(d: &Decision) -> Value {
    json!({
        "ready": d.ready,
        "signal": d.signal.map(|s| signals::name(signals::number(s))),
        "next": match d.next {
            Next::Recheck(ms) => json!({ "recheck_ms": ms }),
            Next::WaitForExit => json!("wait-for-exit"),
            Next::Exit => json!("exit"),
        },
        "reason": d.reason,
    })
}

/// A decision in words: its reason and what it does.
pub fn describe_decision(d: &Decision) -> String {
    let mut text = d.reason.clone();
    if let Some(signal) = d.signal {
        text.push_str(&format!(" → {}", signals::name(signals::number(signal))));
    }
    match d.next {
        Next::Recheck(ms) => text.push_str(&format!(" (again in {ms}ms)")),
        Next::WaitForExit => text.push_str(" (waiting for the app to exit)"),
        Next::Exit => text.push_str(" (exit now)"),
    }
    text
}

/// What `on-signal` answered, in words.
pub fn describe_signal(signal: Signal, action: &SignalAction) -> String {
    let name = signals::name(signals::number(signal));
    match action {
        SignalAction::Forward => format!("{name} forwarded"),
        SignalAction::Rewrite(to) => {
            format!(
                "{name} forwarded as {}",
                signals::name(signals::number(*to))
            )
        }
        SignalAction::Ignore => format!("{name} ignored"),
        SignalAction::Drain => format!("{name} received"),
    }
}

/// A one-line summary of the probes, for the text log.
pub fn probes_summary(s: &Snapshot) -> String {
    s.probes
        .iter()
        .map(|p| {
            let value = match &p.value {
                ProbeValue::Connections(c) => format!(
                    "{} in flight, {} idle, {} new, last request {}",
                    c.in_flight,
                    c.idle,
                    c.accepted,
                    c.since_last_request_ms
                        .map_or("never".to_string(), |ms| format!("{ms}ms ago"))
                ),
                ProbeValue::Http(r) => format!("HTTP {}", r.status),
                ProbeValue::File(f) => (if f.exists { "exists" } else { "absent" }).to_string(),
                ProbeValue::Exec(code) => format!("exit {code}"),
                ProbeValue::Failed(why) => format!("failed: {why}"),
            };
            format!("{}: {value}", p.name)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The snapshot that [`snapshot_json`] wrote, read back (for replay); the
/// error names the field that is missing or wrong.
pub fn snapshot_from_json(v: &Value) -> Result<Snapshot, String> {
    let field = |key: &str| v.get(key).ok_or_else(|| format!("`{key}` is missing"));
    let ms = |key: &str| -> Result<u32, String> {
        field(key)?
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("`{key}` is not a number of milliseconds"))
    };
    let signal = |text: &str| {
        signals::parse(text)
            .and_then(signals::from_number)
            .ok_or_else(|| format!("`{text}` is not a signal a policy knows"))
    };
    let trigger = match field("trigger")?.as_str() {
        Some("none") => Trigger::None,
        Some("prestop") => Trigger::Prestop,
        Some(name) => Trigger::Signal(signal(name)?),
        None => return Err("`trigger` is not a string".into()),
    };
    let child = field("child")?;
    let code = |key: &str| {
        child[key]
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .ok_or_else(|| format!("`child.{key}` is not a number"))
    };
    let child = if child == "running" {
        Child::Running
    } else if child.get("exited").is_some() {
        Child::Exited(code("exited")?)
    } else if child.get("killed").is_some() {
        Child::Killed(code("killed")?)
    } else {
        return Err(format!("`child` is {child}, not running, exited or killed"));
    };
    let mut signals_sent = Vec::new();
    for (i, sent) in array(field("signals_sent")?, "signals_sent")?
        .iter()
        .enumerate()
    {
        let name = sent["signal"].as_str();
        let at_ms = sent["at_ms"].as_u64().and_then(|n| u32::try_from(n).ok());
        let (Some(name), Some(at_ms)) = (name, at_ms) else {
            return Err(format!("`signals_sent[{i}]` needs `signal` and `at_ms`"));
        };
        signals_sent.push(SentSignal {
            signal: signal(name)?,
            at_ms,
        });
    }
    let mut probes = Vec::new();
    for (i, probe) in array(field("probes")?, "probes")?.iter().enumerate() {
        let value = probe_from_json(&probe["value"])
            .map_err(|field| format!("`probes[{i}].value.{field}` is missing or wrong"))?;
        let (Some(name), Some(unchanged_ms)) = (
            probe["name"].as_str(),
            probe["unchanged_ms"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok()),
        ) else {
            return Err(format!("`probes[{i}]` needs `name` and `unchanged_ms`"));
        };
        probes.push(Probe {
            name: name.to_string(),
            value,
            unchanged_ms,
        });
    }
    Ok(Snapshot {
        trigger,
        elapsed_ms: ms("elapsed_ms")?,
        remaining_ms: ms("remaining_ms")?,
        child,
        signals_sent,
        ready: field("ready")?
            .as_bool()
            .ok_or("`ready` is not true or false")?,
        probes,
        mode: match v.get("mode").and_then(Value::as_str) {
            None | Some("entrypoint") => Mode::Entrypoint,
            Some("sidecar") => Mode::Sidecar,
            Some(other) => return Err(format!("`mode` is `{other}`, not entrypoint or sidecar")),
        },
    })
}

fn array<'a>(v: &'a Value, key: &str) -> Result<&'a Vec<Value>, String> {
    v.as_array().ok_or_else(|| format!("`{key}` is not a list"))
}

/// A probe value; the error is the field at fault.
fn probe_from_json(v: &Value) -> Result<ProbeValue, String> {
    let optional_ms = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    let text = |v: &Value| v.as_str().map(str::to_string);
    let value = if let Some(c) = v.get("connections") {
        let count = |key: &str| optional_ms(&c[key]).ok_or(format!("connections.{key}"));
        if c.get("established").is_some() {
            // Recorded by an agent of the 0.1.0 contract: connections only.
            let established = count("established")?;
            let since_last_accept_ms = optional_ms(&c["since_last_accept_ms"]);
            let typical = optional_ms(&c["typical_gap_ms"]);
            return Ok(ProbeValue::Connections(Connections {
                evidence: Evidence::ProcNetTcp,
                open: established,
                in_flight: established,
                idle: 0,
                accepted: count("accepted")?,
                since_last_request_ms: since_last_accept_ms,
                since_last_accept_ms,
                silences: Silences {
                    watched_ms: 0,
                    count: u32::from(typical.is_some()),
                    p50_ms: typical,
                    p99_ms: typical,
                    max_ms: typical,
                },
                excluded: 0,
            }));
        }
        let s = &c["silences"];
        let learned = |key: &str| optional_ms(&s[key]).ok_or(format!("connections.silences.{key}"));
        ProbeValue::Connections(Connections {
            evidence: match c["evidence"].as_str() {
                Some("sock-diag") => Evidence::SockDiag,
                Some("proc-net-tcp") => Evidence::ProcNetTcp,
                _ => return Err("connections.evidence".into()),
            },
            open: count("open")?,
            in_flight: count("in_flight")?,
            idle: count("idle")?,
            accepted: count("accepted")?,
            since_last_request_ms: optional_ms(&c["since_last_request_ms"]),
            since_last_accept_ms: optional_ms(&c["since_last_accept_ms"]),
            silences: Silences {
                watched_ms: learned("watched_ms")?,
                count: learned("count")?,
                p50_ms: optional_ms(&s["p50_ms"]),
                p99_ms: optional_ms(&s["p99_ms"]),
                max_ms: optional_ms(&s["max_ms"]),
            },
            excluded: count("excluded")?,
        })
    } else if let Some(r) = v.get("http") {
        let status = r["status"].as_u64().and_then(|n| u16::try_from(n).ok());
        ProbeValue::Http(HttpResponse {
            status: status.ok_or("http.status")?,
            body: text(&r["body"]).ok_or("http.body")?,
        })
    } else if let Some(f) = v.get("file") {
        ProbeValue::File(FileState {
            exists: f["exists"].as_bool().ok_or("file.exists")?,
            contents: text(&f["contents"]).ok_or("file.contents")?,
        })
    } else if let Some(code) = v.get("exec") {
        let code = code.as_i64().and_then(|n| i32::try_from(n).ok());
        ProbeValue::Exec(code.ok_or("exec")?)
    } else if let Some(why) = v.get("failed") {
        ProbeValue::Failed(text(why).ok_or("failed")?)
    } else {
        return Err("connections|http|file|exec|failed".into());
    };
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_is_bounded_in_bytes_and_entries() {
        let timeline = Timeline::default();
        let long = "x".repeat(1_000);
        for i in 0..3_000 {
            timeline.record(Some(i), "decision", long.clone(), json!({ "i": i }));
        }
        let kept = timeline.kept();
        let bytes: usize = kept.entries.iter().map(|e| e.len()).sum();
        assert!(bytes <= KEPT_BYTES, "{bytes}");
        assert_eq!(kept.dropped as usize + kept.entries.len(), 3_000);
        // The newest are kept.
        assert!(kept.entries.last().unwrap().contains("\"i\":2999"));
        for _ in 0..3 {
            timeline.record(None, "decision", "y".repeat(1 << 20), json!({}));
        }
        let kept = timeline.kept();
        let last = kept.entries.last().unwrap();
        assert!(last.len() <= MAX_ENTRY, "{}", last.len());
        assert!(last.contains("truncated"), "{last}");
    }
}
