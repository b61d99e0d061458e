//! The HTTP server of both processes' listeners, in place of `axum::serve`, which has no
//! header timeout and no cap: HTTP/1 with a deadline for a request's head (which also
//! closes a keep-alive connection that sits idle), a cap on open connections, and a
//! graceful stop that lets requests in flight finish.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// Longest wait for a whole request head, counted from the connection's start or the
/// end of its previous answer: a client that trickles its head, or keeps an idle
/// keep-alive connection, is cut off after it.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a whole request body, once its head has come (the api's router
/// applies it: only a handler knows it wants the body).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after `accept` failed (out of file descriptors, say) before trying again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// Serves `app` on `listener` with at most `max_connections` open at once, until
/// `shutdown` completes; then stops accepting and waits for the connections to finish
/// the requests they are in. Handlers can read the peer's address as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    max_connections: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT);
    let builder = Arc::new(builder);
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
        let (app, builder, stopping) = (app.clone(), builder.clone(), stop_rx.clone());
        tokio::spawn(async move {
            serve_connection(&builder, stream, peer, app, stopping).await;
            drop(permit);
        });
    }
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it is done: all of them back means all done.
    let _ = permits
        .acquire_many(u32::try_from(max_connections.max(1)).unwrap_or(u32::MAX))
        .await;
    Ok(())
}

async fn serve_connection(
    builder: &hyper::server::conn::http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    mut stopping: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request)
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut told_to_stop = false;
    let served = loop {
        tokio::select! {
            served = connection.as_mut() => break served,
            _ = stopping.wait_for(|stop| *stop), if !told_to_stop => {
                told_to_stop = true;
                // Finish the request in flight, if any, then close.
                connection.as_mut().graceful_shutdown();
            }
        }
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, "connection ended");
    }
}
