//! The ports the app listens on, found through its process group: the
//! listening sockets whose inodes are among the group's open files. Beside
//! the app (a sidecar, with no process group of its own to look at): every
//! listening socket in the network namespace but lameduck's own.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::sockets::{Socket, state};

/// How often the app's listening ports are looked up again; at once when
/// the namespace's listeners change (an app opens its ports as it starts).
const RESCAN: Duration = Duration::from_secs(5);

/// The ports to watch: given, or the ones the app listens on.
pub(super) enum AppPorts {
    Given(Vec<u16>),
    Found {
        /// The app's process group; `None` beside the app.
        pgid: Option<i32>,
        found: Vec<u16>,
        scanned: Option<Instant>,
        /// Every port listened on in the namespace at the last scan.
        listeners: Vec<u16>,
    },
}

impl AppPorts {
    /// `ports`, or, if empty, whatever the process group `pgid` listens on
    /// (without one, whatever is listened on but by lameduck).
    pub fn new(ports: Vec<u16>, pgid: Option<i32>) -> Self {
        if ports.is_empty() {
            AppPorts::Found {
                pgid,
                found: Vec::new(),
                scanned: None,
                listeners: Vec::new(),
            }
        } else {
            AppPorts::Given(ports)
        }
    }

    /// The ports as last looked up, without looking: what [`AppPorts::get`]
    /// returns but for ports that began to be listened on since.
    pub fn known(&self) -> &[u16] {
        match self {
            AppPorts::Given(ports) | AppPorts::Found { found: ports, .. } => ports,
        }
    }

    /// The ports, looked up again in `sockets` now and then.
    pub fn get(&mut self, sockets: &[Socket]) -> &[u16] {
        match self {
            AppPorts::Given(ports) => ports,
            AppPorts::Found {
                pgid,
                found,
                scanned,
                listeners,
            } => {
                let mut now: Vec<u16> = sockets
                    .iter()
                    .filter(|s| s.state == state::LISTEN)
                    .map(|s| s.local.port())
                    .collect();
                now.sort_unstable();
                now.dedup();
                let changed = now != *listeners;
                if changed || found.is_empty() || scanned.is_none_or(|t| t.elapsed() >= RESCAN) {
                    *listeners = now;
                    // A port the app stopped listening on stays while
                    // connections to it remain: a draining app closes its
                    // listeners first.
                    let still_served = |port: &u16| sockets.iter().any(|s| s.local.port() == *port);
                    let mut ports = listening_ports(*pgid, sockets);
                    ports.extend(found.iter().copied().filter(still_served));
                    ports.sort_unstable();
                    ports.dedup();
                    *found = ports;
                    *scanned = Some(Instant::now());
                }
                found
            }
        }
    }
}

/// The ports that processes of the process group `pgid` listen on; without
/// one, every port listened on but by lameduck itself.
fn listening_ports(pgid: Option<i32>, sockets: &[Socket]) -> Vec<u16> {
    let inodes = socket_inodes(pgid);
    // The group's sockets, or everyone's but lameduck's.
    let ours = |inode: &u64| inodes.contains(inode) == pgid.is_some();
    let mut ports: Vec<u16> = sockets
        .iter()
        .filter(|s| s.state == state::LISTEN && ours(&s.inode))
        .map(|s| s.local.port())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The sockets the processes of group `pgid` hold; without one, lameduck's
/// own.
fn socket_inodes(pgid: Option<i32>) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return inodes;
    };
    let me = std::process::id() as i32;
    for pid in procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        let wanted = match pgid {
            Some(pgid) => process_group(pid) == Some(pgid),
            None => pid == me,
        };
        if !wanted {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
            {
                inodes.extend(inode.parse::<u64>().ok());
            }
        }
    }
    inodes
}

/// The process group from `/proc/PID/stat`: `pid (comm) state ppid pgrp …`,
/// where `comm` may itself hold spaces and parentheses.
fn process_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::super::proc_net_tcp;
    use super::super::sockets::{Family, SockDiag};
    use super::*;

    #[test]
    fn our_own_process_group_is_found_from_either_source() {
        let me = std::process::id() as i32;
        // SAFETY: getpgid on ourselves.
        let pgid = unsafe { libc::getpgid(0) };
        assert_eq!(process_group(me), Some(pgid));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut sockets = Vec::new();
        SockDiag::open()
            .unwrap()
            .dump(
                Family::V4,
                &netlink_packet_sock_diag::inet::StateFlags::LISTEN,
                &[],
                &mut sockets,
            )
            .unwrap();
        assert!(listening_ports(Some(pgid), &sockets).contains(&port));
        // Beside an app, lameduck's own listeners are not the app's.
        assert!(!listening_ports(None, &sockets).contains(&port));
        sockets.clear();
        proc_net_tcp::read(&mut sockets).unwrap();
        assert!(listening_ports(Some(pgid), &sockets).contains(&port));
    }
}
