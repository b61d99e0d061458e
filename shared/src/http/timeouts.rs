//! The waits hyper does not bound the way we want: a request head (10 s for a new
//! connection, or from its first byte on a kept-alive one), an idle kept-alive
//! connection (longer, so that clients which keep connections for a minute do not race
//! a close), a request body that trickles in (a deadline for the whole body, not for
//! each chunk), and an answer the client does not read (a write that makes no progress).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// How long each wait may last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// A whole request head: from the connection's start, or from the first byte of a
    /// head on a kept-alive connection.
    pub head: Duration,
    /// A kept-alive connection with no request on it.
    pub idle: Duration,
    /// A whole request body, from when its head was read.
    pub body: Duration,
    /// A write that makes no progress (the client reads nothing).
    pub write: Duration,
}

/// What a connection is waiting for, shared by its reads, its service and its watchdog.
/// Times are milliseconds since the connection began.
pub struct Clock {
    began: Instant,
    /// Odd while a request is with the service, even between requests.
    phase: AtomicU64,
    /// When the phase last changed.
    changed_ms: AtomicU64,
    /// When the first byte of the next request head came, or [`NO_HEAD`].
    head_ms: AtomicU64,
    /// Tells the watchdog that something above changed.
    changes: Notify,
    /// Set when a request's body was left partly unread (answered before it was read,
    /// e.g. with 413): the connection then closes with a lingering close.
    body_left_unread: AtomicBool,
}

const NO_HEAD: u64 = u64::MAX;

impl Clock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            began: Instant::now(),
            phase: AtomicU64::new(0),
            changed_ms: AtomicU64::new(0),
            head_ms: AtomicU64::new(NO_HEAD),
            changes: Notify::new(),
            body_left_unread: AtomicBool::new(false),
        })
    }

    /// Whether a request's body was left partly unread on this connection.
    pub fn body_left_unread(&self) -> bool {
        self.body_left_unread.load(Ordering::Acquire)
    }

    fn now_ms(&self) -> u64 {
        self.began.elapsed().as_millis() as u64
    }

    /// A request's head was read: it is with the service.
    pub fn serving(&self) {
        self.head_ms.store(NO_HEAD, Ordering::Release);
        self.next_phase();
    }

    /// Its answer is made: the connection waits for the next request.
    pub fn served(&self) {
        self.next_phase();
    }

    fn next_phase(&self) {
        self.changed_ms.store(self.now_ms(), Ordering::Release);
        self.phase.fetch_add(1, Ordering::AcqRel);
        self.changes.notify_one();
    }

    /// Bytes came in; between requests, they start a head.
    fn read_some(&self) {
        if self.phase.load(Ordering::Acquire).is_multiple_of(2)
            && self
                .head_ms
                .compare_exchange(NO_HEAD, self.now_ms(), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.changes.notify_one();
        }
    }

    /// When the wait under way must end, by `timeouts`; `None` while the service has
    /// a request (its body and its answer are bounded elsewhere).
    fn deadline_ms(&self, timeouts: &Timeouts) -> Option<(u64, &'static str)> {
        let phase = self.phase.load(Ordering::Acquire);
        if !phase.is_multiple_of(2) {
            return None;
        }
        let head = self.head_ms.load(Ordering::Acquire);
        let ms = |d: Duration| d.as_millis() as u64;
        Some(if phase == 0 {
            // A new connection owes its first head from the start.
            (ms(timeouts.head), "no whole request head in time")
        } else if head != NO_HEAD {
            (head + ms(timeouts.head), "no whole request head in time")
        } else {
            (
                self.changed_ms.load(Ordering::Acquire) + ms(timeouts.idle),
                "idle for too long",
            )
        })
    }

    /// Returns when the connection has waited too long for a head, or sat idle too
    /// long; dropping the connection then closes it. Why, for the log.
    pub async fn overdue(&self, timeouts: Timeouts) -> &'static str {
        loop {
            let changed = self.changes.notified();
            match self.deadline_ms(&timeouts) {
                None => changed.await,
                Some((deadline, why)) => {
                    let at = self.began + Duration::from_millis(deadline);
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {
                            // Nothing changed meanwhile, or the deadline is the same.
                            if self.deadline_ms(&timeouts).is_some_and(|(d, _)| d <= self.now_ms()) {
                                return why;
                            }
                        }
                        () = changed => {}
                    }
                }
            }
        }
    }
}

/// A connection that marks when request bytes come in, and fails its writes when one
/// makes no progress for too long (a client that reads none of its answers).
pub struct GuardedIo<S> {
    inner: S,
    clock: Arc<Clock>,
    write_timeout: Duration,
    /// Running while a write waits for room.
    write_stall: Option<Pin<Box<Sleep>>>,
}

impl<S> GuardedIo<S> {
    pub fn new(inner: S, clock: Arc<Clock>, write_timeout: Duration) -> Self {
        Self {
            inner,
            clock,
            write_timeout,
            write_stall: None,
        }
    }

    /// The connection inside.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// What became of a write: progress resets the clock; waiting runs it.
    fn watch_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.write_stall = None;
            return polled;
        }
        let limit = self.write_timeout;
        let stall = self
            .write_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client read nothing of its answer",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.read_some();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch_write(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch_write(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch_write(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Why a request body ended early.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTooSlow;

/// A request body that fails once its deadline passes, however its bytes trickle in,
/// and tells its connection's clock if it was dropped before its end.
pub struct DeadlineBody<B: Body> {
    inner: B,
    deadline: Pin<Box<Sleep>>,
    clock: Arc<Clock>,
}

impl<B: Body> DeadlineBody<B> {
    pub fn new(inner: B, within: Duration, clock: Arc<Clock>) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(Instant::now() + within)),
            clock,
        }
    }
}

impl<B: Body> Drop for DeadlineBody<B> {
    fn drop(&mut self) {
        if !self.inner.is_end_stream() {
            self.clock.body_left_unread.store(true, Ordering::Release);
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTooSlow.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
