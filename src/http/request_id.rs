//! Request ids for responses and the audit log when the client sent none. An id only has to be
//! unique, not secret: a random per-process prefix (so instances behind one load balancer do not
//! collide) and a counter, written in the familiar UUID shape. Unlike a v4 UUID per request, this
//! needs no system call for random bytes on every request (docs/performance.md).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderMap, HeaderValue, Request};
use tower_http::request_id::{MakeRequestId, RequestId};

/// The longest request id the audit log records whole, and so the longest one accepted from a
/// client.
pub const MAX_LEN: usize = 100;

/// The request's id as the audit log records it: the `x-request-id` header (the client's or the
/// one this server set), cut to [`MAX_LEN`] characters. One rule for every handler that audits.
pub fn for_audit(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map(|id| crate::oauth::request::clip(id, MAX_LEN))
}

/// Drops a client's `x-request-id` longer than [`MAX_LEN`] bytes, before ids are assigned, so
/// the request gets a generated one. Why: the id is in every log line of the request and in the
/// response, and the audit record keeps only [`MAX_LEN`] characters of it; a longer one filled
/// the logs with up to hundreds of kilobytes of the client's choosing per line, and left an
/// audit record naming another id than the response and the logs.
pub fn drop_overlong<B>(mut request: Request<B>) -> Request<B> {
    if request
        .headers()
        .get_all("x-request-id")
        .iter()
        .any(|value| value.len() > MAX_LEN)
    {
        request.headers_mut().remove("x-request-id");
    }
    request
}

/// Makes `prefix-counter` ids shaped like a UUID.
#[derive(Clone, Copy, Debug, Default)]
pub struct MakeSequentialRequestId;

static PREFIX: OnceLock<u64> = OnceLock::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

impl MakeRequestId for MakeSequentialRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut buffer = uuid::Uuid::encode_buffer();
        let text = uuid::Uuid::from_u64_pair(prefix, count)
            .hyphenated()
            .encode_lower(&mut buffer);
        HeaderValue::from_str(text).ok().map(RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_uuid_shaped() {
        let request = Request::new(());
        let mut make = MakeSequentialRequestId;
        let first = make.make_request_id(&request).expect("an id");
        let second = make.make_request_id(&request).expect("an id");
        assert_ne!(first.header_value(), second.header_value());
        let text = first.header_value().to_str().expect("ASCII");
        assert!(uuid::Uuid::parse_str(text).is_ok(), "{text}");
    }
}
