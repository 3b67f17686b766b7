//! A program for the kernel's socket filter (`INET_DIAG_REQ_BYTECODE`, in
//! `include/uapi/linux/inet_diag.h`) that keeps the sockets whose local
//! port is in a set: the kernel then fills nothing for the node's other
//! sockets.
//!
//! A program is a line of `struct inet_diag_bc_op { u8 code; u8 yes; u16
//! no; }` in native byte order. The kernel runs it from the start: where an
//! op's test holds it moves `yes` bytes on, where it fails `no` bytes on. A
//! socket is kept when a move lands exactly on the end, left out when one
//! lands past it (4 bytes past, as ss(8) does). A port comparison is an op
//! followed by a second one whose `no` holds the port.
//!
//! Before a dump the kernel checks the program (`inet_diag_bc_audit`):
//! every move a multiple of 4, no shorter than the op and no further than 4
//! bytes past the end, and every target of a `no` reachable by following
//! `yes` moves from the start. So the ops are laid out in a line, each
//! `yes` stepping to the next one.

/// `INET_DIAG_REQ_BYTECODE`: the request attribute that carries a program.
pub(super) const REQ_BYTECODE: u16 = 1;

/// Op codes. Ranges are compared with `S_GE` and `S_LE`, which every kernel
/// with `sock_diag` knows; `S_EQ` is younger and would save nothing the
/// kernel notices.
const JMP: u8 = 1;
const S_GE: u8 = 2;
const S_LE: u8 = 3;

/// An op, or the second half of a port comparison.
const OP: usize = 4;
/// `port >= low && port <= high`: two comparisons.
const RANGE: usize = 4 * OP;

/// At most this many ranges: the kernel runs the program on every socket of
/// the namespace in the states asked for, so a longer one would cost more
/// than it saves. Beyond, the closest ranges are merged: more sockets are
/// kept, never fewer.
pub(super) const MAX_RANGES: usize = 32;

/// Sets `ranges` to the runs of consecutive ports in `ports` (sorted,
/// without duplicates), merged down to [`MAX_RANGES`]. `gaps` is scratch
/// space.
pub(super) fn port_ranges(ports: &[u16], ranges: &mut Vec<(u16, u16)>, gaps: &mut Vec<u16>) {
    ranges.clear();
    for &port in ports {
        match ranges.last_mut() {
            Some((_, high)) if u32::from(*high) + 1 >= u32::from(port) => *high = port,
            _ => ranges.push((port, port)),
        }
    }
    if ranges.len() > MAX_RANGES {
        merge_closest(ranges, gaps);
    }
}

/// Merges the ranges separated by the smallest gaps until [`MAX_RANGES`]
/// are left.
fn merge_closest(ranges: &mut Vec<(u16, u16)>, gaps: &mut Vec<u16>) {
    gaps.clear();
    gaps.extend(ranges.windows(2).map(|w| w[1].0 - w[0].1));
    let merges = ranges.len() - MAX_RANGES;
    let (_, &mut widest_merged, _) = gaps.select_nth_unstable(merges - 1);
    let mut merged = 0;
    ranges.dedup_by(|next, kept| {
        let merge = next.0 - kept.1 <= widest_merged && merged < merges;
        if merge {
            kept.1 = next.1;
            merged += 1;
        }
        merge
    });
}

/// Appends to `out` a program that keeps the sockets whose local port is
/// in one of `ranges` (not empty, at most [`MAX_RANGES`]): for each range,
/// `port >= low && port <= high`, joined by "or". A failed comparison moves
/// past its range to the next one (past the last: left out); a range that
/// held jumps to the end (kept).
pub(super) fn write_program(ranges: &[(u16, u16)], out: &mut Vec<u8>) {
    assert!(!ranges.is_empty() && ranges.len() <= MAX_RANGES);
    let len = program_len(ranges.len());
    for (i, &(low, high)) in ranges.iter().enumerate() {
        let start = i * (RANGE + OP);
        comparison(out, S_GE, RANGE + OP, low);
        comparison(out, S_LE, RANGE / 2 + OP, high);
        if i + 1 < ranges.len() {
            // Both held: to the end. `yes` is never taken (a jump always
            // fails its test) but steps to the next range for the check.
            op(out, JMP, OP, len - (start + RANGE));
        }
    }
}

/// The length of a program of `ranges` ranges.
pub(super) fn program_len(ranges: usize) -> usize {
    ranges * (RANGE + OP) - OP
}

/// A comparison of the local port with `port` by `code`: true moves to the
/// next op, false `no` bytes on from the comparison's start.
fn comparison(out: &mut Vec<u8>, code: u8, no: usize, port: u16) {
    op(out, code, 2 * OP, no);
    op(out, 0, 0, usize::from(port));
}

fn op(out: &mut Vec<u8>, code: u8, yes: usize, no: usize) {
    let yes = u8::try_from(yes).expect("a move of a program fits its op");
    let no = u16::try_from(no).expect("a move of a program fits its op");
    out.extend_from_slice(&[code, yes]);
    out.extend_from_slice(&no.to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(ports: &[u16]) -> Vec<(u16, u16)> {
        let (mut ranges, mut gaps) = (Vec::new(), Vec::new());
        port_ranges(ports, &mut ranges, &mut gaps);
        ranges
    }

    fn program(ranges: &[(u16, u16)]) -> Vec<u8> {
        let mut out = Vec::new();
        write_program(ranges, &mut out);
        out
    }

    /// Reads the op at `at`: code, yes, no.
    fn read(program: &[u8], at: usize) -> (u8, usize, usize) {
        let no = u16::from_ne_bytes([program[at + 2], program[at + 3]]);
        (program[at], program[at + 1].into(), no.into())
    }

    /// `inet_diag_bc_run`, for port comparisons and jumps.
    fn keeps(program: &[u8], port: u16) -> bool {
        let (mut at, mut len) = (0, program.len() as isize);
        while len > 0 {
            let (code, yes, no) = read(program, at);
            let operand = || read(program, at + OP).2;
            let holds = match code {
                JMP => false,
                S_GE => usize::from(port) >= operand(),
                S_LE => usize::from(port) <= operand(),
                _ => panic!("op {code}"),
            };
            let step = if holds { yes } else { no };
            at += step;
            len -= step as isize;
        }
        len == 0
    }

    /// `inet_diag_bc_audit`, for port comparisons and jumps.
    fn audit(program: &[u8]) -> bool {
        let total = program.len() as isize;
        // Where `yes` moves from the start land, as lengths left.
        let mut line = vec![total];
        let (mut at, mut len) = (0, total);
        while len > 0 {
            let (code, yes, _) = read(program, at);
            if yes < OP || yes % 4 != 0 || (code != JMP && yes < 2 * OP) {
                return false;
            }
            at += yes;
            len -= yes as isize;
            line.push(len);
        }
        if len != 0 {
            return false;
        }
        let (mut at, mut len) = (0, total);
        while len > 0 {
            let (code, yes, no) = read(program, at);
            let min = if code == JMP { OP } else { 2 * OP };
            let no = no as isize;
            if no < min as isize || no > len + 4 || no % 4 != 0 {
                return false;
            }
            if no < len && !line.contains(&(len - no)) {
                return false;
            }
            at += yes;
            len -= yes as isize;
        }
        true
    }

    #[test]
    fn consecutive_ports_make_one_range() {
        assert_eq!(
            ranges(&[80, 443, 8080, 8081, 8082, 9090]),
            [(80, 80), (443, 443), (8080, 8082), (9090, 9090)]
        );
        assert_eq!(ranges(&[0, 1, 65534, 65535]), [(0, 1), (65534, 65535)]);
        assert_eq!(ranges(&[]), []);
    }

    #[test]
    fn too_many_ranges_merge_where_they_are_closest() {
        // 40 ports 1,000 apart, and 8 more each 2 from one of them.
        let mut ports: Vec<u16> = (0..40).map(|i| 1000 + 1000 * i).collect();
        let close: Vec<u16> = (0..8).map(|i| 1002 + 5000 * i).collect();
        ports.extend(&close);
        ports.sort_unstable();
        let merged = ranges(&ports);
        assert_eq!(merged.len(), MAX_RANGES);
        let range_of = |port| merged.iter().position(|&(l, h)| (l..=h).contains(&port));
        for port in &ports {
            assert!(range_of(*port).is_some(), "{port}");
        }
        for port in close {
            assert_eq!(range_of(port), range_of(port - 2));
        }
        // Equal gaps: merged from the front, never below the limit.
        let even: Vec<u16> = (0..100).map(|i| 10 * i).collect();
        let merged = ranges(&even);
        assert_eq!(merged.len(), MAX_RANGES);
        assert!(
            even.iter()
                .all(|p| merged.iter().any(|&(l, h)| (l..=h).contains(p)))
        );
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn one_port_is_two_comparisons() {
        // 8080 = 0x1f90.
        assert_eq!(
            program(&[(8080, 8080)]),
            [
                S_GE, 8, 20, 0, 0, 0, 0x90, 0x1f, // >= 8080, else past the end
                S_LE, 8, 12, 0, 0, 0, 0x90, 0x1f, // <= 8080, else past the end
            ]
        );
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn ranges_are_joined_by_jumps_to_the_end() {
        // 80, then 8080-8082 (0x1f90-0x1f92): 36 bytes.
        assert_eq!(
            program(&[(80, 80), (8080, 8082)]),
            [
                S_GE, 8, 20, 0, 0, 0, 80, 0, // >= 80, else to the next range
                S_LE, 8, 12, 0, 0, 0, 80, 0, // <= 80, else to the next range
                JMP, 4, 20, 0, // held: to the end (16 + 20 = 36)
                S_GE, 8, 20, 0, 0, 0, 0x90, 0x1f, // >= 8080, else past the end
                S_LE, 8, 12, 0, 0, 0, 0x92, 0x1f, // <= 8082, else past the end
            ]
        );
    }

    #[test]
    fn a_program_keeps_exactly_its_ports_and_passes_the_kernels_check() {
        for set in [
            vec![(8080, 8080)],
            vec![(0, 0), (65535, 65535)],
            vec![(80, 80), (443, 444), (8080, 8090), (9000, 9000)],
            (0..MAX_RANGES as u16).map(|i| (i * 7, i * 7 + 2)).collect(),
        ] {
            let program = program(&set);
            assert_eq!(program.len(), program_len(set.len()));
            assert!(audit(&program), "{set:?}");
            for port in 0..=u16::MAX {
                let wanted = set.iter().any(|&(l, h)| (l..=h).contains(&port));
                assert_eq!(keeps(&program, port), wanted, "{port} in {set:?}");
            }
        }
    }

    #[test]
    fn the_checks_mirror_refuses_a_jump_between_ops() {
        let mut bad = program(&[(80, 80), (90, 90)]);
        bad[2] = 4; // `no` of the first comparison into its own operand
        assert!(!audit(&bad));
    }
}
