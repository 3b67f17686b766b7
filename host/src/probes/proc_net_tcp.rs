//! The fallback where netlink is refused: `/proc/net/tcp` and
//! `/proc/net/tcp6` of the calling thread's network namespace. Addresses,
//! states, queues and inodes, but no `tcp_info`: who owes a response and when
//! data last moved cannot be told from here.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::sockets::Socket;

/// Appends the sockets of both tables to `out`.
pub(super) fn read(out: &mut Vec<Socket>) -> Result<(), std::io::Error> {
    for path in ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"] {
        match std::fs::read_to_string(path) {
            Ok(text) => out.extend(text.lines().skip(1).filter_map(parse_line)),
            // A kernel without IPv6 has no tcp6.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && path.ends_with('6') => {}
            Err(e) => return Err(std::io::Error::new(e.kind(), format!("{path}: {e}"))),
        }
    }
    Ok(())
}

/// `sl local remote st tx_queue:rx_queue tr:when retrnsmt uid timeout inode …`
pub(super) fn parse_line(line: &str) -> Option<Socket> {
    let mut fields = line.split_whitespace();
    let _sl = fields.next()?;
    let local = address(fields.next()?)?;
    let remote = address(fields.next()?)?;
    let state = u8::from_str_radix(fields.next()?, 16).ok()?;
    let (tx, rx) = fields.next()?.split_once(':')?;
    let inode = fields.nth(4)?.parse().ok()?;
    // The address pair is unique among live connections.
    let mut hasher = DefaultHasher::new();
    (local, remote).hash(&mut hasher);
    Some(Socket {
        key: hasher.finish(),
        state,
        local,
        remote,
        inode,
        recv_queue: u32::from_str_radix(rx, 16).ok()?,
        send_queue: u32::from_str_radix(tx, 16).ok()?,
        activity: None,
        time_wait_left_ms: None,
    })
}

/// `0100007F:1F90`: the address as 32-bit words in host byte order, the
/// port in hex.
fn address(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = ip.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut octets = [0u8; 16];
            for i in 0..4 {
                octets[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::super::sockets::state;
    use super::*;

    #[test]
    fn lines_of_both_tables() {
        let s = parse_line("   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0").unwrap();
        assert_eq!(s.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!((s.state, s.inode), (state::LISTEN, 12345));
        let s = parse_line("   1: 00000000000000000000000001000000:1F90 0000000000000000FFFF00000200000A:D431 01 0000000A:00000003 00:00000000 00000000  1000        0 999 1").unwrap();
        assert_eq!(s.local, "[::1]:8080".parse().unwrap());
        assert_eq!(s.remote, "[::ffff:10.0.0.2]:54321".parse().unwrap());
        assert_eq!(
            (s.state, s.send_queue, s.recv_queue),
            (state::ESTABLISHED, 10, 3)
        );
        assert!(parse_line("garbage").is_none());
    }
}
