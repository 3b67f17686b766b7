//! `lameduck simulate --policy P [--config C] SCENARIO`: rehearse a policy
//! on a virtual clock before trusting it with pods.
//!
//! The scenario (YAML) models the traffic while serving and draining —
//! rate or bursts, request durations, a keep-alive pool, when the endpoint
//! is removed, what the app does with its TERM, other probes' values over
//! time. The policy runs through the agent's own shutdown rules (the same
//! core as `lameduck run`, driven on a virtual clock by the SDK's harness)
//! against that model. Printed: the timeline, and the figures the rollout
//! benchmark uses — when the app was signalled, the waste (how long after it
//! became safe), requests in flight at the signal, failed requests, and
//! whether the deadline was kept.

mod scenario;
mod world;

use std::path::Path;
use std::time::Duration;

use lameduck_core::agent::Settings;
use lameduck_core::millis;
use lameduck_core::record::{Entry, printable};
use lameduck_core::{Decision, Mode, ProbeValue, Signal, SignalAction, Snapshot};
use lameduck_runtime::Policy;
use lameduck_sdk::harness::{Decider, Harness};

use lameduck_picture::{self as picture, Frame};

use scenario::{Scenario, Trigger};
use world::{Stop, World};

/// What a rehearsal takes of the agent's configuration.
pub struct Setup {
    /// The policy, loaded, with the native fallback answering for it when
    /// it fails, as in the agent.
    pub policy: Policy,
    /// The probes, in order: their names, and whether each reads
    /// connections (the scenario's traffic) or the scenario's tracks.
    pub probes: Vec<(String, bool)>,
    pub grace_period: Duration,
    pub safety_margin: Duration,
}

/// Runs the scenario (its file's name and text) against the setup's
/// policy, prints the timeline and the figures, and writes the picture to
/// `svg` if given. Returns 0, or 2 with the file and field at fault.
pub fn simulate(setup: Setup, scenario: (&Path, &str), svg: Option<&Path>) -> i32 {
    match run(setup, scenario, svg) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("lameduck simulate: {}", printable(&e));
            2
        }
    }
}

/// What happened, for the figures.
struct Outcome {
    /// The signal that stopped the app (the first of `stops_on`) and when,
    /// in ms into the drain.
    signalled: Option<(Signal, u32)>,
    killed: bool,
    /// When the app exited, in ms into the drain.
    exited: Option<u32>,
    stop: Option<Stop>,
}

/// The timeline's entries a rehearsal keeps: each decision holds its
/// snapshot, and a policy may ask to be called every 10 ms. A 24 h drain
/// rechecked each second fits; one past it is stopped and refused.
pub const MAX_ENTRIES: usize = 100_000;

/// The drain is played in slices of this much virtual time, the entries
/// counted after each (at most 100 decisions, at the agent's 10 ms floor).
const SLICE_MS: u32 = 1_000;

fn run(setup: Setup, (path, text): (&Path, &str), svg: Option<&Path>) -> Result<(), String> {
    let scenario = Scenario::parse(path, text)?;
    if setup.grace_period > scenario::MAX_TIME {
        return Err(format!(
            "grace_period: {} is longer than a rehearsal plays (at most {})",
            lameduck_core::show_duration(setup.grace_period),
            lameduck_core::show_duration(scenario::MAX_TIME)
        ));
    }
    let policy = setup.policy;
    let identity = policy.identity().map(|i| i.to_string()).unwrap_or_default();
    let mut world = World::new(&scenario);

    let budget = millis(setup.grace_period.saturating_sub(setup.safety_margin));
    let grace = millis(setup.grace_period);
    let settings = Settings {
        kill_pause_ms: millis(setup.safety_margin / 2),
        probes: setup.probes.iter().map(|(name, _)| name.clone()).collect(),
        mode: Mode::Entrypoint,
        ..Settings::new(budget)
    };
    let mut h = Harness::with_settings(Rehearsed(policy), settings);
    h.advance(millis(scenario.serving.0));
    let stops_on: Vec<Signal> = scenario
        .drain
        .app
        .stops_on
        .iter()
        .filter_map(|name| Signal::from_name(name))
        .collect();
    let stopping = |signal: &Signal| stops_on.contains(signal);
    let mut stop: Option<Stop> = None;
    let mut read = |t: u32, h: &mut Harness<Rehearsed>, stop: &mut Option<Stop>| {
        let t = i64::from(t);
        if stop.is_none()
            && let Some(first) = h.app_signals().iter().find(|s| stopping(&s.signal))
        {
            let at = i64::from(first.at_ms);
            *stop = Some(world.stop(at));
            if let Some(exits) = stop.and_then(|s| s.exits_at) {
                h.child_exits_at(exits.clamp(0, u32::MAX as i64) as u32, 0);
            }
        }
        for (name, connections) in &setup.probes {
            let value = match connections {
                true => world.connections(t, *stop),
                false => world.track(name, t).unwrap_or_else(|| {
                    ProbeValue::Failed("the scenario gives it no values".into())
                }),
            };
            h.set_probe(name, value);
        }
    };
    read(0, &mut h, &mut stop);
    match scenario.drain.trigger {
        Trigger::Term => {
            h.signal(Signal::Term);
        }
        Trigger::Prestop => {
            h.prestop();
        }
    }
    let end = grace.saturating_add(10_000);
    let mut until = 0;
    while until < end && !h.agent().done() {
        until = until.saturating_add(SLICE_MS).min(end);
        h.run(until, |t, h| read(t, h, &mut stop));
        if h.records().len() > MAX_ENTRIES {
            return Err(format!(
                "more than {MAX_ENTRIES} entries on the timeline by {until} ms into the drain \
                 (the policy asks to be called again every few ms for as long as the grace \
                 period): a rehearsal keeps at most {MAX_ENTRIES}"
            ));
        }
    }

    let began = h.now() - u64::from(h.snapshot().elapsed_ms);
    print_timeline(&h);
    let signalled = h
        .app_signals()
        .iter()
        .find(|s| stopping(&s.signal))
        .map(|s| (s.signal, s.at_ms));
    let outcome = Outcome {
        signalled,
        killed: h.app_signals().iter().any(|s| s.signal == Signal::Kill),
        exited: h.agent().done().then(|| millis_u64(h.now() - began)),
        stop,
    };
    print_figures(&scenario, &identity, &world, &outcome, grace);
    if let Some(path) = svg {
        let frame = Frame {
            budget_ms: Some(budget.into()),
            grace_period_ms: Some(grace.into()),
        };
        std::fs::write(path, picture::render(&entries(&h), frame))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("picture   {}", path.display());
    }
    Ok(())
}

/// As in the agent: the policy answers, or the fallback for it.
struct Rehearsed(Policy);

impl Decider for Rehearsed {
    fn on_signal(&mut self, signal: Signal, snapshot: &Snapshot) -> SignalAction {
        self.0.on_signal(signal, snapshot).value
    }

    fn decide(&mut self, snapshot: &Snapshot) -> Decision {
        self.0.decide(snapshot).value
    }
}

/// The agent's records as timeline entries (as `/status` shows them), on
/// the virtual clock.
fn entries(h: &Harness<Rehearsed>) -> Vec<Entry> {
    h.records()
        .iter()
        .map(|(at, record)| Entry {
            at_ms: *at,
            drain_ms: record.drain_ms,
            event: record.event.clone(),
        })
        .collect()
}

fn print_timeline(h: &Harness<Rehearsed>) {
    for entry in entries(h) {
        let when = entry
            .drain_ms
            .map_or("serving".to_string(), |ms| format!("+{ms}ms"));
        // The words carry the policy's reasons: escaped for the terminal.
        println!(
            "{when:>9}  {:<9} {}",
            entry.event.kind(),
            printable(&entry.event.describe())
        );
    }
}

fn print_figures(scenario: &Scenario, policy: &str, world: &World, outcome: &Outcome, grace: u32) {
    let line = |key: &str, value: String| println!("{key:<10}{}", printable(&value));
    println!();
    if !scenario.name.is_empty() {
        line("scenario", scenario.name.clone());
    }
    line("policy", policy.to_string());
    line(
        "requests",
        format!(
            "{} (endpoint removed {} ms into the drain)",
            world.requests(),
            world.endpoint_removed
        ),
    );
    let died = outcome.exited.map(i64::from);
    match outcome.signalled {
        Some((signal, at)) => {
            let safe = world.safe_from();
            let waste = i64::from(at) - safe;
            line(
                "signal",
                format!("{} at {at} ms into the drain", signal.name()),
            );
            line(
                "waste",
                format!(
                    "{waste:+} ms: {} the endpoint was gone and the last request answered ({safe} ms)",
                    if waste >= 0 { "after" } else { "BEFORE" }
                ),
            );
            line(
                "in flight",
                format!("{} at the signal", world.in_flight(at.into())),
            );
        }
        None => line("signal", "none".into()),
    }
    line("failed", world.failed(outcome.stop, died).to_string());
    match outcome.exited {
        Some(at) => line(
            "exit",
            format!(
                "{at} ms into the drain; the deadline was {} (grace period {grace} ms)",
                if at < grace { "kept" } else { "MISSED" }
            ),
        ),
        None => line("exit", "the app had not exited".into()),
    }
    line("killed", if outcome.killed { "yes" } else { "no" }.into());
}

fn millis_u64(ms: u64) -> u32 {
    ms.min(u64::from(u32::MAX)) as u32
}
