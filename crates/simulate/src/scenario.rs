//! A scenario file: the traffic a pod serves, and how its drain goes.

use std::path::Path;
use std::time::Duration;

use lameduck_yaml::Bounds;
use serde::Deserialize;

/// A scenario is a page of settings and a few probe tracks: a few hundred
/// nodes. Room for tracks of thousands of points, not for a file that
/// stands for more work than the rehearsal it describes.
const SCENARIO: Bounds = Bounds {
    what: "a scenario",
    documents: 1,
    depth: 16,
    nodes: 100_000,
    aliases: 1_000,
};

/// The requests a rehearsal generates, serving and draining together
/// (`rate` × time, or bursts × `size`): each is kept (16 bytes) and every
/// probe reading looks them up, so they bound its memory and its work.
/// 10 requests a second for a day of serving fit.
pub const MAX_REQUESTS: u64 = 1_000_000;

/// The longest time a rehearsal plays, serving and draining each: a day.
/// Grace periods are seconds to hours; a day of serving is more than the
/// agent learns from.
pub const MAX_TIME: Duration = Duration::from_secs(24 * 3600);

/// What `lameduck simulate` plays. Times in the drain are counted from the
/// moment it began (the TERM, or the `preStop` hook).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What it is, in words.
    #[serde(default)]
    pub name: String,
    /// How long the pod served before the drain: what the agent had to
    /// learn the traffic from.
    #[serde(default = "a_minute")]
    pub serving: Dur,
    pub traffic: Traffic,
    pub drain: Drain,
    /// Other probes' values over time.
    #[serde(default)]
    pub probes: Vec<Track>,
    /// The seed of the traffic's randomness: the same seed, the same run.
    #[serde(default = "one")]
    pub seed: u64,
}

/// Requests to the app.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// Requests per second, arriving at random (a Poisson stream).
    pub rate: Option<f64>,
    /// Or bursts of requests at a regular rhythm.
    pub bursts: Option<Bursts>,
    /// How long a request takes to answer: uniform between the two.
    pub duration: Span,
    /// Requests travel over this many pooled keep-alive connections, which
    /// stay open (idle between requests); without it, each request is a
    /// connection of its own.
    pub keep_alive: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bursts {
    pub every: Dur,
    pub size: u32,
    /// Between two requests of a burst.
    #[serde(default = "thirty_ms")]
    pub spacing: Dur,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Span {
    pub min: Dur,
    pub max: Dur,
}

/// How the drain goes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drain {
    /// What begins it.
    #[serde(default)]
    pub trigger: Trigger,
    /// When the last load balancer stops sending the pod requests: the
    /// endpoint removal's lag.
    pub endpoint_removed: Dur,
    /// What the app does with its TERM.
    #[serde(default)]
    pub app: App,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// The kubelet's TERM to lameduck.
    #[default]
    Term,
    /// A `preStop: httpGet /prestop` hook.
    Prestop,
}

/// What the app does with its TERM.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// `exit`: it dies at once, like an app with no handler (requests in
    /// flight fail); `drain`: it stops accepting, answers what is in flight,
    /// then exits (Spring Boot, terminus); `ignore`: it carries on.
    #[serde(default)]
    pub on_term: OnTerm,
    /// How long it takes to exit once it may (after its requests, with
    /// `drain`).
    #[serde(default = "zero")]
    pub stops_in: Dur,
    /// The signals that stop it (default TERM, INT and QUIT); any other
    /// (a worker's USR1: "take no new job") does not.
    #[serde(default = "stop_signals")]
    pub stops_on: Vec<String>,
}

impl Default for App {
    fn default() -> Self {
        App {
            on_term: OnTerm::default(),
            stops_in: zero(),
            stops_on: stop_signals(),
        }
    }
}

fn stop_signals() -> Vec<String> {
    ["TERM", "INT", "QUIT"].map(String::from).to_vec()
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnTerm {
    #[default]
    Exit,
    Drain,
    Ignore,
}

/// A probe's values over time: each from its `at` (in the drain) on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Track {
    pub name: String,
    pub values: Vec<Point>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    #[serde(default = "zero")]
    pub at: Dur,
    pub http: Option<u16>,
    pub file: Option<bool>,
    pub exec: Option<i32>,
    pub failed: Option<String>,
}

impl Scenario {
    /// Reads and checks a scenario file; errors name the file, line, column
    /// and field.
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, String> {
        let scenario: Scenario =
            lameduck_yaml::from_str(&path.display().to_string(), text, &SCENARIO)
                .map_err(|e| e.to_string())?;
        scenario
            .check()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(scenario)
    }

    fn check(&self) -> Result<(), String> {
        match (&self.traffic.rate, &self.traffic.bursts) {
            (Some(_), Some(_)) => return Err("traffic: `rate` or `bursts`, not both".into()),
            (Some(rate), None) if !(rate.is_finite() && *rate > 0.0 && *rate <= 100_000.0) => {
                return Err(format!(
                    "traffic.rate: {rate} is not a rate between 0 and 100000"
                ));
            }
            (None, Some(b)) if b.size == 0 || b.every.0.is_zero() => {
                return Err("traffic.bursts: `size` and `every` must be more than 0".into());
            }
            _ => {}
        }
        if self.traffic.duration.min.0 > self.traffic.duration.max.0 {
            return Err("traffic.duration: `min` is longer than `max`".into());
        }
        for name in &self.drain.app.stops_on {
            lameduck_core::Signal::from_name(name)
                .ok_or_else(|| format!("drain.app.stops_on: `{name}` is not a signal name"))?;
        }
        let day = lameduck_core::show_duration(MAX_TIME);
        for (field, time) in [
            ("serving", self.serving),
            ("drain.endpoint_removed", self.drain.endpoint_removed),
        ] {
            if time.0 > MAX_TIME {
                return Err(format!(
                    "{field}: {} is longer than a rehearsal plays (at most {day})",
                    lameduck_core::show_duration(time.0)
                ));
            }
        }
        self.check_requests()?;
        for (i, track) in self.probes.iter().enumerate() {
            for (j, point) in track.values.iter().enumerate() {
                let kinds = [
                    point.http.is_some(),
                    point.file.is_some(),
                    point.exec.is_some(),
                    point.failed.is_some(),
                ];
                if kinds.iter().filter(|k| **k).count() != 1 {
                    return Err(format!(
                        "probes[{i}].values[{j}]: one of `http`, `file`, `exec` or `failed`"
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Scenario {
    /// The requests the traffic would generate, within [`MAX_REQUESTS`]:
    /// counted before any is.
    fn check_requests(&self) -> Result<(), String> {
        // From the start of serving to the endpoint's removal.
        let span = self.serving.0 + self.drain.endpoint_removed.0;
        let (field, requests) = match (&self.traffic.rate, &self.traffic.bursts) {
            (Some(rate), _) => ("traffic.rate", rate * span.as_secs_f64()),
            (_, Some(b)) => {
                let bursts = span.as_millis().div_ceil(b.every.0.as_millis().max(1));
                ("traffic.bursts", bursts as f64 * f64::from(b.size))
            }
            (None, None) => return Ok(()),
        };
        if requests > MAX_REQUESTS as f64 {
            return Err(format!(
                "{field}: {requests:.0} requests from the start of serving to the endpoint's \
                 removal ({}): a rehearsal generates at most {MAX_REQUESTS}",
                lameduck_core::show_duration(span)
            ));
        }
        Ok(())
    }
}

/// A duration written as `250ms`, `30s`, `2m`.
#[derive(Debug, Clone, Copy)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        lameduck_core::parse_duration_ms(&text)
            .map(|ms| Duration::from_millis(ms.into()))
            .ok_or_else(|| format!("`{text}` is not a duration (examples: 250ms, 30s, 2m)"))
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

fn a_minute() -> Dur {
    Dur(Duration::from_secs(60))
}

fn zero() -> Dur {
    Dur(Duration::ZERO)
}

fn thirty_ms() -> Dur {
    Dur(Duration::from_millis(30))
}

fn one() -> u64 {
    1
}
