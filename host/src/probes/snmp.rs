//! The namespace's TCP counters (`/proc/net/snmp`, `Tcp:`): `PassiveOpens`
//! counts every connection the kernel accepted on any port, even one that
//! opened and closed between two samples; with the segments in and out,
//! they tell in one read of a small file whether anything at all happened
//! on TCP since the last look, before a socket dump is paid for.
//!
//! `/proc/net/netstat` (`TcpExt:`) is not read: it is three times the size,
//! and nothing happens on a connection without a segment, which `InSegs`
//! and `OutSegs` already count.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The file, as the calling thread sees it (`/proc/thread-self`, so a
/// thread that entered its own namespace reads its own; in the agent it is
/// the pod's either way).
const PATH: &str = "/proc/thread-self/net/snmp";

/// The namespace's TCP counters, each since the namespace was made (but
/// `CurrEstab`, a count of now).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpCounters {
    /// Connections accepted (`PassiveOpens`).
    pub passive_opens: u64,
    /// Connections opened from here (`ActiveOpens`).
    pub active_opens: u64,
    /// Segments received, in error or not (`InSegs`).
    pub in_segs: u64,
    /// Segments sent, but retransmissions (`OutSegs`).
    pub out_segs: u64,
    /// Connections now ESTABLISHED or CLOSE_WAIT (`CurrEstab`).
    pub curr_estab: u64,
}

impl TcpCounters {
    /// Whether nothing happened on TCP in the namespace between `earlier`
    /// and this reading: no segment in or out, no accept. Any exchange, on
    /// any port (the agent's own probes included), counts as something.
    pub fn quiet_since(&self, earlier: &TcpCounters) -> bool {
        self.in_segs == earlier.in_segs
            && self.out_segs == earlier.out_segs
            && self.passive_opens == earlier.passive_opens
    }
}

/// Reads [`TcpCounters`] again and again: the file is opened once, in the
/// namespace of the thread that first reads, and read from its start into
/// a buffer kept between reads.
#[derive(Debug, Default)]
pub struct Snmp {
    file: Option<File>,
    buf: Vec<u8>,
}

/// `/proc/net/snmp` is about 1.5 KiB.
const FIRST_BUFFER: usize = 4096;

impl Snmp {
    pub fn new() -> Self {
        Snmp::default()
    }

    /// The counters now.
    pub fn read(&mut self) -> io::Result<TcpCounters> {
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(File::open(PATH)?),
        };
        let len = read_whole(file, &mut self.buf)?;
        parse(&self.buf[..len]).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{PATH}: no Tcp PassiveOpens, InSegs, OutSegs or CurrEstab"),
            )
        })
    }
}

/// Reads `file` from its start into `buf`, and returns its length. The
/// kernel writes the whole file at each read from the start (a single-record
/// `seq_file`), and a read returns as much of it as fits: one shorter than
/// the buffer is the whole file. A full one is tried again with more room.
fn read_whole(file: &File, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.is_empty() {
        buf.resize(FIRST_BUFFER, 0);
    }
    loop {
        let len = file.read_at(buf, 0)?;
        if len < buf.len() {
            return Ok(len);
        }
        buf.resize(buf.len() * 2, 0);
    }
}

/// The `Tcp:` section is a line of names followed by a line of values.
fn parse(text: &[u8]) -> Option<TcpCounters> {
    let mut tcp = text
        .split(|&b| b == b'\n')
        .filter(|line| line.starts_with(b"Tcp:"));
    let (names, values) = (tcp.next()?, tcp.next()?);
    let mut counters = TcpCounters::default();
    // Bits of the counters found that tell whether anything happened.
    let mut found = 0u8;
    // The first word of each line is `Tcp:`.
    for (name, value) in split(names).zip(split(values)).skip(1) {
        let (field, bit) = match name {
            b"PassiveOpens" => (&mut counters.passive_opens, 1),
            b"InSegs" => (&mut counters.in_segs, 2),
            b"OutSegs" => (&mut counters.out_segs, 4),
            b"CurrEstab" => (&mut counters.curr_estab, 8),
            b"ActiveOpens" => (&mut counters.active_opens, 0),
            _ => continue,
        };
        *field = std::str::from_utf8(value).ok()?.parse().ok()?;
        found |= bit;
    }
    (found == 15).then_some(counters)
}

fn split(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b' ').filter(|w| !w.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &str = "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors\nTcp: 1 200 120000 -1 17 42 0 3 5 1234 1200 7 0 2 0\nUdp: InDatagrams\nUdp: 3\n";

    #[test]
    fn the_counters_are_found_by_name() {
        let counters = parse(SNMP.as_bytes()).unwrap();
        assert_eq!(
            counters,
            TcpCounters {
                passive_opens: 42,
                active_opens: 17,
                in_segs: 1234,
                out_segs: 1200,
                curr_estab: 5,
            }
        );
        assert_eq!(parse(b"Ip: Forwarding\nIp: 1\n"), None);
        let without_segments = "Tcp: ActiveOpens PassiveOpens CurrEstab OutSegs\nTcp: 1 2 3 4\n";
        assert_eq!(parse(without_segments.as_bytes()), None);
    }

    #[test]
    fn a_look_tells_whether_anything_happened() {
        let before = parse(SNMP.as_bytes()).unwrap();
        assert!(before.quiet_since(&before));
        let accepted = TcpCounters {
            passive_opens: 43,
            ..before
        };
        assert!(!accepted.quiet_since(&before));
        let answered = TcpCounters {
            out_segs: 1201,
            ..before
        };
        assert!(!answered.quiet_since(&before));
    }

    #[test]
    fn the_file_is_read_again_from_its_start() {
        let mut snmp = Snmp::new();
        let before = snmp.read().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _server = listener.accept().unwrap();
        let after = snmp.read().unwrap();
        assert!(after.passive_opens > before.passive_opens);
        assert!(after.in_segs > before.in_segs);
        assert!(!after.quiet_since(&before));
        // A buffer too small to begin with grows.
        let mut small = Snmp {
            file: None,
            buf: vec![0; 16],
        };
        assert!(small.read().is_ok());
    }
}
