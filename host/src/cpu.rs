//! CPU time, for budgets that must not shrink when the machine is busy.

use std::time::Duration;

/// CPU time used by the calling thread: what it cost, not how long it took
/// on a node whose other processes kept it waiting.
pub fn thread_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a local; this clock always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
