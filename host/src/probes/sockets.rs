//! The namespace's TCP sockets, one dump at a time: through netlink
//! `sock_diag` (`INET_DIAG` with `tcp_info`), IPv4 and IPv6.
//!
//! Packets are built and read with the rust-netlink crates. Answers are
//! walked in place (header, then the `tcp_info` attribute only) rather than
//! decoded into owned messages: a dump of 1,000 sockets then allocates
//! nothing but the records it returns.
//!
//! The kernel does the filtering: a dump asks for some TCP states, and for
//! the sockets on some local ports (a program of [`bytecode`], which the
//! crates do not build: it is appended to their request). Any state but
//! LISTEN walks the kernel's whole table of connections, shared by every
//! namespace of the node; the filter makes the sockets that are not asked
//! for cost a test each rather than a record built, sent and read.

mod bytecode;

use std::io;
use std::mem::size_of;
use std::net::SocketAddr;

use netlink_packet_core::{
    ErrorBuffer, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, NlasIterator, Parseable,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{
    AF_INET, AF_INET6, INET_DIAG_INFO, IPPROTO_TCP, SOCK_DIAG_BY_FAMILY,
};
use netlink_packet_sock_diag::inet::nlas::{TcpInfo, TcpInfoBuffer};
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags, Timer,
};
use netlink_sys::{
    Socket as NetlinkSocket, SocketAddr as NetlinkAddr, protocols::NETLINK_SOCK_DIAG,
};

/// TCP states, as the kernel numbers them (`include/net/tcp_states.h`).
pub(super) mod state {
    pub const ESTABLISHED: u8 = 1;
    pub const TIME_WAIT: u8 = 6;
    pub const CLOSE_WAIT: u8 = 8;
    pub const LISTEN: u8 = 10;
}

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];
}

/// One TCP socket of the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Socket {
    /// Identity across dumps: the kernel's socket cookie (kept when the
    /// socket moves to TIME_WAIT), or a hash of the address pair from
    /// `/proc/net/tcp`.
    pub key: u64,
    pub state: u8,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub inode: u64,
    /// Bytes received and not yet read by the app.
    pub recv_queue: u32,
    /// Bytes written by the app and not yet acknowledged (unsent included).
    pub send_queue: u32,
    /// From `tcp_info`; `None` from `/proc/net/tcp` and for TIME_WAIT.
    pub activity: Option<Activity>,
    /// For a socket in TIME_WAIT, what is left of it in milliseconds: it
    /// began, a fixed time before it ends, when the exchange was over.
    /// `None` from `/proc/net/tcp`.
    pub time_wait_left_ms: Option<u32>,
}

impl Socket {
    /// The socket's family (an IPv4 peer of a dual-stack listener is IPv6).
    pub fn family(&self) -> Family {
        if self.local.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

/// What `tcp_info` tells about a socket's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Activity {
    /// Milliseconds since data was last received. For a socket that never
    /// received any, since it was accepted.
    pub last_data_recv_ms: u32,
    /// Milliseconds since data was last sent; likewise since the accept.
    pub last_data_sent_ms: u32,
    /// Bytes written by the app that TCP has not sent yet.
    pub notsent_bytes: u32,
    pub bytes_received: u64,
    pub bytes_acked: u64,
}

/// Why a dump failed.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// Netlink is not allowed here (seccomp, a kernel without `sock_diag`):
    /// it will not be allowed on the next try either.
    #[error("netlink sock_diag refused: {0}")]
    Refused(io::Error),
    #[error("netlink sock_diag: {0}")]
    Io(io::Error),
    #[error("netlink sock_diag: undecodable answer: {0}")]
    Decode(String),
}

impl DumpError {
    fn from_io(e: io::Error) -> Self {
        let refused = matches!(
            e.raw_os_error(),
            Some(libc::EPERM | libc::EACCES | libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT)
        );
        if refused {
            DumpError::Refused(e)
        } else {
            DumpError::Io(e)
        }
    }
}

/// A netlink `sock_diag` socket, opened in the calling thread's network
/// namespace, and the buffers its requests and answers are built and read
/// in.
pub(super) struct SockDiag {
    socket: NetlinkSocket,
    buf: Vec<u8>,
    sequence: u32,
    request: Vec<u8>,
    filter: PortFilter,
    /// The program for the ports of the latest filtered dump, kept while
    /// they stay the same.
    program: Program,
}

/// Whether the kernel filters dumps by port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortFilter {
    /// No dump has asked for ports yet.
    Untried,
    /// The kernel took the program.
    Used,
    /// The kernel refused it: dumps walk every socket in the states asked
    /// for, and the caller filters.
    Refused,
}

/// A filter's program, and the ports it was written for.
#[derive(Default)]
struct Program {
    ports: Vec<u16>,
    bytes: Vec<u8>,
    // Scratch space.
    sorted: Vec<u16>,
    ranges: Vec<(u16, u16)>,
    gaps: Vec<u16>,
}

impl Program {
    /// The program keeping the sockets on `ports` (not empty).
    fn for_ports(&mut self, ports: &[u16]) -> &[u8] {
        if self.ports != ports {
            self.ports.clear();
            self.ports.extend_from_slice(ports);
            self.sorted.clone_from(&self.ports);
            self.sorted.sort_unstable();
            self.sorted.dedup();
            bytecode::port_ranges(&self.sorted, &mut self.ranges, &mut self.gaps);
            self.bytes.clear();
            bytecode::write_program(&self.ranges, &mut self.bytes);
        }
        &self.bytes
    }
}

/// Big enough for the kernel's largest dump batch (it fills up to 32 KiB).
const RECV_BUFFER: usize = 64 * 1024;

impl SockDiag {
    pub fn open() -> Result<Self, DumpError> {
        let mut socket = NetlinkSocket::new(NETLINK_SOCK_DIAG).map_err(DumpError::from_io)?;
        socket.bind_auto().map_err(DumpError::from_io)?;
        socket
            .connect(&NetlinkAddr::new(0, 0))
            .map_err(DumpError::from_io)?;
        Ok(SockDiag {
            socket,
            buf: Vec::with_capacity(RECV_BUFFER),
            sequence: 0,
            request: Vec::new(),
            filter: PortFilter::Untried,
            program: Program::default(),
        })
    }

    /// Appends the TCP sockets of `family` in `states` whose local port is
    /// one of `ports` (all of them if `ports` is empty) to `out`, with
    /// `tcp_info` for those that have it.
    ///
    /// Any state but LISTEN walks the kernel's whole table of connections
    /// (shared by every namespace of the node, unless
    /// `net.ipv4.tcp_child_ehash_entries` gave the pod's its own): the
    /// walk costs even when the namespace has few, but with `ports` the
    /// kernel fills nothing for the sockets on other ports. Where it
    /// refuses the filter, every socket in `states` is returned (and the
    /// filter is not tried again, see [`SockDiag::filtered`]); when ports
    /// are many, close ones are merged into ranges: so `out` may hold
    /// sockets on other ports, and the caller still checks the port.
    pub fn dump(
        &mut self,
        family: Family,
        states: &StateFlags,
        ports: &[u16],
        out: &mut Vec<Socket>,
    ) -> Result<(), DumpError> {
        let filtered = !ports.is_empty() && self.filter != PortFilter::Refused;
        if !filtered {
            return self.dump_once(family, states, None, out);
        }
        let before = out.len();
        match self.dump_once(family, states, Some(ports), out) {
            Err(DumpError::Io(e)) if e.raw_os_error() == Some(libc::EINVAL) => {
                out.truncate(before);
                // Refused only if the same request without it is taken.
                self.dump_once(family, states, None, out)?;
                tracing::warn!(
                    "netlink sock_diag refused a filter on ports ({e}): dumps walk every socket from now on"
                );
                self.filter = PortFilter::Refused;
                Ok(())
            }
            Ok(()) => {
                self.filter = PortFilter::Used;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the kernel filters dumps by port: it has taken a filter and
    /// not refused one since. Evidence gathered without it is the same,
    /// only dearer.
    pub fn filtered(&self) -> bool {
        self.filter == PortFilter::Used
    }

    fn dump_once(
        &mut self,
        family: Family,
        states: &StateFlags,
        ports: Option<&[u16]>,
        out: &mut Vec<Socket>,
    ) -> Result<(), DumpError> {
        self.sequence = self.sequence.wrapping_add(1);
        let program = ports.map(|ports| self.program.for_ports(ports));
        request(&mut self.request, self.sequence, family, states, program);
        self.socket
            .send(&self.request, 0)
            .map_err(DumpError::from_io)?;
        self.receive(out)
    }

    /// Looks up each of `known` again, by its addresses and cookie: a hash
    /// lookup in the kernel each, where a dump walks the whole table. Their
    /// answers, in any order, are appended to `out`. `false` where one is
    /// gone (or an answer is missing): then `out` lacks it, and only a dump
    /// tells what became of it.
    ///
    /// The requests go in one message; the kernel answers each before the
    /// send returns (a request that is not a dump is handled in the
    /// sender's call), so the answers are read without waiting.
    pub fn look_up(&mut self, known: &[Socket], out: &mut Vec<Socket>) -> Result<bool, DumpError> {
        self.sequence = self.sequence.wrapping_add(1);
        self.request.clear();
        for socket in known {
            lookup(&mut self.request, self.sequence, socket);
        }
        self.socket
            .send(&self.request, 0)
            .map_err(DumpError::from_io)?;
        let (mut answers, mut all) = (0, true);
        while answers < known.len() {
            match self.recv(libc::MSG_DONTWAIT) {
                Err(DumpError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                result => result?,
            }
            for (kind, payload) in ours(&self.buf, self.sequence) {
                match kind? {
                    // Gone (ENOENT), or any other refusal.
                    NLMSG_ERROR => {
                        answers += 1;
                        all = false;
                    }
                    SOCK_DIAG_BY_FAMILY => {
                        answers += 1;
                        out.push(socket(payload)?);
                    }
                    _ => {}
                }
            }
        }
        Ok(all)
    }

    fn receive(&mut self, out: &mut Vec<Socket>) -> Result<(), DumpError> {
        loop {
            self.recv(0)?;
            for (kind, payload) in ours(&self.buf, self.sequence) {
                match kind? {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let error = ErrorBuffer::new_checked(payload)
                            .map_err(|e| DumpError::Decode(e.to_string()))?;
                        if let Some(code) = error.code() {
                            return Err(DumpError::from_io(io::Error::from_raw_os_error(
                                -code.get(),
                            )));
                        }
                    }
                    SOCK_DIAG_BY_FAMILY => out.push(socket(payload)?),
                    _ => {}
                }
            }
        }
    }

    /// Reads one datagram of answers into `self.buf`.
    fn recv(&mut self, flags: libc::c_int) -> Result<(), DumpError> {
        self.buf.clear();
        // MSG_TRUNC: the length returned is the datagram's, so one larger
        // than the buffer is an error, not silently cut.
        let received = self
            .socket
            .recv(&mut self.buf, flags | libc::MSG_TRUNC)
            .map_err(DumpError::from_io)?;
        if received > self.buf.len() {
            return Err(DumpError::Decode(format!(
                "a {received}-byte message did not fit"
            )));
        }
        Ok(())
    }
}

/// The messages of a datagram that answer request `sequence`: each one's
/// type and payload (a message that does not read ends the walk).
fn ours(datagram: &[u8], sequence: u32) -> impl Iterator<Item = (Result<u16, DumpError>, &[u8])> {
    let mut rest = datagram;
    std::iter::from_fn(move || {
        loop {
            if rest.is_empty() {
                return None;
            }
            let message = match NetlinkBuffer::new_checked(rest) {
                Ok(message) => message,
                Err(e) => {
                    rest = &[];
                    return Some((Err(DumpError::Decode(e.to_string())), &[][..]));
                }
            };
            let length = message.length() as usize;
            let here = rest;
            // Messages are 4-byte aligned within a datagram.
            let step = length.next_multiple_of(4).min(rest.len());
            rest = if step == 0 { &[] } else { &rest[step..] };
            if message.sequence_number() == sequence {
                let payload = &here[NETLINK_HEADER.min(length)..length.min(here.len())];
                return Some((Ok(message.message_type()), payload));
            }
        }
    })
}

/// `struct nlmsghdr`.
const NETLINK_HEADER: usize = 16;

/// Writes into `out` a dump request numbered `sequence` for the TCP sockets
/// of `family` in `states`, with `tcp_info`, kept by `program` if any: the
/// crate's request with the program appended as an attribute.
fn request(
    out: &mut Vec<u8>,
    sequence: u32,
    family: Family,
    states: &StateFlags,
    program: Option<&[u8]>,
) {
    let (family, socket_id) = match family {
        Family::V4 => (AF_INET, SocketId::new_v4()),
        Family::V6 => (AF_INET6, SocketId::new_v6()),
    };
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = sequence;
    let mut packet = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::INFO,
            states: states.clone(),
            socket_id,
        })
        .into(),
    );
    packet.finalize();
    out.clear();
    out.resize(packet.buffer_len(), 0);
    packet.serialize(out);
    if let Some(program) = program {
        // `struct nlattr`: length (header included), type; then the
        // program, whose length is a multiple of 4 (no padding).
        let attribute = 4 + program.len();
        out.extend_from_slice(
            &u16::try_from(attribute)
                .expect("a short program")
                .to_ne_bytes(),
        );
        out.extend_from_slice(&bytecode::REQ_BYTECODE.to_ne_bytes());
        out.extend_from_slice(program);
        // `nlmsg_len`, the header's first field, covers the attribute.
        let len = u32::try_from(out.len()).expect("a short request");
        out[..4].copy_from_slice(&len.to_ne_bytes());
    }
}

/// Appends to `out` a request numbered `sequence` for `socket` alone, with
/// `tcp_info`: its addresses as a dump gave them, and its cookie, so that
/// another socket on the same addresses is not taken for it.
fn lookup(out: &mut Vec<u8>, sequence: u32, socket: &Socket) {
    let family = match socket.family() {
        Family::V4 => AF_INET,
        Family::V6 => AF_INET6,
    };
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    header.sequence_number = sequence;
    let mut packet = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::INFO,
            states: StateFlags::all(),
            socket_id: SocketId {
                source_port: socket.local.port(),
                destination_port: socket.remote.port(),
                source_address: socket.local.ip(),
                destination_address: socket.remote.ip(),
                interface_id: 0,
                cookie: socket.key.to_ne_bytes(),
            },
        })
        .into(),
    );
    packet.finalize();
    let start = out.len();
    out.resize(start + packet.buffer_len(), 0);
    packet.serialize(&mut out[start..]);
}

fn socket(payload: &[u8]) -> Result<Socket, DumpError> {
    const HEADER: usize = 72; // struct inet_diag_msg
    // `idiag_expires`: the crate keeps the time left of every timer but
    // TIME_WAIT's, and that is the one wanted here.
    const EXPIRES: usize = 52;
    let decode = |e: netlink_packet_core::DecodeError| DumpError::Decode(e.to_string());
    let header = InetResponseHeader::parse(payload).map_err(decode)?;
    let mut activity = None;
    for nla in NlasIterator::new(payload.get(HEADER..).unwrap_or_default()) {
        let nla = nla.map_err(decode)?;
        if nla.kind() == INET_DIAG_INFO {
            activity = Some(tcp_info(nla.value()).map_err(decode)?);
        }
    }
    let time_wait_left_ms = (header.state == state::TIME_WAIT
        && header.timer == Some(Timer::TimeWait))
    .then(|| payload.get(EXPIRES..EXPIRES + 4))
    .flatten()
    .map(|b| u32::from_ne_bytes(b.try_into().expect("four bytes")));
    let id = &header.socket_id;
    Ok(Socket {
        key: u64::from_ne_bytes(id.cookie),
        state: header.state,
        local: SocketAddr::new(id.source_address, id.source_port),
        remote: SocketAddr::new(id.destination_address, id.destination_port),
        inode: header.inode.into(),
        recv_queue: header.recv_queue,
        send_queue: header.send_queue,
        activity,
        time_wait_left_ms,
    })
}

/// `tcp_info` only ever grows; an older kernel's shorter one is read with
/// the fields it lacks as zero.
fn tcp_info(value: &[u8]) -> Result<Activity, netlink_packet_core::DecodeError> {
    let mut padded = [0u8; size_of::<TcpInfoBuffer>()];
    let n = value.len().min(padded.len());
    padded[..n].copy_from_slice(&value[..n]);
    let info = TcpInfo::parse(&padded)?;
    Ok(Activity {
        last_data_recv_ms: info.last_data_recv,
        last_data_sent_ms: info.last_data_sent,
        notsent_bytes: info.notsent_bytes,
        bytes_received: info.bytes_received,
        bytes_acked: info.bytes_acked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::namespace::in_own_namespace;

    #[test]
    fn a_dump_sees_a_listener_and_both_ends_of_a_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let mut diag = SockDiag::open().unwrap();
        let mut sockets = Vec::new();
        diag.dump(Family::V4, &StateFlags::all(), &[], &mut sockets)
            .unwrap();
        let listening = sockets
            .iter()
            .find(|s| s.state == state::LISTEN && s.local.port() == port)
            .unwrap();
        assert_ne!(listening.inode, 0);
        let server = sockets
            .iter()
            .find(|s| s.local.port() == port && s.remote == client.local_addr().unwrap())
            .unwrap();
        assert_eq!(server.state, state::ESTABLISHED);
        let activity = server.activity.unwrap();
        assert_eq!((activity.bytes_received, activity.bytes_acked), (0, 0));
        // Cookies tell sockets apart and stay put.
        let mut again = Vec::new();
        diag.dump(Family::V4, &StateFlags::all(), &[], &mut again)
            .unwrap();
        assert!(
            again
                .iter()
                .any(|s| s.key == server.key && s.remote == server.remote)
        );
    }

    #[test]
    fn a_socket_in_time_wait_tells_how_long_it_has_left() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (server, _) = listener.accept().unwrap();
        // The server closes first, so its end is the one left in TIME_WAIT.
        drop(server);
        let mut buf = [0u8; 1];
        assert_eq!(std::io::Read::read(&mut &client, &mut buf).unwrap(), 0);
        let client_port = client.local_addr().unwrap().port();
        drop(client);
        let mut diag = SockDiag::open().unwrap();
        let mut sockets = Vec::new();
        diag.dump(Family::V4, &StateFlags::TIME_WAIT, &[], &mut sockets)
            .unwrap();
        let ended = sockets
            .iter()
            .find(|s| s.local.port() == port && s.remote.port() == client_port)
            .unwrap();
        assert_eq!(ended.state, state::TIME_WAIT);
        assert_eq!(ended.activity, None);
        // Linux keeps TIME_WAIT for 60 s; this one began a moment ago.
        let left = ended.time_wait_left_ms.unwrap();
        assert!((50_000..=60_000).contains(&left), "{left} ms left");
    }

    /// Two listeners, a connection to each, and on each port one more
    /// connection whose server end is left in TIME_WAIT.
    struct TwoPorts {
        ports: [u16; 2],
        _held: Vec<std::net::TcpStream>,
        _listeners: [std::net::TcpListener; 2],
    }

    impl TwoPorts {
        fn new() -> Self {
            let listeners = [(); 2].map(|()| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
            let ports = [0, 1].map(|i| listeners[i].local_addr().unwrap().port());
            let mut held = Vec::new();
            for (listener, port) in listeners.iter().zip(ports) {
                held.push(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
                held.push(listener.accept().unwrap().0);
                let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                drop(listener.accept().unwrap().0);
                assert_eq!(std::io::Read::read(&mut &client, &mut [0]).unwrap(), 0);
            }
            TwoPorts {
                ports,
                _held: held,
                _listeners: listeners,
            }
        }
    }

    #[test]
    fn the_kernel_returns_only_the_sockets_on_the_ports_asked_for() {
        in_own_namespace(|| {
            let two = TwoPorts::new();
            let [wanted, other] = two.ports;
            let mut diag = SockDiag::open().unwrap();
            let mut all = Vec::new();
            diag.dump(Family::V4, &StateFlags::all(), &[], &mut all)
                .unwrap();
            assert!(!diag.filtered());
            // Both listeners, both ends of two connections, two TIME_WAITs.
            assert_eq!(all.len(), 2 + 4 + 2, "{all:#?}");

            let mut mine = Vec::new();
            diag.dump(Family::V4, &StateFlags::all(), &[wanted], &mut mine)
                .unwrap();
            assert!(diag.filtered());
            assert!(mine.iter().all(|s| s.local.port() == wanted), "{mine:#?}");
            let states = |sockets: &[Socket]| {
                let mut states: Vec<u8> = sockets.iter().map(|s| s.state).collect();
                states.sort_unstable();
                states
            };
            let expected = [state::ESTABLISHED, state::TIME_WAIT, state::LISTEN];
            assert_eq!(states(&mine), expected);

            // TIME_WAIT alone, on one port: a request of its own.
            let mut ended = Vec::new();
            diag.dump(Family::V4, &StateFlags::TIME_WAIT, &[other], &mut ended)
                .unwrap();
            assert_eq!(ended.len(), 1, "{ended:#?}");
            assert_eq!(ended[0].local.port(), other);
            assert!(ended[0].time_wait_left_ms.is_some());

            // Both ports, in any order: everything but the client ends.
            let mut both = Vec::new();
            diag.dump(Family::V4, &StateFlags::all(), &[other, wanted], &mut both)
                .unwrap();
            assert_eq!(both.len(), 6, "{both:#?}");
        });
    }

    #[test]
    fn a_refused_filter_falls_back_to_every_socket_and_says_so() {
        in_own_namespace(|| {
            let two = TwoPorts::new();
            let mut diag = SockDiag::open().unwrap();
            let mut sockets = Vec::new();
            diag.dump(
                Family::V4,
                &StateFlags::all(),
                &[two.ports[0]],
                &mut sockets,
            )
            .unwrap();
            assert!(diag.filtered());
            // An op no kernel knows, as an older kernel would find one it
            // does not.
            diag.program.bytes[0] = 0xff;
            sockets.clear();
            diag.dump(
                Family::V4,
                &StateFlags::all(),
                &[two.ports[0]],
                &mut sockets,
            )
            .unwrap();
            assert!(!diag.filtered());
            assert_eq!(sockets.len(), 8, "{sockets:#?}");
            // Not asked again.
            sockets.clear();
            diag.dump(
                Family::V4,
                &StateFlags::all(),
                &[two.ports[1]],
                &mut sockets,
            )
            .unwrap();
            assert_eq!(sockets.len(), 8);
        });
    }

    #[test]
    fn sockets_are_looked_up_one_by_one_as_a_dump_shows_them() {
        in_own_namespace(|| {
            let two = TwoPorts::new();
            let port = two.ports[0];
            let mut diag = SockDiag::open().unwrap();
            let mut dumped = Vec::new();
            diag.dump(Family::V4, &StateFlags::all(), &[port], &mut dumped)
                .unwrap();
            // The server end of the open connection, and the one in TIME_WAIT.
            let known: Vec<Socket> = dumped
                .into_iter()
                .filter(|s| s.state != state::LISTEN)
                .collect();
            assert_eq!(known.len(), 2, "{known:#?}");
            let mut found = Vec::new();
            assert!(diag.look_up(&known, &mut found).unwrap());
            let keys = |sockets: &[Socket]| {
                let mut keys: Vec<(u64, u8)> = sockets.iter().map(|s| (s.key, s.state)).collect();
                keys.sort_unstable();
                keys
            };
            assert_eq!(keys(&found), keys(&known));
            assert!(found.iter().any(|s| s.activity.is_some()));
            assert!(found.iter().any(|s| s.time_wait_left_ms.is_some()));

            // Another socket on the same addresses is not the one asked for.
            let mut other = known[0].clone();
            other.key ^= 1;
            let mut none = Vec::new();
            assert!(!diag.look_up(&[other], &mut none).unwrap());
            assert!(none.is_empty());
            // A mix: the ones there are answered, the one gone said.
            let mut some = Vec::new();
            let mut other = known[0].clone();
            other.local.set_port(1);
            let asked = [known[0].clone(), other, known[1].clone()];
            assert!(!diag.look_up(&asked, &mut some).unwrap());
            assert_eq!(keys(&some), keys(&known));
        });
    }

    #[test]
    fn a_filter_is_the_crates_request_with_one_attribute_more() {
        let states = StateFlags::ESTABLISHED | StateFlags::TIME_WAIT;
        let (mut plain, mut filtered) = (Vec::new(), Vec::new());
        request(&mut plain, 7, Family::V6, &states, None);
        let program = [2, 8, 20, 0, 0, 0, 80, 0, 3, 8, 12, 0, 0, 0, 80, 0];
        request(&mut filtered, 7, Family::V6, &states, Some(&program));
        // nlmsghdr (16) + inet_diag_req_v2 (56).
        assert_eq!(plain.len(), 72);
        assert_eq!(plain[..4], 72u32.to_ne_bytes());
        assert_eq!(filtered.len(), 72 + 4 + 16);
        assert_eq!(filtered[..4], 92u32.to_ne_bytes());
        assert_eq!(filtered[4..72], plain[4..72]);
        // nlattr: length 20 (header included), type INET_DIAG_REQ_BYTECODE.
        assert_eq!(filtered[72..74], 20u16.to_ne_bytes());
        assert_eq!(filtered[74..76], 1u16.to_ne_bytes());
        assert_eq!(filtered[76..], program);
        // The request itself: family, protocol, extensions, states.
        // `tcp_info` is extension 2, bit 1.
        assert_eq!(plain[16..20], [AF_INET6, IPPROTO_TCP, 1 << 1, 0]);
        assert_eq!(plain[20..24], states.bits().to_ne_bytes());
    }

    #[test]
    fn a_short_tcp_info_reads_as_zeroes() {
        let mut old = vec![0u8; 104];
        old[52..56].copy_from_slice(&7u32.to_ne_bytes()); // tcpi_last_data_recv
        let activity = tcp_info(&old).unwrap();
        assert_eq!(activity.last_data_recv_ms, 7);
        assert_eq!(activity.bytes_received, 0);
    }
}
