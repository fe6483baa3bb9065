//! The key ring against a real database: first key, rotation through next → active → retired →
//! unpublished with explicit times (no sleeping), retirement, all four algorithms, and private
//! keys that are only ever stored sealed under the KEK.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Value, json};
use sqlx::Connection;

use super::*;

// Also included by src/store/tests.rs; a private copy keeps both test modules self-contained.
#[allow(clippy::duplicate_mod)]
#[path = "../../tests/support/test_db.rs"]
mod test_db;

use test_db::{TestDatabase, until_waiting};

const T0: i64 = 1_700_000_000;
const PROMOTE_AFTER: i64 = 3_600;
const RETIRED_PUBLISH: i64 = 900;

fn kek() -> Kek {
    Kek::from_bytes(&[9u8; KEK_LEN]).expect("kek")
}

fn policy(algorithm: SigningAlgorithm) -> KeyPolicy {
    KeyPolicy {
        algorithm,
        rsa_bits: 2048,
        promote_after_secs: PROMOTE_AFTER,
        retired_publish_secs: RETIRED_PUBLISH,
        rotate_after_secs: 0,
    }
}

async fn store(database: &TestDatabase) -> Store {
    let store = Store::connect(database.url(), 4).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

async fn ring(database: &TestDatabase, algorithm: SigningAlgorithm) -> KeyRing {
    KeyRing::open(store(database).await, kek(), policy(algorithm), T0)
        .await
        .expect("open key ring")
}

fn jwks(ring: &KeyRing) -> JwkSet {
    serde_json::from_slice(&ring.jwks_json()).expect("JWKS is a JWK set")
}

fn published_kids(ring: &KeyRing) -> Vec<String> {
    jwks(ring)
        .keys
        .iter()
        .map(|key| key.common.key_id.clone().expect("every key has a kid"))
        .collect()
}

fn claims() -> Value {
    json!({"iss": "https://sts.example.com", "sub": "alice", "exp": 4_000_000_000_i64})
}

/// Signs a token and returns it with the kid of its header.
fn sign(ring: &KeyRing) -> (String, String) {
    let token = ring.sign("JWT", &claims()).expect("sign");
    let header = jsonwebtoken::decode_header(&token).expect("header");
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    (
        token,
        header.kid.expect("signed tokens carry a kid (JWKS-04)"),
    )
}

/// Verifies `token` with the key of its `kid` in `set`, as a relying party would.
fn verify(token: &str, set: &JwkSet) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = set
        .find(&kid)
        .ok_or_else(|| format!("kid {kid} is not published"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(header.alg);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

async fn states(ring: &KeyRing) -> Vec<(String, &'static str)> {
    KeyRing::list(&ring.store)
        .await
        .expect("list")
        .into_iter()
        .map(|key| (key.kid, key.state))
        .collect()
}

#[tokio::test]
async fn opening_an_empty_database_creates_one_active_key() {
    let database = TestDatabase::sqlite();
    let ring = ring(&database, SigningAlgorithm::Es256).await;
    let listed = KeyRing::list(&ring.store).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, "active");
    assert_eq!(listed[0].algorithm, "ES256");
    assert_eq!(listed[0].activated_at, Some(T0));
    let (kid, algorithm) = ring.active_kid().expect("active key");
    assert_eq!(algorithm, SigningAlgorithm::Es256);
    assert_eq!(published_kids(&ring), std::slice::from_ref(&kid));
    assert_eq!(sign(&ring).1, kid);
    assert_eq!(ring.published_algorithms(), ["ES256"]);

    // Opening again (a restart, or a second instance) reuses the key instead of making another.
    let again = KeyRing::open(
        ring.store.clone(),
        kek(),
        policy(SigningAlgorithm::Es256),
        T0 + 5,
    )
    .await
    .expect("reopen");
    assert_eq!(again.active_kid().expect("active").0, kid);
    assert_eq!(KeyRing::list(&ring.store).await.expect("list").len(), 1);
}

/// JWKS-05: a rotated key is published before it signs; the old key signs until promotion and
/// stays published until its tokens have expired; then it leaves the JWKS.
#[tokio::test]
async fn rotation_publishes_next_then_promotes_then_unpublishes_the_old_key() {
    let database = TestDatabase::sqlite();
    let ring = ring(&database, SigningAlgorithm::Es256).await;
    let (old, _) = ring.active_kid().expect("active");

    // One second later, so `keys list` order (newest first) is deterministic.
    let rotated_at = T0 + 1;
    let new = ring.rotate(rotated_at, false, None).await.expect("rotate");
    assert_ne!(new, old);
    assert_eq!(
        states(&ring).await,
        [(new.clone(), "next"), (old.clone(), "active")]
    );
    let published = published_kids(&ring);
    assert!(
        published.contains(&new) && published.contains(&old),
        "{published:?}"
    );
    let (old_token, kid) = sign(&ring);
    assert_eq!(kid, old, "a next key must not sign before promotion");

    // One second before it is due nothing changes.
    assert!(
        !ring
            .tick(rotated_at + PROMOTE_AFTER - 1)
            .await
            .expect("tick")
    );
    assert_eq!(sign(&ring).1, old);

    let promoted_at = rotated_at + PROMOTE_AFTER;
    assert!(ring.tick(promoted_at).await.expect("tick"));
    let (new_token, kid) = sign(&ring);
    assert_eq!(kid, new);
    assert_eq!(
        states(&ring).await,
        [(new.clone(), "active"), (old.clone(), "retired")]
    );
    let retired = KeyRing::list(&ring.store).await.expect("list").remove(1);
    assert_eq!(retired.retired_at, Some(promoted_at));
    assert_eq!(retired.publish_until, Some(promoted_at + RETIRED_PUBLISH));
    // Tokens signed before and after the promotion both verify against the published set.
    let set = jwks(&ring);
    verify(&old_token, &set).expect("old token still verifies");
    verify(&new_token, &set).expect("new token verifies");

    assert!(
        !ring
            .tick(promoted_at + RETIRED_PUBLISH - 1)
            .await
            .expect("tick")
    );
    assert_eq!(published_kids(&ring).len(), 2);
    assert!(
        ring.tick(promoted_at + RETIRED_PUBLISH)
            .await
            .expect("tick")
    );
    assert_eq!(published_kids(&ring), std::slice::from_ref(&new));
    assert!(verify(&old_token, &jwks(&ring)).is_err());
    // The row is kept for the record (keys list), only unpublished.
    assert_eq!(states(&ring).await.len(), 2);
}

/// Another instance (or the CLI) rotating through the database is picked up by `tick`.
#[tokio::test]
async fn tick_picks_up_changes_made_elsewhere() {
    let database = TestDatabase::sqlite();
    let ring = ring(&database, SigningAlgorithm::Es256).await;
    let other = KeyRing::open(
        ring.store.clone(),
        kek(),
        policy(SigningAlgorithm::Es256),
        T0,
    )
    .await
    .expect("second instance");
    let new = other
        .rotate(T0 + 1, false, None)
        .await
        .expect("rotate elsewhere");
    assert!(!published_kids(&ring).contains(&new));
    assert!(ring.tick(T0 + 2).await.expect("tick"));
    assert!(published_kids(&ring).contains(&new));
    // Both instances promote when due; only one promotion happens.
    let due = T0 + 1 + PROMOTE_AFTER;
    let (a, b) = tokio::join!(ring.tick(due), other.tick(due));
    a.expect("tick a");
    b.expect("tick b");
    assert_eq!(ring.active_kid().expect("active").0, new);
    assert_eq!(other.active_kid().expect("active").0, new);
    let listed = states(&ring).await;
    assert_eq!(
        listed
            .iter()
            .filter(|(_, state)| *state == "active")
            .count(),
        1,
        "{listed:?}"
    );
}

#[tokio::test]
async fn emergency_rotation_promotes_at_once() {
    let database = TestDatabase::sqlite();
    let ring = ring(&database, SigningAlgorithm::Es256).await;
    let (old, _) = ring.active_kid().expect("active");
    let new = ring
        .rotate(T0 + 10, true, None)
        .await
        .expect("rotate --now");
    assert_eq!(sign(&ring).1, new);
    assert_eq!(
        states(&ring).await,
        [(new.clone(), "active"), (old.clone(), "retired")]
    );
    // The compromised key stays published so tokens already issued keep verifying until expiry.
    assert!(published_kids(&ring).contains(&old));
    let retired = KeyRing::list(&ring.store).await.expect("list").remove(1);
    assert_eq!(retired.publish_until, Some(T0 + 10 + RETIRED_PUBLISH));
}

#[tokio::test]
async fn a_compromised_key_can_be_withdrawn_from_the_jwks_at_once() {
    let database = TestDatabase::sqlite();
    let ring = ring(&database, SigningAlgorithm::Es256).await;
    let (old, _) = ring.active_kid().expect("active");
    assert!(
        !ring.withdraw(&old, T0 + 5, None).await.expect("withdraw"),
        "the active key cannot be withdrawn"
    );
    let (token, _) = sign(&ring);
    let new = ring
        .rotate(T0 + 10, true, None)
        .await
        .expect("rotate --now");
    assert!(verify(&token, &jwks(&ring)).is_ok());
    assert!(ring.withdraw(&old, T0 + 11, None).await.expect("withdraw"));
    assert_eq!(published_kids(&ring), std::slice::from_ref(&new));
    assert!(
        verify(&token, &jwks(&ring)).is_err(),
        "its tokens no longer verify"
    );
    assert!(
        !ring.retire(&old, T0 + 12, None).await.expect("retire"),
        "retiring it again reports that nothing changed"
    );
    assert_eq!(sign(&ring).1, new);
}

#[tokio::test]
async fn retire_a_next_key_or_the_active_key_with_a_successor() {
    let database = TestDatabase::sqlite();
    let ring = ring(&database, SigningAlgorithm::Es256).await;
    let (first, _) = ring.active_kid().expect("active");

    assert!(
        !ring
            .retire("no-such-kid", T0, None)
            .await
            .expect("unknown kid")
    );
    // The only signing key cannot be retired: nothing would sign.
    let error = ring
        .retire(&first, T0, None)
        .await
        .expect_err("sole active key");
    assert!(error.to_string().contains("rotate first"), "{error}");
    assert_eq!(sign(&ring).1, first);

    // A next key that is retired never signs.
    let abandoned = ring.rotate(T0 + 1, false, None).await.expect("rotate");
    assert!(
        ring.retire(&abandoned, T0 + 1, None)
            .await
            .expect("retire next")
    );
    // (By then it has also left the JWKS, so the tick reports a change.)
    ring.tick(T0 + PROMOTE_AFTER + 1).await.expect("tick");
    assert_eq!(sign(&ring).1, first);
    assert!(!published_kids(&ring).contains(&abandoned));

    // Retiring the active key when a successor is due hands over to it at once (before a
    // tick promotes it).
    let successor = ring.rotate(T0 + 2, false, None).await.expect("rotate");
    assert!(
        ring.retire(&first, T0 + 2 + PROMOTE_AFTER, None)
            .await
            .expect("retire active")
    );
    assert_eq!(sign(&ring).1, successor);
    let listed = states(&ring).await;
    assert_eq!(
        listed,
        [
            (successor.clone(), "active"),
            (abandoned.clone(), "retired"),
            (first.clone(), "retired"),
        ]
    );
}

/// Retiring a `next` key never retires the key that signs. `KeyRing::retire` reads the key's
/// state, then asks the store to retire it; when another instance's tick promotes that key in
/// between, the store used to retire it anyway — now the active key — and no key signed on any
/// instance until an operator rotated (every token request a `server_error`). The store's
/// update now only retires a key that is still `next`, so the late retirement changes nothing.
/// Rows: JWKS-04, JWKS-05.
#[tokio::test]
async fn a_retirement_that_loses_the_race_to_a_promotion_leaves_the_new_key_signing() {
    let database = TestDatabase::sqlite();
    let ring = ring(&database, SigningAlgorithm::Es256).await;
    let other = KeyRing::open(
        ring.store.clone(),
        kek(),
        policy(SigningAlgorithm::Es256),
        T0,
    )
    .await
    .expect("second instance");
    let next = ring.rotate(T0 + 1, false, None).await.expect("rotate");
    // `ring.retire(&next)` has read `next` as a next key; the other instance promotes it now.
    let due = T0 + 1 + PROMOTE_AFTER;
    assert!(other.tick(due).await.expect("promotion"));
    assert_eq!(other.active_kid().expect("active").0, next);
    // ... and then the retirement reaches the store.
    assert!(
        !ring
            .store
            .retire_key(&next, due, due + RETIRED_PUBLISH, None)
            .await
            .expect("retire"),
        "the key that now signs is not retired"
    );
    ring.tick(due + 1).await.expect("tick");
    assert_eq!(sign(&ring).1, next);
    assert_eq!(sign(&other).1, next);
    assert!(
        states(&ring).await.contains(&(next.clone(), "active")),
        "{:?}",
        states(&ring).await
    );
    // Retiring it through the key ring, which sees it active, is refused as before.
    assert!(ring.retire(&next, due + 2, None).await.is_err());
}

/// Each algorithm: the JWKS member has the right `kty`, `alg` and `use`, no private member
/// (JWKS-02, JWKS-03), and a signed token verifies against it with `DecodingKey::from_jwk`.
#[tokio::test]
async fn every_algorithm_signs_tokens_the_jwks_verifies() {
    for (algorithm, kty) in [
        (SigningAlgorithm::Es256, "EC"),
        (SigningAlgorithm::Rs256, "RSA"),
        (SigningAlgorithm::Ps256, "RSA"),
        (SigningAlgorithm::EdDsa, "OKP"),
    ] {
        let database = TestDatabase::sqlite();
        let ring = ring(&database, algorithm).await;
        let document: Value = serde_json::from_slice(&ring.jwks_json()).expect("json");
        let key = &document["keys"][0];
        assert_eq!(key["kty"], kty, "{algorithm}");
        assert_eq!(key["alg"], algorithm.as_str());
        assert_eq!(key["use"], "sig");
        for private in ["d", "p", "q", "dp", "dq", "qi", "k", "oth"] {
            assert!(
                key.get(private).is_none(),
                "{algorithm}: `{private}` published"
            );
        }
        let (token, kid) = sign(&ring);
        assert_eq!(key["kid"], kid.as_str());
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.alg, algorithm.jwt_algorithm());
        let verified = verify(&token, &jwks(&ring)).expect("verifies");
        assert_eq!(verified["sub"], "alice");
        // Reopening (decrypting the stored key) signs with the same key.
        let reopened = KeyRing::open(ring.store.clone(), kek(), policy(algorithm), T0 + 1)
            .await
            .expect("reopen");
        verify(&sign(&reopened).0, &jwks(&ring)).expect("reopened key verifies");
    }
}

/// The raw database holds the private key only sealed: not as PKCS#8 DER, not as PEM, not as a
/// JWK `d`; and the sealed bytes do not open under another KEK.
#[tokio::test]
async fn the_database_never_holds_a_plaintext_private_key() {
    for algorithm in [
        SigningAlgorithm::Es256,
        SigningAlgorithm::EdDsa,
        SigningAlgorithm::Rs256,
    ] {
        let database = TestDatabase::sqlite();
        let ring = ring(&database, algorithm).await;
        ring.rotate(T0, false, None)
            .await
            .expect("rotate: a second key");

        let mut connection = sqlx::SqliteConnection::connect(database.url())
            .await
            .expect("raw");
        let rows: Vec<(String, Vec<u8>, String)> =
            sqlx::query_as("SELECT kid, sealed_private_key, public_jwk FROM signing_keys")
                .fetch_all(&mut connection)
                .await
                .expect("read raw rows");
        assert_eq!(rows.len(), 2);
        connection.close().await.expect("close");
        ring.store.close().await;

        // Everything on disk: the database file and its write-ahead log.
        let path = database.url().trim_start_matches("sqlite://").to_string();
        let mut disk = std::fs::read(&path).expect("db file");
        disk.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());

        for (kid, sealed, public_jwk) in rows {
            let pkcs8 = kek()
                .open(&kid, &sealed)
                .expect("opens under the right KEK");
            let plaintext = PrivateKey::from_pkcs8(algorithm, pkcs8);
            let der = plaintext.pkcs8();
            assert!(der.len() > 40, "{algorithm}: implausible PKCS#8");
            // Every aligned 24-byte piece of the key: any plaintext copy of 47 bytes or more
            // holds one (every sliding window made this the suite's slowest test, ~15 s).
            for window in der.chunks_exact(24) {
                assert!(
                    !contains(&sealed, window),
                    "{algorithm}: PKCS#8 bytes in the sealed column"
                );
                assert!(
                    !contains(&disk, window),
                    "{algorithm}: PKCS#8 bytes in the database file"
                );
            }
            let pem_body = base64::engine::general_purpose::STANDARD.encode(der);
            assert!(
                !contains(&disk, &pem_body.as_bytes()[..40]),
                "{algorithm}: PEM body on disk"
            );
            assert!(
                !contains(&disk, b"PRIVATE KEY"),
                "{algorithm}: PEM marker on disk"
            );
            let jwk: Value = serde_json::from_str(&public_jwk).expect("jwk");
            assert!(
                jwk.get("d").is_none(),
                "{algorithm}: private member in the stored JWK"
            );

            let other = Kek::from_bytes(&[10u8; KEK_LEN]).expect("other kek");
            assert!(
                other.open(&kid, &sealed).is_err(),
                "{algorithm}: opens under another KEK"
            );
        }
    }
}

#[tokio::test]
async fn opening_with_another_kek_fails_clearly() {
    let database = TestDatabase::sqlite();
    let ring = ring(&database, SigningAlgorithm::Es256).await;
    let other = Kek::from_bytes(&[10u8; KEK_LEN]).expect("other kek");
    let error = KeyRing::open(
        ring.store.clone(),
        other,
        policy(SigningAlgorithm::Es256),
        T0,
    )
    .await
    .expect_err("wrong KEK");
    assert!(error.to_string().contains("key-encryption key"), "{error}");
}

#[tokio::test]
async fn debug_output_never_shows_key_material() {
    let database = TestDatabase::sqlite();
    let ring = ring(&database, SigningAlgorithm::Es256).await;
    let records = ring.store.all_keys().await.expect("keys");
    let sealed_hex: String = records[0].sealed_private_key[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    for debug in [
        format!("{ring:?}"),
        format!("{records:?}"),
        format!("{:?}", kek()),
    ] {
        assert!(!debug.contains("sealed_private_key"), "{debug}");
        assert!(!debug.contains(&sealed_hex), "{debug}");
        assert!(
            !debug.contains(&format!("{:?}", &records[0].sealed_private_key[..4])),
            "{debug}"
        );
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

use base64::Engine;

/// Every key change made by someone (the admin page, the API, the CLI) or by the schedule is in
/// the audit log, written in the change's own transaction: one event per change that happened,
/// none for a change that did not.
#[tokio::test]
async fn key_changes_are_audited_in_their_own_transaction() {
    use crate::store::{AuditDetail, AuditFilter, AuditLog};
    let database = TestDatabase::sqlite();
    let ring = ring(&database, SigningAlgorithm::Es256).await;
    let (first, _) = ring.active_kid().expect("active");
    let next = ring
        .rotate(T0 + 1, false, Some("alice"))
        .await
        .expect("rotate");
    // The schedule promotes it (actor "schedule").
    assert!(ring.tick(T0 + 1 + PROMOTE_AFTER).await.expect("tick"));
    let now = T0 + 2 + PROMOTE_AFTER;
    let urgent = ring
        .rotate(now, true, Some("cli"))
        .await
        .expect("rotate --now");
    assert!(
        ring.withdraw(&first, now + 1, Some("cli"))
            .await
            .expect("withdraw")
    );
    // Nothing changes, nothing is recorded.
    assert!(
        !ring
            .withdraw(&first, now + 2, Some("cli"))
            .await
            .expect("again")
    );
    assert!(
        !ring
            .retire("no-such-kid", now + 2, Some("bob"))
            .await
            .expect("unknown")
    );
    let spare = ring
        .rotate(now + 3, false, Some("bob"))
        .await
        .expect("rotate");
    assert!(
        ring.retire(&spare, now + 3, Some("bob"))
            .await
            .expect("retire")
    );
    // Without an actor (internal callers, tests) nothing is recorded.
    ring.rotate(now + 4, false, None)
        .await
        .expect("rotate quietly");

    let events = ring
        .store
        .audit_events(&AuditFilter::default())
        .await
        .expect("audit");
    let seen: Vec<(String, String, String)> = events
        .iter()
        .rev()
        .map(|record| {
            let detail = record
                .event
                .detail
                .as_ref()
                .map(AuditDetail::value)
                .unwrap_or_default();
            (
                record.event.event.clone(),
                record.event.subject.clone().unwrap_or_default(),
                detail["actor"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expect = |event: &str, kid: &str, actor: &str| {
        (event.to_string(), kid.to_string(), actor.to_string())
    };
    assert_eq!(
        seen,
        [
            expect("key_rotated", &next, "alice"),
            expect("key_promoted", &next, "schedule"),
            expect("key_rotated", &urgent, "cli"),
            expect("key_withdrawn", &first, "cli"),
            expect("key_rotated", &spare, "bob"),
            expect("key_retired", &spare, "bob"),
        ]
    );
    let rotated = &events.last().expect("first event").event;
    assert_eq!(
        rotated
            .detail
            .as_ref()
            .map(|d| d.value()["before"]["active"].clone()),
        Some(json!(first))
    );
}

/// `keys.rotate_after_days`: once the active key has signed for the configured time, a `next`
/// key is published (audited as done by the schedule), promoted after the usual delay, and the
/// cycle starts again from the new key's activation. One waiting key at a time.
#[tokio::test]
async fn the_active_key_is_replaced_on_schedule() {
    use crate::store::{AuditFilter, AuditLog};
    const EVERY: i64 = 10 * 86_400;
    let database = TestDatabase::sqlite();
    let scheduled = KeyPolicy {
        rotate_after_secs: EVERY,
        ..policy(SigningAlgorithm::Es256)
    };
    let ring = KeyRing::open(store(&database).await, kek(), scheduled, T0)
        .await
        .expect("open key ring");
    let (first, _) = ring.active_kid().expect("active");
    assert!(
        !ring.tick(T0 + EVERY - 1).await.expect("tick"),
        "not yet due"
    );
    assert_eq!(states(&ring).await.len(), 1);

    assert!(
        ring.tick(T0 + EVERY).await.expect("tick"),
        "due: a key is published"
    );
    let listed = states(&ring).await;
    let next: Vec<&String> = listed
        .iter()
        .filter(|(_, state)| *state == "next")
        .map(|(kid, _)| kid)
        .collect();
    assert_eq!(next.len(), 1, "{listed:?}");
    let second = next[0].clone();
    assert!(
        published_kids(&ring).contains(&second),
        "published before it signs"
    );
    assert_eq!(
        sign(&ring).1,
        first,
        "the old key signs until the promotion"
    );
    assert!(
        !ring.tick(T0 + EVERY + 5).await.expect("tick"),
        "one waiting key at a time"
    );
    assert_eq!(states(&ring).await.len(), 2);

    assert!(
        ring.tick(T0 + EVERY + PROMOTE_AFTER)
            .await
            .expect("promotion")
    );
    assert_eq!(sign(&ring).1, second);
    // The next rotation counts from the new key's activation, not from the first key's.
    let promoted = T0 + EVERY + PROMOTE_AFTER;
    // (A tick there may still report a change: the first key leaving the JWKS.)
    ring.tick(promoted + EVERY - 1).await.expect("tick");
    assert!(
        !states(&ring)
            .await
            .iter()
            .any(|(_, state)| *state == "next"),
        "not due yet"
    );
    assert!(ring.tick(promoted + EVERY).await.expect("tick"));
    assert_eq!(
        states(&ring)
            .await
            .iter()
            .filter(|(_, state)| *state == "next")
            .count(),
        1
    );

    let rotations: Vec<(String, Value)> = ring
        .store
        .audit_events(&AuditFilter::default())
        .await
        .expect("audit")
        .into_iter()
        .rev()
        .filter(|record| record.event.event == "key_rotated")
        .map(|record| {
            let detail = record
                .event
                .detail
                .as_ref()
                .map(|d| d.value())
                .unwrap_or_default();
            (record.event.subject.unwrap_or_default(), detail)
        })
        .collect();
    assert_eq!(rotations.len(), 2);
    assert_eq!(rotations[0].0, second);
    assert_eq!(rotations[0].1["actor"], "schedule");
    assert_eq!(rotations[0].1["before"]["active"], first.as_str());
}

/// Rotation on schedule is off with 0: the key signs however old it is.
#[tokio::test]
async fn without_a_schedule_the_active_key_is_never_replaced() {
    let database = TestDatabase::sqlite();
    let ring = ring(&database, SigningAlgorithm::Es256).await;
    assert!(!ring.tick(T0 + 100 * 365 * 86_400).await.expect("tick"));
    assert_eq!(states(&ring).await.len(), 1);
}

/// An emergency rotation (`keys rotate --now`, the admin page's "promote at once") after a
/// compromise leaves no key from before it able to sign or verify. A key waiting as `next` (the
/// schedule's, or an earlier `keys rotate`) lives in the same database under the same KEK as the
/// compromised key; it used to stay in the JWKS, so tokens forged with it verified at every
/// relying party, and the tick promoted it at its due time, replacing the emergency key. The
/// waiting key never signed, so it leaves the JWKS at once; the audit event names it.
#[tokio::test]
async fn an_emergency_rotation_withdraws_a_key_that_was_waiting_to_sign() {
    use crate::store::{AuditFilter, AuditLog};
    let mut databases = vec![TestDatabase::sqlite()];
    databases.extend(
        TestDatabase::postgres("an_emergency_rotation_withdraws_a_key_that_was_waiting_to_sign")
            .await,
    );
    for database in &databases {
        let ring = ring(database, SigningAlgorithm::Es256).await;
        let (compromised, _) = ring.active_kid().expect("active");
        let waiting = ring.rotate(T0 + 1, false, None).await.expect("rotate");
        // The waiting key's private part leaked with the active one's: a token forged with it.
        let sealed = ring
            .store
            .all_keys()
            .await
            .expect("keys")
            .into_iter()
            .find(|key| key.kid == waiting)
            .expect("waiting key row")
            .sealed_private_key;
        let leaked = PrivateKey::from_pkcs8(
            SigningAlgorithm::Es256,
            kek().open(&waiting, &sealed).expect("open"),
        );
        let forged = Signer::new(&leaked)
            .expect("signer")
            .sign(
                &Header {
                    kid: Some(waiting.clone()),
                    ..Header::new(jsonwebtoken::Algorithm::ES256)
                },
                &claims(),
            )
            .expect("forge");
        assert!(verify(&forged, &jwks(&ring)).is_ok(), "published before");

        let urgent = ring
            .rotate(T0 + 2, true, Some("cli"))
            .await
            .expect("rotate --now");
        assert_eq!(sign(&ring).1, urgent);
        assert_eq!(published_kids(&ring), [urgent.clone(), compromised.clone()]);
        assert!(
            verify(&forged, &jwks(&ring)).is_err(),
            "a token forged with the waiting key still verifies"
        );
        // Its due time passes: the emergency key keeps signing.
        ring.tick(T0 + 1 + PROMOTE_AFTER).await.expect("tick");
        assert_eq!(sign(&ring).1, urgent, "the waiting key was promoted");
        assert_eq!(
            states(&ring).await,
            [
                (urgent.clone(), "active"),
                (waiting.clone(), "retired"),
                (compromised.clone(), "retired"),
            ]
        );
        let rotated = ring
            .store
            .audit_events(&AuditFilter::default())
            .await
            .expect("audit")
            .into_iter()
            .find(|record| record.event.event == "key_rotated")
            .and_then(|record| record.event.detail)
            .map(|detail| detail.value())
            .expect("key_rotated event");
        assert_eq!(rotated["after"]["withdrawn_next"], json!([waiting]));
    }
}

/// JWKS-05: retiring the active key makes its successor sign at once, so the successor must
/// have been published for `keys.promote_after_secs` (at least the JWKS cache lifetime) first.
/// The admin page offers "Retire" on the active key right after "Rotate"; that click used to
/// promote a key published a second earlier, whose tokens relying parties with a cached JWKS
/// then refused. Until the successor is due the retirement is refused and nothing changes.
#[tokio::test]
async fn retiring_the_active_key_never_hands_over_to_a_key_published_too_recently() {
    let database = TestDatabase::sqlite();
    let ring = ring(&database, SigningAlgorithm::Es256).await;
    let (first, _) = ring.active_kid().expect("active");
    let successor = ring.rotate(T0 + 1, false, None).await.expect("rotate");

    let error = ring
        .retire(&first, T0 + 2, Some("alice"))
        .await
        .expect_err("the successor is not due");
    assert!(error.to_string().contains("promote_after_secs"), "{error}");
    assert_eq!(sign(&ring).1, first, "the new key signed before it was due");
    assert_eq!(
        states(&ring).await,
        [(successor.clone(), "next"), (first.clone(), "active")]
    );
    assert!(
        ring.retire(&first, T0 + PROMOTE_AFTER, None).await.is_err(),
        "one second before it is due"
    );

    // Once it is due, the retirement hands over to it.
    assert!(
        ring.retire(&first, T0 + 1 + PROMOTE_AFTER, Some("alice"))
            .await
            .expect("retire")
    );
    assert_eq!(sign(&ring).1, successor);
    assert_eq!(
        states(&ring).await,
        [(successor.clone(), "active"), (first.clone(), "retired")]
    );
}

/// Instances opening one empty PostgreSQL database together, released at the same moment into
/// the creation of the first key (the test holds `signing_keys` locked until all three wait),
/// all open, with the same single active key: the first to commit wins and the others load
/// it. Each used to insert its own, and all but one failed on the active key's unique index.
#[tokio::test]
async fn instances_opening_an_empty_database_together_share_one_first_key() {
    let Some(database) =
        TestDatabase::postgres("instances_opening_an_empty_database_together_share_one_first_key")
            .await
    else {
        return;
    };
    let first = store(&database).await;
    let mut holder = sqlx::PgConnection::connect(database.url())
        .await
        .expect("holder");
    let mut monitor = sqlx::PgConnection::connect(database.url())
        .await
        .expect("monitor");
    sqlx::raw_sql("BEGIN; LOCK TABLE signing_keys IN ACCESS EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .expect("lock");
    let mut opening = Vec::new();
    for index in 0..3 {
        let store = if index == 0 {
            first.clone()
        } else {
            Store::connect(database.url(), 2).await.expect("connect")
        };
        opening.push(tokio::spawn(KeyRing::open(
            store,
            kek(),
            policy(SigningAlgorithm::Es256),
            T0,
        )));
    }
    until_waiting(&mut monitor, 3, &opening.iter().collect::<Vec<_>>()).await;
    sqlx::raw_sql("COMMIT")
        .execute(&mut holder)
        .await
        .expect("release");
    let mut kids = Vec::new();
    for task in opening {
        let ring = task.await.expect("task").expect("every instance opens");
        kids.push(ring.active_kid().expect("active").0);
        assert_eq!(published_kids(&ring).len(), 1, "one key published");
    }
    assert!(kids.iter().all(|kid| *kid == kids[0]), "{kids:?}");
    assert_eq!(
        KeyRing::list(&first).await.expect("list").len(),
        1,
        "the losers' keys were discarded"
    );
}

/// A scheduled rotation and an emergency rotation (`keys rotate --now`) committing at the same
/// moment, in either order, on PostgreSQL: they are applied one after the other, so the
/// emergency key signs and no key is left waiting to take over from it. Each transaction is
/// held at its audit insert (the test holds `audit_events` locked) while the other starts.
/// Scheduled first used to leave its `next` key: the emergency rotation's withdrawal of waiting
/// keys ran while the scheduled key was not committed yet, and did not see it.
#[tokio::test]
async fn a_scheduled_and_an_emergency_rotation_at_once_leave_no_key_waiting() {
    use crate::store::{AuditFilter, AuditLog};
    const EVERY: i64 = 10 * 86_400;
    for scheduled_first in [true, false] {
        let Some(database) = TestDatabase::postgres(
            "a_scheduled_and_an_emergency_rotation_at_once_leave_no_key_waiting",
        )
        .await
        else {
            return;
        };
        let scheduled = KeyPolicy {
            rotate_after_secs: EVERY,
            ..policy(SigningAlgorithm::Es256)
        };
        let server = KeyRing::open(store(&database).await, kek(), scheduled.clone(), T0)
            .await
            .expect("server");
        let cli_store = Store::connect(database.url(), 2).await.expect("connect");
        let cli = KeyRing::open(cli_store, kek(), scheduled, T0)
            .await
            .expect("cli");
        let (old, _) = server.active_kid().expect("active");
        let now = T0 + EVERY;

        let mut holder = sqlx::PgConnection::connect(database.url())
            .await
            .expect("holder");
        let mut monitor = sqlx::PgConnection::connect(database.url())
            .await
            .expect("monitor");
        sqlx::raw_sql("BEGIN; LOCK TABLE audit_events IN SHARE MODE")
            .execute(&mut holder)
            .await
            .expect("lock");
        let tick = || {
            tokio::spawn(async move {
                let changed = server.tick(now).await;
                (server, changed)
            })
        };
        let rotate = || {
            tokio::spawn(async move {
                let urgent = cli.rotate(now, true, Some("cli")).await;
                (cli, urgent)
            })
        };
        let (ticking, rotating) = if scheduled_first {
            let ticking = tick();
            until_waiting(&mut monitor, 1, &[&ticking]).await;
            let rotating = rotate();
            until_waiting(&mut monitor, 2, &[&rotating]).await;
            (ticking, rotating)
        } else {
            let rotating = rotate();
            until_waiting(&mut monitor, 1, &[&rotating]).await;
            let ticking = tick();
            until_waiting(&mut monitor, 2, &[&ticking]).await;
            (ticking, rotating)
        };
        sqlx::raw_sql("COMMIT")
            .execute(&mut holder)
            .await
            .expect("release");
        let (server, changed) = ticking.await.expect("tick task");
        changed.expect("tick");
        let (cli, urgent) = rotating.await.expect("rotate task");
        let urgent = urgent.expect("rotate --now");

        let keys = KeyRing::list(&server.store).await.expect("list");
        let state_of = |kid: &str| keys.iter().find(|key| key.kid == kid).map(|key| key.state);
        assert_eq!(state_of(&urgent), Some("active"), "{keys:?}");
        assert_eq!(state_of(&old), Some("retired"), "{keys:?}");
        let waiting: Vec<&str> = keys
            .iter()
            .filter(|key| key.state == "next")
            .map(|key| key.kid.as_str())
            .collect();
        assert!(
            waiting.is_empty(),
            "scheduled first: {scheduled_first}; a key still waits to replace the emergency key: {keys:?}"
        );
        // Its due time passes: the emergency key keeps signing on every instance.
        server.tick(now + PROMOTE_AFTER).await.expect("tick");
        cli.tick(now + PROMOTE_AFTER).await.expect("tick");
        assert_eq!(sign(&server).1, urgent);
        assert_eq!(sign(&cli).1, urgent);

        // The audit log names what happened: the emergency rotation's event names the key it
        // withdrew when the scheduled one came first; otherwise the schedule did nothing.
        let events = server
            .store
            .audit_events(&AuditFilter::default())
            .await
            .expect("audit");
        let rotations: Vec<Value> = events
            .iter()
            .filter(|record| record.event.event == "key_rotated")
            .filter_map(|record| record.event.detail.as_ref().map(|d| d.value()))
            .collect();
        let by = |actor: &str| {
            rotations
                .iter()
                .filter(|detail| detail["actor"] == actor)
                .cloned()
                .collect::<Vec<_>>()
        };
        let emergency = by("cli");
        assert_eq!(emergency.len(), 1, "{rotations:?}");
        if scheduled_first {
            let published = by("schedule");
            assert_eq!(published.len(), 1, "{rotations:?}");
            let next = published[0]["after"]["kid"].clone();
            assert_eq!(state_of(next.as_str().unwrap_or("")), Some("retired"));
            assert_eq!(emergency[0]["after"]["withdrawn_next"], json!([next]));
        } else {
            assert!(by("schedule").is_empty(), "{rotations:?}");
            assert_eq!(keys.len(), 2, "{keys:?}");
            assert!(emergency[0]["after"].get("withdrawn_next").is_none());
        }
    }
}
