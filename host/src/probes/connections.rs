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

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use netlink_packet_sock_diag::inet::StateFlags;

use super::app_ports::AppPorts;
use super::exclusions::{Agent, Exclude, Exclusions, Own, Reason};
use super::silences::SilenceLog;
use super::sockets::{DumpError, Family, SockDiag, Socket, state};
use super::traffic::{Evidence, Excluded, Traffic};
use super::{Sample, proc_net_tcp, snmp};
use lameduck_core::ProbeValue;
use lameduck_core::millis;

/// Two readings of one connection's last arrival this close are the same
/// arrival: more than the kernel's tick (at most 10 ms) plus a dump.
const SAME_ARRIVAL: Duration = Duration::from_millis(15);

/// How long an exchange the clocks cannot order counts as a request in
/// progress: as long as any request was seen to wait for its answer,
/// `LONGEST_UNKNOWN` before any was, never more than `LONGEST_HELD` (a
/// long-lived stream would otherwise have every quick exchange hold the
/// drain until its deadline). `LONGEST_HELD` is also how long a connection
/// where calls are multiplexed stays in flight after it received data: an
/// answer on it does not say every call on it is answered.
const LONGEST_UNKNOWN: Duration = Duration::from_secs(1);
const LONGEST_HELD: Duration = Duration::from_secs(5);

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
    sockets: Vec<Socket>,
    /// What each server-side socket of the previous sample looked like.
    seen: HashMap<u64, Seen>,
    next: HashMap<u64, Seen>,
    previous: Option<Previous>,
    /// Families that had server-side connections at the previous sample:
    /// walked again even if their listener is gone.
    served: [bool; 2],
    last_request: Option<Instant>,
    last_accept: Option<Instant>,
    /// The longest any request was seen waiting for its answer.
    longest_wait: Option<Duration>,
    time_wait: TimeWaitClock,
    silences: SilenceLog,
    // Scratch space kept between samples.
    arrivals: Vec<Instant>,
    listening: HashSet<u16>,
    own_ports: HashSet<u16>,
    app_ports: Vec<u16>,
}

enum Source {
    /// Netlink, with the socket once opened (`None` after an error: a
    /// fresh one is opened next time).
    SockDiag(Option<SockDiag>),
    /// Netlink was refused.
    ProcNetTcp,
}

#[derive(Clone, Copy)]
struct Seen {
    state: u8,
    /// The latest arrival seen on it.
    recv_at: Option<Instant>,
    /// The latest data seen going out of it.
    sent_at: Option<Instant>,
    /// When it was first seen.
    first_seen: Instant,
    /// At how many looks data was seen going out since its last request:
    /// two or more make a stream.
    sends: u8,
    /// Whether it owed an answer at that look: data came in after the
    /// last data went out.
    owed: bool,
    /// Without `tcp_info` (`/proc/net/tcp`): since when its queues have
    /// been seen empty, look after look.
    quiet_since: Option<Instant>,
}

/// What an open connection is, at one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Owes an answer, as its clocks and queues show.
    InFlight,
    /// Sending an answer that streams.
    Streaming,
    /// In flight as far as the agent can tell, safe first: a young stream
    /// that paused, an exchange within one kernel tick, a connection that
    /// multiplexes calls and received data lately.
    Unsure,
    /// Old and streaming: a WebSocket, an event stream, a watch.
    LongLived,
    /// Owes nothing.
    Idle,
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
            sockets: Vec::new(),
            seen: HashMap::new(),
            next: HashMap::new(),
            previous: None,
            served: [false; 2],
            last_request: None,
            last_accept: None,
            longest_wait: None,
            time_wait: TimeWaitClock::default(),
            silences: SilenceLog::default(),
            arrivals: Vec::new(),
            listening: HashSet::new(),
            own_ports: HashSet::new(),
            app_ports: Vec::new(),
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

    /// A sample taken while serving: learns the silences between requests.
    /// The reading is the latest value too.
    pub fn learn(&mut self) -> ProbeValue {
        value(self.traffic(true))
    }

    /// One reading, in the calling thread's network namespace; `learning`
    /// while the app serves.
    pub fn traffic(&mut self, learning: bool) -> Result<Traffic, ConnectionsError> {
        let at = Instant::now();
        let evidence = self.dump()?;
        // The agent's own counts before the namespace's: a connection of the
        // agent's in between is counted as the app's this time (safe), and
        // taken off the next.
        let admin_accepts = self.own.admin_accepts();
        let local_connects = self.own.local_connects();
        // Read after the dump: an accept in between is counted now and its
        // socket seen (and taken off, if excluded) next time, never the
        // other way round.
        let passive_opens = snmp::passive_opens().ok();
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
        let tally = self.tally(at, since);

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
            self.silences.observe(at, &mut self.arrivals, unseen);
        }
        self.previous = Some(Previous {
            at,
            evidence,
            passive_opens,
            admin_accepts,
            local_connects,
        });
        let since = |t: Option<Instant>| t.map(|t| millis(at.saturating_duration_since(t)));
        Ok(Traffic {
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
        })
    }

    /// Fills `self.sockets` from netlink, or from `/proc/net/tcp` where
    /// netlink fails.
    fn dump(&mut self) -> Result<Evidence, ConnectionsError> {
        self.sockets.clear();
        if let Source::SockDiag(diag) = &mut self.source {
            let result = match diag {
                Some(diag) => Ok(diag),
                None => SockDiag::open().map(|opened| diag.insert(opened)),
            }
            .and_then(|diag| dump_served(diag, self.served, &mut self.sockets));
            match result {
                Ok(()) => return Ok(Evidence::SockDiag),
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
                if new {
                    match reason {
                        Reason::Admin => tally.new_admin += 1,
                        Reason::OwnProbe => tally.new_own += 1,
                        _ => tally.new_other_excluded += 1,
                    }
                }
                continue;
            }
            tally.new += u32::from(new);
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
                        if previous_arrival.is_none_or(|then| t > then) {
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
                // socket's clocks tell when; once in TIME_WAIT, no later
                // than the exchange ended.
                let arrival = match (recv_at, s.time_wait_left_ms) {
                    (Some(t), _) => previous_arrival.is_none_or(|then| t > then).then_some(t),
                    (None, Some(left)) => Some(self.time_wait.began(left, at)),
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
        std::mem::swap(&mut self.seen, &mut self.next);
        tally
    }
}

/// One look at a connection, against what it looked like the time before.
struct Look {
    /// What it looks like now.
    seen: Seen,
    /// When data last came in, as read now.
    read_at: Option<Instant>,
    /// Whether data went out since the previous look.
    sending: bool,
    /// Whether data came in again while an answer was owed, with nothing
    /// sent between: calls overlap on this connection.
    overlapped: bool,
    age: Duration,
    /// When it was taken.
    taken: Instant,
}

impl Look {
    fn at(s: &Socket, before: Option<Seen>, at: Instant) -> Look {
        let ago = |ms: u32| at.checked_sub(Duration::from_millis(ms.into()));
        let activity = s.activity;
        let read_at = activity.and_then(|a| ago(a.last_data_recv_ms));
        let sent_read = activity
            .filter(|a| a.bytes_acked > 0 || a.notsent_bytes > 0)
            .and_then(|a| ago(a.last_data_sent_ms));
        // The same moment read again keeps the moment first read (the
        // kernel's clocks tick in 1-10 ms).
        let same = |then: Option<Instant>, now: Option<Instant>| match (then, now) {
            (Some(then), Some(now)) if now <= then + SAME_ARRIVAL => Some(then),
            (_, now) => now,
        };
        let recv_at = same(before.and_then(|b| b.recv_at), read_at);
        let sent_at = same(before.and_then(|b| b.sent_at), sent_read);
        let received = activity.is_some_and(|a| a.bytes_received > 0)
            && before.is_none_or(|b| recv_at > b.recv_at);
        let sending = sent_at.is_some() && before.is_none_or(|b| sent_at > b.sent_at);
        let mut sends = match before {
            Some(b) if !received => b.sends,
            _ => 0,
        };
        if sending && sent_at > recv_at {
            sends = sends.saturating_add(1);
        }
        let owed = recv_at.is_some() && recv_at > sent_at;
        let overlapped = before.is_some_and(|b| b.owed) && received && !sending;
        let first_seen = before.map_or(at, |b| b.first_seen);
        let queued = s.recv_queue > 0 || s.send_queue > 0;
        let quiet_since = match (queued, before.and_then(|b| b.quiet_since)) {
            (true, _) => None,
            (false, since) => Some(since.unwrap_or(at)),
        };
        Look {
            seen: Seen {
                state: s.state,
                recv_at,
                sent_at,
                first_seen,
                sends,
                owed,
                quiet_since,
            },
            read_at,
            sending,
            overlapped,
            age: at.saturating_duration_since(first_seen),
            taken: at,
        }
    }

    /// What the connection is: see [`Class`]. A connection that went on
    /// sending after its request, at two looks or more, streams; a stream
    /// is long-lived once older than `long_lived`, in flight before, and
    /// `unsure` while it pauses (a paused stream cannot be told from an
    /// answer that ended).
    fn class(
        &self,
        owes: Owes,
        waited: Option<Duration>,
        longest: Option<Duration>,
        multiplexed: bool,
        long_lived: Duration,
    ) -> Class {
        // Without `tcp_info`, only the queues tell: a request being answered
        // leaves them empty, as an idle connection does; it is unsure until
        // they have been empty for as long as the agent holds what it
        // cannot see.
        if self.read_at.is_none() && owes == Owes::Yes {
            return match self.seen.quiet_since {
                None => Class::InFlight,
                Some(since) if self.taken.saturating_duration_since(since) >= LONGEST_HELD => {
                    Class::Idle
                }
                Some(_) => Class::Unsure,
            };
        }
        let stream = self.seen.sends >= 2;
        if stream && self.age >= long_lived {
            return Class::LongLived;
        }
        if stream {
            return if self.sending {
                Class::Streaming
            } else {
                Class::Unsure
            };
        }
        match owes {
            Owes::Yes => Class::InFlight,
            Owes::Maybe if in_flight(owes, waited, longest) => Class::Unsure,
            _ if multiplexed && waited.is_some_and(|w| w <= LONGEST_HELD) => Class::Unsure,
            _ => Class::Idle,
        }
    }
}

/// Dates a socket's entry into TIME_WAIT from the time it has left.
#[derive(Default)]
struct TimeWaitClock {
    /// The most a TIME_WAIT socket was seen to have left: how long the
    /// kernel keeps one (60 s in Linux), learned rather than assumed, from
    /// below, so a date is never earlier than it was.
    len: u32,
}

impl TimeWaitClock {
    /// When a socket with `left` ms of TIME_WAIT to go at `at` entered it,
    /// as late as it can have been.
    fn began(&mut self, left: u32, at: Instant) -> Instant {
        self.len = self.len.max(left);
        let ago = Duration::from_millis((self.len - left).into());
        at.checked_sub(ago).unwrap_or(at)
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
fn dump_served(
    diag: &mut SockDiag,
    served: [bool; 2],
    out: &mut Vec<Socket>,
) -> Result<(), DumpError> {
    for family in Family::ALL {
        diag.dump(family, &StateFlags::LISTEN, out)?;
    }
    let listened = |family| out.iter().any(|s| s.family() == family);
    let walk = Family::ALL.map(|family| served[family as usize] || listened(family));
    for family in Family::ALL {
        if walk[family as usize] {
            diag.dump(family, &connected_states(), out)?;
        }
    }
    Ok(())
}

/// Every state a server-side connection passes through once accepted; not
/// the handshakes (`PassiveOpens` counts those once done).
fn connected_states() -> StateFlags {
    StateFlags::ESTABLISHED
        | StateFlags::FIN_WAIT1
        | StateFlags::FIN_WAIT2
        | StateFlags::TIME_WAIT
        | StateFlags::CLOSE_WAIT
        | StateFlags::LAST_ACK
        | StateFlags::CLOSING
}

/// Whether an open connection owes a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owes {
    Yes,
    No,
    /// Data came in and went out within the same kernel tick (1–10 ms): a
    /// quick answer, or a balancer's next request on a pooled connection
    /// sent the moment the previous answer arrived. The clocks cannot tell.
    Maybe,
}

/// Received data not read yet, written data not sent or not acknowledged
/// yet, or data received after the last data sent: owed. Without
/// `tcp_info` this cannot be told: owed.
fn owes(s: &Socket) -> Owes {
    if s.recv_queue > 0 || s.send_queue > 0 {
        return Owes::Yes;
    }
    let Some(a) = s.activity else {
        return Owes::Yes;
    };
    if a.notsent_bytes > 0 {
        return Owes::Yes;
    }
    if a.bytes_received == 0 {
        // Accepted and silent so far (a pre-opened pooled connection).
        return Owes::No;
    }
    // Both times count from the accept until data moves, so a connection
    // that never sent is caught by `bytes_acked` rather than the clock.
    if a.bytes_acked == 0 {
        return Owes::Yes;
    }
    match a.last_data_recv_ms.cmp(&a.last_data_sent_ms) {
        std::cmp::Ordering::Less => Owes::Yes,
        std::cmp::Ordering::Equal => Owes::Maybe,
        std::cmp::Ordering::Greater => Owes::No,
    }
}

/// Whether a connection is waiting for its answer, `waited` after its last
/// arrival, when the longest wait seen so far is `longest`: a `Maybe` is
/// taken as a request in progress for as long as any request has been seen
/// to take, within bounds.
fn in_flight(owes: Owes, waited: Option<Duration>, longest: Option<Duration>) -> bool {
    match owes {
        Owes::Yes => true,
        Owes::No => false,
        Owes::Maybe => waited.is_none_or(|waited| {
            waited <= longest.unwrap_or(LONGEST_UNKNOWN).min(LONGEST_HELD) + SAME_ARRIVAL
        }),
    }
}

#[cfg(test)]
mod tests;
