//! The connection loop: accepts TCP connections and serves HTTP/1.1 on each with hyper, in place
//! of `axum::serve`.
//!
//! Why not `axum::serve`: it gives hyper no timer, and without one hyper has no header read
//! timeout — a connection that sends its request head one byte at a time, or never finishes it,
//! or sits idle after an answer, is kept open forever (slowloris). Each such connection holds a
//! task, a read buffer and a file descriptor, and a few thousand of them leave the server unable
//! to accept anyone, or to open its database. Here every connection must deliver each request head
//! within the timeout (`server.request_timeout_secs`), including the next one on a keep-alive
//! connection, or it is closed. The request's body and its handling are bounded by the request
//! timeout layer of the router (`http::router`).

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// The largest request head (request line and headers) accepted; a larger one is answered 431.
/// hyper's default is its read buffer's limit, about 400 KiB per request, parsed and carried
/// through every layer; common proxies forward 8–32 KiB, so no legitimate client comes near
/// this.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, lets every
/// connection finish the request in hand (idle ones close at once) and returns when all are
/// closed. Handlers see the peer as `ConnectInfo<std::net::SocketAddr>`, as with axum's
/// `into_make_service_with_connect_info`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send,
) {
    let (stop, stopped) = watch::channel(false);
    // Every connection task holds a receiver; `closed` resolves once the last one is dropped.
    let (open, open_marker) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(&error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let mut stopped = stopped.clone();
        let marker = open_marker.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let mut request = request.map(axum::body::Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(request)
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .max_header_size(MAX_HEADER_BYTES);
            let mut connection =
                std::pin::pin!(builder.serve_connection(TokioIo::new(stream), service));
            tokio::select! {
                result = connection.as_mut() => {
                    // A timed-out head, a reset or a malformed request: the client's doing, so
                    // not worth more than a debug line (an attacker could fill the log).
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                }
                () = async { drop(stopped.wait_for(|stop| *stop).await) } => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(marker);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    drop(open_marker);
    open.closed().await;
}

/// What to do when `accept` fails. A connection that was reset before it was accepted concerns
/// only that client. Anything else — typically too many open files — would fail again at once,
/// so the loop pauses for a second (as `axum::serve` and hyper 0.14 did) instead of spinning.
async fn accept_failed(error: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
