//! The namespace's TCP sockets, one dump at a time: through netlink
//! `sock_diag` (`INET_DIAG` with `tcp_info`), IPv4 and IPv6.
//!
//! Packets are built and read with the rust-netlink crates. Answers are
//! walked in place (header, then the `tcp_info` attribute only) rather than
//! decoded into owned messages: a dump of 1,000 sockets then allocates
//! nothing but the records it returns.

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
/// namespace, and the buffer its answers are read into.
pub(super) struct SockDiag {
    socket: NetlinkSocket,
    buf: Vec<u8>,
    sequence: u32,
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
        })
    }

    /// Appends the TCP sockets of `family` in `states` to `out`, with
    /// `tcp_info` for those that have it. Any state but LISTEN walks the
    /// kernel's whole table of connections (shared by every namespace of
    /// the node, unless `net.ipv4.tcp_child_ehash_entries` gave the pod's
    /// its own), so it costs even when the namespace has few.
    pub fn dump(
        &mut self,
        family: Family,
        states: &StateFlags,
        out: &mut Vec<Socket>,
    ) -> Result<(), DumpError> {
        let family = match family {
            Family::V4 => AF_INET,
            Family::V6 => AF_INET6,
        };
        self.request(family, states)?;
        self.receive(out)
    }

    fn request(&mut self, family: u8, states: &StateFlags) -> Result<(), DumpError> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        header.sequence_number = self.sequence;
        let socket_id = if family == AF_INET {
            SocketId::new_v4()
        } else {
            SocketId::new_v6()
        };
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
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket.send(&bytes, 0).map_err(DumpError::from_io)?;
        Ok(())
    }

    fn receive(&mut self, out: &mut Vec<Socket>) -> Result<(), DumpError> {
        loop {
            self.buf.clear();
            // MSG_TRUNC: the length returned is the datagram's, so one
            // larger than the buffer is an error, not silently cut.
            let received = self
                .socket
                .recv(&mut self.buf, libc::MSG_TRUNC)
                .map_err(DumpError::from_io)?;
            if received > self.buf.len() {
                return Err(DumpError::Decode(format!(
                    "a {received}-byte message did not fit"
                )));
            }
            let mut rest = &self.buf[..];
            while !rest.is_empty() {
                let message = NetlinkBuffer::new_checked(rest)
                    .map_err(|e| DumpError::Decode(e.to_string()))?;
                let length = message.length() as usize;
                if message.sequence_number() == self.sequence {
                    match message.message_type() {
                        NLMSG_DONE => return Ok(()),
                        NLMSG_ERROR => {
                            let error = ErrorBuffer::new_checked(message.payload())
                                .map_err(|e| DumpError::Decode(e.to_string()))?;
                            if let Some(code) = error.code() {
                                return Err(DumpError::from_io(io::Error::from_raw_os_error(
                                    -code.get(),
                                )));
                            }
                        }
                        SOCK_DIAG_BY_FAMILY => out.push(socket(message.payload())?),
                        _ => {}
                    }
                }
                // Messages are 4-byte aligned within a datagram.
                let step = length.next_multiple_of(4).min(rest.len());
                if step == 0 {
                    break;
                }
                rest = &rest[step..];
            }
        }
    }
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

    #[test]
    fn a_dump_sees_a_listener_and_both_ends_of_a_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let mut diag = SockDiag::open().unwrap();
        let mut sockets = Vec::new();
        diag.dump(Family::V4, &StateFlags::all(), &mut sockets)
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
        diag.dump(Family::V4, &StateFlags::all(), &mut again)
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
        diag.dump(Family::V4, &StateFlags::TIME_WAIT, &mut sockets)
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

    #[test]
    fn a_short_tcp_info_reads_as_zeroes() {
        let mut old = vec![0u8; 104];
        old[52..56].copy_from_slice(&7u32.to_ne_bytes()); // tcpi_last_data_recv
        let activity = tcp_info(&old).unwrap();
        assert_eq!(activity.last_data_recv_ms, 7);
        assert_eq!(activity.bytes_received, 0);
    }
}
