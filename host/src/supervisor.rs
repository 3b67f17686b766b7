//! The PID 1 duties, like tini: start the app in its own process group,
//! receive every signal on one thread, reap every zombie, report exits.
//!
//! All catchable signals are blocked in every thread from the start and
//! taken synchronously by one thread with `sigwaitinfo`, which turns them
//! into events. Blocked signals are queued even for PID 1, whose default
//! dispositions the kernel would otherwise ignore. One reaper collects every
//! child: the app, the exec probes' commands, and orphans re-parented to us.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(u8),
    /// It was killed by this signal.
    Signal(i32),
}

impl Exit {
    fn from_wait_status(status: libc::c_int) -> Exit {
        if libc::WIFSIGNALED(status) {
            Exit::Signal(libc::WTERMSIG(status))
        } else {
            Exit::Code(libc::WEXITSTATUS(status) as u8)
        }
    }

    /// The status the agent exits with: the code, or 128 + the signal, as a
    /// shell reports it.
    pub fn status(self) -> i32 {
        match self {
            Exit::Code(code) => code as i32,
            Exit::Signal(signal) => 128 + signal,
        }
    }
}

/// Signals the kernel raises for a fault in this very thread; they must keep
/// their handlers (wasmtime turns them into traps), so they are never blocked.
const SYNCHRONOUS: [libc::c_int; 7] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGSYS,
    libc::SIGABRT,
];

fn catchable() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigfillset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for signal in SYNCHRONOUS {
            libc::sigdelset(&mut set, signal);
        }
        set
    }
}

/// Blocks every catchable signal in this thread and every thread it starts.
/// Call first thing, before any other thread exists.
pub fn block_signals() {
    let set = catchable();
    // SAFETY: a valid set; the old mask is not needed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "pthread_sigmask");
}

/// Makes orphaned descendants ours to reap when we are not PID 1 (in a
/// container we are; under a shell or a test we are not).
pub fn become_subreaper() {
    if std::process::id() != 1 {
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
}

/// Why the app could not be started, with the exit status a shell uses.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{program}: command not found")]
    NotFound { program: String },
    #[error("{program}: permission denied")]
    NotExecutable { program: String },
    #[error("{program}: {source}")]
    Other { program: String, source: io::Error },
}

impl SpawnError {
    /// 127 for not found, 126 for not executable, as in a shell.
    pub fn status(&self) -> i32 {
        match self {
            SpawnError::NotFound { .. } => 127,
            SpawnError::NotExecutable { .. } | SpawnError::Other { .. } => 126,
        }
    }
}

/// Collects every exited child with `waitpid(-1)`, and hands each status to
/// whoever registered that pid. Spawning happens under the same lock, so a
/// child that exits at once is never reaped before it is registered.
#[derive(Default)]
pub struct Reaper {
    waiting: Mutex<HashMap<i32, oneshot::Sender<Exit>>>,
}

impl Reaper {
    /// Spawns `command`; the receiver gets its exit.
    pub fn spawn(&self, command: &mut Command) -> io::Result<(i32, oneshot::Receiver<Exit>)> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let child = command.spawn()?;
        let pid = child.id() as i32;
        let (tx, rx) = oneshot::channel();
        waiting.insert(pid, tx);
        Ok((pid, rx))
    }

    /// Reaps every child that has exited.
    pub fn reap(&self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let mut status = 0;
            // SAFETY: a valid pointer to a local.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            let exit = Exit::from_wait_status(status);
            match waiting.remove(&pid) {
                Some(tx) => {
                    let _ = tx.send(exit);
                }
                None => tracing::debug!(pid, ?exit, "reaped an orphan"),
            }
        }
    }
}

/// Starts the app: its own process group, stdio inherited, and the signals
/// we block or ignore back to the defaults an app expects.
pub fn spawn_app(
    reaper: &Reaper,
    argv: &[OsString],
) -> Result<(i32, oneshot::Receiver<Exit>), SpawnError> {
    let program = argv[0].to_string_lossy().into_owned();
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]).process_group(0);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe { command.pre_exec(reset_signals) };
    reaper
        .spawn(&mut command)
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => SpawnError::NotFound { program },
            io::ErrorKind::PermissionDenied => SpawnError::NotExecutable { program },
            _ => SpawnError::Other { program, source },
        })
}

/// Unblocks every signal and restores SIGPIPE (which the Rust runtime
/// ignores); exec resets handled signals to their defaults by itself.
fn reset_signals() -> io::Result<()> {
    // SAFETY: sigemptyset, sigprocmask and signal are async-signal-safe.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    Ok(())
}

/// A command for a probe: no stdin, output discarded, default signals.
pub fn quiet_command(argv: &[String]) -> Command {
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: as in `spawn_app`.
    unsafe { command.pre_exec(reset_signals) };
    command
}

/// Takes every blocked signal on a thread of its own: SIGCHLD reaps, the
/// others go to `deliver` (by number) until it returns false.
pub fn start_signal_thread(
    reaper: Arc<Reaper>,
    mut deliver: impl FnMut(i32) -> bool + Send + 'static,
) {
    std::thread::Builder::new()
        .name("lameduck-signals".into())
        .spawn(move || {
            let set = catchable();
            // Anything that exited before this thread started is waiting.
            reaper.reap();
            loop {
                // SAFETY: a valid set; siginfo is not needed.
                let signal = unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) };
                match signal {
                    -1 => continue, // EINTR
                    libc::SIGCHLD => reaper.reap(),
                    signal => {
                        if !deliver(signal) {
                            return;
                        }
                    }
                }
            }
        })
        .expect("spawn the signal thread");
}

/// Sends `signal` to one process.
pub fn kill(pid: i32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, signal) };
}

/// Sends `signal` to a whole process group.
pub fn kill_group(pgid: i32, signal: i32) {
    // SAFETY: as above; a negative pid names the group.
    unsafe { libc::kill(-pgid, signal) };
}
