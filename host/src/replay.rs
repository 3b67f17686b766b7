//! `lameduck replay STATUS.json`: what would this policy have decided during
//! that shutdown? The input is what the agent's `/status` answered: its
//! timeline keeps every `on-signal` and `decide` with the snapshot it was
//! asked about. Each is asked again, in order, of one fresh instance of the
//! policy chosen by `--policy` and `--config`, and each answer is printed
//! beside the recorded one.
//!
//! The snapshots are replayed as they were: a policy that would have acted
//! sooner does not change what happened next, so read the first difference
//! as the moment the two policies part ways.
//!
//! With `--svg FILE`, the recorded drain is also drawn (see [`lameduck_picture`]).

use std::io::Read;
use std::path::Path;

use lameduck_core::record::{Event, describe_decision};
use lameduck_runtime::{Compiler, PolicyError};
use serde_json::Value;

use crate::config::Config;
use lameduck_picture as picture;

/// Replays the timeline in `input` (a file, or `-` for stdin) against
/// `config`'s policy; prints one line per call, and writes the picture of
/// the recorded drain to `svg` if given. Returns the exit status: 0, or 2 if
/// the input, the policy or the picture's file cannot be used.
pub fn replay(config: &Config, input: &Path, svg: Option<&Path>) -> i32 {
    match run(config, input, svg) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("lameduck replay: {e}");
            2
        }
    }
}

fn run(config: &Config, input: &Path, svg: Option<&Path>) -> Result<(), String> {
    let name = input.display();
    let mut text = String::new();
    let read = if input == Path::new("-") {
        std::io::stdin().read_to_string(&mut text)
    } else {
        std::fs::File::open(input).and_then(|mut f| f.read_to_string(&mut text))
    };
    read.map_err(|e| format!("{name}: {e}"))?;
    let status: Value = serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
    // `/status` as a whole, or only its timeline.
    let entries = picture::entries_of(&status).map_err(|e| format!("{name}: {e}"))?;
    // The picture is of what was recorded: it needs no policy.
    if let Some(svg) = svg {
        let frame = picture::Frame::from_config(&status["status"]["config"]);
        let drawn = picture::render(&entries, frame);
        std::fs::write(svg, drawn).map_err(|e| format!("{}: {e}", svg.display()))?;
        println!("the picture of {name}: {}", svg.display());
    }

    let fetched = crate::pull::fetch(config, &config.policy)?;
    if let Some(pulled) = &fetched.pulled {
        eprintln!("pulled {pulled}");
    }
    let (source, bytes) = (fetched.name, fetched.bytes);
    let compiler =
        Compiler::new(config.limits(), config.cache_dir.clone()).map_err(|e| format!("{e:#}"))?;
    let compiled = compiler
        .compile(&source, &bytes)
        .map_err(|e| format!("{source}: {e}"))?;
    let mut policy = compiled
        .instantiate(&config.policy_config)
        .map_err(|e| format!("{source}: {e}"))?;
    println!("replaying {name} against {}", compiled.identity());

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
            } => ask(policy.on_signal(*signal, snapshot).map(|answer| {
                let event = Event::Signal {
                    signal: *signal,
                    action: answer,
                    drain_goes_on: *drain_goes_on,
                    snapshot: snapshot.clone(),
                    call: call.clone(),
                };
                (event.describe(), answer == *action)
            })),
            Event::Decision {
                snapshot, decision, ..
            } => ask(policy
                .decide(snapshot)
                .map(|d| (describe_decision(&d), d == *decision))),
            _ => continue,
        };
        asked += 1;
        if !same {
            differ += 1;
        }
        let mark = if same { ' ' } else { '*' };
        let kind = entry.event.kind();
        println!("{mark} {when:>9}  {kind:<8} recorded: {recorded}");
        println!("{mark} {:>9}  {:<8} replayed: {replayed}", "", "");
    }
    println!("{asked} call(s) replayed; {differ} answer(s) differ (marked *)");
    Ok(())
}

/// An answer, or the error, in words; and whether it matched.
fn ask(answer: Result<(String, bool), PolicyError>) -> (String, bool) {
    answer.unwrap_or_else(|e| (format!("ERROR: {e}"), false))
}
