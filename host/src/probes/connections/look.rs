//! One look at one connection: what it is (in flight, streaming, unsure,
//! long-lived, idle), read from its clocks and queues against what it
//! looked like the look before.

use std::time::{Duration, Instant};

use super::super::sockets::Socket;

/// Two readings of one connection's last arrival this close are the same
/// arrival: more than the kernel's tick (at most 10 ms) plus a dump.
pub(super) const SAME_ARRIVAL: Duration = Duration::from_millis(15);

/// How long an exchange the clocks cannot order counts as a request in
/// progress: as long as any request was seen to wait for its answer,
/// `LONGEST_UNKNOWN` before any was, never more than `LONGEST_HELD` (a
/// long-lived stream would otherwise have every quick exchange hold the
/// drain until its deadline). `LONGEST_HELD` is also how long a connection
/// where calls are multiplexed stays in flight after it received data: an
/// answer on it does not say every call on it is answered.
pub(super) const LONGEST_UNKNOWN: Duration = Duration::from_secs(1);
pub(super) const LONGEST_HELD: Duration = Duration::from_secs(5);

#[derive(Clone, Copy)]
pub(super) struct Seen {
    pub(super) state: u8,
    /// The latest arrival seen on it.
    pub(super) recv_at: Option<Instant>,
    /// The bytes it had received then (`tcp_info`).
    pub(super) received: u64,
    /// The latest data seen going out of it.
    pub(super) sent_at: Option<Instant>,
    /// When it was first seen.
    pub(super) first_seen: Instant,
    /// At how many looks data was seen going out since its last request:
    /// two or more make a stream.
    pub(super) sends: u8,
    /// Whether it owed an answer at that look: data came in after the
    /// last data went out.
    pub(super) owed: bool,
    /// Without `tcp_info` (`/proc/net/tcp`): since when its queues have
    /// been seen empty, look after look.
    pub(super) quiet_since: Option<Instant>,
}

/// What an open connection is, at one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
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

/// One look at a connection, against what it looked like the time before.
pub(super) struct Look {
    /// What it looks like now.
    pub(super) seen: Seen,
    /// When data last came in, as read now.
    pub(super) read_at: Option<Instant>,
    /// Whether data went out since the previous look.
    pub(super) sending: bool,
    /// Whether data came in again while an answer was owed, with nothing
    /// sent between: calls overlap on this connection.
    pub(super) overlapped: bool,
    pub(super) age: Duration,
    /// When it was taken.
    pub(super) taken: Instant,
}

impl Look {
    pub(super) fn at(s: &Socket, before: Option<Seen>, at: Instant) -> Look {
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
        // No byte in since: the same arrival, however its clock reads (a
        // look delayed on a busy node reads it later than it was).
        let bytes = activity.map_or(0, |a| a.bytes_received);
        let recv_at = match before {
            Some(b) if activity.is_some() && b.received == bytes => b.recv_at,
            _ => same(before.and_then(|b| b.recv_at), read_at),
        };
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
                received: bytes,
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
    pub(super) fn class(
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

/// Whether an open connection owes a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owes {
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
pub(super) fn owes(s: &Socket) -> Owes {
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
pub(super) fn in_flight(owes: Owes, waited: Option<Duration>, longest: Option<Duration>) -> bool {
    match owes {
        Owes::Yes => true,
        Owes::No => false,
        Owes::Maybe => waited.is_none_or(|waited| {
            waited <= longest.unwrap_or(LONGEST_UNKNOWN).min(LONGEST_HELD) + SAME_ARRIVAL
        }),
    }
}
