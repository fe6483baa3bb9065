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
//! timeout layer of the router (`http::router`). A response the client does not read (a zero
//! receive window, or pipelined requests it never collects) must still drain within the same
//! time, or the connection is closed: hyper has no write timeout of its own, so the socket is
//! wrapped in one (`tokio-io-timeout`).
//!
//! At most `server.max_connections` connections are served at once. One more is answered `503`
//! with `Retry-After` and closed at once, so a flood of connections costs the server one
//! accept and one small write each, never a file descriptor held: with every descriptor in use
//! the database and the JWKS fetches would fail for everyone. A fast refusal (rather than
//! leaving connections in the kernel's backlog) lets a load balancer try another instance and
//! shows in the metrics (`frontdesk_http_connections_refused_total`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_io_timeout::TimeoutStream;
use tower::ServiceExt;

/// The largest request head (request line and headers) accepted; a larger one is answered 431.
/// hyper's default is its read buffer's limit, about 400 KiB per request, parsed and carried
/// through every layer; common proxies forward 8–32 KiB, so no legitimate client comes near
/// this.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// What the connection loop allows each client, from the `[server]` settings.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// How long a request head may take to arrive (a keep-alive connection's idle time counts),
    /// and how long a write of the response may wait for the client to read.
    pub io_timeout: Duration,
    /// Connections served at once; one more is refused with 503.
    pub max_connections: usize,
}

/// The answer to a connection over `max_connections`: written once without waiting (it fits any
/// socket's send buffer), then the connection is closed.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
cache-control: no-store\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 91\r\n\
\r\n\
{\"error\":\"temporarily_unavailable\",\"error_description\":\"Too many open connections; retry.\"}";

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, lets every
/// connection finish the request in hand (idle ones close at once) and returns when all are
/// closed. Handlers see the peer as `ConnectInfo<std::net::SocketAddr>`, as with axum's
/// `into_make_service_with_connect_info`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
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
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            refuse_over_capacity(&stream);
            continue;
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
                .header_read_timeout(limits.io_timeout)
                .max_header_size(MAX_HEADER_BYTES);
            let mut stream = TimeoutStream::new(stream);
            stream.set_write_timeout(Some(limits.io_timeout));
            let io = TokioIo::new(Box::pin(stream));
            let mut connection = std::pin::pin!(builder.serve_connection(io, service));
            metrics::gauge!("frontdesk_http_connections_open").increment(1.0);
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
            metrics::gauge!("frontdesk_http_connections_open").decrement(1.0);
            drop(slot);
            drop(marker);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    drop(open_marker);
    open.closed().await;
}

/// Descriptors the process needs besides its connections: the database pool, outgoing JWKS,
/// metadata and discovery fetches, SQLite's files, the listener, logs. A generous allowance;
/// running out of descriptors fails all of these at once.
pub const OTHER_DESCRIPTORS: u64 = 64;

/// The process's soft limit on open files (`ulimit -n`), from `/proc/self/limits`; `None` where
/// that file is missing (off Linux) or says `unlimited`. Read rather than asked of the kernel
/// with `getrlimit` because that needs `unsafe` or another dependency for one number read once.
pub fn open_files_limit() -> Option<u64> {
    parse_open_files_limit(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

/// The soft limit of the `Max open files` row of a `/proc/<pid>/limits` text.
fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let row = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?;
    row.split_whitespace().next()?.parse().ok()
}

/// A warning for start-up when `max_connections` connections and the database pool could
/// use up the open-files limit: the cap would then never be reached, and the process would
/// run out of descriptors first — accept errors, and a database and fetches failing for
/// everyone. `None` when the limit leaves room, or is unknown.
pub fn descriptor_shortfall(
    max_connections: usize,
    database_connections: u32,
    limit: Option<u64>,
) -> Option<String> {
    let limit = limit?;
    let needed = max_connections as u64 + u64::from(database_connections) + OTHER_DESCRIPTORS;
    (needed > limit).then(|| {
        format!(
            "server.max_connections ({max_connections}) and the database pool \
             ({database_connections}) need about {needed} open files, more than this process \
             may open ({limit}, `ulimit -n`); raise the limit (systemd: LimitNOFILE=) or lower \
             server.max_connections to {}",
            limit.saturating_sub(u64::from(database_connections) + OTHER_DESCRIPTORS)
        )
    })
}

/// Answers a connection over the cap without waiting for it: one non-blocking write, then the
/// stream is dropped, which closes it. Whatever part of the request has already arrived is
/// read and discarded first (without waiting for more), since closing a socket with unread data
/// resets the connection and may destroy the answer before the client reads it. A client whose
/// receive window is closed gets no answer, only the close.
fn refuse_over_capacity(stream: &TcpStream) {
    metrics::counter!("frontdesk_http_connections_refused_total").increment(1);
    let mut discard = [0u8; 4096];
    for _ in 0..16 {
        match stream.try_read(&mut discard) {
            Ok(read) if read > 0 => {}
            _ => break,
        }
    }
    let _ = stream.try_write(OVER_CAPACITY);
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units     \n\
Max processes             96370                96370                processes \n\
Max open files            1024                 524288               files     \n\
Max locked memory         8388608              8388608              bytes     \n";

    /// The refusal's hand-written head declares its body's length exactly; a wrong one would
    /// make clients wait for bytes that never come, or cut the JSON short.
    #[test]
    fn the_over_capacity_answer_declares_its_body_length() {
        let text = std::str::from_utf8(OVER_CAPACITY).expect("ASCII");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let declared = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .expect("content-length");
        assert_eq!(declared.parse::<usize>().expect("a number"), body.len());
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(json["error"], "temporarily_unavailable");
    }

    #[test]
    fn the_soft_open_files_limit_is_read_from_proc_limits() {
        assert_eq!(parse_open_files_limit(LIMITS), Some(1024));
        let unlimited = LIMITS.replace(
            "1024                 524288",
            "unlimited            unlimited",
        );
        assert_eq!(parse_open_files_limit(&unlimited), None);
        assert_eq!(parse_open_files_limit("Max processes 1 1 processes"), None);
        #[cfg(target_os = "linux")]
        assert!(open_files_limit().is_some_and(|limit| limit > 0));
    }

    /// A cap of 1,000 and a pool of 8 do not fit the usual soft limit of 1,024 with room for the
    /// rest, so start-up says so and names a cap that fits; the default cap does, and so does a
    /// raised limit; an unknown one says nothing.
    #[test]
    fn a_cap_the_descriptor_limit_cannot_hold_is_reported_with_one_that_fits() {
        let warning = descriptor_shortfall(1000, 8, Some(1024)).expect("a shortfall");
        assert!(warning.contains("about 1072 open files"), "{warning}");
        assert!(warning.contains("(1024, `ulimit -n`)"), "{warning}");
        assert!(
            warning.ends_with("server.max_connections to 952"),
            "{warning}"
        );
        assert_eq!(descriptor_shortfall(952, 8, Some(1024)), None);
        let default = crate::config::Config::default();
        assert_eq!(
            descriptor_shortfall(
                default.server.max_connections,
                default.database.max_connections,
                Some(1024)
            ),
            None
        );
        assert_eq!(descriptor_shortfall(1000, 8, Some(524_288)), None);
        assert_eq!(descriptor_shortfall(1000, 8, None), None);
    }
}
