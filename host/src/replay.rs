//! `lameduck replay STATUS.json`: what would this policy have decided during
//! that shutdown? The input is what the agent's `/status` answered: its
//! timeline keeps every `on-signal` and `decide` with the snapshot it was
//! asked about. Each is asked again, in order, of the policy chosen by
//! `--policy` and `--config` (after a call that fails, of a fresh instance,
//! as in the agent), and each answer is printed beside the recorded one.
//!
//! The snapshots are replayed as they were: a policy that would have acted
//! sooner does not change what happened next, so read the first difference
//! as the moment the two policies part ways.
//!
//! With `--svg FILE`, the recorded drain is also drawn (see [`lameduck_picture`]).

use std::path::Path;

use lameduck_core::record::{Event, describe_decision, printable};
use lameduck_runtime::Answer;
use serde_json::Value;

use crate::config::Config;
use crate::files;
use lameduck_picture as picture;

/// The largest recording taken. It is `/status` saved: the agent keeps at
/// most 512 KiB of timeline, and a copy pretty-printed (`jq .`) grows a few
/// times; it is read whole, then parsed.
pub const MAX_RECORDING_BYTES: u64 = 8 << 20;

/// Replays the timeline in `input` (a file, or `-` for stdin) against
/// `config`'s policy; prints one line per call, and writes the picture of
/// the recorded drain to `svg` if given. Returns the exit status: 0, or 2 if
/// the input, the policy or the picture's file cannot be used.
pub fn replay(config: &Config, input: &Path, svg: Option<&Path>) -> i32 {
    match run(config, input, svg) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("lameduck replay: {}", printable(&e));
            2
        }
    }
}

fn run(config: &Config, input: &Path, svg: Option<&Path>) -> Result<(), String> {
    let (name, text) = files::read_input(input, MAX_RECORDING_BYTES)?;
    // serde_json refuses nesting past 128 levels on its own.
    let status: Value = serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
    drop(text);
    // `/status` as a whole, or only its timeline.
    let entries = picture::entries_of(&status).map_err(|e| format!("{name}: {e}"))?;
    // The picture is of what was recorded: it needs no policy.
    if let Some(svg) = svg {
        let frame = picture::Frame::from_config(&status["status"]["config"]);
        let drawn = picture::render(&entries, frame);
        std::fs::write(svg, drawn).map_err(|e| format!("{}: {e}", svg.display()))?;
        println!("the picture of {name}: {}", svg.display());
    }

    // As in the agent: after a failing call, the next one has a fresh
    // instance (a trap may leave one that cannot be entered again).
    let mut policy = crate::simulate::load_policy(config)?;
    let identity = policy.identity().map(ToString::to_string);
    println!("replaying {name} against {}", identity.unwrap_or_default());

    let (mut asked, mut differ) = (0, 0);
    for entry in &entries {
        let when = entry
            .drain_ms
            .map_or("serving".to_string(), |ms| format!("+{ms}ms"));
        let recorded = entry.event.describe();
        let (replayed, same) = match &entry.event {
            Event::Signal {
                signal,
                action,
                drain_goes_on,
                snapshot,
                call,
            } => ask(policy.on_signal(*signal, snapshot)).map_or_else(
                |e| (e, false),
                |answer| {
                    let event = Event::Signal {
                        signal: *signal,
                        action: answer,
                        drain_goes_on: *drain_goes_on,
                        snapshot: snapshot.clone(),
                        call: call.clone(),
                    };
                    (event.describe(), answer == *action)
                },
            ),
            Event::Decision {
                snapshot, decision, ..
            } => ask(policy.decide(snapshot))
                .map_or_else(|e| (e, false), |d| (describe_decision(&d), d == *decision)),
            _ => continue,
        };
        asked += 1;
        if !same {
            differ += 1;
        }
        let mark = if same { ' ' } else { '*' };
        let kind = entry.event.kind();
        // Both the recording and the policy may carry escape sequences.
        let (recorded, replayed) = (printable(&recorded), printable(&replayed));
        println!("{mark} {when:>9}  {kind:<8} recorded: {recorded}");
        println!("{mark} {:>9}  {:<8} replayed: {replayed}", "", "");
    }
    println!("{asked} call(s) replayed; {differ} answer(s) differ (marked *)");
    Ok(())
}

/// The policy's own answer, or why it gave none (the built-in drain's
/// answer for it is not the policy's, and is not compared).
fn ask<T>(answer: Answer<T>) -> Result<T, String> {
    match answer.failure {
        None => Ok(answer.value),
        Some(e) => Err(format!("ERROR: {e}")),
    }
}
