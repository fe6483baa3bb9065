//! The real server over a real socket: `frontdesk::app::spawn` on `127.0.0.1:0`, configured from a
//! TOML file in a temporary directory, exercised with reqwest. The same checks run on SQLite and
//! on PostgreSQL (a fresh database per test; skipped, or failed under
//! `FRONTDESK_REQUIRE_POSTGRES=1`, when PostgreSQL is unreachable).
//!
//! The issuer is a fixed configured value (`https://sts.frontdesk.test`), not derived from the
//! random port: the metadata must reflect exactly what the operator configured (META-02), and
//! endpoints are fetched on the bound address by the *path* of the URLs the metadata advertises.

#[path = "support/test_db.rs"]
mod test_db;

use frontdesk::app::{RunningServer, spawn};
use frontdesk::clock::unix_now;
use frontdesk::config::Config;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::{Value, json};
use test_db::TestDatabase;

const ISSUER: &str = "https://sts.frontdesk.test";
/// 32 bytes, base64: an explicit KEK, as production requires.
const KEK: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
const MAX_BODY: usize = 2048;
const JWKS_MAX_AGE: u64 = 123;

/// A running server and what keeps its files alive.
struct Harness {
    server: RunningServer,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// The configuration file of a test server on `database`, in `dir`.
fn write_config(dir: &std::path::Path, database: &TestDatabase) -> Config {
    write_config_with(dir, database, "")
}

/// [`write_config`] with more `[server]` settings (TOML lines).
fn write_config_with(dir: &std::path::Path, database: &TestDatabase, server: &str) -> Config {
    let path = dir.join("frontdesk.toml");
    std::fs::write(
        &path,
        format!(
            r#"issuer = "{ISSUER}"

[server]
listen = "127.0.0.1:0"
max_body_bytes = {MAX_BODY}
{server}

[database]
url = "{url}"

[keys]
encryption_key = "{KEK}"
jwks_max_age_secs = {JWKS_MAX_AGE}

[log]
format = "json"
level = "warn"
"#,
            url = database.url()
        ),
    )
    .expect("write config");
    Config::load(Some(&path), Vec::new()).expect("valid configuration")
}

impl Harness {
    async fn start(database: &TestDatabase) -> Harness {
        Harness::start_with(database, "").await
    }

    /// A server with more `[server]` settings.
    async fn start_with(database: &TestDatabase, server: &str) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = write_config_with(dir.path(), database, server);
        let server = spawn(config).await.expect("server starts");
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("http client");
        Harness {
            server,
            client,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"))
    }

    async fn get_json(&self, path: &str) -> (reqwest::header::HeaderMap, Value) {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        let headers = response.headers().clone();
        (headers, response.json().await.expect("JSON body"))
    }
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("missing {name} header"))
        .to_str()
        .expect("ascii header")
}

/// META-19: absent values are omitted, never `null`.
fn assert_no_nulls(value: &Value, path: &str) {
    match value {
        Value::Null => panic!("null at {path}"),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                assert_no_nulls(item, &format!("{path}[{index}]"));
            }
        }
        Value::Object(members) => {
            for (key, item) in members {
                assert_no_nulls(item, &format!("{path}.{key}"));
            }
        }
        _ => {}
    }
}

fn path_of(url: &str) -> String {
    url::Url::parse(url)
        .expect("absolute URL")
        .path()
        .to_string()
}

fn kids(set: &JwkSet) -> Vec<String> {
    set.keys
        .iter()
        .map(|key| key.common.key_id.clone().expect("kid"))
        .collect()
}

/// Verifies a compact JWS against a fetched JWKS, as a relying party would (JWKS-04).
fn verify(token: &str, set: &JwkSet) -> Value {
    let header = jsonwebtoken::decode_header(token).expect("header");
    let kid = header.kid.expect("our tokens carry a kid");
    let jwk = set
        .find(&kid)
        .unwrap_or_else(|| panic!("kid {kid} not in the JWKS"));
    let key = DecodingKey::from_jwk(jwk).expect("decoding key from the JWK");
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&["https://rs.example.com"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .expect("signature verifies against the fetched JWKS")
        .claims
}

/// Every check, on whichever database `database` is.
async fn exercise(database: TestDatabase) {
    let harness = Harness::start(&database).await;

    // META-01, META-16: both well-known documents, identical.
    let (headers, metadata) = harness
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert!(header(&headers, "content-type").starts_with("application/json"));
    assert!(header(&headers, "cache-control").contains("max-age"));
    let (_, openid) = harness.get_json("/.well-known/openid-configuration").await;
    assert_eq!(metadata, openid);
    // META-02: byte-identical issuer.
    assert_eq!(metadata["issuer"].as_str(), Some(ISSUER));
    // META-04, META-17: jwks_uri on the issuer's origin.
    let jwks_uri = metadata["jwks_uri"].as_str().expect("jwks_uri");
    let issuer_url = url::Url::parse(ISSUER).expect("issuer");
    assert_eq!(
        url::Url::parse(jwks_uri).expect("jwks_uri").origin(),
        issuer_url.origin()
    );
    assert!(metadata["response_types_supported"].is_array());
    assert_no_nulls(&metadata, "metadata");
    // Nothing advertises `none` (META-12 and RFC 8725).
    assert!(
        !metadata
            .to_string()
            .to_ascii_lowercase()
            .contains("\"none\""),
        "{metadata}"
    );

    // JWKS-01..03, JWKS-06.
    let jwks_path = path_of(jwks_uri);
    let response = harness.get(&jwks_path).await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = header(response.headers(), "content-type").to_string();
    assert!(
        content_type == "application/jwk-set+json" || content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_eq!(
        header(response.headers(), "cache-control"),
        format!("public, max-age={JWKS_MAX_AGE}")
    );
    let document: Value = response.json().await.expect("JWKS JSON");
    let keys = document["keys"].as_array().expect("keys array");
    assert_eq!(keys.len(), 1);
    for key in keys {
        assert_eq!(key["use"], "sig");
        assert_eq!(key["alg"], "ES256", "ES256 is the default");
        assert_eq!(key["kty"], "EC");
        assert!(key["kid"].is_string());
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(
                key.get(private).is_none(),
                "private member {private} published"
            );
        }
    }
    let set: JwkSet = serde_json::from_value(document).expect("JWK set");

    // JWKS-04: a token signed by the active key verifies against the fetched JWKS.
    let now = unix_now();
    let claims = json!({
        "iss": ISSUER,
        "sub": "alice",
        "aud": "https://rs.example.com",
        "iat": now,
        "exp": now + 300,
    });
    let keys = &harness.server.state.keys;
    let old_token = keys.sign("JWT", &claims).expect("sign");
    assert_eq!(verify(&old_token, &set)["sub"], "alice");
    let (old_kid, _) = keys.active_kid().expect("active key");

    // JWKS-05: after a rotation the new key is served before it signs.
    let new_kid = keys.rotate(unix_now(), false, None).await.expect("rotate");
    let (_, document) = harness.get_json(&jwks_path).await;
    let set: JwkSet = serde_json::from_value(document).expect("JWK set");
    let mut published = kids(&set);
    published.sort();
    let mut expected = vec![new_kid.clone(), old_kid.clone()];
    expected.sort();
    assert_eq!(published, expected);
    let token = keys.sign("JWT", &claims).expect("sign after rotate");
    let kid = jsonwebtoken::decode_header(&token).expect("header").kid;
    assert_eq!(
        kid.as_deref(),
        Some(old_kid.as_str()),
        "next key must not sign yet"
    );
    verify(&token, &set);
    verify(&old_token, &set);

    // Liveness and readiness (database and active key).
    let (_, health) = harness.get_json("/healthz").await;
    assert_eq!(health["status"], "ok");
    let (_, ready) = harness.get_json("/readyz").await;
    assert_eq!(
        ready,
        json!({"status": "ready", "database": "ok", "signing_key": "active"})
    );

    // Request ids: generated when absent, echoed when sent.
    let response = harness.get("/healthz").await;
    assert!(!header(response.headers(), "x-request-id").is_empty());
    let response = harness
        .client
        .get(harness.url("/healthz"))
        .header("x-request-id", "test-request-42")
        .send()
        .await
        .expect("GET");
    assert_eq!(
        header(response.headers(), "x-request-id"),
        "test-request-42"
    );

    // Unknown paths: JSON 404.
    let response = harness.get("/no/such/endpoint").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(header(response.headers(), "x-request-id").len() > 8);
    let body: Value = response.json().await.expect("JSON 404");
    assert_eq!(body["error"], "not_found");

    // Body limit: refused before any handler runs.
    let response = harness
        .client
        .post(harness.url("/healthz"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'a'; MAX_BODY * 2])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Prometheus text with the request counter (requests above were counted).
    let response = harness.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(header(response.headers(), "content-type").starts_with("text/plain"));
    let text = response.text().await.expect("metrics text");
    assert!(text.contains("frontdesk_http_requests_total"), "{text}");
    assert!(
        text.contains("# TYPE frontdesk_http_requests_total counter"),
        "{text}"
    );

    harness.server.shutdown().await.expect("graceful shutdown");
    drop(database);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_on_sqlite() {
    exercise(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_on_postgres() {
    if let Some(database) = TestDatabase::postgres("server_on_postgres").await {
        exercise(database).await;
    }
}

/// SQLite serves one instance: the replay check lives in that process's memory, so a second
/// server on the same file must refuse to start (rather than miss the first one's replays),
/// with a message that says why; once the first has stopped, the file can be served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_one_sqlite_file_refuses_to_start() {
    let database = TestDatabase::sqlite();
    let first = Harness::start(&database).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let error = spawn(write_config(dir.path(), &database))
        .await
        .err()
        .expect("the second server must not start");
    assert!(
        error
            .0
            .contains("another frontdesk server is using this SQLite database"),
        "{error}"
    );
    first.server.shutdown().await.expect("shutdown first");
    let again = spawn(write_config(dir.path(), &database))
        .await
        .expect("the file is free once the first server has stopped");
    again.shutdown().await.expect("shutdown again");
}

/// A second instance on the same database sees the first one's keys: the JWKS of both agree,
/// and a token signed by one verifies with the other's JWKS (several instances behind a load
/// balancer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_database_publish_the_same_keys() {
    let Some(database) = TestDatabase::postgres("two_instances").await else {
        return;
    };
    let first = Harness::start(&database).await;
    let second = Harness::start(&database).await;
    assert_eq!(
        first.server.state.keys.active_kid(),
        second.server.state.keys.active_kid()
    );
    let (_, document) = second.get_json("/jwks.json").await;
    let set: JwkSet = serde_json::from_value(document).expect("JWK set");
    let now = unix_now();
    let token = first
        .server
        .state
        .keys
        .sign(
            "JWT",
            &json!({"iss": ISSUER, "sub": "bob", "aud": "https://rs.example.com", "exp": now + 60}),
        )
        .expect("sign");
    assert_eq!(verify(&token, &set)["sub"], "bob");
    first.server.shutdown().await.expect("shutdown first");
    second.server.shutdown().await.expect("shutdown second");
}

/// Reads `stream` until the server closes it (end of file or a reset), failing the test if the
/// server keeps it open for a minute: far longer than the one-second timeout the server under
/// test is configured with, so only a server that never closes it fails.
async fn until_closed(stream: &mut tokio::net::TcpStream, what: &str) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    let read = stream.read_to_end(&mut received);
    match tokio::time::timeout(std::time::Duration::from_secs(60), read).await {
        Ok(_) => received,
        Err(_) => panic!("the server kept {what} open"),
    }
}

/// Slow clients (slowloris): a connection that never completes its request head, or that sits
/// idle after a response, is closed once `server.request_timeout_secs` has passed, rather than
/// holding a task, a buffer and a file descriptor forever — enough of them and the server can
/// accept no one else. Without a header read timeout hyper waits for the head indefinitely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_or_idle_connections_are_closed_after_the_request_timeout() {
    use tokio::io::AsyncWriteExt;
    let database = TestDatabase::sqlite();
    let harness = Harness::start_with(&database, "request_timeout_secs = 1").await;
    // A request head that never ends.
    let mut slow = tokio::net::TcpStream::connect(harness.server.addr)
        .await
        .expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: sts.frontdesk.test\r\nX-Slow: 1\r\n")
        .await
        .expect("write a partial head");
    let received = until_closed(&mut slow, "a connection whose head never ends").await;
    assert!(
        !String::from_utf8_lossy(&received).contains("\"ok\""),
        "no request was answered"
    );
    // A keep-alive connection left idle after its answer.
    let mut idle = tokio::net::TcpStream::connect(harness.server.addr)
        .await
        .expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: sts.frontdesk.test\r\n\r\n")
        .await
        .expect("write a request");
    let received = until_closed(&mut idle, "an idle keep-alive connection").await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"ok\""), "the request was answered: {text}");
    // The server still serves.
    let (_, health) = harness.get_json("/healthz").await;
    assert_eq!(health["status"], "ok");
    harness.server.shutdown().await.expect("graceful shutdown");
}

/// A client that sends requests but never reads the answers (here: pipelined requests on a
/// socket with a small receive buffer) is disconnected once a write of its answers has waited
/// `server.request_timeout_secs`. hyper has no write timeout: once the answers filled both
/// sockets' buffers the server waited to write forever, the client's further requests stalled
/// in turn, and the connection, its task and its descriptor were held for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answers_is_disconnected_after_the_request_timeout() {
    use tokio::io::AsyncWriteExt;
    let database = TestDatabase::sqlite();
    let harness = Harness::start_with(&database, "request_timeout_secs = 1").await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut stream = socket.connect(harness.server.addr).await.expect("connect");
    let requests = b"GET /jwks.json HTTP/1.1\r\nHost: sts.frontdesk.test\r\n\r\n".repeat(256);
    // Only the server closing the connection ends this loop: a write fails once it has.
    let flood = async {
        let mut sent = 0usize;
        while stream.write_all(&requests).await.is_ok() {
            sent += 1;
        }
        sent
    };
    let sent = tokio::time::timeout(std::time::Duration::from_secs(60), flood)
        .await
        .expect("the server kept open a connection whose client never reads");
    assert!(sent > 0, "requests were sent before the server closed");
    let (_, health) = harness.get_json("/healthz").await;
    assert_eq!(health["status"], "ok");
    harness.server.shutdown().await.expect("graceful shutdown");
}

/// Reads a whole answer from a new connection that sends `request` (none: just connect), for
/// the connection-limit test.
async fn exchange_raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    if !request.is_empty() {
        stream.write_all(request).await.expect("write a request");
    }
    String::from_utf8_lossy(&until_closed(&mut stream, "a connection").await).into_owned()
}

/// At most `server.max_connections` connections are served at once; one more is answered 503
/// `temporarily_unavailable` with `Retry-After` and closed, rather than holding a descriptor
/// (enough of them and the database and JWKS fetches fail for everyone). Once a connection
/// closes, its slot serves the next client. The refusals are counted in the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_are_refused_with_503_until_one_closes() {
    use tokio::io::AsyncWriteExt;
    let database = TestDatabase::sqlite();
    let harness =
        Harness::start_with(&database, "max_connections = 2\nrequest_timeout_secs = 300").await;
    let addr = harness.server.addr;
    // Two connections take both slots, each in the middle of a request head (connections are
    // accepted in order, so these two are served before the third is looked at).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: sts.frontdesk.test\r\n")
            .await
            .expect("write a partial head");
        held.push(stream);
    }
    let refused = exchange_raw(addr, b"").await;
    assert!(refused.starts_with("HTTP/1.1 503 "), "{refused}");
    assert!(refused.contains("retry-after: 1\r\n"), "{refused}");
    assert!(refused.contains("cache-control: no-store\r\n"), "{refused}");
    let body = refused.split("\r\n\r\n").nth(1).expect("a body");
    let body: Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(body["error"], "temporarily_unavailable");
    // One held connection goes away; its slot is free as soon as the server has seen it close,
    // so the next connection is served (each 503 before that is a connection that came first).
    drop(held.pop());
    let request = b"GET /healthz HTTP/1.1\r\nHost: sts.frontdesk.test\r\nConnection: close\r\n\r\n";
    let served = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            let answer = exchange_raw(addr, request).await;
            if !answer.starts_with("HTTP/1.1 503 ") {
                return answer;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the closed connection's slot was never freed");
    assert!(served.starts_with("HTTP/1.1 200 "), "{served}");
    let metrics = harness.get("/metrics").await.text().await.expect("metrics");
    let refusals = metrics
        .lines()
        .find_map(|line| line.strip_prefix("frontdesk_http_connections_refused_total "))
        .expect("the refusal counter");
    assert!(
        refusals.trim().parse::<f64>().expect("a number") >= 1.0,
        "{refusals}"
    );
    drop(held);
    harness.server.shutdown().await.expect("graceful shutdown");
}

/// A request id sent by the client is kept only while it is one the audit log can hold whole
/// (at most 100 characters); a longer one is replaced by a generated id. Otherwise the log
/// lines of the request repeated up to hundreds of kilobytes of the client's choosing, and the
/// audit record (which keeps 100 characters) named another id than the response and the logs,
/// so the three could not be matched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlong_request_id_is_replaced_and_the_audit_record_names_the_one_answered() {
    use frontdesk::store::{AuditFilter, AuditLog};
    let database = TestDatabase::sqlite();
    let harness = Harness::start(&database).await;
    let refused = |request_id: String| {
        harness
            .client
            .post(harness.url("/token"))
            .header("content-type", "text/plain")
            .header("x-request-id", request_id)
            .body("grant_type=x")
            .send()
    };
    let kept = "k".repeat(100);
    let response = refused(kept.clone()).await.expect("POST /token");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(response.headers(), "x-request-id"), kept);
    let sent = "x".repeat(5_000);
    let response = refused(sent.clone()).await.expect("POST /token");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let answered = header(response.headers(), "x-request-id").to_string();
    assert!(
        !answered.starts_with('x'),
        "the client's id, {} long",
        answered.len()
    );
    assert!(answered.len() <= 100, "{answered}");
    let events = harness
        .server
        .state
        .store
        .audit_events(&AuditFilter::default())
        .await
        .expect("audit events");
    let ids: Vec<Option<&str>> = events
        .iter()
        .filter(|record| record.event.reason.as_deref() == Some("wrong_content_type"))
        .map(|record| record.event.request_id.as_deref())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&Some(kept.as_str())), "{ids:?}");
    assert!(ids.contains(&Some(answered.as_str())), "{ids:?}");
    harness.server.shutdown().await.expect("graceful shutdown");
}

/// A request head (request line and headers) larger than 64 KiB is refused with 431 before any
/// handler runs; hyper's default let each request carry about 400 KiB of headers, parsed and
/// carried through every layer. 64 KiB is eight times what common proxies forward by default,
/// so no legitimate client comes near it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_heads_over_64_kib_are_refused() {
    let database = TestDatabase::sqlite();
    let harness = Harness::start(&database).await;
    let get_with = |size: usize| {
        harness
            .client
            .get(harness.url("/healthz"))
            .header("x-padding", "p".repeat(size))
            .send()
    };
    let response = get_with(60 * 1024).await.expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    let response = get_with(100 * 1024).await.expect("GET");
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    let (_, health) = harness.get_json("/healthz").await;
    assert_eq!(health["status"], "ok");
    harness.server.shutdown().await.expect("graceful shutdown");
}

/// A method an endpoint does not serve is answered 405 with the endpoint's methods in `Allow`
/// and a JSON error body, like an unknown path's 404, rather than an empty body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_an_endpoint_does_not_serve_is_a_json_405_naming_the_allowed_ones() {
    let database = TestDatabase::sqlite();
    let harness = Harness::start(&database).await;
    for path in [
        "/jwks.json",
        "/.well-known/oauth-authorization-server",
        "/healthz",
    ] {
        let response = harness
            .client
            .delete(harness.url(path))
            .send()
            .await
            .expect("DELETE");
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert!(
            header(response.headers(), "allow").contains("GET"),
            "{path}"
        );
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(body["error"], "method_not_allowed", "{path}");
    }
    // The OAuth endpoints answer in OAuth's format (TOK-01), naming no other endpoint.
    for path in ["/token", "/introspect", "/revoke"] {
        let response = harness
            .client
            .get(harness.url(path))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(header(response.headers(), "allow"), "POST", "{path}");
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(body["error"], "invalid_request", "{path}");
        assert_eq!(
            body["error_description"], "This endpoint accepts POST only",
            "{path}"
        );
    }
    harness.server.shutdown().await.expect("graceful shutdown");
}

/// The `Debug` form of the handlers' shared state (what a stray `{:?}` in a log line would
/// print) holds no secret: not the admin page's one-time bootstrap token, not the KEK, not the
/// signing key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_states_debug_form_holds_no_secret() {
    let database = TestDatabase::sqlite();
    let harness = Harness::start(&database).await;
    let state = &harness.server.state;
    let token = state.admin.issue_bootstrap_token();
    let printed = format!("{state:?}");
    assert!(!printed.contains(&token), "the bootstrap token: {printed}");
    assert!(!printed.contains(KEK), "the KEK: {printed}");
    assert!(!printed.contains("BwcHBwcH"), "the KEK: {printed}");
    harness.server.shutdown().await.expect("graceful shutdown");
}

/// `/readyz` is public, so its database answer is cached for about a second (one ping at a
/// time, shared by concurrent probes; the single-flight count is a unit test in
/// `src/http/health.rs`). The cache must not hide an outage for longer: once the answer has
/// expired — the readiness clock moved on instead of sleeping — a closed database shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_cached_briefly_and_still_shows_a_lost_database() {
    let database = TestDatabase::sqlite();
    let harness = Harness::start(&database).await;
    let state = &harness.server.state;
    let (_, ready) = harness.get_json("/readyz").await;
    assert_eq!(ready["database"], "ok");
    let pings = state.readiness.pings();
    assert!(pings >= 1, "the first probe pinged");

    state.store.close().await;
    state
        .readiness
        .advance_clock(std::time::Duration::from_secs(2));
    let response = harness.get("/readyz").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(
        body,
        json!({"status": "not_ready", "database": "unreachable", "signing_key": "active"})
    );
    assert_eq!(state.readiness.pings(), pings + 1);
}
