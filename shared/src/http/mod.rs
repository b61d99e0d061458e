//! The HTTP server of both processes' listeners, in place of `axum::serve`, which has no
//! timeouts and no cap: HTTP/1 with deadlines for a request's head, an idle kept-alive
//! connection, a whole body and a write the client does not read ([`Timeouts`]), a cap
//! on open connections, a lingering close after an answer that left a body unread, and
//! a graceful stop that lets requests in flight finish (within a grace period).

mod timeouts;

pub use timeouts::Timeouts;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use timeouts::{Clock, DeadlineBody, GuardedIo};

/// A whole request head within 10 s (SPEC.md), a whole body within 10 s of its head, a
/// write that moves within 10 s, and a kept-alive connection idle for at most 60 s:
/// longer than most clients keep an idle connection, so that a client does not send a
/// request on a connection the server is closing.
pub const TIMEOUTS: Timeouts = Timeouts {
    head: Duration::from_secs(10),
    idle: Duration::from_secs(60),
    body: Duration::from_secs(10),
    write: Duration::from_secs(10),
};
/// After the stop signal, how long requests in flight may take before the server
/// returns anyway.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// Pause after `accept` failed (out of file descriptors, say) before trying again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);
/// A lingering close reads away at most this much of what a client still sends...
const LINGER_BYTES: usize = 64 << 20;
/// ...and stops when nothing has come for this long.
const LINGER_QUIET: Duration = Duration::from_secs(2);

/// File descriptors kept for what is not a client connection: the pools to Redis,
/// RabbitMQ and PostgreSQL, the metrics listener, logs.
const RESERVED_FILES: usize = 128;

/// `max_connections`, lowered if the process may not open that many files (its soft
/// `RLIMIT_NOFILE`, from /proc/self/limits): past the limit, accepting would fail and
/// the cap would never be reached. The limit is unknown off Linux: no change.
pub fn fit_to_file_limit(max_connections: usize) -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    match open_files_limit(&limits) {
        Some(files) if files < max_connections + RESERVED_FILES => {
            let fitted = files.saturating_sub(RESERVED_FILES).max(1);
            tracing::warn!(
                max_connections,
                files,
                fitted,
                "the file limit (ulimit -n) is too low for HTTP_MAX_CONNECTIONS; serving fewer"
            );
            fitted
        }
        _ => max_connections,
    }
}

/// The soft limit on open files in the text of /proc/self/limits.
fn open_files_limit(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How many connections a listener keeps open.
#[derive(Clone)]
pub struct Caps {
    /// At once, over all clients: past it, new connections wait in the listen backlog.
    pub total: usize,
    /// At once from one client address (an IPv6 client's /64), if capped: past it, a
    /// new connection from that address is closed at once.
    pub per_client: Option<PerClient>,
}

/// The cap on one client address's connections.
#[derive(Clone)]
pub struct PerClient {
    pub limit: usize,
    /// Peers the cap does not apply to: a proxy in front carries many clients.
    pub exempt: Arc<dyn Fn(IpAddr) -> bool + Send + Sync>,
}

impl Caps {
    /// `total` connections, with no cap per client.
    pub fn total(total: usize) -> Self {
        Self {
            total,
            per_client: None,
        }
    }
}

/// When at most one in this many connections is left, kept-alive connections may idle
/// only [`CROWDED_IDLE`]: an idle connection then costs a client that waits.
const CROWDED_SHARE: usize = 10;
const CROWDED_IDLE: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` within `caps`, until `shutdown` completes; then stops
/// accepting and waits for the connections to finish the requests they are in.
/// Handlers can read the peer's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    caps: Caps,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max_connections = caps.total.max(1);
    let permits = Arc::new(Semaphore::new(max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (crowded_tx, crowded_rx) = watch::channel(false);
    let crowded_tx = Arc::new(crowded_tx);
    let clients = Arc::new(ClientCounts::default());
    let builder = Arc::new(connection_builder());
    // Whether the connections left are few; told to every connection when it changes.
    let crowding = {
        let (permits, crowded_tx) = (permits.clone(), crowded_tx.clone());
        move || {
            let crowded = permits.available_permits() * CROWDED_SHARE <= max_connections;
            crowded_tx.send_if_modified(|was| std::mem::replace(was, crowded) != crowded);
        }
    };
    tokio::pin!(shutdown);
    loop {
        // A permit first: past the cap, new connections wait in the listen backlog.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let counted = match &caps.per_client {
            Some(cap) if !(cap.exempt)(peer.ip()) => {
                match clients.clone().take(peer.ip(), cap.limit) {
                    Some(counted) => Some(counted),
                    None => {
                        // Dropping the stream closes it: one address may not hold them all.
                        tracing::debug!(%peer, "too many connections from one client");
                        continue;
                    }
                }
            }
            _ => None,
        };
        crowding();
        let (app, builder, stopping) = (app.clone(), builder.clone(), stop_rx.clone());
        let (crowded, crowding) = (crowded_rx.clone(), crowding.clone());
        tokio::spawn(async move {
            serve_connection(&builder, stream, peer, app, timeouts, stopping, crowded).await;
            drop(counted);
            drop(permit);
            crowding();
        });
    }
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it is done: all of them back means all done.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(STOP_GRACE, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the grace period; stopping anyway");
    }
    Ok(())
}

/// How every connection is served: HTTP/1, without hyper's own head timeout.
fn connection_builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    // The connection's own reads bound the head and idle waits (GuardedIo).
    builder.header_read_timeout(None);
    builder
}

/// Serves the requests of one connection (a `TcpStream`, or an in-memory stream in
/// tests) until the client closes it, a wait runs past its timeout, or `stopping`
/// turns true and the request in flight, if any, is answered.
async fn serve_connection<S>(
    builder: &http1::Builder,
    stream: S,
    peer: SocketAddr,
    app: Router,
    timeouts: Timeouts,
    mut stopping: watch::Receiver<bool>,
    crowded: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let clock = Clock::new();
    let service = hyper::service::service_fn({
        let clock = clock.clone();
        move |request: hyper::Request<Incoming>| {
            clock.serving();
            let mut request = request.map(|body| {
                axum::body::Body::new(DeadlineBody::new(body, timeouts.body, clock.clone()))
            });
            request.extensions_mut().insert(ConnectInfo(peer));
            let answer = app.clone().oneshot(request);
            let clock = clock.clone();
            // Boxed: the connection is polled without its shutdown, which needs it Unpin.
            Box::pin(async move {
                let answer = answer.await;
                clock.served();
                answer
            })
        }
    });
    let stream = GuardedIo::new(stream, clock.clone(), timeouts.write);
    let mut connection = builder.serve_connection(TokioIo::new(stream), service);
    let overdue = overdue(&clock, timeouts, crowded);
    tokio::pin!(overdue);
    let mut told_to_stop = false;
    let served = loop {
        tokio::select! {
            served = std::future::poll_fn(|cx| connection.poll_without_shutdown(cx)) => break served,
            why = overdue.as_mut() => {
                // Dropping the connection closes it.
                tracing::debug!(%peer, why, "connection closed");
                return;
            }
            _ = stopping.wait_for(|stop| *stop), if !told_to_stop => {
                told_to_stop = true;
                // Finish the request in flight, if any, then close.
                std::pin::Pin::new(&mut connection).graceful_shutdown();
            }
        }
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, "connection ended");
        return;
    }
    let stream = connection.into_parts().io.into_inner().into_inner();
    close(stream, clock.body_left_unread(), timeouts.body).await;
}

/// Returns when the connection has waited too long (see [`Clock::overdue`]), with the
/// idle wait cut to [`CROWDED_IDLE`] while the listener is crowded.
async fn overdue(
    clock: &Clock,
    timeouts: Timeouts,
    mut crowded: watch::Receiver<bool>,
) -> &'static str {
    loop {
        let now = if *crowded.borrow_and_update() {
            Timeouts {
                idle: timeouts.idle.min(CROWDED_IDLE),
                ..timeouts
            }
        } else {
            timeouts
        };
        tokio::select! {
            why = clock.overdue(now) => return why,
            changed = crowded.changed() => {
                if changed.is_err() {
                    return clock.overdue(now).await;
                }
            }
        }
    }
}

/// Open connections by client (an IPv4 address, or an IPv6 address's /64: one host
/// commonly holds a whole /64).
#[derive(Default)]
struct ClientCounts(std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>);

/// One connection counted for its client, until dropped.
struct Counted {
    counts: Arc<ClientCounts>,
    client: IpAddr,
}

impl ClientCounts {
    /// Counts a connection of `peer`'s client, unless it has `limit` open already.
    fn take(self: Arc<Self>, peer: IpAddr, limit: usize) -> Option<Counted> {
        let client = client_of(peer);
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let open = counts.entry(client).or_default();
        if *open >= limit {
            return None;
        }
        *open += 1;
        drop(counts);
        Some(Counted {
            counts: self,
            client,
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = counts.get_mut(&self.client) {
            *open -= 1;
            if *open == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

/// The client a peer address counts as.
fn client_of(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from_bits(
            v6.to_bits() & !((1u128 << 64) - 1),
        )),
        v4 => v4,
    }
}

/// Ends a connection whose last answer is written: shuts our side (the client reads the
/// end of the answer), and if a request body was left unread, reads away what the client
/// still sends, for at most `within`, before closing. Closing a socket with unread bytes
/// makes the kernel reset the connection, and a client still writing its body would meet
/// the reset, and may lose the answer it had not read yet (asyncio ends the whole
/// connection when a write fails).
async fn close<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    body_left_unread: bool,
    within: Duration,
) {
    if stream.shutdown().await.is_err() || !body_left_unread {
        return;
    }
    let until = tokio::time::Instant::now() + within;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        let quiet = (tokio::time::Instant::now() + LINGER_QUIET).min(until);
        match tokio::time::timeout_at(quiet, stream.read(&mut buffer)).await {
            Ok(Ok(read)) if read > 0 => drained += read,
            // The client closed, the connection failed, or it went quiet: done.
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::{get, post};

    #[test]
    fn one_client_is_an_address_or_an_ipv6_64_and_its_connections_are_capped() {
        use super::{ClientCounts, client_of};
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("an address");
        assert_eq!(client_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_of(ip("::ffff:203.0.113.9")), ip("203.0.113.9"));
        let counts = std::sync::Arc::new(ClientCounts::default());
        let held: Vec<_> = (0..3)
            .map(|n| counts.clone().take(ip(&format!("2001:db8:1:2::{n}")), 3))
            .collect();
        assert!(held.iter().all(Option::is_some));
        assert!(
            counts.clone().take(ip("2001:db8:1:2::9"), 3).is_none(),
            "same /64"
        );
        assert!(
            counts.clone().take(ip("2001:db8:1:3::1"), 3).is_some(),
            "another /64"
        );
        drop(held);
        assert!(
            counts.clone().take(ip("2001:db8:1:2::9"), 3).is_some(),
            "given back"
        );
    }
    use tokio::io::{DuplexStream, WriteHalf};

    use super::*;

    /// The far end of a closed connection: what it could still write, and whether it
    /// saw our end of stream.
    async fn client_writes_after_close(body_left_unread: bool, bytes: usize) -> (usize, bool) {
        let (server, mut client) = tokio::io::duplex(64 * 1024);
        let closing = tokio::spawn(close(server, body_left_unread, Duration::from_secs(10)));
        let mut end = [0u8; 1];
        let saw_end = client.read(&mut end).await.is_ok_and(|read| read == 0);
        let chunk = vec![b'9'; 64 * 1024];
        let mut written = 0;
        while written < bytes && client.write_all(&chunk).await.is_ok() {
            written += chunk.len();
        }
        drop(client);
        let _ = closing.await;
        (written, saw_end)
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_body_left_unread_the_close_reads_what_still_comes() {
        assert_eq!(
            client_writes_after_close(true, 8 << 20).await,
            (8 << 20, true),
            "every byte of the body is taken"
        );
        let (written, saw_end) = client_writes_after_close(false, 8 << 20).await;
        assert!(saw_end);
        assert!(
            written < 8 << 20,
            "without a body left unread nothing is read"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_lingering_close_is_bounded_in_time_and_size() {
        // A client that goes quiet is left after LINGER_QUIET.
        let (server, _client) = tokio::io::duplex(1024);
        let started = tokio::time::Instant::now();
        close(server, true, Duration::from_secs(10)).await;
        assert_eq!(started.elapsed(), LINGER_QUIET);
        // One that keeps writing is left at LINGER_BYTES.
        let (written, _) = client_writes_after_close(true, 2 * LINGER_BYTES).await;
        assert!(
            (LINGER_BYTES..LINGER_BYTES + (1 << 20)).contains(&written),
            "{written}"
        );
    }

    /// Distinct waits, so that a test can tell which one ended a connection.
    const T: Timeouts = Timeouts {
        head: Duration::from_secs(10),
        idle: Duration::from_secs(60),
        body: Duration::from_secs(7),
        write: Duration::from_secs(5),
    };
    const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

    /// The client's end of a connection served by `serve_connection` over an in-memory
    /// stream, and the sender of its stop signal.
    fn connect() -> (DuplexStream, watch::Sender<bool>) {
        let app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/echo", post(|body: String| async move { body }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(20)).await;
                    "done"
                }),
            );
        let (server, client) = tokio::io::duplex(64 * 1024);
        let (stop, stopping) = watch::channel(false);
        let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
        tokio::spawn(async move {
            let (_crowded_tx, crowded) = watch::channel(false);
            serve_connection(
                &connection_builder(),
                server,
                peer,
                app,
                T,
                stopping,
                crowded,
            )
            .await;
        });
        (client, stop)
    }

    /// Sends `bytes` over and over, a byte a second (the first at once), until the server
    /// stops taking them.
    fn trickle(mut writer: WriteHalf<DuplexStream>, bytes: &'static [u8]) {
        tokio::spawn(async move {
            for byte in bytes.iter().cycle() {
                if writer.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    /// Reads one answer whose body is `ending`.
    async fn answer(client: &mut (impl AsyncRead + Unpin), ending: &str) -> String {
        let mut read = Vec::new();
        let mut buffer = [0u8; 1024];
        while !read.ends_with(ending.as_bytes()) {
            let n = client.read(&mut buffer).await.expect("an answer");
            assert!(
                n > 0,
                "closed in an answer: {}",
                String::from_utf8_lossy(&read)
            );
            read.extend_from_slice(&buffer[..n]);
        }
        String::from_utf8_lossy(&read).into_owned()
    }

    /// Reads until the server closes the connection; what came before. Fails if it is
    /// still open after ten minutes.
    async fn closed(client: &mut (impl AsyncRead + Unpin)) -> String {
        let mut read = Vec::new();
        let reading = tokio::time::timeout(Duration::from_secs(600), client.read_to_end(&mut read));
        assert!(reading.await.is_ok(), "still open after ten minutes");
        String::from_utf8_lossy(&read).into_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_trickled_byte_by_byte_is_cut_at_the_head_timeout() {
        let (client, _stop) = connect();
        let started = tokio::time::Instant::now();
        let (mut reader, writer) = tokio::io::split(client);
        trickle(
            writer,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa",
        );
        assert_eq!(closed(&mut reader).await, "", "no answer");
        assert_eq!(started.elapsed(), T.head);
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_alive_connection_is_cut_at_the_idle_timeout_not_the_head_one() {
        let (mut client, _stop) = connect();
        client.write_all(HEALTHZ).await.expect("send a request");
        assert!(answer(&mut client, "ok").await.starts_with("HTTP/1.1 200"));
        // Past the head timeout the connection is still there, and takes a request.
        tokio::time::sleep(T.head + Duration::from_secs(1)).await;
        client.write_all(HEALTHZ).await.expect("send a request");
        assert!(answer(&mut client, "ok").await.starts_with("HTTP/1.1 200"));
        let answered = tokio::time::Instant::now();
        assert_eq!(closed(&mut client).await, "");
        assert_eq!(answered.elapsed(), T.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_alive_connection_owes_its_next_head_within_the_head_timeout_of_its_first_byte()
    {
        let (mut client, _stop) = connect();
        client.write_all(HEALTHZ).await.expect("send a request");
        assert!(answer(&mut client, "ok").await.starts_with("HTTP/1.1 200"));
        tokio::time::sleep(T.idle - Duration::from_secs(5)).await;
        let first_byte = tokio::time::Instant::now();
        let (mut reader, writer) = tokio::io::split(client);
        trickle(
            writer,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa",
        );
        assert_eq!(closed(&mut reader).await, "");
        assert_eq!(first_byte.elapsed(), T.head);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_trickled_byte_by_byte_is_cut_at_the_body_timeout() {
        let (mut client, _stop) = connect();
        client
            .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
            .await
            .expect("send a request");
        let started = tokio::time::Instant::now();
        let (mut reader, writer) = tokio::io::split(client);
        trickle(writer, b" ");
        let answer = closed(&mut reader).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.ends_with("did not arrive in time"), "{answer}");
        assert_eq!(started.elapsed(), T.body);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_reads_none_of_its_answers_is_cut_at_the_write_timeout() {
        let (client, _stop) = connect();
        let started = tokio::time::Instant::now();
        let (_reader, mut writer) = tokio::io::split(client);
        let requests = HEALTHZ.repeat(64);
        let writing = tokio::time::timeout(Duration::from_secs(600), async {
            while writer.write_all(&requests).await.is_ok() {}
        });
        assert!(
            writing.await.is_ok(),
            "still taking requests after ten minutes"
        );
        assert_eq!(started.elapsed(), T.write);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_lets_the_request_in_flight_finish_then_closes() {
        let (mut client, stop) = connect();
        client
            .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("send a request");
        let started = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.send(true).expect("the connection listens");
        let answer = closed(&mut client).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
        assert_eq!(started.elapsed(), Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_closes_an_idle_connection_at_once() {
        let (mut client, stop) = connect();
        client.write_all(HEALTHZ).await.expect("send a request");
        assert!(answer(&mut client, "ok").await.starts_with("HTTP/1.1 200"));
        let stopped = tokio::time::Instant::now();
        stop.send(true).expect("the connection listens");
        assert_eq!(closed(&mut client).await, "");
        assert_eq!(stopped.elapsed(), Duration::ZERO);
    }

    #[test]
    fn the_open_files_limit_is_read_from_proc() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max cpu time              unlimited            unlimited            seconds\n\
                      Max open files            1024                 4096                 files\n";
        assert_eq!(open_files_limit(limits), Some(1024));
        assert_eq!(open_files_limit("nothing here"), None);
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(open_files_limit(unlimited), None);
    }
}
