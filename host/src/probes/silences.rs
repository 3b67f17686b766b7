//! The silences between requests, learned while the app serves.
//!
//! Each learning sample brings the moments of the latest arrival on each
//! connection (for one that closed since the previous sample, the moment
//! its exchange ended, which no arrival on it came after); put together
//! across connections they are the arrivals, and the gaps between
//! consecutive ones are the silences. Undersampling (two requests on one
//! connection between samples, a connection that came and went without a
//! trace) only merges gaps. The drain times the silence in progress by the
//! same clocks, so what is learned here is what it will see.
//!
//! Statistics are weighted by time: p99 is the length within which 99% of
//! the silent time fell. Bursts of quick requests then do not drag it down:
//! a burst of 7 requests every 2 s has p99 ≈ 2 s, not the 0.3 s of the
//! average spacing. Memory is two fixed log-scale histograms that take turns
//! covering the recent past.

use std::time::{Duration, Instant};

use serde::Serialize;

use lameduck_core::millis;

/// Watching time each histogram covers before it is replaced: the
/// statistics span the last 5 to 10 minutes of serving.
const EPOCH: Duration = Duration::from_secs(300);

/// 8 buckets per octave (values within 12.5%) up to `u32::MAX` ms.
const SUB: u32 = 8;
const BUCKETS: usize = (SUB + (32 - 3) * SUB) as usize;

/// What was learned while serving about the silences between requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Silences {
    /// How long the app was watched serving (the span the statistics cover:
    /// the last 5 to 10 minutes at most).
    pub watched_ms: u32,
    /// Silences seen: gaps between consecutive requests on any connection.
    pub count: u32,
    /// Time-weighted median: half of the silent time fell in silences no
    /// longer than this. `None` until a silence was seen.
    pub p50_ms: Option<u32>,
    /// Time-weighted 99th percentile: 99% of the silent time fell in
    /// silences no longer than this (rounded up, by at most 12.5%).
    pub p99_ms: Option<u32>,
    /// The longest silence.
    pub max_ms: Option<u32>,
}

/// Gaps by length, log-scale.
#[derive(Clone)]
struct Histogram {
    counts: [u32; BUCKETS],
    /// Milliseconds of silence in each bucket (at least 1 per gap, so gaps
    /// shorter than a millisecond still weigh).
    weights: [u64; BUCKETS],
    max: Option<u32>,
    watched: Duration,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: [0; BUCKETS],
            weights: [0; BUCKETS],
            max: None,
            watched: Duration::ZERO,
        }
    }
}

fn bucket(ms: u32) -> usize {
    if ms < SUB {
        return ms as usize;
    }
    let octave = 31 - ms.leading_zeros(); // >= 3
    let sub = (ms >> (octave - 3)) - SUB;
    (SUB + (octave - 3) * SUB + sub) as usize
}

/// The largest value in `index`'s bucket.
fn bucket_top(index: usize) -> u32 {
    let index = index as u32;
    if index < SUB {
        return index;
    }
    let octave = (index - SUB) / SUB + 3;
    let sub = (index - SUB) % SUB;
    let top = (u64::from(SUB + sub + 1) << (octave - 3)) - 1;
    top.min(u64::from(u32::MAX)) as u32
}

impl Histogram {
    fn record(&mut self, gap: Duration) {
        let ms = millis(gap);
        let i = bucket(ms);
        self.counts[i] += 1;
        self.weights[i] += u64::from(ms.max(1));
        self.max = self.max.max(Some(ms));
    }
}

/// The learning state of one `connections` probe.
#[derive(Default)]
pub(super) struct SilenceLog {
    /// Boxed: a few KiB, kept off the stack.
    epochs: Box<[Histogram; 2]>,
    current: usize,
    /// The latest arrival known, where the next silence starts.
    last_arrival: Option<Instant>,
    /// When the previous learning sample was taken.
    last_sample: Option<Instant>,
}

impl SilenceLog {
    /// One learning sample taken at `now`: `arrivals`, the moments of
    /// requests newly seen since the previous sample (in any order), and
    /// whether some activity was seen whose moment is unknown (`unseen`: a
    /// connection that came and went, one that closed).
    pub fn observe(&mut self, now: Instant, arrivals: &mut [Instant], unseen: bool) {
        arrivals.sort_unstable();
        let Some(since) = self.last_sample.replace(now) else {
            // Nothing to measure against yet: only where silence starts.
            self.last_arrival = arrivals.last().copied();
            return;
        };
        self.watch(now.saturating_duration_since(since));
        if arrivals.is_empty() && unseen {
            // Arrivals somewhere in (since, now]: the silence before ended
            // by `now` at the latest and the next began at `since` at the
            // earliest, so both are measured long, never short.
            if let Some(last) = self.last_arrival {
                self.record(now.saturating_duration_since(last));
            }
            self.last_arrival = Some(since);
            return;
        }
        // Unseen activity beside seen arrivals could only split the gaps
        // measured here: they stay long, never short, without it.
        for &at in arrivals.iter() {
            match self.last_arrival {
                // Requests within the same millisecond have a silence of 0.
                Some(last) if at >= last => self.record(at - last),
                Some(_) => continue,
                None => {}
            }
            self.last_arrival = Some(at);
        }
    }

    fn watch(&mut self, span: Duration) {
        if self.epochs[self.current].watched >= EPOCH {
            self.current ^= 1;
            self.epochs[self.current] = Histogram::default();
        }
        self.epochs[self.current].watched += span;
    }

    fn record(&mut self, gap: Duration) {
        self.epochs[self.current].record(gap);
    }

    /// The statistics over the recent past.
    pub fn silences(&self) -> Silences {
        let [a, b] = &*self.epochs;
        let count = a.counts.iter().chain(&b.counts).sum::<u32>();
        let total: u64 = a.weights.iter().chain(&b.weights).sum();
        let max = a.max.max(b.max);
        let quantile = |q: f64| -> Option<u32> {
            if count == 0 {
                return None;
            }
            let wanted = (total as f64 * q).ceil() as u64;
            let mut sum = 0;
            let index = (0..BUCKETS).find(|&i| {
                sum += a.weights[i] + b.weights[i];
                sum >= wanted
            })?;
            Some(bucket_top(index).min(max?))
        };
        Silences {
            watched_ms: millis(a.watched + b.watched),
            count,
            p50_ms: quantile(0.5),
            p99_ms: quantile(0.99),
            max_ms: max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn buckets_cover_every_value_within_an_eighth() {
        for ms in [
            0,
            1,
            7,
            8,
            9,
            15,
            16,
            17,
            100,
            1_000,
            2_000,
            65_535,
            u32::MAX,
        ] {
            let i = bucket(ms);
            assert!(i < BUCKETS, "{ms}");
            let top = bucket_top(i);
            assert!(
                top >= ms && u64::from(top) <= u64::from(ms) * 9 / 8 + 1,
                "{ms} -> {top}"
            );
            if i > 0 {
                assert!(bucket_top(i - 1) < ms, "{ms}");
            }
        }
    }

    /// Learning samples every `every` over `arrivals` (offsets from start),
    /// each sample seeing the arrivals since the previous one.
    fn learn(arrivals: &[Duration], every: Duration, until: Duration) -> Silences {
        let start = Instant::now();
        let mut log = SilenceLog::default();
        let mut t = Duration::ZERO;
        let mut next = 0;
        while t <= until {
            let mut seen: Vec<Instant> = arrivals[next..]
                .iter()
                .take_while(|a| **a <= t)
                .map(|a| start + *a)
                .collect();
            next += seen.len();
            log.observe(start + t, &mut seen, false);
            t += every;
        }
        log.silences()
    }

    #[test]
    fn bursts_of_seven_every_two_seconds_have_two_second_silences() {
        // 7 requests 50 ms apart, every 2 s, for a minute; every arrival
        // seen (one connection each, say), sampled every 500 ms.
        let arrivals: Vec<Duration> = (0..30u32)
            .flat_map(|burst| (0..7u32).map(move |i| MS * (burst * 2_000 + i * 50)))
            .collect();
        let s = learn(&arrivals, 500 * MS, 60_000 * MS);
        assert_eq!(s.count, 30 * 7 - 1);
        assert_eq!(s.max_ms, Some(1_700));
        assert_eq!(s.p99_ms, Some(1_700));
        assert_eq!(s.p50_ms, Some(1_700));
        assert_eq!(s.watched_ms, 60_000);
    }

    #[test]
    fn one_arrival_per_sample_only_overestimates() {
        // Steady 10 ms spacing, but a sample only sees one arrival per
        // connection: with one connection, the latest of each 250 ms.
        let start = Instant::now();
        let mut log = SilenceLog::default();
        for k in 0..=40u32 {
            let now = start + 250 * MS * k;
            let mut latest = vec![now - 5 * MS];
            log.observe(now, &mut latest, false);
        }
        let s = log.silences();
        assert_eq!((s.count, s.max_ms, s.p99_ms), (40, Some(250), Some(250)));
    }

    #[test]
    fn activity_at_unknown_moments_is_measured_long() {
        let start = Instant::now();
        let mut log = SilenceLog::default();
        log.observe(start, &mut [start], false);
        // Something between 500 and 1000 ms: the silence is taken as 1 s.
        log.observe(start + 500 * MS, &mut [], false);
        log.observe(start + 1_000 * MS, &mut [], true);
        // And the next one as starting at 500 ms.
        log.observe(start + 1_500 * MS, &mut [start + 1_400 * MS], false);
        let s = log.silences();
        assert_eq!((s.count, s.max_ms), (2, Some(1_000)));
        assert_eq!(s.p50_ms, Some(1_000));
    }

    #[test]
    fn nothing_learned_is_none() {
        let start = Instant::now();
        let mut log = SilenceLog::default();
        log.observe(start, &mut [], false);
        log.observe(start + 500 * MS, &mut [], false);
        let s = log.silences();
        assert_eq!(
            s,
            Silences {
                watched_ms: 500,
                ..Silences::default()
            }
        );
    }

    #[test]
    fn old_epochs_are_forgotten() {
        let start = Instant::now();
        let mut log = SilenceLog::default();
        let mut t = start;
        log.observe(t, &mut [t], false);
        // A 60 s silence once, then 1 s silences for 11 minutes.
        t += 60_000 * MS;
        log.observe(t, &mut [t], false);
        for _ in 0..660 {
            t += 1_000 * MS;
            log.observe(t, &mut [t], false);
        }
        let s = log.silences();
        assert_eq!(s.max_ms, Some(1_000));
        assert!(s.watched_ms <= 600_000 && s.watched_ms >= 300_000, "{s:?}");
    }
}
