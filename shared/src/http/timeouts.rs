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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::sync::mpsc;

    use super::*;

    /// Distinct waits, so that a test can tell which one ended a connection.
    const T: Timeouts = Timeouts {
        head: Duration::from_secs(10),
        idle: Duration::from_secs(60),
        body: Duration::from_secs(7),
        write: Duration::from_secs(5),
    };

    /// When `clock`'s connection is overdue, and why.
    fn watchdog(clock: &Arc<Clock>) -> tokio::task::JoinHandle<(Instant, &'static str)> {
        let clock = clock.clone();
        tokio::spawn(async move {
            let why = clock.overdue(T).await;
            (Instant::now(), why)
        })
    }

    /// The server's side of a connection, read through `clock`, and the client's.
    fn connection(clock: &Arc<Clock>) -> (GuardedIo<DuplexStream>, DuplexStream) {
        let (server, client) = tokio::io::duplex(1024);
        (GuardedIo::new(server, clock.clone(), T.write), client)
    }

    /// The client sends `bytes` and the server reads them.
    async fn send(server: &mut GuardedIo<DuplexStream>, client: &mut DuplexStream, bytes: &[u8]) {
        client.write_all(bytes).await.expect("send");
        let mut read = vec![0; bytes.len()];
        server.read_exact(&mut read).await.expect("receive");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_owes_its_whole_first_head_within_the_head_timeout() {
        let clock = Clock::new();
        let started = Instant::now();
        let overdue = watchdog(&clock);
        let (mut server, mut client) = connection(&clock);
        // A byte a second: every read comes well within any per-read timeout.
        for byte in b"GET / HTTP/1.1\r\nHo" {
            tokio::time::sleep(Duration::from_secs(1)).await;
            send(&mut server, &mut client, &[*byte]).await;
            if overdue.is_finished() {
                break;
            }
        }
        let (at, why) = overdue.await.expect("the watchdog");
        assert_eq!(at - started, T.head);
        assert_eq!(why, "no whole request head in time");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_new_connection_is_cut_at_the_head_timeout() {
        let clock = Clock::new();
        let started = Instant::now();
        assert_eq!(clock.overdue(T).await, "no whole request head in time");
        assert_eq!(started.elapsed(), T.head);
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_alive_idle_connection_is_cut_at_the_idle_timeout() {
        let clock = Clock::new();
        clock.serving();
        tokio::time::sleep(Duration::from_secs(3)).await;
        clock.served();
        let answered = Instant::now();
        assert_eq!(clock.overdue(T).await, "idle for too long");
        assert_eq!(answered.elapsed(), T.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_byte_of_a_next_head_starts_the_head_timeout() {
        let clock = Clock::new();
        let (mut server, mut client) = connection(&clock);
        clock.serving();
        clock.served();
        let overdue = watchdog(&clock);
        tokio::time::sleep(T.idle - Duration::from_secs(5)).await;
        send(&mut server, &mut client, b"G").await;
        let first_byte = Instant::now();
        // Later bytes do not move the deadline.
        for byte in b"ET / HTTP/1.1\r\n" {
            tokio::time::sleep(Duration::from_millis(500)).await;
            send(&mut server, &mut client, &[*byte]).await;
        }
        let (at, why) = overdue.await.expect("the watchdog");
        assert_eq!(at - first_byte, T.head, "not the idle timeout's end");
        assert_eq!(why, "no whole request head in time");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_with_the_service_holds_no_deadline() {
        let clock = Clock::new();
        let (mut server, mut client) = connection(&clock);
        clock.serving();
        // Its body's bytes do not start a head either.
        send(&mut server, &mut client, b"{\"phone\":").await;
        let waited = tokio::time::timeout(10 * T.idle, clock.overdue(T)).await;
        assert!(waited.is_err(), "cut while the service had the request");
        // Once it is answered, the idle timeout runs.
        clock.served();
        let answered = Instant::now();
        assert_eq!(clock.overdue(T).await, "idle for too long");
        assert_eq!(answered.elapsed(), T.idle);
    }

    /// A request body whose chunks come from a channel, as a client sends them.
    struct Trickled(mpsc::Receiver<Bytes>);

    impl Body for Trickled {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.0
                .poll_recv(cx)
                .map(|chunk| chunk.map(|chunk| Ok(Frame::data(chunk))))
        }

        fn is_end_stream(&self) -> bool {
            self.0.is_closed() && self.0.is_empty()
        }
    }

    /// A body that gets a byte every `every`, `bytes` of them, then ends.
    fn trickled(every: Duration, bytes: usize) -> Trickled {
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            for _ in 0..bytes {
                tokio::time::sleep(every).await;
                if tx.send(Bytes::from_static(b" ")).await.is_err() {
                    return;
                }
            }
        });
        Trickled(rx)
    }

    /// The bytes read from `body` before it ended, and how it ended.
    async fn read_all<B: Body<Data = Bytes> + Unpin>(mut body: B) -> (usize, Result<(), B::Error>) {
        let mut read = 0;
        loop {
            match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                None => return (read, Ok(())),
                Some(Err(e)) => return (read, Err(e)),
                Some(Ok(frame)) => read += frame.into_data().map_or(0, |data| data.len()),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_trickled_byte_by_byte_fails_at_the_body_timeout() {
        let clock = Clock::new();
        let started = Instant::now();
        let body = DeadlineBody::new(
            trickled(Duration::from_secs(1), 1000),
            T.body,
            clock.clone(),
        );
        let (read, ended) = read_all(body).await;
        assert!(ended.is_err_and(|e| e.is::<BodyTooSlow>()));
        assert_eq!(started.elapsed(), T.body);
        assert_eq!(read, 6, "the bytes that came in time were read");
        assert!(clock.body_left_unread());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_whole_within_the_body_timeout_is_read_to_its_end() {
        let clock = Clock::new();
        let body = DeadlineBody::new(trickled(Duration::from_secs(1), 6), T.body, clock.clone());
        let (read, ended) = read_all(body).await;
        assert!(ended.is_ok());
        assert_eq!(read, 6);
        assert!(!clock.body_left_unread());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_dropped_before_its_end_is_left_unread() {
        let clock = Clock::new();
        drop(DeadlineBody::new(
            trickled(Duration::from_secs(1), 6),
            T.body,
            clock.clone(),
        ));
        assert!(clock.body_left_unread());
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_makes_no_progress_fails_at_the_write_timeout() {
        let clock = Clock::new();
        let (mut server, _client) = connection(&clock);
        let started = Instant::now();
        let written = server.write_all(&[b'x'; 4096]).await;
        assert!(written.is_err_and(|e| e.kind() == std::io::ErrorKind::TimedOut));
        assert_eq!(started.elapsed(), T.write);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_progresses_slowly_does_not_fail() {
        let clock = Clock::new();
        let (mut server, mut client) = connection(&clock);
        // The client takes 256 bytes at a time, each a little before the write timeout.
        let reading = tokio::spawn(async move {
            let mut chunk = [0; 256];
            let mut read = 0;
            loop {
                tokio::time::sleep(T.write - Duration::from_millis(1)).await;
                match client.read(&mut chunk).await.expect("receive") {
                    0 => return read,
                    n => read += n,
                }
            }
        });
        let started = Instant::now();
        server.write_all(&[b'x'; 4096]).await.expect("the write");
        assert!(started.elapsed() > 2 * T.write, "the write took long");
        server.shutdown().await.expect("the end");
        assert_eq!(reading.await.expect("the reader"), 4096);
    }
}
