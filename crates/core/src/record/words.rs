//! Each event in words, for the log and for people reading `/status`.
//! Nothing reads these back.

use std::time::Duration;

use super::{Answer, Event, PulledFrom};
use crate::{Child, Decision, Next, ProbeValue, Signal, SignalAction, Snapshot};

impl Event {
    /// The kind of event: the `event` of its JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Started { .. } => "started",
            Event::Admin { .. } => "admin",
            Event::Held { .. } => "held",
            Event::Reload { .. } => "reload",
            Event::Signal { .. } => "signal",
            Event::Forwarded { .. } => "forwarded",
            Event::Interrupted => "interrupted",
            Event::Prestop => "prestop",
            Event::DrainBegan { .. } => "drain",
            Event::Decision { .. } => "decision",
            Event::Late { .. } => "late",
            Event::Sent { .. } => "sent",
            Event::Refused { .. } => "refused",
            Event::Deadline { .. } => "deadline",
            Event::Killed { .. } => "killed",
            Event::Exited { .. } => "exit",
            Event::Stopping { .. } => "stopping",
            Event::Policy { .. } => "policy",
            Event::PolicyFailed { .. } => "policy-failed",
            Event::PolicyError { .. } => "policy-error",
            Event::ShadowPolicy { .. } => "shadow-policy",
            Event::ShadowFailed { .. } => "shadow-failed",
            Event::Shadow { .. } => "shadow",
            Event::Degraded { .. } => "degraded",
            Event::Omitted { .. } => "omitted",
            Event::PolicyPulled { .. } => "policy-pulled",
            Event::PullFailed { .. } => "pull-failed",
            Event::TagMoved { .. } => "tag-moved",
        }
    }

    /// The event in words.
    pub fn describe(&self) -> String {
        match self {
            Event::Started {
                pid: Some(pid),
                program,
            } => format!(
                "started {} as pid {pid}",
                program.as_deref().unwrap_or("the app")
            ),
            Event::Started { pid: None, .. } => "started beside the app, as a sidecar".into(),
            Event::Admin { address } => format!("admin server listening on {address}"),
            Event::Held { signal } => {
                format!("{}: held until the policy is loaded", signal.name())
            }
            Event::Reload { signal } => format!("{}: reloading the policy", signal.name()),
            Event::Signal {
                signal,
                action,
                drain_goes_on,
                ..
            } => {
                let mut text = describe_signal(*signal, action);
                if *drain_goes_on {
                    text.push_str("; the drain goes on");
                }
                text
            }
            Event::Forwarded { signal } => format!("{signal} forwarded"),
            Event::Interrupted => "INT a third time: stopping at once".into(),
            Event::Prestop => "preStop hook called".into(),
            Event::DrainBegan { budget_ms, .. } => format!(
                "drain began; deadline in {:?}",
                Duration::from_millis((*budget_ms).into())
            ),
            Event::Decision {
                snapshot, decision, ..
            } => {
                let mut text = describe_decision(decision);
                let probes = probes_summary(snapshot);
                if !probes.is_empty() {
                    text.push_str(&format!(" [{probes}]"));
                }
                text
            }
            Event::Late { decision } => format!(
                "an answer after the deadline, not applied: {}",
                describe_decision(decision)
            ),
            Event::Sent { signal, .. } => format!("sent {} to the app", signal.name()),
            Event::Refused { signal, why } => format!("{} not sent: {why}", signal.name()),
            Event::Deadline {
                kill_pause_ms: Some(ms),
            } => format!("deadline reached; KILL in {ms}ms if the app is still running"),
            Event::Deadline {
                kill_pause_ms: None,
            } => "deadline reached".into(),
            Event::Killed { why } => format!("KILL sent to the app's process group: {why}"),
            Event::Exited { status } => match Child::from_status(*status) {
                Child::Exited(code) => format!("the app exited with code {code}"),
                Child::Killed(n) => format!("the app was killed by signal {n}"),
                Child::Running => "the app is running".into(),
            },
            Event::Stopping { why } => format!("stopping: {why}"),
            Event::Policy {
                source,
                sha256,
                load_ms,
                origin,
            } => {
                let mut text = format!("policy {source} (sha256 {}) loaded", short(sha256));
                if let Some(ms) = load_ms {
                    text.push_str(&format!(" in {ms} ms"));
                }
                if let Some(origin) = origin {
                    text.push_str(&format!(" ({origin})"));
                }
                text + "; it decides from now on"
            }
            Event::PolicyFailed {
                source,
                reason,
                deciding,
            } => match deciding {
                Some(last) => format!(
                    "policy {source} refused: {reason}; the last good policy, {last}, still decides"
                ),
                None => {
                    format!("policy {source} refused: {reason}; the built-in drain logic decides")
                }
            },
            Event::PolicyError { error } => {
                format!("policy {error}; the built-in drain answered instead")
            }
            Event::ShadowPolicy {
                source,
                sha256,
                load_ms,
            } => format!(
                "shadow policy {source} (sha256 {}) loaded{}: asked every question, never obeyed",
                short(sha256),
                load_ms.map_or(String::new(), |ms| format!(" in {ms} ms"))
            ),
            Event::ShadowFailed { source, reason } => {
                format!("shadow policy {source} refused: {reason}")
            }
            Event::Shadow {
                answer,
                live,
                agrees,
                failure,
                ..
            } => match (failure, agrees, live) {
                (Some(failure), ..) => format!("shadow {failure}; no answer to compare"),
                (None, Some(false), Some(live)) => format!(
                    "shadow DISAGREES: {}, where the live policy: {}",
                    describe_answer(answer),
                    describe_answer(live)
                ),
                (None, Some(false), None) => {
                    format!("shadow DISAGREES: {}", describe_answer(answer))
                }
                (None, ..) => format!("shadow agrees: {}", describe_answer(answer)),
            },
            Event::Degraded { probe, why } => format!("probe {probe}: {why}"),
            Event::Omitted { kind, bytes } => {
                format!("a {kind} entry of {bytes} bytes, too large to keep")
            }
            Event::PolicyPulled {
                reference,
                digest,
                from,
                pull_ms,
                bytes,
                failure,
                shadow,
            } => {
                let whence = match (from, failure) {
                    (PulledFrom::Registry, _) => "from the registry".to_string(),
                    (PulledFrom::Cache, _) => "from the cache, by its pinned digest".to_string(),
                    (PulledFrom::LastPull, Some(failure)) => format!(
                        "from the cache, as the tag's last pull: the registry failed ({failure})"
                    ),
                    (PulledFrom::LastPull, None) => "from the cache, as the tag's last pull".into(),
                };
                let mut text = format!(
                    "{}{reference} pulled ({}) {whence} in {pull_ms} ms, {bytes} bytes",
                    role(*shadow),
                    short_digest(digest)
                );
                if !is_pinned(reference) {
                    text.push_str(&format!(
                        "; a tag is not pinned: pin {} to get exactly this again",
                        pinned(reference, digest)
                    ));
                }
                text
            }
            Event::PullFailed {
                reference,
                reason,
                deciding,
                retry_ms,
                shadow,
            } => {
                let mut text = format!("{}{reference} not pulled: {reason}", role(*shadow));
                match (shadow, deciding) {
                    (true, _) => {}
                    (false, Some(last)) => {
                        text.push_str(&format!("; the last good policy, {last}, still decides"))
                    }
                    (false, None) => text.push_str("; the built-in drain logic decides"),
                }
                if let Some(ms) = retry_ms {
                    text.push_str(&format!(
                        "; tried again in {:?}",
                        Duration::from_millis(*ms)
                    ));
                }
                text
            }
            Event::TagMoved {
                reference,
                from,
                to,
                shadow,
            } => match from {
                Some(from) => format!(
                    "{}tag {reference} moved from {} to {}: pulling it",
                    role(*shadow),
                    short_digest(from),
                    short_digest(to)
                ),
                None => format!(
                    "{}tag {reference} names {}: pulling it",
                    role(*shadow),
                    short_digest(to)
                ),
            },
        }
    }
}

impl Child {
    /// The child that exited with `status` as a shell reports it.
    pub fn from_status(status: i32) -> Child {
        match status {
            128.. => Child::Killed((status - 128).clamp(0, 255) as u8),
            _ => Child::Exited(status.clamp(0, 255) as u8),
        }
    }

    /// The status lameduck exits with: the code, or 128 + the signal.
    pub fn status(self) -> i32 {
        match self {
            Child::Running => 0,
            Child::Exited(code) => code.into(),
            Child::Killed(signal) => 128 + i32::from(signal),
        }
    }
}

/// A reason without its figures, so that reasons that say the same thing
/// compare equal: each number becomes `N` ("last request N ms ago"); at most
/// `max` bytes.
pub fn gist(reason: &str, max: usize) -> String {
    let mut gist = String::with_capacity(reason.len().min(max));
    let mut in_number = false;
    for c in reason.chars() {
        if gist.len() + c.len_utf8() > max {
            break;
        }
        if c.is_ascii_digit() {
            if !in_number {
                gist.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            gist.push(c);
        }
    }
    gist
}

/// The first characters of a digest, enough to tell it apart.
fn short(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}

/// `sha256:` and the first characters of a content digest.
fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algorithm, hex)) => format!("{algorithm}:{}", short(hex)),
        None => short(digest).to_string(),
    }
}

/// Who a pull was for, leading its words.
fn role(shadow: bool) -> &'static str {
    if shadow { "shadow policy " } else { "policy " }
}

/// Whether a reference names a digest (`…@sha256:…`).
fn is_pinned(reference: &str) -> bool {
    reference.contains('@')
}

/// A tag reference pinned to `digest`: what to write to get exactly it again.
fn pinned(reference: &str, digest: &str) -> String {
    // `oci://host:port/repo:tag`: the tag follows the last colon after the
    // last slash (the registry's port comes before the first slash).
    let name = match reference.rsplit_once('/') {
        Some((head, last)) => match last.split_once(':') {
            Some((repo, _tag)) => format!("{head}/{repo}"),
            None => reference.to_string(),
        },
        None => reference.to_string(),
    };
    format!("{name}@{digest}")
}

/// A decision in words: its reason and what it does.
pub fn describe_decision(d: &Decision) -> String {
    let mut text = d.reason.clone();
    if let Some(signal) = d.signal {
        text.push_str(&format!(" → {}", signal.name()));
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
    let name = signal.name();
    match action {
        SignalAction::Forward => format!("{name} forwarded"),
        SignalAction::Rewrite(to) => format!("{name} forwarded as {}", to.name()),
        SignalAction::Ignore => format!("{name} ignored"),
        SignalAction::Drain => format!("{name} received"),
    }
}

/// Either answer in words.
pub fn describe_answer(answer: &Answer) -> String {
    match answer {
        Answer::Signal { signal_action } => match signal_action {
            SignalAction::Forward => "forward".into(),
            SignalAction::Rewrite(to) => format!("rewrite as {}", to.name()),
            SignalAction::Ignore => "ignore".into(),
            SignalAction::Drain => "drain".into(),
        },
        Answer::Decision(decision) => describe_decision(decision),
    }
}

/// A one-line summary of the probes.
pub fn probes_summary(s: &Snapshot) -> String {
    s.probes
        .iter()
        .map(|p| {
            let value = match &p.value {
                ProbeValue::Connections(c) => {
                    let mut text = format!("{} in flight", c.in_flight);
                    if c.streaming + c.unsure > 0 {
                        text.push_str(&format!(
                            " ({} streaming, {} unsure)",
                            c.streaming, c.unsure
                        ));
                    }
                    text.push_str(&format!(", {} idle", c.idle));
                    if c.long_lived > 0 {
                        text.push_str(&format!(", {} long-lived", c.long_lived));
                    }
                    text.push_str(&format!(
                        ", {} new, last request {}",
                        c.accepted,
                        c.since_last_request_ms
                            .map_or("never".to_string(), |ms| format!("{ms}ms ago"))
                    ));
                    text
                }
                ProbeValue::Metrics(m) => format!("{} ({} series)", m.sum, m.series.len()),
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
