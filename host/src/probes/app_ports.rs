//! The ports the app listens on, found through its process group: the
//! listening sockets whose inodes are among the group's open files.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::sockets::{Socket, state};

/// How often the app's listening ports are looked up again.
const RESCAN: Duration = Duration::from_secs(5);

/// The ports to watch: given, or the ones the app listens on.
pub(super) enum AppPorts {
    Given(Vec<u16>),
    Found {
        pgid: i32,
        found: Vec<u16>,
        scanned: Option<Instant>,
    },
}

impl AppPorts {
    /// `ports`, or, if empty, whatever the process group `pgid` listens on.
    pub fn new(ports: Vec<u16>, pgid: i32) -> Self {
        if ports.is_empty() {
            AppPorts::Found {
                pgid,
                found: Vec::new(),
                scanned: None,
            }
        } else {
            AppPorts::Given(ports)
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
            } => {
                if found.is_empty() || scanned.is_none_or(|t| t.elapsed() >= RESCAN) {
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

/// The ports that processes of the process group `pgid` listen on.
fn listening_ports(pgid: i32, sockets: &[Socket]) -> Vec<u16> {
    let inodes = socket_inodes(pgid);
    let mut ports: Vec<u16> = sockets
        .iter()
        .filter(|s| s.state == state::LISTEN && inodes.contains(&s.inode))
        .map(|s| s.local.port())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

fn socket_inodes(pgid: i32) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return inodes;
    };
    for pid in procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        if process_group(pid) != Some(pgid) {
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
                &mut sockets,
            )
            .unwrap();
        assert!(listening_ports(pgid, &sockets).contains(&port));
        sockets.clear();
        proc_net_tcp::read(&mut sockets).unwrap();
        assert!(listening_ports(pgid, &sockets).contains(&port));
    }
}
