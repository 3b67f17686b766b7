//! What keeps the admin server small whatever its clients do: a cap on the
//! connections open at once (more wait in the kernel's accept queue, so a
//! probe that comes in a flood waits its turn rather than being turned
//! away), a few heavy answers (`/status`, the picture,
//! `/metrics`, `PUT /policy`) built at a time, a client that does not send
//! its request head in time or does not read its answer dropped. The
//! kubelet's probes (`/healthz`, `/readyz`) and `/prestop` take none of the
//! heavy turns: a flood of heavy requests never makes them wait.
//!
//! So, in total: at most [`MAX_CONNECTIONS`] connections, each with hyper's
//! buffers (a few KiB), and at most [`HEAVY`] heavy answers (the timeline is
//! bounded to 512 KiB, a picture to about as much) in memory at once.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections served at once; more are not accepted until one ends.
pub const MAX_CONNECTIONS: usize = 256;

/// Heavy answers built and in flight at once; more get 503 at once.
pub const HEAVY: usize = 4;

/// How long a client has to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(2);

/// How long an answer may wait for the client to read it.
pub const WRITE_STALL: Duration = Duration::from_secs(5);

/// The server's limits, shared by its connections.
pub struct Limits {
    places: Arc<Semaphore>,
    heavy: Arc<Semaphore>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            places: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            heavy: Arc::new(Semaphore::new(HEAVY)),
        }
    }
}

impl Limits {
    /// A place for one more connection, once there is room; given back
    /// when dropped.
    pub async fn place(&self) -> OwnedSemaphorePermit {
        self.places
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// A turn for a heavy answer, if one is free. `turns` keeps it until
    /// the connection ends, so that the answer is written (or its reader
    /// dropped) before the next one is built.
    pub fn heavy(&self, turns: &Turns) -> bool {
        match self.heavy.clone().try_acquire_owned() {
            Ok(permit) => {
                turns
                    .0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(permit);
                true
            }
            Err(_) => false,
        }
    }
}

/// The heavy turns a connection holds; given back when it ends.
#[derive(Clone, Default)]
pub struct Turns(Arc<Mutex<Vec<OwnedSemaphorePermit>>>);

/// A connection whose writes may not stall: a write that makes no progress
/// for [`WRITE_STALL`] fails, and the connection with it.
pub struct Stalling<T> {
    inner: T,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> Stalling<T> {
    pub fn new(inner: T) -> Self {
        Stalling {
            inner,
            stalled: None,
        }
    }

    fn check<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client does not read its answer",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Stalling<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Stalling<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
