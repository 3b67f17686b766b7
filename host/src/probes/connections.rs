//! `connections`: the app's TCP traffic, per connection, from netlink
//! `sock_diag` with `tcp_info` in the pod's network namespace, and exact
//! accept counts from the namespace's `PassiveOpens`. Where netlink is
//! refused, `/proc/net/tcp` instead, and the reading says so.
//!
//! Connections are told apart across samples by the kernel's socket cookie,
//! so a connection is new when its cookie was not in the previous sample.
//! Accepts are counted from `PassiveOpens`, which sees every handshake in
//! the namespace; those known not to be the app's (a new socket on another
//! port or an excluded one, TIME_WAIT included; the admin server's own
//! count) are taken off. An accept whose socket came and went unseen on
//! another port cannot be told from the app's, and is counted: being
//! conservative only makes the drain wait longer.
//!
//! What a sample costs grows with what happened, not with the node: where
//! nothing happened on TCP since the last dump (the namespace's counters, a
//! read of a small file), a learning sample takes none; where no
//! connection was accepted, the known ones are looked up one by one; only
//! then is the kernel's table walked, with a filter on the app's ports.
//! Sockets in TIME_WAIT, which date the closes between samples and pile up
//! by the thousand where the app is served without keep-alive, are asked
//! for apart, at every sample of a drain but only once a second while
//! learning: [`closes`]. What one connection is at a look is [`look`]'s.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use netlink_packet_sock_diag::inet::StateFlags;

use super::app_ports::AppPorts;
use super::exclusions::{Agent, Exclude, Exclusions, Own, Reason};
use super::silences::SilenceLog;
use super::snmp::{Snmp, TcpCounters};
use super::sockets::{DumpError, Family, SockDiag, Socket, state};
use super::traffic::{Evidence, Excluded, Traffic};
use super::{Sample, proc_net_tcp};
use lameduck_core::ProbeValue;
use lameduck_core::millis;

mod closes;
mod look;

use closes::Closes;
use look::{Class, Look, Owes, Seen, owes};

/// The most sockets looked up one by one rather than dumped: a lookup costs
/// the kernel a hash lookup and an answer, a dump a walk of its whole table
/// (262,144 buckets on a node with a few GiB).
const LOOK_UP_AT_MOST: usize = 256;

/// While nothing happens on TCP, how long a learning sample may reuse the
/// last dump's reading if a clock may change it.
const STALE: Duration = Duration::from_secs(1);

/// `connections: { ports: [8080], exclude: { peers: [...], ports: [...] },
/// long_lived: 10s }`; no ports: the app's own listening ports.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(default)]
    pub ports: Vec<u16>,
    #[serde(default)]
    pub exclude: Exclude,
    /// How old a connection that streams must be to count as long-lived
    /// (a WebSocket, an event stream) rather than an answer in flight.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "long_lived",
        serialize_with = "show_long_lived"
    )]
    pub long_lived: Option<Duration>,
}

fn long_lived<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(d)?;
    lameduck_core::parse_duration_ms(&text)
        .map(|ms| Some(Duration::from_millis(ms.into())))
        .ok_or_else(|| {
            serde::de::Error::custom(format!("`{text}` is not a duration (examples: 10s, 1m)"))
        })
}

fn show_long_lived<S: serde::Serializer>(age: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&lameduck_core::show_duration(age.unwrap_or(LONG_LIVED)))
}

/// The age from which a connection that streams is long-lived, by default.
pub const LONG_LIVED: Duration = Duration::from_secs(10);

/// Why a `connections` reading failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionsError {
    /// Netlink was refused and the fallback could not be read either.
    #[error("{0}")]
    Table(std::io::Error),
}

/// The `connections` probe.
pub struct ConnectionsProbe {
    ports: AppPorts,
    exclusions: Exclusions,
    own: Own,
    /// From what age a connection that streams is long-lived.
    long_lived: Duration,
    /// The app's ports on which calls were seen to overlap on one
    /// connection (HTTP/2, gRPC).
    multiplexed: HashSet<u16>,
    source: Source,
    /// Whether dumps ask the kernel for the sockets on watched ports only.
    kernel_filter: bool,
    sockets: Vec<Socket>,
    /// What each server-side socket of the previous sample looked like.
    seen: HashMap<u64, Seen>,
    next: HashMap<u64, Seen>,
    previous: Option<Previous>,
    /// Families that had server-side connections at the previous sample:
    /// walked again even if their listener is gone.
    served: [bool; 2],
    /// Families whose connections the latest dump walked.
    walked: [bool; 2],
    last_request: Option<Instant>,
    last_accept: Option<Instant>,
    /// The longest any request was seen waiting for its answer.
    longest_wait: Option<Duration>,
    closes: Closes,
    silences: SilenceLog,
    snmp: Snmp,
    /// The latest reading from a dump, and the namespace's counters read
    /// just before it: while they stay the same, so would a dump.
    last: Option<(Traffic, TcpCounters)>,
    /// Learning samples that needed no dump.
    skipped: u64,
    // Scratch space kept between samples.
    arrivals: Vec<Instant>,
    listening: HashSet<u16>,
    own_ports: HashSet<u16>,
    app_ports: Vec<u16>,
    watched: Vec<u16>,
    /// The sockets of the last dump, and the namespace's `PassiveOpens`
    /// read before it: while that stays the same, no connection is new, and
    /// looking each of them up tells what a dump would.
    known: Vec<Socket>,
    dumped_opens: Option<u64>,
    asking: Vec<Socket>,
    /// Samples that looked sockets up rather than dumping them.
    looked_up: u64,
    /// The TIME_WAIT sockets of the latest read of them.
    time_waits: Vec<Socket>,
    /// Learning samples that read the TIME_WAIT sockets.
    time_wait_reads: u64,
}

enum Source {
    /// Netlink, with the socket once opened (`None` after an error: a
    /// fresh one is opened next time).
    SockDiag(Option<SockDiag>),
    /// Netlink was refused.
    ProcNetTcp,
}

struct Previous {
    at: Instant,
    evidence: Evidence,
    passive_opens: Option<u64>,
    admin_accepts: u64,
    local_connects: u64,
}

/// What one pass over the sockets found.
#[derive(Default)]
struct Tally {
    open: u32,
    in_flight: u32,
    streaming: u32,
    unsure: u32,
    long_lived: u32,
    long_lived_oldest: Option<Duration>,
    new: u32,
    new_admin: u32,
    new_own: u32,
    new_other_excluded: u32,
    latest_arrival: Option<Instant>,
    /// Activity at a moment not known (a connection closing, a queue
    /// without `tcp_info`): timed at the sample, as late as it can be.
    unseen: bool,
    excluded: Excluded,
}

impl ConnectionsProbe {
    /// Watches `ports`, or, if empty, whatever the app's process group
    /// listens on, leaving out what `exclude` and `agent` say is not the
    /// app's traffic.
    pub fn new(ports: Vec<u16>, app_pgid: Option<i32>, exclude: &Exclude, agent: &Agent) -> Self {
        ConnectionsProbe {
            ports: AppPorts::new(ports, app_pgid),
            exclusions: Exclusions::new(exclude, agent),
            own: agent.own.clone(),
            long_lived: LONG_LIVED,
            multiplexed: HashSet::new(),
            source: Source::SockDiag(None),
            kernel_filter: true,
            sockets: Vec::new(),
            seen: HashMap::new(),
            next: HashMap::new(),
            previous: None,
            served: [false; 2],
            walked: [false; 2],
            last_request: None,
            last_accept: None,
            longest_wait: None,
            closes: Closes::default(),
            silences: SilenceLog::default(),
            snmp: Snmp::new(),
            last: None,
            skipped: 0,
            arrivals: Vec::new(),
            listening: HashSet::new(),
            own_ports: HashSet::new(),
            app_ports: Vec::new(),
            watched: Vec::new(),
            known: Vec::new(),
            dumped_opens: None,
            asking: Vec::new(),
            looked_up: 0,
            time_waits: Vec::new(),
            time_wait_reads: 0,
        }
    }

    /// Counts a connection that streams as long-lived from `age` on.
    pub fn long_lived_from(mut self, age: Duration) -> Self {
        self.long_lived = age;
        self
    }

    /// Reads `/proc/net/tcp` from now on, as where netlink is refused (for
    /// tests and benchmarks).
    pub fn fall_back(&mut self) {
        self.source = Source::ProcNetTcp;
    }

    /// Has the kernel return every socket at every sample, filtered here,
    /// as before it filtered by port and sockets were looked up (for
    /// benchmarks).
    pub fn without_kernel_filter(&mut self) {
        self.kernel_filter = false;
    }

    /// Whether the kernel filters this probe's dumps by port (`false` where
    /// it refused a filter: the sockets are then filtered here).
    pub fn kernel_filtered(&self) -> bool {
        matches!(&self.source, Source::SockDiag(Some(diag)) if diag.filtered())
    }

    /// A sample taken while serving: learns the silences between requests.
    /// The reading is the latest value too.
    ///
    /// The namespace's TCP counters first, a read of a small file: where no
    /// segment came in or went out and nothing was accepted since the last
    /// dump, a dump would find the same sockets with the same clocks, so
    /// none is taken and the last reading's clocks move on. An idle app
    /// costs that read, not a walk of the node's socket table.
    pub fn learn(&mut self) -> ProbeValue {
        let at = Instant::now();
        let counters = self.snmp.read().ok();
        if let Some(traffic) = counters.and_then(|now| self.unchanged(now, at)) {
            self.skipped += 1;
            return value(Ok(traffic));
        }
        value(self.read(at, counters, true))
    }

    /// Learning samples that needed no socket dump.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Samples that looked the known sockets up rather than dumping.
    pub fn looked_up(&self) -> u64 {
        self.looked_up
    }

    /// Learning samples that read the TIME_WAIT sockets.
    pub fn time_wait_reads(&self) -> u64 {
        self.time_wait_reads
    }

    /// The last reading, `at` now, if nothing happened on TCP since:
    /// `counters` are the ones read before its dump.
    fn unchanged(&mut self, counters: TcpCounters, at: Instant) -> Option<Traffic> {
        let (traffic, before) = self.last.as_ref()?;
        let then = self.previous.as_ref()?.at;
        // Without a segment, only the classes a clock decides can change (a
        // paused stream, calls that overlapped, a stream growing old, and
        // all of them under `/proc/net/tcp`): where there are some, a dump
        // at least every `STALE`. A listener that appeared is seen with its
        // first connection, which is segments.
        let clocked =
            traffic.unsure > 0 || traffic.streaming > 0 || traffic.evidence != Evidence::SockDiag;
        if !counters.quiet_since(before)
            || clocked && at.saturating_duration_since(then) >= STALE
            || self.closes.due(at, true)
        {
            return None;
        }
        let mut traffic = traffic.clone();
        let since = |t: Option<Instant>| t.map(|t| millis(at.saturating_duration_since(t)));
        let aged = millis(at.saturating_duration_since(then));
        traffic.accepted = 0;
        traffic.excluded.accepts = 0;
        traffic.since_last_request_ms = since(self.last_request);
        traffic.since_last_accept_ms = since(self.last_accept);
        traffic.long_lived_oldest_ms = traffic
            .long_lived_oldest_ms
            .map(|ms| ms.saturating_add(aged));
        self.arrivals.clear();
        self.closes
            .learn(at, &mut self.arrivals, 0, false, false, &mut self.silences);
        traffic.silences = self.silences.silences();
        Some(traffic)
    }

    /// One reading, in the calling thread's network namespace; `learning`
    /// while the app serves.
    pub fn traffic(&mut self, learning: bool) -> Result<Traffic, ConnectionsError> {
        let counters = self.snmp.read().ok();
        self.read(Instant::now(), counters, learning)
    }

    /// A reading from a dump taken now (`at`), after the namespace's
    /// counters were read (`counters`).
    fn read(
        &mut self,
        at: Instant,
        counters: Option<TcpCounters>,
        learning: bool,
    ) -> Result<Traffic, ConnectionsError> {
        self.last = None;
        // While learning, accepts need no dump until the samples held for
        // them are due (at the first sample without an accept, or a second
        // on): the known sockets are looked up, and the new ones are owed.
        let opens = counters.map(|c| c.passive_opens);
        let quiet = self
            .previous
            .as_ref()
            .is_some_and(|p| p.passive_opens.is_some() && p.passive_opens == opens);
        let owe_accepts = learning && !self.closes.due(at, quiet);
        let evidence = self.dump(opens, owe_accepts)?;
        // The agent's own counts before the namespace's: a connection of the
        // agent's in between is counted as the app's this time (safe), and
        // taken off the next.
        let admin_accepts = self.own.admin_accepts();
        let local_connects = self.own.local_connects();
        // Read after the dump: an accept in between is counted now and its
        // socket seen (and taken off, if excluded) next time, never the
        // other way round.
        let passive_opens = self.snmp.read().ok().map(|c| c.passive_opens);
        self.own.client_ports(&mut self.own_ports);
        self.listening.clear();
        self.listening.extend(
            self.sockets
                .iter()
                .filter(|s| s.state == state::LISTEN)
                .map(|s| s.local.port()),
        );
        self.app_ports.clear();
        let ports = self.ports.get(&self.sockets);
        self.app_ports.extend_from_slice(ports);

        // Sockets are "new" only against a previous sample of the same kind.
        let since = self
            .previous
            .as_ref()
            .filter(|p| p.evidence == evidence)
            .map(|p| p.at);
        let mut tally = self.tally(at, since);
        // The TIME_WAIT sockets: at every sample of a drain, and while
        // learning where the samples held are due.
        let settled = !owe_accepts || evidence != Evidence::SockDiag;
        if evidence == Evidence::SockDiag && settled {
            if let Err(e) = self.time_waits(at, since, &mut tally) {
                tracing::warn!("connections: {e}; closes since the last sample are not dated");
            }
            self.time_wait_reads += u64::from(learning);
        }

        let mut excluded = tally.excluded;
        let accepted = match &self.previous {
            None => 0,
            Some(previous) => {
                // The admin server counts its accepts, and the agent its
                // connections to the app, even those whose socket came and
                // went unseen.
                let delta = |now: u64, then: u64| u32::try_from(now.saturating_sub(then));
                let by_admin = delta(admin_accepts, previous.admin_accepts).unwrap_or(u32::MAX);
                let by_agent = delta(local_connects, previous.local_connects).unwrap_or(u32::MAX);
                excluded.accepts = tally.new_admin.max(by_admin)
                    + tally.new_own.max(by_agent)
                    + tally.new_other_excluded;
                let counted =
                    previous
                        .passive_opens
                        .zip(passive_opens)
                        .map_or(0, |(before, now)| {
                            now.saturating_sub(before)
                                .saturating_sub(excluded.accepts.into())
                        });
                u32::try_from(counted).unwrap_or(u32::MAX).max(tally.new)
            }
        };
        // An accept seen only in the counter came and went unseen.
        let unseen = tally.unseen || accepted > tally.new;

        let latest = if unseen {
            Some(at)
        } else {
            tally.latest_arrival
        };
        self.last_request = self.last_request.max(latest);
        if accepted > 0 {
            self.last_accept = Some(at);
        }
        if learning {
            let owed = accepted.saturating_sub(tally.new);
            self.closes.learn(
                at,
                &mut self.arrivals,
                owed,
                tally.unseen,
                settled,
                &mut self.silences,
            );
        } else {
            self.closes.observe_held(&mut self.silences);
        }
        self.previous = Some(Previous {
            at,
            evidence,
            passive_opens,
            admin_accepts,
            local_connects,
        });
        let since = |t: Option<Instant>| t.map(|t| millis(at.saturating_duration_since(t)));
        let traffic = Traffic {
            evidence,
            open: tally.open,
            in_flight: tally.in_flight,
            streaming: tally.streaming,
            unsure: tally.unsure,
            idle: tally.open - tally.in_flight - tally.long_lived,
            long_lived: tally.long_lived,
            long_lived_oldest_ms: tally.long_lived_oldest.map(millis),
            multiplexed: self.app_ports.iter().any(|p| self.multiplexed.contains(p)),
            accepted,
            since_last_request_ms: since(self.last_request),
            since_last_accept_ms: since(self.last_accept),
            silences: self.silences.silences(),
            excluded,
        };
        self.last = counters.map(|counters| (traffic.clone(), counters));
        Ok(traffic)
    }

    /// Fills `self.sockets` from netlink, or from `/proc/net/tcp` where
    /// netlink fails. `opens`: the namespace's `PassiveOpens`, read before.
    fn dump(
        &mut self,
        opens: Option<u64>,
        owe_accepts: bool,
    ) -> Result<Evidence, ConnectionsError> {
        self.sockets.clear();
        if self.look_up(opens, owe_accepts) {
            return Ok(Evidence::SockDiag);
        }
        let evidence = self.dump_all();
        let dumped = matches!(evidence, Ok(Evidence::SockDiag));
        self.dumped_opens = opens.filter(|_| dumped);
        self.known.clear();
        if dumped {
            self.known.extend_from_slice(&self.sockets);
        }
        evidence
    }

    /// Where no connection was accepted since the last dump (`opens` as
    /// then), or the new ones can be owed (`owe_accepts`), the sockets it
    /// found, each looked up again: the listeners as they were (a new one
    /// is seen with its first connection), the others as they are now.
    /// `false` where that cannot stand for a dump: one is gone (a dump
    /// would show what became of it), or they are too many for lookups to
    /// cost less than the walk of a dump.
    fn look_up(&mut self, opens: Option<u64>, owe_accepts: bool) -> bool {
        let Source::SockDiag(Some(diag)) = &mut self.source else {
            return false;
        };
        if !self.kernel_filter
            || opens.is_none()
            || opens != self.dumped_opens && !owe_accepts
            || self.known.len() > LOOK_UP_AT_MOST
        {
            return false;
        }
        let (listening, connected): (Vec<&Socket>, Vec<&Socket>) =
            self.known.iter().partition(|s| s.state == state::LISTEN);
        self.sockets.extend(listening.into_iter().cloned());
        self.asking.clear();
        self.asking.extend(connected.into_iter().cloned());
        if self.asking.is_empty() {
            self.looked_up += 1;
            return true;
        }
        match diag.look_up(&self.asking, &mut self.sockets) {
            Ok(true) => {
                // The next lookups ask for what they are now.
                self.known.clone_from(&self.sockets);
                self.looked_up += 1;
                true
            }
            Ok(false) | Err(_) => {
                self.sockets.clear();
                false
            }
        }
    }

    /// A dump of every socket on the watched ports (the kernel filtering).
    fn dump_all(&mut self) -> Result<Evidence, ConnectionsError> {
        // The ports known before the dump; the listeners' are added to
        // them once dumped.
        self.watched.clear();
        self.watched.extend_from_slice(self.ports.known());
        self.watched.extend(self.exclusions.admin_port());
        if let Source::SockDiag(diag) = &mut self.source {
            let watched = self.kernel_filter.then_some(&mut self.watched);
            let result = match diag {
                Some(diag) => Ok(diag),
                None => SockDiag::open().map(|opened| diag.insert(opened)),
            }
            .and_then(|diag| dump_served(diag, self.served, watched, &mut self.sockets));
            match result {
                Ok(walked) => {
                    self.walked = walked;
                    return Ok(Evidence::SockDiag);
                }
                // Said once, by the controller, when it sees the reading.
                Err(DumpError::Refused(_)) => self.source = Source::ProcNetTcp,
                Err(e) => {
                    tracing::warn!("connections: {e}; reading /proc/net/tcp this time");
                    *diag = None;
                }
            }
            self.sockets.clear();
        }
        proc_net_tcp::read(&mut self.sockets).map_err(ConnectionsError::Table)?;
        Ok(Evidence::ProcNetTcp)
    }

    /// One pass over the server side of the namespace's connections:
    /// counts, exclusions, and the arrivals seen since the previous sample
    /// (into `self.arrivals`), taken `since` if it is comparable.
    fn tally(&mut self, at: Instant, since: Option<Instant>) -> Tally {
        let mut tally = Tally::default();
        self.arrivals.clear();
        self.next.clear();
        self.served = [false; 2];
        let admin_port = self.exclusions.admin_port();
        for s in &self.sockets {
            if s.state == state::LISTEN {
                continue;
            }
            let port = s.local.port();
            let on_app_port = self.app_ports.contains(&port);
            // Client sockets (the agent's own probes among them) are seen
            // from their server side.
            if !on_app_port && !self.listening.contains(&port) && Some(port) != admin_port {
                continue;
            }
            self.served[s.family() as usize] = true;
            let before = self.seen.get(&s.key).copied();
            let new = since.is_some() && before.is_none();
            let open = matches!(s.state, state::ESTABLISHED | state::CLOSE_WAIT);
            let look = Look::at(s, before, at);
            let (read_at, recv_at) = (look.read_at, look.seen.recv_at);
            let previous_arrival = before.and_then(|b| b.recv_at);
            self.next.insert(s.key, look.seen);
            let reason = self
                .exclusions
                .reason(s.local, s.remote, on_app_port, &self.own_ports);
            // Accepted while learning samples looked the known sockets up
            // rather than dumping (and were held), and not heard from
            // since: that earlier sample's accept (and arrival).
            let held = match (new, since, recv_at) {
                (true, Some(since), Some(t)) if open && t <= since => {
                    self.closes.held_for(t, true).map(|held| (held, t))
                }
                _ => None,
            };
            if let Some(reason) = reason {
                if open {
                    let count = match reason {
                        Reason::Admin => &mut tally.excluded.admin,
                        Reason::OwnProbe => &mut tally.excluded.own_probes,
                        Reason::Port => &mut tally.excluded.ports,
                        Reason::Peer => &mut tally.excluded.peers,
                        Reason::OtherListener => &mut tally.excluded.other_listeners,
                    };
                    *count += 1;
                }
                // The admin server's and the agent's own accepts are
                // counted by them, sample by sample; others, here.
                match (new, reason, held) {
                    (false, ..) => {}
                    (true, Reason::Admin, _) => tally.new_admin += 1,
                    (true, Reason::OwnProbe, _) => tally.new_own += 1,
                    (true, _, Some((held, t))) => self.closes.settle(held, t, true, false),
                    (true, _, None) => tally.new_other_excluded += 1,
                }
                continue;
            }
            tally.new += u32::from(new && held.is_none());
            if open {
                tally.open += 1;
                let owes = owes(s);
                let waited = read_at.map(|t| at.saturating_duration_since(t));
                if owes == Owes::Yes && look.seen.sends < 2 {
                    self.longest_wait = self.longest_wait.max(waited);
                }
                if look.overlapped {
                    self.multiplexed.insert(port);
                }
                let multiplexed = self.multiplexed.contains(&port);
                let class = look.class(
                    owes,
                    waited,
                    self.longest_wait,
                    multiplexed,
                    self.long_lived,
                );
                match class {
                    Class::InFlight => tally.in_flight += 1,
                    Class::Streaming => {
                        (tally.in_flight, tally.streaming) =
                            (tally.in_flight + 1, tally.streaming + 1)
                    }
                    Class::Unsure => {
                        (tally.in_flight, tally.unsure) = (tally.in_flight + 1, tally.unsure + 1)
                    }
                    Class::LongLived => {
                        tally.long_lived += 1;
                        tally.long_lived_oldest = tally.long_lived_oldest.max(Some(look.age));
                        // What a long-lived connection receives (a ping, a
                        // message) is not a request the drain waits for.
                        continue;
                    }
                    Class::Idle => {}
                }
                match recv_at {
                    Some(t) => {
                        // The time since the last request errs short.
                        tally.latest_arrival = tally.latest_arrival.max(read_at);
                        if let Some((held, t)) = held {
                            self.closes.settle(held, t, true, true);
                        } else if previous_arrival.is_none_or(|then| t > then) {
                            self.arrivals.push(t);
                        }
                    }
                    // Without tcp_info, a queue is the only sign of a request.
                    None => tally.unseen |= s.recv_queue > 0 || s.send_queue > 0,
                }
            } else if let Some(since) =
                since.filter(|_| before.is_none_or(|b| b.state == state::ESTABLISHED))
            {
                // Closing, and new or serving at the previous sample: a
                // request may have come and been answered since. Its
                // socket's clocks tell when; once in TIME_WAIT (here only
                // as looked up: dumps read those apart), no later than the
                // exchange ended.
                let arrival = match (recv_at, s.time_wait_left_ms) {
                    (Some(t), _) => previous_arrival.is_none_or(|then| t > then).then_some(t),
                    (None, Some(left)) => Some(self.closes.dated(s.key, left, at)),
                    (None, None) => {
                        tally.unseen = true;
                        None
                    }
                };
                if let Some(t) = arrival.map(|t| t.clamp(since, at)) {
                    tally.latest_arrival = tally.latest_arrival.max(Some(t));
                    self.arrivals.push(t);
                }
            }
        }
        // Gone from this dump since the previous sample: in TIME_WAIT (read
        // apart), or closed.
        if let Some(since) = since {
            for (key, was) in self
                .seen
                .iter()
                .filter(|(key, _)| !self.next.contains_key(key))
            {
                self.closes
                    .gone(*key, since, was.state == state::ESTABLISHED);
            }
        }
        std::mem::swap(&mut self.seen, &mut self.next);
        tally
    }

    /// Reads the TIME_WAIT sockets on the watched ports and dates the
    /// closes among them not dated before, each as late as it can have
    /// been: those after `since` into this sample's `tally` (accepts and
    /// arrivals, as if the dump had held them), the earlier ones into the
    /// learning samples that wait for them.
    fn time_waits(
        &mut self,
        at: Instant,
        since: Option<Instant>,
        tally: &mut Tally,
    ) -> Result<(), DumpError> {
        let Source::SockDiag(Some(diag)) = &mut self.source else {
            return Ok(());
        };
        self.time_waits.clear();
        let ports = if self.kernel_filter {
            &self.watched[..]
        } else {
            &[]
        };
        for family in Family::ALL {
            if self.walked[family as usize] {
                diag.dump(family, &StateFlags::TIME_WAIT, ports, &mut self.time_waits)?;
            }
        }
        let admin_port = self.exclusions.admin_port();
        self.closes.begin(&self.time_waits);
        for s in &self.time_waits {
            let port = s.local.port();
            let on_app_port = self.app_ports.contains(&port);
            if !on_app_port && !self.listening.contains(&port) && Some(port) != admin_port {
                continue;
            }
            // Nothing to date against at the first sample.
            let (Some(close), Some(since)) = (self.closes.date(s, at), since) else {
                continue;
            };
            let reason = self
                .exclusions
                .reason(s.local, s.remote, on_app_port, &self.own_ports);
            let came_and_went = close.opened.is_none();
            let floor = close.opened.or(self.closes.floor()).unwrap_or(since);
            let t = close.at.clamp(floor.min(at), at);
            if let Some(held) = self.closes.held_for(t, came_and_went) {
                self.closes.settle(held, t, came_and_went, reason.is_none());
                continue;
            }
            if came_and_went {
                match reason {
                    None => tally.new += 1,
                    Some(Reason::Admin) => tally.new_admin += 1,
                    Some(Reason::OwnProbe) => tally.new_own += 1,
                    Some(_) => tally.new_other_excluded += 1,
                }
            }
            if reason.is_none() {
                let t = t.max(since);
                tally.latest_arrival = tally.latest_arrival.max(Some(t));
                self.arrivals.push(t);
            }
        }
        self.closes.end();
        Ok(())
    }
}

impl Sample for ConnectionsProbe {
    async fn sample(&mut self) -> ProbeValue {
        value(self.traffic(false))
    }
}

fn value(reading: Result<Traffic, ConnectionsError>) -> ProbeValue {
    match reading {
        Ok(traffic) => ProbeValue::Connections(traffic.to_connections()),
        Err(e) => ProbeValue::Failed(e.to_string()),
    }
}

/// The listeners of both families (cheap), then the connections of the
/// families that have a listener or had server-side connections: walking a
/// family's connections costs a pass over the node's whole table, so a
/// family nothing listens on is skipped (most pods listen on one).
///
/// With `watched` (the app's and the admin server's ports), the kernel
/// returns the connections on those ports and the listeners' only: the
/// ones `tally` looks at, so the node's other sockets cost a test each.
///
/// Returns the families whose connections were walked. TIME_WAIT sockets
/// are left out: [`ConnectionsProbe::time_waits`] reads them apart.
fn dump_served(
    diag: &mut SockDiag,
    served: [bool; 2],
    watched: Option<&mut Vec<u16>>,
    out: &mut Vec<Socket>,
) -> Result<[bool; 2], DumpError> {
    for family in Family::ALL {
        diag.dump(family, &StateFlags::LISTEN, &[], out)?;
    }
    let ports = match watched {
        Some(watched) => {
            watched.extend(out.iter().map(|s| s.local.port()));
            &watched[..]
        }
        None => &[],
    };
    let listened = |family| out.iter().any(|s| s.family() == family);
    let walk = Family::ALL.map(|family| served[family as usize] || listened(family));
    for family in Family::ALL {
        if walk[family as usize] {
            diag.dump(family, &connected_states(), ports, out)?;
        }
    }
    Ok(walk)
}

/// Every state a server-side connection passes through once accepted but
/// TIME_WAIT; not the handshakes (`PassiveOpens` counts those once done).
fn connected_states() -> StateFlags {
    StateFlags::ESTABLISHED
        | StateFlags::FIN_WAIT1
        | StateFlags::FIN_WAIT2
        | StateFlags::CLOSE_WAIT
        | StateFlags::LAST_ACK
        | StateFlags::CLOSING
}

#[cfg(test)]
mod tests;
