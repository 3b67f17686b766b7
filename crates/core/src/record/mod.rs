//! The timeline's entries as typed records: what the agent did, when and
//! why. One type, written by the agent (and by `simulate`), read back by
//! `/status`'s readers, `replay` and the picture. Every reader reads the
//! data; the words ([`Event::describe`]) are for people only.
//!
//! As JSON an entry is
//! `{"at_ms": …, "drain_ms": …, "event": KIND, "message": WORDS, "data": {…}}`,
//! the shape agents have written since the first version of the contract.
//! Entries recorded by agents of the 0.1 and 0.2 contracts read as well:
//! the few kinds whose data has changed since are adapted where they are
//! read ([`legacy`]).

mod legacy;
mod terminal;
mod wire;
mod words;

pub use terminal::printable;
pub use words::{describe_answer, describe_decision, gist};

use serde::{Deserialize, Serialize};

use crate::{Decision, Signal, SignalAction, Snapshot, Trigger};

/// One thing that happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Since the agent started.
    pub at_ms: u64,
    /// Since the drain began, during a drain.
    pub drain_ms: Option<u32>,
    pub event: Event,
}

/// What happened. The `serde` names are the `event` of the JSON entry;
/// every kind carries its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data", rename_all = "kebab-case")]
pub enum Event {
    /// The agent started the app (or started beside it, as a sidecar).
    Started {
        /// The app's pid, when lameduck is its parent.
        pid: Option<i32>,
        /// The app's program.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        program: Option<String>,
    },
    /// The admin server listens.
    Admin { address: String },
    /// A signal waits for the policy to load.
    Held { signal: Signal },
    /// The reload signal arrived: the policy is read again.
    Reload { signal: Signal },
    /// `on-signal` answered (or the agent knew without asking).
    Signal {
        signal: Signal,
        action: SignalAction,
        /// A drain was already under way: it goes on.
        #[serde(default, skip_serializing_if = "is_false")]
        drain_goes_on: bool,
        snapshot: Snapshot,
        #[serde(flatten)]
        call: Call,
    },
    /// A signal with no name in the contract went straight to the app.
    Forwarded {
        /// `SIG34`.
        signal: String,
    },
    /// A third INT: the app is killed at once.
    Interrupted,
    /// A `preStop` hook called `/prestop`.
    Prestop,
    /// The drain began.
    #[serde(rename = "drain")]
    DrainBegan {
        #[serde(default = "no_trigger")]
        trigger: Trigger,
        /// From now to the agent's deadline.
        budget_ms: u32,
    },
    /// `decide` answered, and the answer was applied.
    Decision {
        snapshot: Snapshot,
        decision: Decision,
        #[serde(flatten)]
        call: Call,
    },
    /// An answer that came after the deadline: not applied.
    Late { decision: Decision },
    /// A signal was sent to the app (in sidecar mode: the hook released).
    Sent {
        signal: Signal,
        #[serde(default)]
        why: String,
    },
    /// The policy asked for something this mode cannot do.
    Refused {
        signal: Signal,
        #[serde(default)]
        why: String,
    },
    /// The agent's deadline.
    Deadline {
        /// The pause before the app's group is killed (entrypoint only).
        #[serde(default)]
        kill_pause_ms: Option<u32>,
    },
    /// The app's process group was killed.
    Killed {
        #[serde(default)]
        why: String,
    },
    /// The app exited.
    #[serde(rename = "exit")]
    Exited {
        /// The exit status lameduck passes on: the code, or 128 + signal.
        status: i32,
    },
    /// A sidecar exits.
    Stopping {
        #[serde(default)]
        why: String,
    },
    /// A policy was compiled, checked, `init`-ed and swapped in.
    Policy {
        source: String,
        sha256: String,
        /// How long it took to load, and from where.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        load_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<String>,
    },
    /// A policy was refused; the last good one (or the built-in logic)
    /// still decides.
    PolicyFailed {
        source: String,
        reason: String,
        /// The last good policy, which still decides (`source (sha256 …)`);
        /// `None` when the built-in drain logic does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deciding: Option<String>,
    },
    /// A call to the policy failed; the built-in `drain` answered.
    PolicyError { error: String },
    /// A shadow policy was loaded.
    ShadowPolicy {
        source: String,
        sha256: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        load_ms: Option<u64>,
    },
    /// A shadow policy was refused.
    ShadowFailed { source: String, reason: String },
    /// The shadow's answer to the question the live policy just answered.
    Shadow {
        /// `on-signal` or `decide`.
        call: String,
        answer: Answer,
        /// The live policy's answer, when the two differ.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        live: Option<Answer>,
        /// Whether it does what the live answer does (reasons aside); `None`
        /// when it failed.
        agrees: Option<bool>,
        failure: Option<String>,
    },
    /// A policy named by an OCI reference was fetched, its digests checked.
    PolicyPulled {
        /// The reference as given (`oci://REGISTRY/REPO@sha256:…` or `…:TAG`).
        reference: String,
        /// The manifest digest it names now.
        digest: String,
        /// Where the component's bytes came from.
        from: PulledFrom,
        /// How long the pull took, retries included.
        pull_ms: u64,
        /// The component's size.
        bytes: u64,
        /// Why the registry was not used, when a tag was served from its last pull.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failure: Option<String>,
        /// The shadow policy's, not the live one's.
        #[serde(default, skip_serializing_if = "is_false")]
        shadow: bool,
    },
    /// A policy named by an OCI reference could not be pulled; the last
    /// good policy (or the built-in logic) still decides.
    PullFailed {
        reference: String,
        reason: String,
        /// The last good policy, which still decides (`source (sha256 …)`);
        /// `None` when the built-in drain logic does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deciding: Option<String>,
        /// When the pull is tried again, if it is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "is_false")]
        shadow: bool,
    },
    /// A tag polled every `registry.refresh` names another digest: it is pulled.
    TagMoved {
        reference: String,
        /// The digest deciding until now, if one from this tag does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        to: String,
        #[serde(default, skip_serializing_if = "is_false")]
        shadow: bool,
    },
    /// A probe's evidence got worse: it failed for the first time, or reads
    /// less than it could (netlink refused: `/proc/net/tcp` only). Said once,
    /// until it recovers.
    Degraded { probe: String, why: String },
    /// An entry too large to keep whole: its kind and size.
    Omitted { kind: String, bytes: u64 },
}

/// Where a pulled policy's bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PulledFrom {
    /// The registry (over the network).
    Registry,
    /// The on-disk cache, by the pinned digest: the network was not used.
    Cache,
    /// The on-disk cache, by what a tag named when it was last pulled,
    /// because the registry failed.
    LastPull,
}

/// How a policy call went, as the driver saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// How long it took, in µs.
    #[serde(rename = "call_us", default)]
    pub took_us: u64,
    /// Why the fallback answered instead of the policy, if it did.
    #[serde(default)]
    pub fallback: Option<String>,
}

/// A policy's answer to either question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Answer {
    Signal { signal_action: SignalAction },
    Decision(Decision),
}

fn is_false(value: &bool) -> bool {
    !value
}

fn no_trigger() -> Trigger {
    Trigger::None
}

/// The JSON of an entry, as written and as read.
#[derive(Serialize, Deserialize)]
struct Raw {
    at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    drain_ms: Option<u32>,
    event: String,
    #[serde(default)]
    message: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    data: serde_json::Value,
}

impl Entry {
    /// The entry as JSON, with its words.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("an entry serializes")
    }

    /// Reads an entry, as today's agent writes it or an earlier one did;
    /// `None` for a kind of event this reader does not know (a later
    /// agent's). The error names the field at fault.
    pub fn from_json(value: serde_json::Value) -> Result<Option<Entry>, String> {
        let raw: Raw = read(value)?;
        let event = legacy::read_event(raw.event, raw.data, &raw.message)?;
        Ok(event.map(|event| Entry {
            at_ms: raw.at_ms,
            drain_ms: raw.drain_ms,
            event,
        }))
    }
}

impl Serialize for Entry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let tagged = serde_json::to_value(&self.event).map_err(serde::ser::Error::custom)?;
        let (event, data) = match tagged {
            serde_json::Value::Object(mut map) => (
                map.remove("event").unwrap_or_default(),
                map.remove("data").unwrap_or_default(),
            ),
            _ => unreachable!("an adjacently tagged enum is an object"),
        };
        Raw {
            at_ms: self.at_ms,
            drain_ms: self.drain_ms,
            event: event.as_str().unwrap_or_default().to_string(),
            message: self.event.describe(),
            data,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        let kind = value.get("event").cloned().unwrap_or_default();
        Entry::from_json(value)
            .map_err(serde::de::Error::custom)?
            .ok_or_else(|| serde::de::Error::custom(format!("unknown event {kind}")))
    }
}

/// Deserializes `value`; the error names the field at fault
/// (`data.snapshot.probes[0].value`).
fn read<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })
}

#[cfg(test)]
mod tests;
