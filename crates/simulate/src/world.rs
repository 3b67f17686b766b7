//! The modelled world of a scenario: requests arriving at the pod, what the
//! agent's probes read of them, and what the app makes of its TERM.
//!
//! Times are milliseconds relative to the drain's start; negative ones are
//! while the pod served.

use std::collections::HashMap;

use lameduck_core::{Connections, Evidence, FileState, HttpResponse, ProbeValue, Silences};

use super::scenario::{MAX_REQUESTS, OnTerm, Point, Scenario};

/// One request: when it arrives, and when its answer would be complete.
#[derive(Debug, Clone, Copy)]
struct Request {
    arrives: i64,
    done: i64,
}

/// The world: the requests, generated once from the scenario.
pub struct World {
    /// In order of arrival.
    requests: Vec<Request>,
    /// Their arrivals and completions, each in order: a reading is a few
    /// binary searches, not a pass over every request (a rehearsal reads
    /// the probes at each of up to a hundred thousand decisions).
    arrivals: Vec<i64>,
    dones: Vec<i64>,
    /// Once the app refuses requests from a moment: that moment, and the
    /// completions of the requests it took before it, in order.
    served: Option<(i64, Vec<i64>)>,
    pool: Option<u32>,
    learned: Silences,
    tracks: HashMap<String, Vec<(i64, ProbeValue)>>,
    last_sample: Option<i64>,
    on_term: OnTerm,
    stops_in: i64,
    pub endpoint_removed: i64,
}

/// How the app went, once it was signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    /// From this moment the app takes no new request.
    pub refuses_from: i64,
    /// When it exits, if it does.
    pub exits_at: Option<i64>,
}

impl World {
    pub fn new(scenario: &Scenario) -> World {
        let mut random = Random(scenario.seed.max(1));
        let start = -(scenario.serving.0.as_millis() as i64);
        let end = scenario.drain.endpoint_removed.0.as_millis() as i64;
        let traffic = &scenario.traffic;
        let (min, max) = (
            traffic.duration.min.0.as_millis() as i64,
            traffic.duration.max.0.as_millis() as i64,
        );
        let mut arrivals = Vec::new();
        // The scenario's check holds the expected count to MAX_REQUESTS; a
        // Poisson stream drawing twice that is a guard, not a case.
        let most = 2 * MAX_REQUESTS as usize;
        if let Some(rate) = traffic.rate {
            // A Poisson stream: exponential gaps.
            let mut t = start as f64;
            while arrivals.len() < most {
                t += -random.unit().max(f64::MIN_POSITIVE).ln() / rate * 1_000.0;
                if t >= end as f64 {
                    break;
                }
                arrivals.push(t as i64);
            }
        } else if let Some(bursts) = &traffic.bursts {
            let every = bursts.every.0.as_millis().max(1) as i64;
            let spacing = bursts.spacing.0.as_millis() as i64;
            let mut burst = start;
            while burst < end && arrivals.len() < most {
                for i in 0..i64::from(bursts.size) {
                    let t = burst + i * spacing;
                    if t >= end {
                        break;
                    }
                    arrivals.push(t);
                }
                burst += every;
            }
            // Bursts longer than their rhythm overlap.
            arrivals.sort_unstable();
        }
        let requests: Vec<Request> = arrivals
            .iter()
            .map(|&arrives| Request {
                arrives,
                done: arrives + min + (random.unit() * (max - min) as f64) as i64,
            })
            .collect();
        let mut dones: Vec<i64> = requests.iter().map(|r| r.done).collect();
        dones.sort_unstable();
        let tracks = scenario
            .probes
            .iter()
            .map(|track| {
                let mut values: Vec<(i64, ProbeValue)> = track
                    .values
                    .iter()
                    .map(|p| (p.at.0.as_millis() as i64, value(p)))
                    .collect();
                values.sort_by_key(|(at, _)| *at);
                (track.name.clone(), values)
            })
            .collect();
        World {
            learned: learn(&arrivals, -start),
            requests,
            arrivals,
            dones,
            served: None,
            pool: traffic.keep_alive,
            tracks,
            last_sample: None,
            on_term: scenario.drain.app.on_term,
            stops_in: scenario.drain.app.stops_in.0.as_millis() as i64,
            endpoint_removed: end,
        }
    }

    /// What the `connections` probe reads at `t`, the app still serving
    /// until `stop` says otherwise.
    pub fn connections(&mut self, t: i64, stop: Option<Stop>) -> ProbeValue {
        let since = self.last_sample.replace(t).unwrap_or(i64::MIN);
        // The requests served arrived by `last`: by `t`, and before the app
        // refused any.
        let refuses_from = stop.map_or(i64::MAX, |s| s.refuses_from);
        let last = t.min(refuses_from.saturating_sub(1));
        let in_flight = if last == t {
            // Every request done by `t` had arrived by then.
            by(&self.arrivals, t) - by(&self.dones, t)
        } else {
            let served = self.served_dones(refuses_from);
            served.len() - by(served, t)
        } as u32;
        let arrived = |t: i64| by(&self.arrivals, t);
        let since_last_request_ms = arrived(last)
            .checked_sub(1)
            .map(|i| ms(t - self.arrivals[i]));
        let (open, accepted, since_last_accept_ms) = match self.pool {
            Some(size) => (size.max(in_flight), 0, None),
            None => {
                let accepted = arrived(last).saturating_sub(arrived(since.min(last)));
                (in_flight, accepted as u32, since_last_request_ms)
            }
        };
        ProbeValue::Connections(Connections {
            evidence: Evidence::SockDiag,
            open,
            in_flight,
            idle: open - in_flight,
            accepted,
            since_last_request_ms,
            since_last_accept_ms,
            silences: self.learned,
            excluded: 0,
            streaming: 0,
            unsure: 0,
            long_lived: 0,
            long_lived_oldest_ms: None,
            multiplexed: false,
        })
    }

    /// The completions, in order, of the requests that arrived before
    /// `refuses_from`: worked out once per stop.
    fn served_dones(&mut self, refuses_from: i64) -> &[i64] {
        if self
            .served
            .as_ref()
            .is_none_or(|(from, _)| *from != refuses_from)
        {
            let mut dones: Vec<i64> = self
                .requests
                .iter()
                .take_while(|r| r.arrives < refuses_from)
                .map(|r| r.done)
                .collect();
            dones.sort_unstable();
            self.served = Some((refuses_from, dones));
        }
        &self.served.as_ref().expect("just set").1
    }

    /// What a scenario-given probe reads at `t`; `None` if the scenario
    /// says nothing of it.
    pub fn track(&self, name: &str, t: i64) -> Option<ProbeValue> {
        let values = self.tracks.get(name)?;
        let now = values.partition_point(|(at, _)| *at <= t);
        let current = now.checked_sub(1).and_then(|i| values.get(i));
        Some(match current.or(values.first()) {
            Some((_, value)) => value.clone(),
            None => ProbeValue::Failed("no value in the scenario".into()),
        })
    }

    /// What the app does with the stop signal it got at `t`.
    pub fn stop(&self, t: i64) -> Stop {
        match self.on_term {
            OnTerm::Exit => Stop {
                refuses_from: t + self.stops_in,
                exits_at: Some(t + self.stops_in),
            },
            OnTerm::Drain => {
                let in_flight = self.requests.iter().filter(|r| r.arrives < t && t < r.done);
                let last = in_flight.map(|r| r.done).max().unwrap_or(t);
                Stop {
                    refuses_from: t,
                    exits_at: Some(last + self.stops_in),
                }
            }
            OnTerm::Ignore => Stop {
                refuses_from: i64::MAX,
                exits_at: None,
            },
        }
    }

    /// The requests that failed: refused, or in flight when the app died at
    /// `died` (if it did).
    pub fn failed(&self, stop: Option<Stop>, died: Option<i64>) -> usize {
        self.requests
            .iter()
            .filter(|r| {
                let refused = stop.is_some_and(|s| r.arrives >= s.refuses_from);
                let cut = died.is_some_and(|d| r.arrives < d && d < r.done);
                refused || cut
            })
            .count()
    }

    /// Requests in flight at `t`.
    pub fn in_flight(&self, t: i64) -> usize {
        by(&self.arrivals, t) - by(&self.dones, t)
    }

    /// The moment the pod could have been signalled safely: the endpoint
    /// gone and the last request answered.
    pub fn safe_from(&self) -> i64 {
        let last_done = self.requests.iter().map(|r| r.done).max();
        last_done.unwrap_or(0).max(self.endpoint_removed)
    }

    pub fn requests(&self) -> usize {
        self.requests.len()
    }
}

/// What the probe learned while serving: the silences between requests,
/// their percentiles weighted by time, as the agent's probe reports them.
fn learn(arrivals: &[i64], watched_ms: i64) -> Silences {
    let mut gaps: Vec<i64> = arrivals
        .windows(2)
        .filter(|pair| pair[1] <= 0)
        .map(|pair| pair[1] - pair[0])
        .collect();
    gaps.sort_unstable();
    let total: i64 = gaps.iter().sum();
    // The shortest silence such that a share `q` of the silent time fell in
    // silences no longer than it.
    let at = |q: f64| {
        let mut seen = 0;
        gaps.iter()
            .find(|gap| {
                seen += **gap;
                seen as f64 >= q * total as f64
            })
            .map(|gap| ms(*gap))
    };
    Silences {
        watched_ms: ms(watched_ms),
        count: gaps.len() as u32,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: gaps.last().map(|g| ms(*g)),
    }
}

fn value(point: &Point) -> ProbeValue {
    if let Some(status) = point.http {
        ProbeValue::Http(HttpResponse {
            status,
            body: String::new(),
        })
    } else if let Some(exists) = point.file {
        ProbeValue::File(FileState {
            exists,
            contents: String::new(),
        })
    } else if let Some(code) = point.exec {
        ProbeValue::Exec(code)
    } else {
        ProbeValue::Failed(point.failed.clone().unwrap_or_default())
    }
}

/// How many of the times in `sorted` are at or before `t`.
fn by(sorted: &[i64], t: i64) -> usize {
    sorted.partition_point(|x| *x <= t)
}

fn ms(value: i64) -> u32 {
    value.clamp(0, u32::MAX as i64) as u32
}

/// A small, seeded generator (xorshift64*): the same seed, the same run.
struct Random(u64);

impl Random {
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silences_are_the_gaps_between_bursts_too() {
        // Bursts of 7 every 2 s: the long silences are ~1.8 s.
        let mut arrivals = Vec::new();
        for burst in (-20_000..0).step_by(2_000) {
            arrivals.extend((0..7).map(|i| burst + i * 30));
        }
        let learned = learn(&arrivals, 20_000);
        assert_eq!(learned.count, 69);
        // Weighted by time, even the median is a silence between bursts.
        assert_eq!(learned.p50_ms, Some(1_820));
        assert_eq!(learned.max_ms, Some(1_820));
        assert_eq!(learned.p99_ms, Some(1_820));
    }

    #[test]
    fn the_generator_is_uniform_enough_and_repeatable() {
        let draw = |seed| {
            let mut r = Random(seed);
            (0..10_000).map(|_| r.unit()).collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        let mean = a.iter().sum::<f64>() / a.len() as f64;
        assert!((0.48..0.52).contains(&mean), "{mean}");
        assert!(a.iter().all(|x| (0.0..1.0).contains(x)));
    }
}
