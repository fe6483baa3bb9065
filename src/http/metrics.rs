//! Prometheus metrics in text format at `/metrics`. The recorder is process-wide (the `metrics`
//! facade has one global recorder), installed on first use.
//!
//! The per-request counter and histogram handles are resolved once per (route, method, status)
//! and reused: building a labelled key and looking it up in the recorder on every request costs
//! several allocations and a hash of every label, which the load profile showed on the hot path
//! (docs/performance.md).

use std::sync::{OnceLock, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus handle, installing the recorder the first time.
pub fn metrics_handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may exist in tests that embed frontdesk; then ours only renders.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// `GET /metrics`; with `server.metrics_token` set, only for a request bearing that token
/// (compared in constant time), anything else 401 with RFC 6750's challenge.
pub async fn render(
    axum::extract::State(state): axum::extract::State<super::AppState>,
    headers: http::HeaderMap,
) -> Response {
    if let Some(expected) = &state.config.server.metrics_token {
        let presented = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or("");
        if !crate::secret::constant_time_eq(presented.as_bytes(), expected.expose().as_bytes()) {
            let mut response = http::StatusCode::UNAUTHORIZED.into_response();
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"metrics\""),
            );
            return response;
        }
    }
    let mut response = metrics_handle().render().into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// The method label: the standard methods by name, anything else as `other`, so a client
/// inventing methods cannot grow the label set without bound.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Handles of one route and method: its latency histogram and a counter per status seen.
struct RouteMetrics {
    duration: Histogram,
    by_status: Vec<(u16, Counter)>,
}

/// Resolved handles per matched route (a finite set: the router's patterns and `unmatched`)
/// and method label; a short list, scanned without allocating.
type Routes = Vec<(String, &'static str, RouteMetrics)>;

static ROUTES: RwLock<Routes> = RwLock::new(Vec::new());

fn record(path: &str, method: &'static str, status: u16, seconds: f64) {
    {
        let read = match ROUTES.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        // The first request of each route, method and status resolves its handles below.
        if let Some(route) = read
            .iter()
            .find(|(p, m, _)| p == path && *m == method)
            .map(|(_, _, route)| route)
            && let Some((_, counter)) = route.by_status.iter().find(|(s, _)| *s == status)
        {
            counter.increment(1);
            route.duration.record(seconds);
            return;
        }
    }
    let mut write = match ROUTES.write() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    let index = match write.iter().position(|(p, m, _)| p == path && *m == method) {
        Some(index) => index,
        None => {
            write.push((
                path.to_owned(),
                method,
                RouteMetrics {
                    duration: metrics::histogram!("frontdesk_http_request_duration_seconds", "method" => method, "path" => path.to_owned()),
                    by_status: Vec::new(),
                },
            ));
            write.len() - 1
        }
    };
    let route = &mut write[index].2;
    let counter = match route.by_status.iter().find(|(s, _)| *s == status) {
        Some((_, counter)) => counter.clone(),
        None => {
            let counter = metrics::counter!("frontdesk_http_requests_total", "method" => method, "path" => path.to_owned(), "status" => status.to_string());
            route.by_status.push((status, counter.clone()));
            counter
        }
    };
    counter.increment(1);
    route.duration.record(seconds);
}

/// Counts requests and their latency per route and status.
pub async fn track(request: Request, next: Next) -> Response {
    let path = request.extensions().get::<MatchedPath>().cloned();
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    record(
        path.as_ref().map_or("unmatched", MatchedPath::as_str),
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
