//! What a policy writes — its stdout and stderr, line by line, and its
//! `log` calls — sent to the agent's log, tagged with the policy's source,
//! at a bounded rate and a bounded length.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi_io::bytes::Bytes;

use lameduck_core::record::printable;

use super::Level;

/// Longest line kept; the rest of a longer line is dropped.
pub const MAX_LINE: usize = 1024;

/// Lines a policy may write at once, before the steady rate applies.
const BURST: f64 = 200.0;

/// Lines a policy may write a second, in the long run.
const PER_SECOND: f64 = 50.0;

/// How many lines one policy may still write: a token bucket shared by all
/// its instances and streams, so that a policy printing in a loop (or being
/// instantiated again after each failure) cannot flood the agent's log.
pub struct Lines {
    tag: Arc<str>,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
    /// Lines dropped since the last one let through.
    dropped: u64,
}

impl Lines {
    pub fn new(tag: &str) -> Arc<Lines> {
        Arc::new(Lines {
            tag: Arc::from(tag),
            bucket: Mutex::new(Bucket {
                tokens: BURST,
                at: Instant::now(),
                dropped: 0,
            }),
        })
    }

    /// Logs `line` (from `stream`, or from the `log` import) if the budget
    /// allows, else counts it.
    pub fn write(&self, level: Level, stream: Option<&'static str>, line: &str) {
        if self.admit(1) == 1 {
            self.emit(level, stream, line);
        }
    }

    /// Takes the budget for up to `lines` lines: how many may be written
    /// now; the rest are counted as dropped. The first line dropped, and the
    /// next one let through, say so. One lock for a whole write, so that a
    /// flood costs the policy little more than its bytes.
    fn admit(&self, lines: u64) -> u64 {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(bucket.at).as_secs_f64() * PER_SECOND;
        bucket.tokens = (bucket.tokens + refill).min(BURST);
        bucket.at = now;
        let admitted = (bucket.tokens.floor() as u64).min(lines);
        bucket.tokens -= admitted as f64;
        let policy = &*self.tag;
        if admitted > 0 && bucket.dropped > 0 {
            let dropped = std::mem::take(&mut bucket.dropped);
            tracing::warn!(target: "policy", policy, "{dropped} lines of the policy were dropped");
        }
        if admitted < lines {
            if bucket.dropped == 0 {
                tracing::warn!(
                    target: "policy",
                    policy,
                    "the policy writes more than {PER_SECOND} lines a second: dropping lines"
                );
            }
            bucket.dropped += lines - admitted;
        }
        admitted
    }

    fn emit(&self, level: Level, stream: Option<&'static str>, line: &str) {
        let policy = &*self.tag;
        // The log's formatter escapes some controls, not all (a carriage
        // return, a right-to-left override): `check`, `replay` and
        // `simulate` write these lines to the operator's terminal.
        let line = printable(cut(line));
        match (level, stream) {
            (_, Some(stream)) => tracing::info!(target: "policy", policy, stream, "{line}"),
            (Level::Debug, None) => tracing::debug!(target: "policy", policy, "{line}"),
            (Level::Info, None) => tracing::info!(target: "policy", policy, "{line}"),
            (Level::Warn, None) => tracing::warn!(target: "policy", policy, "{line}"),
            (Level::Error, None) => tracing::error!(target: "policy", policy, "{line}"),
        }
    }
}

/// At most [`MAX_LINE`] bytes of `line`, at a character boundary.
fn cut(line: &str) -> &str {
    let mut end = line.len().min(MAX_LINE);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

/// A log-backed output stream. Clones share the pending partial line.
#[derive(Clone)]
pub struct GuestOutput {
    lines: Arc<Lines>,
    stream: &'static str,
    pending: Arc<Mutex<Vec<u8>>>,
}

impl GuestOutput {
    pub fn new(lines: Arc<Lines>, stream: &'static str) -> Self {
        GuestOutput {
            lines,
            stream,
            pending: Arc::default(),
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let ends = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        let mut admitted = if ends > 0 { self.lines.admit(ends) } else { 0 };
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            if admitted > 0 {
                let room = MAX_LINE.saturating_sub(pending.len());
                pending.extend_from_slice(&rest[..end.min(room)]);
                let line = String::from_utf8_lossy(&pending);
                self.lines.emit(Level::Info, Some(self.stream), &line);
                admitted -= 1;
            }
            pending.clear();
            rest = &rest[end + 1..];
        }
        let room = MAX_LINE.saturating_sub(pending.len());
        pending.extend_from_slice(&rest[..rest.len().min(room)]);
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        let line = "é".repeat(MAX_LINE);
        let kept = cut(&line);
        assert!(kept.len() <= MAX_LINE && kept.len() >= MAX_LINE - 1);
        assert_eq!(cut("short"), "short");
    }

    #[test]
    fn a_flood_is_held_to_the_budget() {
        let lines = Lines::new("test");
        for _ in 0..10_000 {
            lines.write(Level::Info, Some("stdout"), "x");
        }
        let bucket = lines.bucket.lock().unwrap();
        // The burst, and what refilled while writing; the rest counted.
        assert!(
            bucket.dropped >= 10_000 - BURST as u64 - 50,
            "{}",
            bucket.dropped
        );
    }
}
