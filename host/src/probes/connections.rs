//! `connections`: TCP connections to the app's ports, read from
//! `/proc/net/tcp` and `/proc/net/tcp6` in the pod's network namespace.
//!
//! A connection is new when its address pair was not in the previous
//! sample. Closed connections linger in TIME_WAIT for a minute on the side
//! that closed first, so a server-closed exchange is seen even if it lasted
//! less than a sampling interval; only a client-closed one that lived and
//! died between two samples is missed.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::{Sample, millis};
use crate::policy::{Connections, Evidence, ProbeValue, Silences};

const ESTABLISHED: u8 = 0x01;
const LISTEN: u8 = 0x0A;

/// How often the app's listening ports are looked up again.
const RESCAN: Duration = Duration::from_secs(5);

/// Gaps kept for learning, and how many are needed before trusting them.
const GAPS_KEPT: usize = 64;
const GAPS_NEEDED: usize = 8;

pub struct ConnectionsProbe {
    created: Instant,
    ports: Ports,
    seen: Option<HashSet<String>>,
    last_accept: Option<Instant>,
    gaps: Gaps,
}

/// The ports to watch: given, or the ones the app listens on.
enum Ports {
    Given(Vec<u16>),
    App {
        /// The app's process group; `None` beside the app (a sidecar): every
        /// listener but lameduck's own.
        pgid: Option<i32>,
        found: Vec<u16>,
        scanned: Option<Instant>,
    },
}

impl ConnectionsProbe {
    /// Watches `ports`, or, if empty, whatever the app's process group
    /// listens on.
    pub fn new(ports: Vec<u16>, app_pgid: Option<i32>) -> Self {
        let ports = if ports.is_empty() {
            Ports::App {
                pgid: app_pgid,
                found: Vec::new(),
                scanned: None,
            }
        } else {
            Ports::Given(ports)
        };
        ConnectionsProbe {
            created: Instant::now(),
            ports,
            seen: None,
            last_accept: None,
            gaps: Gaps::default(),
        }
    }

    fn ports(&mut self, table: &[Entry]) -> &[u16] {
        match &mut self.ports {
            Ports::Given(ports) => ports,
            Ports::App {
                pgid,
                found,
                scanned,
            } => {
                if found.is_empty() || scanned.is_none_or(|t| t.elapsed() >= RESCAN) {
                    *found = listening_ports(*pgid, table);
                    *scanned = Some(Instant::now());
                }
                found
            }
        }
    }

    fn read(&mut self, learning: bool) -> Result<Connections, String> {
        let table = read_tables()?;
        let ports = self.ports(&table).to_vec();
        let ours = || table.iter().filter(|e| ports.contains(&e.local_port));
        let established = ours().filter(|e| e.state == ESTABLISHED).count() as u32;
        let current: HashSet<String> = ours()
            .filter(|e| e.state != LISTEN)
            .map(|e| e.key.clone())
            .collect();
        // The first sample has nothing to compare with: nothing is "new".
        let accepted = self
            .seen
            .as_ref()
            .map_or(0, |seen| current.difference(seen).count() as u32);
        self.seen = Some(current);
        let now = Instant::now();
        if accepted > 0 {
            if learning && let Some(last) = self.last_accept {
                self.gaps.observe((now - last) / accepted);
            }
            self.last_accept = Some(now);
        }
        let since_last_accept_ms = self.last_accept.map(|t| millis(now - t));
        let typical = self.gaps.typical().map(millis);
        Ok(Connections {
            evidence: Evidence::ProcNetTcp,
            open: established,
            in_flight: established,
            idle: 0,
            accepted,
            since_last_request_ms: since_last_accept_ms,
            since_last_accept_ms,
            silences: Silences {
                watched_ms: millis(self.created.elapsed()),
                count: self.gaps.recent.len() as u32,
                p50_ms: typical,
                p99_ms: typical,
                max_ms: typical,
            },
            excluded: 0,
        })
    }

    /// A sample taken while serving, to learn the gaps between arrivals.
    pub fn learn(&mut self) -> ProbeValue {
        value(self.read(true))
    }
}

impl Sample for ConnectionsProbe {
    async fn sample(&mut self) -> ProbeValue {
        value(self.read(false))
    }
}

fn value(reading: Result<Connections, String>) -> ProbeValue {
    match reading {
        Ok(c) => ProbeValue::Connections(c),
        Err(e) => ProbeValue::Failed(e),
    }
}

/// Gaps between arrivals seen while serving; the typical long gap is their
/// 90th percentile.
#[derive(Default)]
struct Gaps {
    recent: std::collections::VecDeque<Duration>,
}

impl Gaps {
    fn observe(&mut self, gap: Duration) {
        if self.recent.len() == GAPS_KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back(gap);
    }

    fn typical(&self) -> Option<Duration> {
        if self.recent.len() < GAPS_NEEDED {
            return None;
        }
        let mut sorted: Vec<Duration> = self.recent.iter().copied().collect();
        sorted.sort_unstable();
        Some(sorted[(sorted.len() * 9 / 10).min(sorted.len() - 1)])
    }
}

/// One line of `/proc/net/tcp{,6}`.
struct Entry {
    local_port: u16,
    /// Local and remote address, as written: unique per connection.
    key: String,
    state: u8,
    inode: u64,
}

fn read_tables() -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match std::fs::read_to_string(path) {
            Ok(text) => entries.extend(text.lines().skip(1).filter_map(parse_line)),
            // A kernel without IPv6 has no tcp6.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && path.ends_with('6') => {}
            Err(e) => return Err(format!("{path}: {e}")),
        }
    }
    Ok(entries)
}

fn parse_line(line: &str) -> Option<Entry> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (local, remote, state, inode) = (
        fields.get(1)?,
        fields.get(2)?,
        fields.get(3)?,
        fields.get(9)?,
    );
    let (_, port) = local.rsplit_once(':')?;
    Some(Entry {
        local_port: u16::from_str_radix(port, 16).ok()?,
        key: format!("{local}-{remote}"),
        state: u8::from_str_radix(state, 16).ok()?,
        inode: inode.parse().ok()?,
    })
}

/// The ports that processes of the app's process group listen on; without
/// one, every port listened on but by lameduck itself.
fn listening_ports(pgid: Option<i32>, table: &[Entry]) -> Vec<u16> {
    let inodes = socket_inodes(pgid);
    // The group's sockets, or everyone's but lameduck's.
    let ours = |inode: &u64| inodes.contains(inode) == pgid.is_some();
    let mut ports: Vec<u16> = table
        .iter()
        .filter(|e| e.state == LISTEN && ours(&e.inode))
        .map(|e| e.local_port)
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
    use super::*;

    #[test]
    fn proc_net_tcp_lines() {
        let e = parse_line("   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0").unwrap();
        assert_eq!((e.local_port, e.state, e.inode), (8080, LISTEN, 12345));
        let e = parse_line("   1: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:D431 01 00000000:00000000 00:00000000 00000000  1000        0 999 1").unwrap();
        assert_eq!((e.local_port, e.state), (8080, ESTABLISHED));
        assert!(parse_line("garbage").is_none());
    }

    #[test]
    fn gaps_need_enough_arrivals_and_keep_the_long_ones() {
        let mut gaps = Gaps::default();
        for _ in 0..7 {
            gaps.observe(Duration::from_millis(100));
        }
        assert_eq!(gaps.typical(), None);
        for ms in [100, 100, 2_000] {
            gaps.observe(Duration::from_millis(ms));
        }
        assert_eq!(gaps.typical(), Some(Duration::from_millis(2_000)));
    }

    #[test]
    fn our_own_process_group_is_found() {
        let me = std::process::id() as i32;
        // SAFETY: getpgid on ourselves.
        let pgid = unsafe { libc::getpgid(0) };
        assert_eq!(process_group(me), Some(pgid));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let table = read_tables().unwrap();
        assert!(listening_ports(Some(pgid), &table).contains(&port));
        // Beside an app, lameduck's own listeners are not the app's.
        assert!(!listening_ports(None, &table).contains(&port));
    }
}
