//! Reading entries recorded by earlier agents. Today's entries read as they
//! are; an entry of the 0.1 or 0.2 agent whose data has changed since is
//! adapted here, and only here:
//!
//! * its `signal` entries were one kind for five events, told apart by
//!   their data (`held`, a snapshot, none) and, for the answer to
//!   `on-signal` and the reload signal, by their words alone: those words
//!   are read, as the only record of what was done;
//! * `prestop`, `deadline`, `killed` and `stopping` had no data;
//! * a shadow's signal answer was written `rewrite(usr1)`.

use serde_json::{Value, json};

use super::{Call, Event, read};
use crate::{Signal, SignalAction};

/// Every kind of event this reader knows.
pub const KINDS: [&str; 28] = [
    "started",
    "admin",
    "held",
    "reload",
    "signal",
    "forwarded",
    "interrupted",
    "prestop",
    "drain",
    "decision",
    "late",
    "sent",
    "refused",
    "deadline",
    "killed",
    "exit",
    "stopping",
    "policy",
    "policy-failed",
    "policy-error",
    "shadow-policy",
    "shadow-failed",
    "shadow",
    "degraded",
    "omitted",
    "policy-pulled",
    "pull-failed",
    "tag-moved",
];

/// The event of kind `kind` with `data`; `None` for a kind this reader
/// does not know (written by a later agent). `message` is read only for
/// what an earlier agent wrote nowhere else.
pub fn read_event(kind: String, data: Value, message: &str) -> Result<Option<Event>, String> {
    if !KINDS.contains(&kind.as_str()) {
        return Ok(None);
    }
    let error = match tagged(&kind, data.clone()) {
        Ok(event) => return Ok(Some(event)),
        Err(e) => e,
    };
    let adapted = match kind.as_str() {
        "signal" => signal(&data, message),
        "prestop" | "deadline" | "killed" | "stopping" if data.is_null() => {
            tagged(&kind, json!({})).ok()
        }
        "shadow" => shadow(data),
        _ => None,
    };
    adapted.map(Some).ok_or(error)
}

/// The event of kind `kind` with `data` (none if null); the error names
/// the field at fault (`data.snapshot.elapsed_ms`). The tag is read first,
/// so that serde reads the data straight into its variant, and the path
/// into it is known.
fn tagged(kind: &str, data: Value) -> Result<Event, String> {
    let mut fields = vec![("event", Value::String(kind.to_string()))];
    if !data.is_null() {
        fields.push(("data", data));
    }
    let map = serde::de::value::MapDeserializer::<_, serde_json::Error>::new(fields.into_iter());
    serde_path_to_error::deserialize(map).map_err(|e| format!("{}: {}", e.path(), e.inner()))
}

/// A 0.2 `signal` entry: which of five events it was.
fn signal(data: &Value, message: &str) -> Option<Event> {
    if data.is_null() {
        return Some(Event::Interrupted);
    }
    let name = data.get("signal")?.as_str()?;
    let known = Signal::from_name(name);
    if data.get("held").and_then(Value::as_bool) == Some(true) {
        return Some(Event::Held { signal: known? });
    }
    if let Some(snapshot) = data.get("snapshot") {
        let signal = known?;
        return Some(Event::Signal {
            signal,
            action: action_in_words(signal, message)?,
            drain_goes_on: message.ends_with("; the drain goes on"),
            snapshot: read(snapshot.clone()).ok()?,
            call: Call::default(),
        });
    }
    match known {
        Some(signal) if message.ends_with("reloading the policy") => Some(Event::Reload { signal }),
        _ => Some(Event::Forwarded {
            signal: name.to_string(),
        }),
    }
}

/// What the 0.2 agent's words said it did with a signal: `TERM received`,
/// `USR1 forwarded`, `USR1 forwarded as USR2`, `HUP ignored`.
fn action_in_words(signal: Signal, message: &str) -> Option<SignalAction> {
    let rest = message.strip_prefix(signal.name())?.trim_start();
    let rest = rest.split(';').next().unwrap_or(rest).trim();
    Some(match rest {
        "received" => SignalAction::Drain,
        "forwarded" => SignalAction::Forward,
        "ignored" => SignalAction::Ignore,
        other => SignalAction::Rewrite(Signal::from_name(other.strip_prefix("forwarded as ")?)?),
    })
}

/// A 0.2 shadow entry whose signal answer was written `rewrite(usr1)`.
fn shadow(mut data: Value) -> Option<Event> {
    let answer = data.get_mut("answer")?.get_mut("signal_action")?;
    let text = answer.as_str()?.to_string();
    let to = text.strip_prefix("rewrite(")?.strip_suffix(')')?;
    *answer = json!({ "rewrite": Signal::from_name(to)?.name() });
    tagged("shadow", data).ok()
}
