//! One store test-suite, run against both backends: every body below is an `async fn(Store)`,
//! and [`both_backends!`] turns it into `sqlite::<name>` (a file in a temporary directory) and
//! `postgres::<name>` (a fresh database per test, see `tests/support/test_db.rs`).

use serde_json::json;

use super::*;

#[path = "../../tests/support/test_db.rs"]
mod test_db;

use test_db::TestDatabase;

/// Connects and migrates a store on `database`.
async fn open(database: &TestDatabase) -> Store {
    let store = Store::connect(database.url(), 4).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let database = super::TestDatabase::sqlite();
                    let store = super::open(&database).await;
                    assert_eq!(store.backend(), super::Backend::Sqlite);
                    super::$name(store.clone()).await;
                    store.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(database) = super::TestDatabase::postgres(stringify!($name)).await else {
                        return;
                    };
                    let store = super::open(&database).await;
                    assert_eq!(store.backend(), super::Backend::Postgres);
                    super::$name(store.clone()).await;
                    store.close().await;
                }
            )*
        }
    };
}

both_backends!(
    migrations_are_idempotent,
    audit_batches_commit_every_event_in_order,
    authorization_codes_single_use_rotation_and_family_revocation,
    ping_answers,
    replay_records_are_single_use_until_purged,
    keys_insert_list_and_promote,
    at_most_one_active_key,
    concurrent_promotion_of_one_key_has_one_winner,
    retire_and_publish_until,
    audit_round_trips_every_field,
    audit_filters_and_pages,
    trust_upsert_list_delete,
    sync_config_trust_replaces_only_config_rows,
    sync_config_trust_handles_more_rows_than_one_statement,
    api_tokens_create_lookup_touch_revoke,
);

async fn migrations_are_idempotent(store: Store) {
    // `open` migrated once already; again is a no-op, and so is a fresh connection's migration.
    store.migrate().await.expect("second migrate");
    store.migrate().await.expect("third migrate");
    assert!(store.published_keys(0).await.expect("query").is_empty());
}

async fn ping_answers(store: Store) {
    assert!(store.ping().await);
}

/// CAUTH-06, JWTB-06: a `jti` is accepted once per issuer until its token has expired.
async fn replay_records_are_single_use_until_purged(store: Store) {
    // A batch (group commit) answers per record: new, already recorded, repeated in the batch.
    let batch = [
        ("https://batch".to_string(), "a".to_string(), 1000),
        ("https://batch".to_string(), "b".to_string(), 1000),
        ("https://batch".to_string(), "a".to_string(), 1000),
    ];
    assert_eq!(
        store.record_once_batch(&batch).await.expect("batch"),
        [true, true, false]
    );
    assert_eq!(
        store.record_once_batch(&batch[1..2]).await.expect("batch"),
        [false]
    );
    assert!(
        store
            .record_once("https://idp", "jti-1", 100)
            .await
            .expect("first")
    );
    assert!(
        !store
            .record_once("https://idp", "jti-1", 100)
            .await
            .expect("replay")
    );
    assert!(
        !store
            .record_once("https://idp", "jti-1", 999)
            .await
            .expect("replay, other exp")
    );
    // The same jti from another issuer is a different token.
    assert!(
        store
            .record_once("https://other", "jti-1", 200)
            .await
            .expect("other issuer")
    );
    assert!(
        store
            .record_once("https://idp", "jti-2", 300)
            .await
            .expect("second jti")
    );

    // Only records whose tokens expired before `now` go; a record expiring at `now` stays.
    assert_eq!(store.purge_expired(100).await.expect("purge none"), 0);
    assert_eq!(store.purge_expired(201).await.expect("purge two"), 2);
    assert!(
        !store
            .record_once("https://idp", "jti-2", 300)
            .await
            .expect("still recorded")
    );
    assert!(
        store
            .record_once("https://idp", "jti-1", 400)
            .await
            .expect("purged, usable")
    );
}

fn key(kid: &str, state: KeyState, created_at: i64) -> KeyRecord {
    KeyRecord {
        kid: kid.into(),
        algorithm: "ES256".into(),
        state,
        sealed_private_key: vec![0, 1, 2, 255, kid.len() as u8],
        public_jwk: format!(r#"{{"kty":"EC","kid":"{kid}"}}"#),
        created_at,
        activate_at: (state == KeyState::Next).then_some(created_at + 60),
        activated_at: (state == KeyState::Active).then_some(created_at),
        retired_at: None,
        publish_until: None,
    }
}

fn states(keys: &[KeyRecord]) -> Vec<(String, KeyState)> {
    keys.iter()
        .map(|key| (key.kid.clone(), key.state))
        .collect()
}

async fn keys_insert_list_and_promote(store: Store) {
    store
        .insert_key(&key("a", KeyState::Active, 10))
        .await
        .expect("insert a");
    store
        .insert_key(&key("b", KeyState::Next, 20))
        .await
        .expect("insert b");
    let keys = store.published_keys(20).await.expect("published");
    // Newest first; the sealed bytes round-trip exactly (BLOB / BYTEA).
    assert_eq!(
        states(&keys),
        [("b".into(), KeyState::Next), ("a".into(), KeyState::Active)]
    );
    assert_eq!(keys[1].sealed_private_key, vec![0, 1, 2, 255, 1]);
    assert_eq!(keys[0].activate_at, Some(80));

    // A duplicate kid is a conflict, not a database failure.
    let duplicate = store.insert_key(&key("a", KeyState::Next, 30)).await;
    assert!(
        matches!(duplicate, Err(StoreError::Conflict)),
        "{duplicate:?}"
    );

    assert!(store.promote_key("b", 80, 500).await.expect("promote"));
    let keys = store.published_keys(80).await.expect("published");
    assert_eq!(
        states(&keys),
        [
            ("b".into(), KeyState::Active),
            ("a".into(), KeyState::Retired)
        ]
    );
    assert_eq!(keys[0].activated_at, Some(80));
    assert_eq!(
        (keys[1].retired_at, keys[1].publish_until),
        (Some(80), Some(500))
    );
    // Promoting again, or promoting a key that is not `next`, does nothing.
    assert!(!store.promote_key("b", 90, 600).await.expect("again"));
    assert!(!store.promote_key("a", 90, 600).await.expect("retired"));
    assert!(!store.promote_key("nope", 90, 600).await.expect("unknown"));
    let keys = store.all_keys().await.expect("all");
    assert_eq!(
        keys.iter()
            .filter(|key| key.state == KeyState::Active)
            .count(),
        1
    );
    assert_eq!(
        keys[1].publish_until,
        Some(500),
        "a later no-op promote must not touch the retired key"
    );
}

/// The partial unique index keeps at most one active key, whatever the caller does.
async fn at_most_one_active_key(store: Store) {
    store
        .insert_key(&key("a", KeyState::Active, 10))
        .await
        .expect("insert a");
    let second = store.insert_key(&key("b", KeyState::Active, 20)).await;
    assert!(matches!(second, Err(StoreError::Conflict)), "{second:?}");
    assert_eq!(store.all_keys().await.expect("all").len(), 1);
}

/// Two instances promoting the same due `next` key at the same moment: exactly one wins, and
/// the loser never retires the key the winner just activated.
async fn concurrent_promotion_of_one_key_has_one_winner(store: Store) {
    for round in 0..5_i64 {
        let (old, new) = (format!("old-{round}"), format!("new-{round}"));
        if round == 0 {
            store
                .insert_key(&key(&old, KeyState::Active, 0))
                .await
                .expect("insert old");
        }
        store
            .insert_key(&key(&new, KeyState::Next, 10 * round + 1))
            .await
            .expect("insert next");
        let (first, second) = tokio::join!(
            store.promote_key(&new, 10 * round + 2, 1_000),
            store.promote_key(&new, 10 * round + 2, 1_000),
        );
        let winners = [first.expect("first"), second.expect("second")];
        assert_eq!(
            winners.iter().filter(|won| **won).count(),
            1,
            "round {round}: {winners:?}"
        );
        let keys = store.all_keys().await.expect("all");
        let active: Vec<_> = keys
            .iter()
            .filter(|key| key.state == KeyState::Active)
            .collect();
        assert_eq!(active.len(), 1, "round {round}: {:?}", states(&keys));
        assert_eq!(
            active[0].kid, new,
            "round {round}: the new key must be the active one"
        );
        // Next round promotes over this one.
        store
            .insert_key(&key(
                &format!("old-{}", round + 1),
                KeyState::Retired,
                10 * round + 3,
            ))
            .await
            .expect("filler");
    }
}

async fn retire_and_publish_until(store: Store) {
    store
        .insert_key(&key("a", KeyState::Active, 10))
        .await
        .expect("insert a");
    store
        .insert_key(&key("b", KeyState::Next, 20))
        .await
        .expect("insert b");
    assert!(store.retire_key("b", 30, 100).await.expect("retire next"));
    assert!(
        !store
            .retire_key("b", 31, 200)
            .await
            .expect("already retired")
    );
    assert!(!store.retire_key("zz", 31, 200).await.expect("unknown"));
    // Published while publish_until is in the future, gone from that second on; still listed.
    assert_eq!(store.published_keys(99).await.expect("99").len(), 2);
    assert_eq!(
        states(&store.published_keys(100).await.expect("100")),
        [("a".into(), KeyState::Active)]
    );
    assert_eq!(store.all_keys().await.expect("all").len(), 2);
}

fn full_event(occurred_at: i64) -> AuditEvent {
    AuditEvent {
        occurred_at,
        request_id: Some("req-1".into()),
        event: "token_exchange".into(),
        decision: Decision::Issued,
        reason: Some("ok".into()),
        error_code: None,
        client_id: Some("agent".into()),
        grant_type: Some("urn:ietf:params:oauth:grant-type:token-exchange".into()),
        subject_issuer: Some("https://idp.example.com".into()),
        subject: Some("alice".into()),
        audience: Some("https://wiki.example.com".into()),
        resources: vec!["https://wiki.example.com/api".into(), "urn:x:y".into()],
        scopes_requested: vec!["read".into(), "write".into()],
        scopes_granted: vec!["read".into()],
        issued_jti: Some("jti-xyz".into()),
        issued_expires_at: Some(occurred_at + 300),
        detail: Some(json!({"lineage": ["a", "b"], "n": 1})),
    }
}

async fn audit_round_trips_every_field(store: Store) {
    let event = full_event(1_000);
    store.record(&event).await.expect("record full");
    let minimal = AuditEvent::new(1_001, "key_rotated", Decision::Changed);
    store.record(&minimal).await.expect("record minimal");
    let records = store
        .audit_events(&AuditFilter::default())
        .await
        .expect("read");
    assert_eq!(records.len(), 2);
    assert!(records[0].id > records[1].id, "newest first");
    assert_eq!(records[0].event, minimal);
    assert_eq!(records[1].event, event);
}

async fn audit_batches_commit_every_event_in_order(store: Store) {
    let batch = vec![
        full_event(2_000),
        AuditEvent::new(2_001, "key_rotated", Decision::Changed),
        full_event(2_002),
    ];
    store.record_batch(&batch).await.expect("batch");
    store.record_batch(&[]).await.expect("empty batch");
    let records = store
        .audit_events(&AuditFilter::default())
        .await
        .expect("read");
    let events: Vec<AuditEvent> = records
        .into_iter()
        .rev()
        .map(|record| record.event)
        .collect();
    assert_eq!(events, batch);
}

async fn audit_filters_and_pages(store: Store) {
    for (index, client, decision, reason) in [
        (0, "a", Decision::Issued, None),
        (1, "b", Decision::Denied, Some("audience_unknown")),
        (2, "a", Decision::Denied, Some("subject_token_expired")),
        (3, "a", Decision::Issued, None),
        (4, "b", Decision::Issued, None),
    ] {
        let mut event = AuditEvent::new(100 + index, "token_exchange", decision);
        event.client_id = Some(client.into());
        event.subject = Some(format!("user-{}", index % 2));
        event.audience = Some(if index < 3 { "wiki" } else { "crm" }.into());
        event.reason = reason.map(Into::into);
        store.record(&event).await.expect("record");
    }
    let times = |records: Vec<AuditRecord>| -> Vec<i64> {
        records
            .into_iter()
            .map(|record| record.event.occurred_at)
            .collect()
    };
    let query = |filter: AuditFilter| {
        let store = store.clone();
        async move { times(store.audit_events(&filter).await.expect("query")) }
    };
    assert_eq!(
        query(AuditFilter::default()).await,
        [104, 103, 102, 101, 100]
    );
    let by_client = AuditFilter {
        client_id: Some("a".into()),
        ..Default::default()
    };
    assert_eq!(query(by_client).await, [103, 102, 100]);
    let denied = AuditFilter {
        decision: Some(Decision::Denied),
        ..Default::default()
    };
    assert_eq!(query(denied).await, [102, 101]);
    let reason = AuditFilter {
        reason: Some("audience_unknown".into()),
        ..Default::default()
    };
    assert_eq!(query(reason).await, [101]);
    let window = AuditFilter {
        since: Some(101),
        until: Some(103),
        ..Default::default()
    };
    assert_eq!(
        query(window).await,
        [102, 101],
        "since inclusive, until exclusive"
    );
    let combined = AuditFilter {
        subject: Some("user-0".into()),
        audience: Some("wiki".into()),
        ..Default::default()
    };
    assert_eq!(query(combined).await, [102, 100]);

    // Keyset pagination: pages of two, each starting below the last id seen.
    let mut pages = Vec::new();
    let mut before_id = None;
    loop {
        let filter = AuditFilter {
            limit: Some(2),
            before_id,
            ..Default::default()
        };
        let page = store.audit_events(&filter).await.expect("page");
        if page.is_empty() {
            break;
        }
        before_id = page.last().map(|record| record.id);
        pages.push(times(page));
    }
    assert_eq!(pages, [vec![104, 103], vec![102, 101], vec![100]]);
}

fn document(id: &str, version: u32, managed: bool, updated_at: i64) -> TrustDocument {
    TrustDocument {
        id: id.into(),
        document: json!({"id": id, "issuer": format!("https://{id}.example.com"), "version": version}),
        managed_by_config: managed,
        updated_at,
    }
}

async fn trust_upsert_list_delete(store: Store) {
    for kind in [
        TrustKind::IdentityProvider,
        TrustKind::Audience,
        TrustKind::Client,
    ] {
        let before = store.trust_version().await.expect("version");
        store
            .upsert_trust(kind, &document("zeta", 1, false, 10))
            .await
            .expect("upsert zeta");
        store
            .upsert_trust(kind, &document("alpha", 1, false, 11))
            .await
            .expect("upsert alpha");
        let listed = store.list_trust(kind).await.expect("list");
        assert_eq!(
            listed,
            [
                document("alpha", 1, false, 11),
                document("zeta", 1, false, 10)
            ]
        );
        let after = store.trust_version().await.expect("version");
        assert_ne!(before, after, "{kind:?}");

        // An edit in the same second that keeps the row count still changes the version.
        store
            .upsert_trust(kind, &document("alpha", 3, false, 11))
            .await
            .expect("same-second edit");
        assert_ne!(
            after,
            store.trust_version().await.expect("version"),
            "{kind:?}"
        );
        store
            .upsert_trust(kind, &document("alpha", 2, true, 12))
            .await
            .expect("replace");
        assert_eq!(
            store.list_trust(kind).await.expect("list")[0],
            document("alpha", 2, true, 12)
        );
        assert!(store.delete_trust(kind, "zeta").await.expect("delete"));
        assert!(
            !store
                .delete_trust(kind, "zeta")
                .await
                .expect("delete again")
        );
        assert_eq!(store.list_trust(kind).await.expect("list").len(), 1);
    }
    // The three kinds are separate tables.
    assert_eq!(
        store.list_trust(TrustKind::Client).await.expect("list")[0].id,
        "alpha"
    );
}

async fn sync_config_trust_replaces_only_config_rows(store: Store) {
    let kind = TrustKind::Audience;
    store
        .upsert_trust(kind, &document("admin-made", 1, false, 5))
        .await
        .expect("admin row");
    store
        .sync_config_trust(
            kind,
            &[document("a", 1, true, 10), document("b", 1, true, 10)],
        )
        .await
        .expect("first sync");
    let ids = |list: Vec<TrustDocument>| -> Vec<(String, bool)> {
        list.into_iter()
            .map(|doc| (doc.id, doc.managed_by_config))
            .collect()
    };
    assert_eq!(
        ids(store.list_trust(kind).await.expect("list")),
        [
            ("a".into(), true),
            ("admin-made".into(), false),
            ("b".into(), true)
        ]
    );

    // The file changed: `a` removed, `b` edited, `c` added. The admin row is untouched.
    store
        .sync_config_trust(
            kind,
            &[document("b", 2, true, 20), document("c", 1, true, 20)],
        )
        .await
        .expect("second sync");
    let listed = store.list_trust(kind).await.expect("list");
    assert_eq!(
        listed,
        [
            document("admin-made", 1, false, 5),
            document("b", 2, true, 20),
            document("c", 1, true, 20),
        ]
    );

    // Syncing an unchanged file does not bump `updated_at` (so caches are not refreshed for nothing).
    store
        .sync_config_trust(
            kind,
            &[document("b", 2, true, 30), document("c", 1, true, 30)],
        )
        .await
        .expect("unchanged sync");
    assert_eq!(store.list_trust(kind).await.expect("list"), listed);

    // An empty file removes every config row and still leaves the admin row.
    store
        .sync_config_trust(kind, &[])
        .await
        .expect("empty sync");
    assert_eq!(
        ids(store.list_trust(kind).await.expect("list")),
        [("admin-made".into(), false)]
    );
    // Other kinds were never touched.
    assert!(
        store
            .list_trust(TrustKind::Client)
            .await
            .expect("clients")
            .is_empty()
    );
}

async fn api_tokens_create_lookup_touch_revoke(store: Store) {
    let token = |name: &str, hash: &str, expires_at: Option<i64>| ApiTokenRecord {
        id_hash: hash.into(),
        name: name.into(),
        role: AdminRole::Auditor,
        created_at: 100,
        last_used_at: None,
        expires_at,
    };
    let event = |name: &str| AuditEvent::new(100, name, Decision::Changed);
    store
        .create_api_token(&token("ci", "h1", Some(500)), &event("api_token_created"))
        .await
        .expect("create");
    // Names are unique; the failed insert records no event.
    assert!(matches!(
        store
            .create_api_token(&token("ci", "h2", None), &event("api_token_created"))
            .await,
        Err(StoreError::Conflict)
    ));
    let found = store.api_token("h1").await.expect("lookup").expect("found");
    assert_eq!(
        (
            found.name.as_str(),
            found.role,
            found.expires_at,
            found.last_used_at
        ),
        ("ci", AdminRole::Auditor, Some(500), None)
    );
    assert!(store.api_token("h2").await.expect("lookup").is_none());
    store.touch_api_token("h1", 200).await.expect("touch");
    let listed = store.list_api_tokens().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_used_at, Some(200));
    assert!(
        store
            .revoke_api_token("ci", &event("api_token_revoked"))
            .await
            .expect("revoke")
    );
    assert!(
        !store
            .revoke_api_token("ci", &event("api_token_revoked"))
            .await
            .expect("revoke again")
    );
    assert!(store.api_token("h1").await.expect("lookup").is_none());
    let events: Vec<String> = store
        .audit_events(&AuditFilter::default())
        .await
        .expect("audit")
        .into_iter()
        .map(|record| record.event.event)
        .collect();
    assert_eq!(events, ["api_token_revoked", "api_token_created"]);
}

async fn authorization_codes_single_use_rotation_and_family_revocation(store: Store) {
    let request = AuthorizationRequest {
        id: "req-1".into(),
        rp_state: "rp-state".into(),
        browser_hash: "hash".into(),
        csrf_token: "csrf".into(),
        nonce: "nonce".into(),
        rp_pkce_verifier: "verifier".into(),
        client_id: "app".into(),
        redirect_uri: "https://app.example/cb".into(),
        state: Some("s".into()),
        code_challenge: "challenge".into(),
        resource: "https://mcp.example/mcp".into(),
        scopes: vec!["a".into(), "b".into()],
        status: "login".into(),
        subject: None,
        subject_issuer: None,
        email: None,
        auth_time: None,
        created_at: 100,
        expires_at: 700,
    };
    store
        .create_authorization_request(&request)
        .await
        .expect("create");
    let found = store
        .authorization_request_by_rp_state("rp-state")
        .await
        .expect("get");
    assert_eq!(found.as_ref(), Some(&request));
    assert!(
        store
            .advance_authorization_request("req-1", "login", "signing_in", 200)
            .await
            .expect("advance")
    );
    assert!(
        !store
            .advance_authorization_request("req-1", "login", "signing_in", 200)
            .await
            .expect("again")
    );
    assert!(
        store
            .complete_sign_in(
                "req-1",
                "user",
                "https://idp",
                Some("u@example.com"),
                Some(150)
            )
            .await
            .expect("sign in")
    );
    assert!(
        !store
            .advance_authorization_request("req-1", "consent", "done", 800)
            .await
            .expect("expired")
    );
    let signed_in = store
        .authorization_request("req-1")
        .await
        .expect("get")
        .expect("row");
    assert_eq!(signed_in.status, "consent");
    assert_eq!(signed_in.email.as_deref(), Some("u@example.com"));

    let code = CodeRecord {
        family_id: "fam".into(),
        client_id: "app".into(),
        redirect_uri: "https://app.example/cb".into(),
        code_challenge: "challenge".into(),
        subject: "user".into(),
        subject_issuer: "https://idp".into(),
        resource: "https://mcp.example/mcp".into(),
        scopes: vec!["a".into()],
        auth_time: Some(150),
        created_at: 200,
        expires_at: 260,
    };
    store
        .insert_code("code-hash", &code)
        .await
        .expect("insert code");
    assert_eq!(
        store.consume_code("code-hash", 210).await.expect("consume"),
        Redemption::Fresh(code.clone())
    );
    assert_eq!(
        store.consume_code("code-hash", 211).await.expect("again"),
        Redemption::Replayed(code)
    );
    assert_eq!(
        store.consume_code("nope", 211).await.expect("unknown"),
        Redemption::Unknown
    );

    let refresh = RefreshRecord {
        family_id: "fam".into(),
        client_id: "app".into(),
        subject: "user".into(),
        subject_issuer: "https://idp".into(),
        resource: "https://mcp.example/mcp".into(),
        scopes: vec!["a".into()],
        auth_time: Some(150),
        issued_at: 210,
        expires_at: 10_000,
    };
    store
        .insert_refresh_token("rt-1", &refresh)
        .await
        .expect("insert");
    store
        .insert_refresh_token("rt-2", &refresh)
        .await
        .expect("insert");
    store
        .record_issued(&IssuedToken {
            jti: "jti-1".into(),
            client_id: "app".into(),
            subject: "user".into(),
            token_type: "access_token".into(),
            issued_at: 210,
            expires_at: 900,
            revoked_at: None,
        })
        .await
        .expect("record");
    store.link_family_token("fam", "jti-1").await.expect("link");
    assert_eq!(
        store
            .rotate_refresh_token("rt-1", 220)
            .await
            .expect("rotate"),
        Redemption::Fresh(refresh.clone())
    );
    assert_eq!(
        store
            .rotate_refresh_token("rt-1", 221)
            .await
            .expect("reuse"),
        Redemption::Replayed(refresh.clone())
    );
    assert_eq!(store.revoke_family("fam", 222).await.expect("revoke"), 3);
    assert_eq!(
        store
            .rotate_refresh_token("rt-2", 223)
            .await
            .expect("revoked"),
        Redemption::Replayed(refresh)
    );
    let token = store
        .issued_token("jti-1")
        .await
        .expect("get")
        .expect("row");
    assert_eq!(token.revoked_at, Some(222));
}

/// Start-up with thousands of configured objects writes them in multi-row statements of a few
/// hundred rows (docs/performance.md): every row lands, across statement boundaries, and a
/// second sync updates, keeps and deletes exactly the right ones.
async fn sync_config_trust_handles_more_rows_than_one_statement(store: Store) {
    let kind = TrustKind::Client;
    let first: Vec<TrustDocument> = (0..1201)
        .map(|i| document(&format!("client-{i:04}"), 1, true, 10))
        .collect();
    store
        .sync_config_trust(kind, &first)
        .await
        .expect("first sync");
    let listed = store.list_trust(kind).await.expect("list");
    assert_eq!(listed, first);

    // Keep the even ones (odd ones removed from the file), edit every tenth, add one.
    let mut second: Vec<TrustDocument> = (0..1201)
        .step_by(2)
        .map(|i| {
            document(
                &format!("client-{i:04}"),
                if i % 10 == 0 { 2 } else { 1 },
                true,
                20,
            )
        })
        .collect();
    second.push(document("client-9999", 1, true, 20));
    store
        .sync_config_trust(kind, &second)
        .await
        .expect("second sync");
    let listed = store.list_trust(kind).await.expect("list");
    assert_eq!(listed.len(), second.len());
    for (stored, wanted) in listed.iter().zip(&second) {
        assert_eq!(stored.id, wanted.id);
        assert_eq!(stored.document, wanted.document);
        // Unchanged rows are not rewritten (their timestamp stays), changed ones are.
        let changed = wanted.document
            != first
                .iter()
                .find(|d| d.id == wanted.id)
                .map_or(json!(null), |d| d.document.clone());
        assert_eq!(
            stored.updated_at,
            if changed { 20 } else { 10 },
            "{}",
            stored.id
        );
    }
}
