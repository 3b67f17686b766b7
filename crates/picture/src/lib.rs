//! A picture of a drain: the timeline drawn as a self-contained SVG — a time
//! axis in seconds since the drain began, readiness, the traffic the
//! `connections` probe saw, every decision (its reason and snapshot on
//! hover), the signals received and sent, the deadline, the grace period's
//! end and the app's exit.
//!
//! One pure function, [`render`], for every caller: the admin server's
//! `/timeline.svg`, `lameduck replay --svg`, and `simulate`. It reads the
//! timeline's typed records ([`lameduck_core::record`]), as replay does,
//! never their words; recordings of earlier agents are adapted by the
//! reader.
//!
//! Same entries, same bytes: no clock, no randomness, no hash-map order
//! (serde_json's objects are ordered by key).
//! Everything that comes from a policy or a probe is escaped and clipped.

use std::fmt::Write;

use lameduck_core::record::{Entry, Event, gist};
use lameduck_core::{Decision, Next, ProbeValue, Snapshot};
use serde_json::Value;

/// What the picture knows beside the timeline, from the configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct Frame {
    /// From the drain's start to the agent's deadline (the `drain` entry's
    /// `budget_ms` wins when it is on the timeline).
    pub budget_ms: Option<u64>,
    /// From the drain's start to the kubelet's SIGKILL.
    pub grace_period_ms: Option<u64>,
}

impl Frame {
    /// From the configuration as `/status` shows it (`status.config`):
    /// durations as written (`30s`), or in ms as agents before 0.3 showed
    /// them.
    pub fn from_config(config: &Value) -> Frame {
        let ms = |key: &str| {
            config[key]
                .as_str()
                .and_then(lameduck_core::parse_duration_ms)
                .map(u64::from)
                .or_else(|| config[format!("{key}_ms")].as_u64())
        };
        let (grace, margin) = (ms("grace_period"), ms("safety_margin"));
        Frame {
            budget_ms: grace.zip(margin).map(|(g, m)| g.saturating_sub(m)),
            grace_period_ms: grace,
        }
    }
}

/// The entries a recording may hold: the agent keeps 2,000. One with more
/// is not an agent's, and every reader's work (a policy call each, for
/// `replay`) grows with them.
pub const MAX_ENTRIES: usize = 10_000;

/// The timeline of a saved `/status` (or a bare timeline), typed: entries
/// of kinds this agent does not know are left out; an entry it cannot read
/// is an error that names it.
pub fn entries_of(status: &Value) -> Result<Vec<Entry>, String> {
    let list = status
        .get("timeline")
        .unwrap_or(status)
        .as_array()
        .ok_or("not the JSON of /status (no `timeline` list)")?;
    if list.len() > MAX_ENTRIES {
        return Err(format!(
            "timeline: {} entries, more than the {MAX_ENTRIES} a recording holds (the agent \
             keeps 2000)",
            list.len()
        ));
    }
    let mut entries = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        if let Some(entry) =
            Entry::from_json(entry.clone()).map_err(|e| format!("timeline[{i}].{e}"))?
        {
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// The picture of the drain in a saved `/status` (or of its bare timeline).
pub fn from_status(status: &Value) -> Result<String, String> {
    Ok(render(
        &entries_of(status)?,
        Frame::from_config(&status["status"]["config"]),
    ))
}

// The layout, in pixels: lanes stacked top to bottom, labels on the left.
const WIDTH: f64 = 960.0;
const LEFT: f64 = 112.0;
const RIGHT: f64 = 940.0;
/// The axis break's room, when the deadline is far beyond the last entry.
const TAIL: f64 = 130.0;
const FONT: f64 = 11.0;
const ROW: f64 = 15.0;
const EVENTS_TOP: f64 = 50.0;
const EVENT_ROWS: usize = 4;
const READY_TOP: f64 = 115.0;
const READY_H: f64 = 20.0;
const TRAFFIC_TOP: f64 = 145.0;
const TRAFFIC_H: f64 = 70.0;
const DECISIONS_TOP: f64 = 227.0;
const REASONS_TOP: f64 = 245.0;
const REASON_ROWS: usize = 4;
const AXIS_Y: f64 = 313.0;
const NOTES_TOP: f64 = 365.0;

/// The colours (Okabe–Ito, distinguishable with colour blindness); every
/// colour also has a text label or a shape, never colour alone.
const READY: &str = "#009e73";
const NOT_READY: &str = "#c8c8c8";
const ARRIVALS: &str = "#0072b2";
const IN_FLIGHT: &str = "#e69f00";
const RECEIVED: &str = "#cc79a7";
const SENT: &str = "#d55e00";
const DEADLINE: &str = "#d55e00";
const EXIT: &str = "#0072b2";
const INK: &str = "#222";
const FAINT: &str = "#888";

/// Text over lines stays legible: a white outline under each glyph.
const HALO: &str =
    "stroke=\"#fff\" stroke-width=\"3\" stroke-linejoin=\"round\" paint-order=\"stroke\"";

/// Reasons and messages longer than this are clipped with an ellipsis.
const MAX_TEXT: usize = 160;

/// The farthest from the drain's start a time is drawn, either way, in ms
/// (285,000 years). A recording's times come from anyone, as `u64`: held
/// within this, no sum or difference below overflows, and `f64` holds each
/// exactly.
const FAR: i64 = 1 << 53;

/// `ms` held within [`FAR`].
fn held(ms: i128) -> i64 {
    ms.clamp(-i128::from(FAR), i128::from(FAR)) as i64
}

/// The SVG of the drain on `entries` (the timeline, oldest first).
pub fn render(entries: &[Entry], frame: Frame) -> String {
    let story = Story::read(entries, frame);
    let scale = Scale::new(&story);
    let mut svg = Svg::default();
    svg.open(&story);
    draw_lanes(&mut svg, &story);
    draw_readiness(&mut svg, &story, &scale);
    draw_traffic(&mut svg, &story, &scale);
    draw_decisions(&mut svg, &story, &scale);
    draw_marks(&mut svg, &story, &scale);
    draw_axis(&mut svg, &story, &scale);
    draw_notes(&mut svg, &story);
    svg.out.push_str("</svg>\n");
    svg.out
}

/// What the timeline says happened, in milliseconds since the drain began
/// (negative before it), ready to draw.
struct Story<'a> {
    /// Whether a drain is on the timeline; if not, times are since the
    /// agent started.
    drained: bool,
    /// The first and last times drawn.
    first: i64,
    last: i64,
    deadline: Option<i64>,
    grace_end: Option<i64>,
    /// Readiness from `first`, then each change.
    readiness: Vec<(i64, bool)>,
    samples: Vec<Sample>,
    decisions: Vec<Decided<'a>>,
    marks: Vec<Mark>,
    exited: bool,
    /// Serving-time entries too long before the drain to draw.
    hidden: usize,
    policy: Option<&'a str>,
}

/// A `connections` reading from a decision's snapshot.
struct Sample {
    at: i64,
    arrivals: u64,
    in_flight: u64,
}

struct Decided<'a> {
    at: i64,
    reason: &'a str,
    signalled: bool,
    fallback: bool,
    /// The tooltip: the reason, the decision, the snapshot's key values.
    title: String,
}

/// A labelled vertical line: a signal, the deadline, the exit, …
struct Mark {
    at: i64,
    label: String,
    title: String,
    colour: &'static str,
    dashed: bool,
    class: &'static str,
}

impl<'a> Story<'a> {
    fn read(entries: &'a [Entry], frame: Frame) -> Story<'a> {
        // The drain's start on the agent's clock: any entry stamped with
        // `drain_ms` tells it, even if the `drain` entry itself was dropped.
        let origin = entries
            .iter()
            .find_map(|e| Some(e.at_ms.saturating_sub(e.drain_ms?.into())));
        let drained = origin.is_some();
        let t = |e: &Entry| held(i128::from(e.at_ms) - i128::from(origin.unwrap_or(0)));
        let last = entries.iter().map(t).max().unwrap_or(0).max(0);
        // Some serving time before the drain, in proportion to the drain.
        let lead = if drained { (last / 12).max(100) } else { 0 };
        let first = if drained {
            -lead
        } else {
            entries.iter().map(t).min().unwrap_or(0)
        };

        let budget = entries
            .iter()
            .find_map(|e| match e.event {
                Event::DrainBegan { budget_ms, .. } => Some(u64::from(budget_ms)),
                _ => None,
            })
            .or(frame.budget_ms);
        let mut story = Story {
            drained,
            first,
            last,
            deadline: budget.filter(|_| drained).map(|b| held(b.into())),
            grace_end: frame
                .grace_period_ms
                .filter(|_| drained)
                .map(|g| held(g.into())),
            readiness: vec![(first, true)],
            samples: Vec::new(),
            decisions: Vec::new(),
            marks: Vec::new(),
            exited: false,
            hidden: 0,
            policy: None,
        };
        // The deadline and the grace period's end first: their labels
        // have the first claim on room.
        let limits = [
            (
                story.deadline,
                "deadline",
                "deadline",
                "the agent's deadline: TERM if not sent, then KILL",
                DEADLINE,
                true,
            ),
            (
                story.grace_end,
                "grace-end",
                "grace period ends",
                "the grace period ends: the kubelet's SIGKILL",
                INK,
                false,
            ),
        ];
        for (at, class, label, what, colour, dashed) in limits {
            let Some(at) = at else { continue };
            story.marks.push(Mark {
                at,
                label: label.into(),
                title: format!("+{}: {what}", seconds(at)),
                colour,
                dashed,
                class,
            });
        }
        for entry in entries {
            let at = t(entry);
            if let Event::Policy { source, .. } = &entry.event
                && at <= 0
            {
                story.policy = Some(source);
            }
            if at < first {
                story.hidden += 1;
                continue;
            }
            story.add(entry, at);
        }
        story
    }

    fn add(&mut self, entry: &'a Entry, at: i64) {
        let mut mark = |label: String, colour, dashed, class| {
            self.marks.push(Mark {
                at,
                label,
                title: format!(
                    "{}: {}",
                    seconds_signed(at),
                    clip(&entry.event.describe(), MAX_TEXT)
                ),
                colour,
                dashed,
                class,
            })
        };
        match &entry.event {
            Event::DrainBegan { .. } => self.set_ready(at, false),
            Event::Signal {
                signal,
                action: lameduck_core::SignalAction::Drain,
                ..
            } => mark(
                format!("{} received", signal.name()),
                RECEIVED,
                true,
                "signal-received",
            ),
            Event::Signal { .. }
            | Event::Held { .. }
            | Event::Reload { .. }
            | Event::Forwarded { .. }
            | Event::Interrupted => mark(
                clip(&entry.event.describe(), 28),
                RECEIVED,
                true,
                "signal-received",
            ),
            Event::Prestop => mark("preStop called".into(), RECEIVED, true, "signal-received"),
            Event::Sent { signal, .. } => mark(
                format!("{} sent", signal.name()),
                SENT,
                false,
                "signal-sent",
            ),
            Event::Killed { .. } => mark("KILL sent (group)".into(), SENT, false, "signal-sent"),
            Event::Exited { status } => {
                mark(format!("app exited ({status})"), EXIT, false, "exit");
                self.exited = true;
            }
            Event::Policy { .. } if at >= 0 => mark("policy loaded".into(), FAINT, true, "policy"),
            Event::PolicyFailed { .. } => mark("policy refused".into(), FAINT, true, "policy"),
            Event::Decision {
                snapshot,
                decision,
                call,
            } => self.decision(snapshot, decision, call.fallback.as_deref(), at),
            _ => {}
        }
    }

    fn set_ready(&mut self, at: i64, ready: bool) {
        if self.readiness.last().is_none_or(|&(_, was)| was != ready) {
            self.readiness.push((at, ready));
        }
    }

    fn decision(
        &mut self,
        snapshot: &Snapshot,
        decision: &'a Decision,
        fallback: Option<&str>,
        at: i64,
    ) {
        let reason = decision.reason.as_str();
        if let Some(ready) = decision.ready {
            self.set_ready(at, ready);
        }
        let mut title = format!("{}: {}", seconds_signed(at), clip(reason, MAX_TEXT));
        let mut does = Vec::new();
        if let Some(ready) = decision.ready {
            does.push(if ready { "ready" } else { "not ready" }.to_string());
        }
        if let Some(signal) = decision.signal {
            does.push(format!("send {}", signal.name()));
        }
        does.push(match decision.next {
            Next::Recheck(ms) => format!("again in {ms} ms"),
            Next::WaitForExit => "wait-for-exit".into(),
            Next::Exit => "exit".into(),
        });
        let _ = write!(title, "\n→ {}", does.join(" · "));
        if let Some(why) = fallback {
            let _ = write!(
                title,
                "\nthe built-in drain answered: {}",
                clip(why, MAX_TEXT)
            );
        }
        let _ = write!(title, "\n{} left", seconds(snapshot.remaining_ms.into()));
        for probe in &snapshot.probes {
            let value = serde_json::to_value(&probe.value).unwrap_or_default();
            let _ = write!(title, "\n{}: {}", clip_short(&probe.name), values(&value));
        }
        self.sample(snapshot, at);
        self.decisions.push(Decided {
            at,
            reason,
            signalled: decision.signal.is_some(),
            fallback: fallback.is_some(),
            title,
        });
    }

    /// The first `connections` probe's reading, if the snapshot has one.
    fn sample(&mut self, snapshot: &Snapshot, at: i64) {
        let Some(c) = snapshot.probes.iter().find_map(|p| match &p.value {
            ProbeValue::Connections(c) => Some(c),
            _ => None,
        }) else {
            return;
        };
        self.samples.push(Sample {
            at,
            arrivals: c.accepted.into(),
            in_flight: c.in_flight.into(),
        });
    }
}

/// A probe's value in words, whatever its fields: `kind: key value, …`.
fn values(v: &Value) -> String {
    match v {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{} {}", clip_short(k), values(v)))
            .collect::<Vec<_>>()
            .join(", "),
        Value::String(s) => clip(s, 60),
        Value::Null => "none".into(),
        other => clip(&other.to_string(), 60),
    }
}

/// Time to x: linear from the first entry to just past the last; when the
/// deadline and the grace period's end lie far beyond, the axis breaks and
/// they stand in a narrow tail, evenly spaced, labelled with their times.
struct Scale {
    t0: i64,
    t1: i64,
    /// Where the linear part ends.
    x1: f64,
    /// The times in the tail, in order.
    tail: Vec<i64>,
}

impl Scale {
    fn new(story: &Story<'_>) -> Scale {
        let far: Vec<i64> = [story.deadline, story.grace_end]
            .into_iter()
            .flatten()
            .collect();
        let end = far.iter().copied().max().unwrap_or(0);
        let drawn = (story.last - story.first).max(1);
        // Within reach: one linear axis shows the whole budget.
        if end <= story.last + drawn / 2 {
            let t1 = end.max(story.last) + drawn.max(end) / 40 + 1;
            return Scale {
                t0: story.first,
                t1,
                x1: RIGHT,
                tail: Vec::new(),
            };
        }
        let mut tail: Vec<i64> = far.into_iter().filter(|t| *t > story.last).collect();
        tail.sort_unstable();
        tail.dedup();
        Scale {
            t0: story.first,
            t1: story.last + drawn / 20 + 1,
            x1: RIGHT - TAIL,
            tail,
        }
    }

    fn x(&self, t: i64) -> f64 {
        if t <= self.t1 || self.tail.is_empty() {
            let f = (t - self.t0) as f64 / (self.t1 - self.t0).max(1) as f64;
            return LEFT + f.clamp(0.0, 1.0) * (self.x1 - LEFT);
        }
        let i = self
            .tail
            .iter()
            .position(|&x| x >= t)
            .unwrap_or(self.tail.len() - 1);
        let step = (TAIL - 20.0) / self.tail.len() as f64;
        self.x1 + 20.0 + step * (i as f64 + 0.5)
    }
}

#[derive(Default)]
struct Svg {
    out: String,
}

impl Svg {
    fn open(&mut self, story: &Story<'_>) {
        let height = NOTES_TOP + 4.0 * ROW;
        let title = if story.drained {
            "lameduck: a drain"
        } else {
            "lameduck: serving, no drain yet"
        };
        let mut summary = Vec::new();
        if let Some(policy) = story.policy {
            summary.push(format!("policy {}", clip(policy, 60)));
        }
        summary.push(format!("{} decision(s)", story.decisions.len()));
        if let Some(g) = story.grace_end {
            summary.push(format!("grace period {}", seconds(g)));
        }
        if let Some(d) = story.deadline {
            summary.push(format!("deadline +{}", seconds(d)));
        }
        match story.marks.iter().find(|m| m.class == "exit") {
            Some(exit) => summary.push(format!("{} at {}", exit.label, seconds_signed(exit.at))),
            None if story.drained => {
                summary.push(format!("recorded until +{}", seconds(story.last)))
            }
            None => {}
        }
        let summary = summary.join(" · ");
        let _ = write!(
            self.out,
            concat!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" ",
                "viewBox=\"0 0 {w} {h}\" role=\"img\" aria-labelledby=\"ld-title ld-desc\" ",
                "font-family=\"sans-serif\" font-size=\"{f}\" fill=\"{ink}\">\n",
                "<title id=\"ld-title\">{title}</title>\n<desc id=\"ld-desc\">{summary}</desc>\n",
                "<defs><pattern id=\"ld-hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" ",
                "patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"{nr}\"/>",
                "<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#fff\" stroke-width=\"2\"/></pattern></defs>\n",
                "<rect class=\"background\" width=\"{w}\" height=\"{h}\" fill=\"#fff\"/>\n",
                "<text x=\"8\" y=\"20\" font-size=\"15\" font-weight=\"bold\">{title}</text>\n",
                "<text x=\"8\" y=\"38\">{summary}</text>\n",
            ),
            w = WIDTH,
            h = height,
            f = FONT,
            ink = INK,
            nr = NOT_READY,
            title = title,
            summary = esc(&summary),
        );
    }

    fn line(&mut self, class: &str, (x1, y1): (f64, f64), (x2, y2): (f64, f64), style: &str) {
        let _ = writeln!(
            self.out,
            "<line class=\"{class}\" x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" {style}/>"
        );
    }

    fn rect(&mut self, class: &str, x: f64, y: f64, w: f64, h: f64, fill: &str) {
        let _ = writeln!(
            self.out,
            "<rect class=\"{class}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{fill}\"/>"
        );
    }

    /// Text, escaped here; `extra` is trusted attributes.
    fn text(&mut self, class: &str, x: f64, y: f64, text: &str, extra: &str) {
        let _ = writeln!(
            self.out,
            "<text class=\"{class}\" x=\"{x:.1}\" y=\"{y:.1}\" {extra}>{}</text>",
            esc(text)
        );
    }

    /// A label, over whatever lines it crosses.
    fn label(&mut self, class: &str, label: &Label, y: f64) {
        let anchor = if label.end {
            " text-anchor=\"end\""
        } else {
            ""
        };
        self.text(class, label.x, y, &label.text, &format!("{HALO}{anchor}"));
    }

    /// Opens a group with a tooltip; close it with `</g>`.
    fn group(&mut self, class: &str, title: &str) {
        let _ = write!(
            self.out,
            "<g class=\"{class}\"><title>{}</title>",
            esc(title)
        );
    }
}

fn draw_lanes(svg: &mut Svg, story: &Story<'_>) {
    let label = |svg: &mut Svg, y: f64, text: &str| {
        svg.text("lane-label", 8.0, y, text, "font-weight=\"bold\"")
    };
    label(svg, EVENTS_TOP + ROW, "signals");
    label(svg, READY_TOP + 14.0, "readiness");
    label(svg, TRAFFIC_TOP + 12.0, "traffic");
    label(svg, DECISIONS_TOP + 10.0, "decisions");
    label(svg, REASONS_TOP + 11.0, "reasons");
    if story.samples.is_empty() {
        svg.text(
            "no-traffic",
            LEFT + 4.0,
            TRAFFIC_TOP + TRAFFIC_H / 2.0,
            "no connections probe in the decisions' snapshots",
            &format!("fill=\"{FAINT}\""),
        );
    }
}

fn draw_readiness(svg: &mut Svg, story: &Story<'_>, scale: &Scale) {
    let _ = writeln!(svg.out, "<g class=\"readiness\">");
    for (i, &(from, ready)) in story.readiness.iter().enumerate() {
        let to = story.readiness.get(i + 1).map_or(story.last, |next| next.0);
        let (x0, x1) = (scale.x(from), scale.x(to));
        let width = x1 - x0;
        if width <= 0.0 {
            continue;
        }
        let (class, fill, text) = if ready {
            ("ready", READY, "ready")
        } else {
            ("not-ready", "url(#ld-hatch)", "not ready")
        };
        let title = format!(
            "{text} from {} to {}",
            seconds_signed(from),
            seconds_signed(to)
        );
        svg.group(class, &title);
        svg.rect("band", x0, READY_TOP, width, READY_H, fill);
        if width >= text_width(text) + 8.0 {
            let colour = if ready { "#fff" } else { INK };
            let style = format!("fill=\"{colour}\" font-weight=\"bold\"");
            svg.text("band-label", x0 + 4.0, READY_TOP + 14.0, text, &style);
        }
        svg.out.push_str("</g>\n");
    }
    svg.out.push_str("</g>\n");
}

fn draw_traffic(svg: &mut Svg, story: &Story<'_>, scale: &Scale) {
    if story.samples.is_empty() {
        return;
    }
    let top = story
        .samples
        .iter()
        .flat_map(|s| [s.arrivals, s.in_flight])
        .max()
        .unwrap_or(0)
        .max(1);
    let base = TRAFFIC_TOP + TRAFFIC_H;
    let y = |n: u64| base - (n as f64 / top as f64) * (TRAFFIC_H - 16.0);
    let _ = writeln!(svg.out, "<g class=\"traffic\">");
    svg.line(
        "baseline",
        (LEFT, base),
        (scale.x(story.last), base),
        &format!("stroke=\"{FAINT}\""),
    );
    svg.text(
        "traffic-max",
        LEFT - 6.0,
        y(top) + 4.0,
        &top.to_string(),
        "text-anchor=\"end\"",
    );
    svg.text("traffic-zero", LEFT - 6.0, base, "0", "text-anchor=\"end\"");
    for s in &story.samples {
        let n = s.arrivals;
        if n > 0 {
            let x = scale.x(s.at);
            svg.group(
                "arrivals",
                &format!("{}: {n} accepted", seconds_signed(s.at)),
            );
            svg.rect("bar", x - 1.5, y(n), 3.0, base - y(n), ARRIVALS);
            svg.out.push_str("</g>\n");
        }
    }
    {
        let mut path = String::new();
        for s in &story.samples {
            let n = s.in_flight;
            let (x, y) = (scale.x(s.at), y(n));
            if path.is_empty() {
                let _ = write!(path, "M{x:.1},{y:.1}");
            } else {
                let _ = write!(path, " H{x:.1} V{y:.1}");
            }
        }
        let _ = writeln!(
            svg.out,
            "<path class=\"in-flight\" d=\"{path}\" fill=\"none\" stroke=\"{IN_FLIGHT}\" stroke-width=\"2\"><title>in_flight</title></path>"
        );
    }
    // The legend, under the lane's name: the probe's own field names.
    let series = [("▮", ARRIVALS, "accepted"), ("━", IN_FLIGHT, "in_flight")];
    let mut y = TRAFFIC_TOP + 28.0;
    for (symbol, colour, key) in series {
        let _ = writeln!(
            svg.out,
            "<text class=\"traffic-legend\" x=\"8\" y=\"{y:.1}\"><tspan fill=\"{colour}\">{symbol}</tspan> {key}</text>"
        );
        y += ROW;
    }
    svg.out.push_str("</g>\n");
}

fn draw_decisions(svg: &mut Svg, story: &Story<'_>, scale: &Scale) {
    let _ = writeln!(svg.out, "<g class=\"decisions\">");
    for d in &story.decisions {
        let x = scale.x(d.at);
        let class = if d.signalled {
            "decision signalled"
        } else {
            "decision"
        };
        svg.group(class, &d.title);
        let y = DECISIONS_TOP;
        // A tick; a decision that signals is a triangle; a fallback is hollow.
        let (fill, stroke) = match (d.signalled, d.fallback) {
            (_, true) => ("#fff", SENT),
            (true, false) => (SENT, SENT),
            (false, false) => (INK, INK),
        };
        let shape = if d.signalled {
            format!("M{:.1},{:.1} l5,12 h-10 z", x, y)
        } else {
            format!("M{:.1},{:.1} h3 v12 h-3 z", x - 1.5, y)
        };
        let _ = writeln!(
            svg.out,
            "<path d=\"{shape}\" fill=\"{fill}\" stroke=\"{stroke}\"/></g>"
        );
    }
    // Runs of the same reason (numbers aside) share one label.
    let mut shelf = Shelf::new(REASON_ROWS);
    let mut i = 0;
    while i < story.decisions.len() {
        let key = gist(story.decisions[i].reason, usize::MAX);
        let mut j = i + 1;
        while j < story.decisions.len() && gist(story.decisions[j].reason, usize::MAX) == key {
            j += 1;
        }
        let run = &story.decisions[i..j];
        let label = if run.len() == 1 {
            clip(run[0].reason, 70)
        } else {
            format!("{} (×{})", clip(&key, 70), run.len())
        };
        let (x0, x1) = (scale.x(run[0].at), scale.x(run[run.len() - 1].at));
        let label = Label::beside(x0, &label);
        if let Some(row) = shelf.place(label.from.min(x0), label.to.max(x1)) {
            let y = REASONS_TOP + row as f64 * ROW;
            svg.group(
                "reason",
                &format!(
                    "{} decision(s): {}",
                    run.len(),
                    clip(run[0].reason, MAX_TEXT)
                ),
            );
            if run.len() > 1 {
                let style = format!("stroke=\"{INK}\" stroke-width=\"2\"");
                svg.line("run", (x0, y + 12.0), (x1, y + 12.0), &style);
            }
            svg.label("reason-label", &label, y + 9.0);
            svg.out.push_str("</g>\n");
        }
        i = j;
    }
    svg.out.push_str("</g>\n");
}

fn draw_marks(svg: &mut Svg, story: &Story<'_>, scale: &Scale) {
    let mut shelf = Shelf::new(EVENT_ROWS);
    let _ = writeln!(svg.out, "<g class=\"marks\">");
    for m in &story.marks {
        let x = scale.x(m.at);
        svg.group(&format!("mark {}", m.class), &m.title);
        let dash = if m.dashed {
            " stroke-dasharray=\"4 3\""
        } else {
            ""
        };
        let style = format!("stroke=\"{}\" stroke-width=\"2\"{dash}", m.colour);
        svg.line("mark-line", (x, EVENTS_TOP), (x, AXIS_Y), &style);
        let label = Label::beside(x, &m.label);
        if let Some(row) = shelf.place(label.from, label.to) {
            svg.label("mark-label", &label, EVENTS_TOP + 11.0 + row as f64 * ROW);
        }
        svg.out.push_str("</g>\n");
    }
    svg.out.push_str("</g>\n");
}

fn draw_axis(svg: &mut Svg, story: &Story<'_>, scale: &Scale) {
    let _ = writeln!(svg.out, "<g class=\"axis\">");
    let style = format!("stroke=\"{INK}\"");
    svg.line("axis-line", (LEFT, AXIS_Y), (scale.x1, AXIS_Y), &style);
    let step = tick_step(scale.t1 - scale.t0);
    let mut t = scale.t0.div_euclid(step) * step;
    while t <= scale.t1 {
        if t >= scale.t0 {
            let x = scale.x(t);
            svg.line("tick", (x, AXIS_Y), (x, AXIS_Y + 5.0), &style);
            svg.text(
                "tick-label",
                x,
                AXIS_Y + 17.0,
                &tick_label(t, step),
                "text-anchor=\"middle\"",
            );
        }
        t += step;
    }
    if !scale.tail.is_empty() {
        // The break: two slashes, then the far times on their own.
        let x = scale.x1 + 10.0;
        for dx in [-3.0, 3.0] {
            svg.line(
                "break",
                (x + dx - 3.0, AXIS_Y + 5.0),
                (x + dx + 3.0, AXIS_Y - 5.0),
                &style,
            );
        }
        let end = scale.x(*scale.tail.last().expect("a tail"));
        svg.line(
            "axis-line",
            (scale.x1 + 20.0, AXIS_Y),
            (end + 10.0, AXIS_Y),
            &style,
        );
        for &t in &scale.tail {
            let x = scale.x(t);
            svg.line("tick", (x, AXIS_Y), (x, AXIS_Y + 5.0), &style);
            svg.text(
                "tick-label",
                x,
                AXIS_Y + 17.0,
                &format!("{:.1}", t as f64 / 1000.0),
                "text-anchor=\"middle\"",
            );
        }
    }
    svg.text(
        "axis-title",
        (LEFT + RIGHT) / 2.0,
        AXIS_Y + 34.0,
        if story.drained {
            "seconds since the drain began"
        } else {
            "seconds since the agent started"
        },
        "text-anchor=\"middle\"",
    );
    svg.out.push_str("</g>\n");
}

fn draw_notes(svg: &mut Svg, story: &Story<'_>) {
    let mut notes = vec![
        "decisions: ▌ one decision (hover it for its reason and snapshot) · ▲ one that sent a signal · ▯ (hollow) the built-in drain answered for the policy".to_string(),
    ];
    if !story.drained {
        notes.push("no drain on this timeline: times are seconds since the agent started".into());
    }
    if story.hidden > 0 {
        notes.push(format!(
            "{} earlier entr(ies), while serving, not shown",
            story.hidden
        ));
    }
    if story.drained && !story.exited {
        notes.push("the app had not exited when this was recorded".into());
    }
    let style = format!("fill=\"{FAINT}\"");
    for (i, note) in notes.iter().enumerate() {
        svg.text("note", 8.0, NOTES_TOP + i as f64 * ROW, note, &style);
    }
}

/// Rows of labels, placed first come first served, without overlap.
struct Shelf {
    /// The room each row's labels take.
    rows: Vec<Vec<(f64, f64)>>,
}

impl Shelf {
    fn new(rows: usize) -> Shelf {
        Shelf {
            rows: vec![Vec::new(); rows],
        }
    }

    /// The first row with room for `[from, to)`; `None` if every row is
    /// taken there (the tooltip still tells).
    fn place(&mut self, from: f64, to: f64) -> Option<usize> {
        let free =
            |row: &Vec<(f64, f64)>| row.iter().all(|&(a, b)| to + 6.0 <= a || b + 6.0 <= from);
        let row = self.rows.iter().position(free)?;
        self.rows[row].push((from, to));
        Some(row)
    }
}

/// A label beside something at `x`: just right of it, or, near the right
/// edge, just left of it (anchored there, so it ends at `x` whatever the
/// font); clipped if it fits neither way.
struct Label {
    text: String,
    x: f64,
    end: bool,
    /// Where it is estimated to lie, for [`Shelf`].
    from: f64,
    to: f64,
}

impl Label {
    fn beside(x: f64, text: &str) -> Label {
        let (room, width) = (WIDTH - 4.0, text_width(text));
        if x + 3.0 + width > room && x - 3.0 - width >= LEFT {
            return Label {
                text: text.to_string(),
                x: x - 3.0,
                end: true,
                from: x - 3.0 - width,
                to: x,
            };
        }
        let text = clip(text, ((room - x - 3.0) / (FONT * 0.6)) as usize);
        Label {
            from: x,
            to: x + 3.0 + text_width(&text),
            text,
            x: x + 3.0,
            end: false,
        }
    }
}

/// A text's width at [`FONT`], estimated (no font metrics in a pure function).
fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * FONT * 0.6
}

/// An axis step of 1, 2 or 5 × 10^n ms, for about ten ticks.
fn tick_step(span: i64) -> i64 {
    let mut step = 1;
    loop {
        for m in [1, 2, 5] {
            if span / (step * m) <= 10 {
                return step * m;
            }
        }
        step *= 10;
    }
}

fn tick_label(t: i64, step: i64) -> String {
    let decimals = match step {
        1000.. => 0,
        100.. => 1,
        10.. => 2,
        _ => 3,
    };
    let text = format!("{:.*}", decimals, t as f64 / 1000.0);
    // "-0.0" reads as a glitch.
    if t == 0 { "0".into() } else { text }
}

/// `1.25 s`.
fn seconds(ms: i64) -> String {
    format!("{:.2} s", ms as f64 / 1000.0)
}

/// `+1.25 s`, `−0.10 s`.
fn seconds_signed(ms: i64) -> String {
    if ms < 0 {
        format!("−{}", seconds(-ms))
    } else {
        format!("+{}", seconds(ms))
    }
}

/// At most `max` characters on one line, the last an ellipsis if any were cut.
fn clip(text: &str, max: usize) -> String {
    let clean = |c: char| if c.is_whitespace() { ' ' } else { c };
    if text.chars().count() <= max {
        return text.chars().map(clean).collect();
    }
    let mut out: String = text
        .chars()
        .take(max.saturating_sub(1))
        .map(clean)
        .collect();
    out.push('…');
    out
}

/// A name (a signal, a probe, a key): short.
fn clip_short(text: &str) -> String {
    clip(text, 32)
}

/// XML-escaped, for text and attribute values alike; control characters
/// (which XML cannot carry, even escaped) become `�`.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push('\n'),
            c if c.is_control() || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A drain recorded by the 0.1 agent: TERM, two decisions (the second
    /// sends TERM), the exit.
    fn timeline(reason: &str, connections: Value) -> Value {
        let snapshot = |elapsed: u64| {
            json!({ "trigger": "TERM", "child": "running", "signals_sent": [],
                    "elapsed_ms": elapsed, "remaining_ms": 28_000 - elapsed, "ready": false,
                    "probes": [{ "name": "connections", "unchanged_ms": 0,
                                 "value": connections.clone() }] })
        };
        json!({
            "status": { "config": { "grace_period_ms": 30_000, "safety_margin_ms": 2_000 } },
            "timeline": [
                { "at_ms": 10, "event": "started", "data": { "pid": 7 } },
                { "at_ms": 5_000, "event": "signal", "message": "TERM received",
                  "data": { "signal": "TERM", "snapshot": snapshot(0) } },
                { "at_ms": 5_000, "drain_ms": 0, "event": "drain", "data": { "budget_ms": 28_000 } },
                { "at_ms": 5_001, "drain_ms": 1, "event": "decision",
                  "data": { "snapshot": snapshot(1),
                            "decision": { "ready": false, "signal": null, "reason": reason,
                                          "next": { "recheck_ms": 100 } } } },
                { "at_ms": 6_200, "drain_ms": 1_200, "event": "decision",
                  "data": { "snapshot": snapshot(1_200),
                            "decision": { "ready": false, "signal": "TERM", "reason": "quiet",
                                          "next": "wait-for-exit" } } },
                { "at_ms": 6_200, "drain_ms": 1_200, "event": "sent", "data": { "signal": "TERM" } },
                { "at_ms": 6_400, "drain_ms": 1_400, "event": "exit", "data": { "status": 0 } },
            ],
        })
    }

    fn picture(reason: &str, connections: Value) -> String {
        from_status(&timeline(reason, connections)).unwrap()
    }

    fn connections() -> Value {
        json!({ "connections": { "established": 2, "accepted": 3 } })
    }

    #[test]
    fn a_drain_has_every_part_and_the_same_bytes_each_time() {
        let svg = picture("waiting", connections());
        assert_eq!(svg, picture("waiting", connections()));
        for part in [
            "class=\"ready\"",
            "class=\"not-ready\"",
            "class=\"bar\"",
            "class=\"in-flight\"",
            "class=\"decision\"",
            "class=\"decision signalled\"",
            "TERM received",
            "TERM sent",
            "app exited (0)",
            "class=\"mark deadline\"",
            "class=\"mark grace-end\"",
            "</tspan> in_flight</text>",
            "1 earlier entr(ies)",
        ] {
            assert!(svg.contains(part), "{part} is missing:\n{svg}");
        }
        // The deadline, far past the exit, stands beyond the axis's break.
        assert!(svg.contains("class=\"break\""), "{svg}");
        assert!(svg.contains(">28.0</text>"), "{svg}");
    }

    #[test]
    fn a_reason_is_escaped_and_clipped() {
        let hostile = format!("<script>&\"'\u{1}\u{7}{}", "x".repeat(500));
        let svg = picture(&hostile, connections());
        assert!(!svg.contains("<script"));
        assert!(svg.contains("&lt;script&gt;&amp;&quot;&apos;\u{fffd}\u{fffd}"));
        assert!(!svg.contains(&"x".repeat(MAX_TEXT)));
        assert!(svg.contains("x…"));
        assert!(!svg.chars().any(|c| c.is_control() && c != '\n'));
    }

    #[test]
    fn every_field_of_a_probe_is_in_the_tooltip() {
        let svg = picture(
            "waiting",
            json!({ "http": { "status": 503, "body": "busy: 2 jobs" } }),
        );
        assert!(svg.contains("busy: 2 jobs"), "{svg}");
        assert!(svg.contains("status 503"), "{svg}");
        // No connections probe: the lane says so.
        assert!(svg.contains("no connections probe"), "{svg}");
    }

    #[test]
    fn an_entry_that_cannot_be_read_is_named() {
        let mut bad = timeline("waiting", connections());
        bad["timeline"][3]["data"]["decision"]["next"] = json!("sometime");
        let error = from_status(&bad).unwrap_err();
        assert!(
            error.starts_with("timeline[3].data.decision.next"),
            "{error}"
        );
    }

    #[test]
    fn times_at_the_ends_of_u64_are_drawn_within_bounds() {
        // Times that wrap i64: the axis once took a step of 1 ms across
        // the wrapped span (1.5 GB, then an abort); in a debug build, an
        // overflow panic.
        let mut hostile = timeline("waiting", connections());
        hostile["timeline"][0]["at_ms"] = json!(u64::MAX);
        hostile["timeline"][6]["at_ms"] = json!(u64::MAX);
        hostile["timeline"][6]["drain_ms"] = json!(0);
        hostile["status"]["config"] = json!({ "grace_period_ms": u64::MAX, "safety_margin_ms": 0 });
        let svg = from_status(&hostile).unwrap();
        let ticks = svg.matches("class=\"tick\"").count();
        assert!(ticks <= 24, "{ticks} ticks");
        assert!(svg.len() < 64 << 10, "{} bytes", svg.len());
        // And an entry alone at the far end of time.
        let far = json!([{ "at_ms": u64::MAX, "drain_ms": u32::MAX, "event": "exit",
                           "data": { "status": 0 } },
                         { "at_ms": 0, "drain_ms": 0, "event": "exit", "data": { "status": 0 } }]);
        assert!(from_status(&far).unwrap().len() < 64 << 10);
    }

    #[test]
    fn a_recording_longer_than_an_agent_keeps_is_refused() {
        let entry = json!({ "at_ms": 3, "event": "started", "data": { "pid": 7 } });
        let long = Value::Array(vec![entry; MAX_ENTRIES + 1]);
        let error = from_status(&long).unwrap_err();
        assert!(error.starts_with("timeline: 10001 entries"), "{error}");
    }

    #[test]
    fn a_timeline_without_a_drain_is_a_picture_of_serving() {
        let svg = from_status(&json!([
            { "at_ms": 3, "event": "started", "data": { "pid": 7 } },
            { "at_ms": 900, "event": "forwarded", "data": { "signal": "SIG34" } },
        ]))
        .unwrap();
        assert!(svg.contains("serving, no drain yet"), "{svg}");
        assert!(svg.contains("SIG34 forwarded"), "{svg}");
        assert!(!svg.contains("class=\"mark deadline\""), "{svg}");
        assert!(from_status(&json!({ "timeline": 3 })).is_err());
        // Nothing recorded yet is still a picture.
        assert!(render(&[], Frame::default()).ends_with("</svg>\n"));
    }
}
