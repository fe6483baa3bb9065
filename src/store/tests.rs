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
    status_indexes_are_reserved_in_disjoint_blocks_and_revocations_show_in_their_range,
    the_status_lists_with_live_tokens_are_those_holding_an_unexpired_one,
    revoking_a_subject_or_a_client_revokes_only_its_live_tokens_and_codes,
    a_kill_switch_marks_the_families_of_its_codes_and_live_refresh_tokens_revoke_05,
    audit_batches_commit_every_event_in_order,
    audit_events_commit_with_their_replay_records,
    authorization_codes_single_use_rotation_and_family_revocation,
    ping_answers,
    replay_records_are_single_use_until_purged,
    replay_records_take_identifiers_of_any_length,
    keys_insert_list_and_promote,
    at_most_one_active_key,
    concurrent_promotion_of_one_key_has_one_winner,
    a_scheduled_key_is_inserted_once_and_only_when_due,
    retire_and_publish_until,
    audit_round_trips_every_field,
    audit_filters_and_pages,
    trust_upsert_list_delete,
    sync_config_trust_replaces_only_config_rows,
    sync_config_trust_handles_more_rows_than_one_statement,
    api_tokens_create_lookup_touch_revoke,
    refresh_token_state_is_read_without_rotating_idjag_issue_11,
    purge_deletes_only_expired_grant_state,
    user_claims_latest_sign_in_wins_and_old_records_are_purged,
    admin_users_and_sessions_join_the_current_role,
    sso_admin_users_and_pending_sign_ins,
    admin_trust_changes_are_all_or_nothing_and_spare_config_rows,
    lookups_by_a_key_with_a_nul_character_find_nothing,
    audit_filters_match_values_in_their_stored_form,
    audit_batches_store_values_as_single_events_do,
    audit_events_before_a_time_are_deleted_oldest_first_in_bounded_chunks,
    retention_deletes_every_event_older_than_its_days_and_audits_the_deletion,
    a_retention_purge_asked_to_stop_still_audits_the_chunk_it_deleted,
    audit_events_page_forwards_oldest_first_between_id_bounds,
);

/// Pools skip sqlx's ping of a connection that was in use a moment ago (a round trip per
/// acquire, so per group commit) but still check one that sat idle: a dead idle connection is
/// refused, and the pool opens another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_connections_that_sat_idle_are_pinged_before_use() {
    use sqlx::Connection;
    let Some(database) = TestDatabase::postgres("idle_connections_pinged").await else {
        return;
    };
    let mut conn = sqlx::PgConnection::connect(database.url())
        .await
        .expect("connect");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .expect("backend pid");
    let mut admin = sqlx::PgConnection::connect(database.url())
        .await
        .expect("admin connection");
    // With a timeout, pg_terminate_backend returns once the backend has exited.
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 5000)")
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .expect("terminate");
    assert!(terminated, "the backend did not exit");
    // In use a moment ago: handed out without a round trip, so the dead server end goes unseen.
    assert!(
        check_before_acquire(&mut conn, Duration::ZERO)
            .await
            .expect("handed out unchecked")
    );
    // Idle long enough: pinged, and the dead connection is refused.
    assert!(
        check_before_acquire(&mut conn, PING_AFTER_IDLE)
            .await
            .is_err()
    );
}

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

/// A string of `blocks` random UUIDs (32 hex digits each): incompressible, so that PostgreSQL
/// cannot shrink it to fit an index entry.
fn incompressible(blocks: usize) -> String {
    (0..blocks)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect()
}

/// CAUTH-06, JWTB-06: a `jti` (and its issuer) is whatever the token's signer chose, as long as
/// the token itself (16 KiB by default): a long one is single-use like any other, and a batch
/// holding one commits with every other item in it. On PostgreSQL a key over 2,704 bytes (a
/// B-tree entry's limit) once failed the whole group commit, every request in the batch.
async fn replay_records_take_identifiers_of_any_length(store: Store) {
    let issuer = format!("client-assertion:{}", incompressible(40));
    let prefix = incompressible(300);
    let (first, second) = (format!("{prefix}a"), format!("{prefix}b"));
    assert!(
        store
            .record_once(&issuer, &first, 5_000)
            .await
            .expect("first")
    );
    assert!(
        !store
            .record_once(&issuer, &first, 5_000)
            .await
            .expect("replay")
    );
    // Identifiers that differ only in their last character are different tokens.
    assert!(
        store
            .record_once(&issuer, &second, 5_000)
            .await
            .expect("second")
    );
    // The pair is kept apart where issuer ends and jti begins.
    assert!(store.record_once("ab", "c", 5_000).await.expect("ab c"));
    assert!(store.record_once("a", "bc", 5_000).await.expect("a bc"));
    assert!(
        !store
            .record_once("ab", "c", 5_000)
            .await
            .expect("ab c again")
    );

    // In a group commit, beside ordinary items.
    let long = incompressible(300);
    let mut pending = client_assertion(&long);
    pending.issuer = issuer.clone();
    let fresh = store
        .record_events_with_replays(vec![
            (full_event(4_000), Some(pending.clone())),
            (full_event(4_001), Some(client_assertion("short"))),
            (full_event(4_002), None),
        ])
        .await
        .expect("batch with a long jti");
    assert_eq!(fresh, [true, true, true]);
    let fresh = store
        .record_events_with_replays(vec![
            (full_event(4_003), Some(pending)),
            (full_event(4_004), Some(client_assertion("other"))),
        ])
        .await
        .expect("batch replaying the long jti");
    assert_eq!(fresh, [false, true]);
    assert_eq!(every_audit_record(&store).await.len(), 5);
    assert!(
        !store
            .record_once(&issuer, &long, 5_000)
            .await
            .expect("replay")
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
        .insert_key(&key("a", KeyState::Active, 10), None, None)
        .await
        .expect("insert a");
    store
        .insert_key(&key("b", KeyState::Next, 20), None, None)
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
    let duplicate = store
        .insert_key(&key("a", KeyState::Next, 30), None, None)
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::Conflict)),
        "{duplicate:?}"
    );

    assert!(
        store
            .promote_key("b", 80, 500, None)
            .await
            .expect("promote")
    );
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
    assert!(!store.promote_key("b", 90, 600, None).await.expect("again"));
    assert!(
        !store
            .promote_key("a", 90, 600, None)
            .await
            .expect("retired")
    );
    assert!(
        !store
            .promote_key("nope", 90, 600, None)
            .await
            .expect("unknown")
    );
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
        .insert_key(&key("a", KeyState::Active, 10), None, None)
        .await
        .expect("insert a");
    let second = store
        .insert_key(&key("b", KeyState::Active, 20), None, None)
        .await;
    assert!(matches!(second, Err(StoreError::Conflict)), "{second:?}");
    assert_eq!(store.all_keys().await.expect("all").len(), 1);
}

/// Two instances promoting the same due `next` key at the same moment: exactly one wins, and
/// the loser never retires the key the winner just activated.
/// The scheduled rotation's insert: only when the active key is old enough and no `next` key
/// waits, and of attempts racing for the same rotation exactly one publishes, with its event.
async fn a_scheduled_key_is_inserted_once_and_only_when_due(store: Store) {
    let rotated =
        |kid: &str| AuditEvent::new(500, &format!("key_rotated {kid}"), Decision::Changed);
    store
        .insert_key(&key("old", KeyState::Active, 100), None, None)
        .await
        .expect("insert the active key");
    // Activated at 100: not yet due for a rotation that wants keys activated by 99.
    assert!(
        !store
            .insert_scheduled_key(&key("early", KeyState::Next, 500), 99, &rotated("early"))
            .await
            .expect("too early")
    );
    for round in 0..5 {
        let (a, b) = (format!("a-{round}"), format!("b-{round}"));
        let (key_a, key_b) = (key(&a, KeyState::Next, 500), key(&b, KeyState::Next, 500));
        let (event_a, event_b) = (rotated(&a), rotated(&b));
        let (first, second) = tokio::join!(
            store.insert_scheduled_key(&key_a, 100, &event_a),
            store.insert_scheduled_key(&key_b, 100, &event_b),
        );
        let won = [first.expect("first"), second.expect("second")];
        assert_eq!(
            won.iter().filter(|won| **won).count(),
            1,
            "round {round}: {won:?}"
        );
        let keys = store.all_keys().await.expect("all");
        let waiting: Vec<&str> = keys
            .iter()
            .filter(|key| key.state == KeyState::Next)
            .map(|key| key.kid.as_str())
            .collect();
        let winner = if won[0] { &a } else { &b };
        assert_eq!(waiting, [winner.as_str()], "round {round}");
        let events: Vec<String> = store
            .audit_events(&AuditFilter::default())
            .await
            .expect("audit")
            .into_iter()
            .map(|record| record.event.event)
            .collect();
        assert_eq!(
            events,
            [format!("key_rotated {winner}")],
            "only the winner's event"
        );
        // While that key waits, no further one is published.
        assert!(
            !store
                .insert_scheduled_key(&key("more", KeyState::Next, 600), 100, &rotated("more"))
                .await
                .expect("one waits already")
        );
        // Clear the stage for the next round: the waiting key and its event go.
        let retired = store
            .retire_key(winner, 700, 700, None)
            .await
            .expect("retire the waiting key");
        assert!(retired);
        assert_eq!(
            store
                .delete_events_before(i64::MAX, 10)
                .await
                .expect("clear the log"),
            1
        );
    }
    assert!(
        store
            .all_keys()
            .await
            .expect("all")
            .iter()
            .all(|key| key.kid != "early" && key.kid != "more"),
        "refused attempts stored nothing"
    );
}

async fn concurrent_promotion_of_one_key_has_one_winner(store: Store) {
    for round in 0..5_i64 {
        let (old, new) = (format!("old-{round}"), format!("new-{round}"));
        if round == 0 {
            store
                .insert_key(&key(&old, KeyState::Active, 0), None, None)
                .await
                .expect("insert old");
        }
        store
            .insert_key(&key(&new, KeyState::Next, 10 * round + 1), None, None)
            .await
            .expect("insert next");
        let (first, second) = tokio::join!(
            store.promote_key(&new, 10 * round + 2, 1_000, None),
            store.promote_key(&new, 10 * round + 2, 1_000, None),
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
            .insert_key(
                &key(
                    &format!("old-{}", round + 1),
                    KeyState::Retired,
                    10 * round + 3,
                ),
                None,
                None,
            )
            .await
            .expect("filler");
    }
}

async fn retire_and_publish_until(store: Store) {
    store
        .insert_key(&key("a", KeyState::Active, 10), None, None)
        .await
        .expect("insert a");
    store
        .insert_key(&key("b", KeyState::Next, 20), None, None)
        .await
        .expect("insert b");
    assert!(
        store
            .retire_key("b", 30, 100, None)
            .await
            .expect("retire next")
    );
    assert!(
        !store
            .retire_key("b", 31, 200, None)
            .await
            .expect("already retired")
    );
    assert!(
        !store
            .retire_key("zz", 31, 200, None)
            .await
            .expect("unknown")
    );
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
        detail: Some(AuditDetail::of(&json!({"lineage": ["a", "b"], "n": 1}))),
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

/// A token exchange's assertion `jti` commits with its audit event (CAUTH-06): one transaction,
/// and a replay found there turns that request's event into a denial.
async fn audit_events_commit_with_their_replay_records(store: Store) {
    fn replayed(event: &mut AuditEvent) {
        event.decision = Decision::Denied;
        event.reason = Some("assertion_replayed".into());
        event.issued_jti = None;
    }
    let pending = |jti: &str| PendingReplay {
        issuer: "client-assertion:agent".into(),
        jti: jti.into(),
        expires_at: 5_000,
        on_replay: replayed,
    };
    // Without replay records it is a plain batch.
    let fresh = store
        .record_events_with_replays(vec![(full_event(3_000), None)])
        .await
        .expect("plain batch");
    assert_eq!(fresh, [true]);
    // New, none, repeated within the batch, new.
    let fresh = store
        .record_events_with_replays(vec![
            (full_event(3_001), Some(pending("a"))),
            (full_event(3_002), None),
            (full_event(3_003), Some(pending("a"))),
            (full_event(3_004), Some(pending("b"))),
        ])
        .await
        .expect("batch");
    assert_eq!(fresh, [true, true, false, true]);
    // Recorded in an earlier batch, or through the replay store: refused.
    assert!(
        store
            .record_once("client-assertion:agent", "c", 5_000)
            .await
            .expect("record c")
    );
    let fresh = store
        .record_events_with_replays(vec![
            (full_event(3_005), Some(pending("b"))),
            (full_event(3_006), Some(pending("c"))),
            (full_event(3_007), Some(pending("d"))),
        ])
        .await
        .expect("second batch");
    assert_eq!(fresh, [false, false, true]);
    // All new, the common case (inserted rows counted, not named back one by one).
    let fresh = store
        .record_events_with_replays(vec![
            (full_event(3_008), Some(pending("e"))),
            (full_event(3_009), None),
            (full_event(3_010), Some(pending("f"))),
        ])
        .await
        .expect("all-new batch");
    assert_eq!(fresh, [true, true, true]);
    // Every event is in the log, the replayed ones as denials; every new jti is recorded.
    let records = store
        .audit_events(&AuditFilter::default())
        .await
        .expect("read");
    let mut rows: Vec<(i64, Decision, Option<String>)> = records
        .into_iter()
        .map(|record| {
            (
                record.event.occurred_at,
                record.event.decision,
                record.event.issued_jti,
            )
        })
        .collect();
    rows.sort_by_key(|row| row.0);
    let issued = |at| (at, Decision::Issued, Some("jti-xyz".to_string()));
    let denied = |at| (at, Decision::Denied, None);
    assert_eq!(
        rows,
        [
            issued(3_000),
            issued(3_001),
            issued(3_002),
            denied(3_003),
            issued(3_004),
            denied(3_005),
            denied(3_006),
            issued(3_007),
            issued(3_008),
            issued(3_009),
            issued(3_010),
        ]
    );
    for jti in ["a", "b", "d", "e", "f"] {
        assert!(
            !store
                .record_once("client-assertion:agent", jti, 5_000)
                .await
                .expect("replay check"),
            "{jti} was recorded"
        );
    }
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

/// `audit export`'s reads: oldest first, keyset pages forwards from `after_id`, bounded above by
/// `before_id` (its horizon), with the filters applied, and the latest id whatever the filter.
async fn audit_events_page_forwards_oldest_first_between_id_bounds(store: Store) {
    assert_eq!(store.latest_event_id().await.expect("latest"), None);
    let events: Vec<AuditEvent> = (0..7)
        .map(|index| {
            let decision = if index % 3 == 1 {
                Decision::Denied
            } else {
                Decision::Issued
            };
            let mut event = AuditEvent::new(200 + index, "token_exchange", decision);
            event.client_id = Some(if index < 5 { "a" } else { "b" }.into());
            event
        })
        .collect();
    store.record_batch(&events).await.expect("record");
    let all = store
        .audit_events(&AuditFilter {
            oldest_first: true,
            ..Default::default()
        })
        .await
        .expect("read");
    let ids: Vec<i64> = all.iter().map(|record| record.id).collect();
    let times: Vec<i64> = all.iter().map(|record| record.event.occurred_at).collect();
    assert_eq!(times, (200..207).collect::<Vec<_>>(), "oldest first");
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    assert_eq!(
        store.latest_event_id().await.expect("latest"),
        ids.last().copied()
    );

    // Pages of two forwards from the last id read, up to (not past) a horizon below the end.
    let horizon = ids[5];
    let mut pages = Vec::new();
    let mut after_id = Some(i64::MIN);
    loop {
        let page = store
            .audit_events(&AuditFilter {
                oldest_first: true,
                after_id,
                before_id: Some(horizon + 1),
                limit: Some(2),
                ..Default::default()
            })
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        after_id = Some(last.id);
        pages.push(
            page.iter()
                .map(|record| record.event.occurred_at)
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(pages, [vec![200, 201], vec![202, 203], vec![204, 205]]);

    // With filters: denied events of client `a` after the first one.
    let denied = store
        .audit_events(&AuditFilter {
            oldest_first: true,
            after_id: Some(ids[0]),
            client_id: Some("a".into()),
            decision: Some(Decision::Denied),
            ..Default::default()
        })
        .await
        .expect("filtered");
    let denied: Vec<i64> = denied
        .iter()
        .map(|record| record.event.occurred_at)
        .collect();
    assert_eq!(denied, [201, 204]);

    // Newest first is unchanged, and both bounds apply to it too.
    let newest = store
        .audit_events(&AuditFilter {
            after_id: Some(ids[1]),
            before_id: Some(ids[4]),
            ..Default::default()
        })
        .await
        .expect("newest first");
    let newest: Vec<i64> = newest
        .iter()
        .map(|record| record.event.occurred_at)
        .collect();
    assert_eq!(newest, [203, 202]);

    // The latest id ignores filters and stays the highest id after older events are purged.
    store.delete_events_before(203, 100).await.expect("purge");
    assert_eq!(
        store.latest_event_id().await.expect("latest"),
        ids.last().copied()
    );
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
        assert!(store.delete_trust(kind, "zeta", 100).await.expect("delete"));
        assert!(
            !store
                .delete_trust(kind, "zeta", 100)
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
        // Round-trips, as the code's below (RFC 9449 §10).
        dpop_jkt: Some("jkt-1".into()),
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
        dpop_jkt: Some("jkt-1".into()),
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
        dpop_jkt: Some("jkt-of-the-key".into()),
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
            status_index: None,
            subject_issuer: None,
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
    // RFC 9700 §4.14.2: the revocation is remembered for a grant still being issued in the
    // family, until the purge of expired codes passes it.
    assert_eq!(
        store.family_revoked("fam").await.expect("marked"),
        Some(FamilyRevocation::Leaked)
    );
    assert_eq!(
        store.family_revoked("another").await.expect("not marked"),
        None
    );
    store
        .purge_authorization_state(200, 222)
        .await
        .expect("purge before the mark");
    assert!(
        store
            .family_revoked("fam")
            .await
            .expect("still marked")
            .is_some()
    );
    store
        .purge_authorization_state(200, 223)
        .await
        .expect("purge past the mark");
    assert_eq!(store.family_revoked("fam").await.expect("purged"), None);
}

fn refresh_record(family_id: &str, expires_at: i64) -> RefreshRecord {
    RefreshRecord {
        family_id: family_id.into(),
        client_id: "app".into(),
        subject: "user".into(),
        subject_issuer: "https://idp".into(),
        resource: "https://mcp.example/mcp".into(),
        scopes: vec!["read".into()],
        auth_time: Some(100),
        issued_at: 100,
        expires_at,
        dpop_jkt: None,
    }
}

/// IDJAG-ISSUE-11: a refresh token presented as a subject token is read, not rotated.
async fn refresh_token_state_is_read_without_rotating_idjag_issue_11(store: Store) {
    let record = refresh_record("fam", 10_000);
    store
        .insert_refresh_token("rt", &record)
        .await
        .expect("insert");
    let fresh = RefreshState {
        record: record.clone(),
        rotated_at: None,
        revoked_at: None,
    };
    assert_eq!(
        store.refresh_token("rt").await.expect("get"),
        Some(fresh.clone())
    );
    // Reading twice changes nothing: the grant still rotates it afterwards.
    assert_eq!(store.refresh_token("rt").await.expect("again"), Some(fresh));
    assert_eq!(
        store.rotate_refresh_token("rt", 200).await.expect("rotate"),
        Redemption::Fresh(record.clone())
    );
    let rotated = store.refresh_token("rt").await.expect("get").expect("row");
    assert_eq!((rotated.rotated_at, rotated.revoked_at), (Some(200), None));
    store.revoke_family("fam", 300).await.expect("revoke");
    let revoked = store.refresh_token("rt").await.expect("get").expect("row");
    assert_eq!(revoked.revoked_at, Some(300));
    assert_eq!(store.refresh_token("unknown").await.expect("get"), None);
}

async fn purge_deletes_only_expired_grant_state(store: Store) {
    let request = |id: &str, expires_at: i64| AuthorizationRequest {
        id: id.into(),
        rp_state: format!("state-{id}"),
        browser_hash: "hash".into(),
        csrf_token: "csrf".into(),
        nonce: "nonce".into(),
        rp_pkce_verifier: "verifier".into(),
        client_id: "app".into(),
        redirect_uri: "https://app.example/cb".into(),
        state: None,
        code_challenge: "challenge".into(),
        resource: "https://mcp.example/mcp".into(),
        scopes: vec![],
        status: "login".into(),
        subject: None,
        subject_issuer: None,
        email: None,
        auth_time: None,
        created_at: 0,
        expires_at,
        dpop_jkt: None,
    };
    let code = |expires_at: i64| CodeRecord {
        family_id: "fam".into(),
        client_id: "app".into(),
        redirect_uri: "https://app.example/cb".into(),
        code_challenge: "challenge".into(),
        subject: "user".into(),
        subject_issuer: "https://idp".into(),
        resource: "https://mcp.example/mcp".into(),
        scopes: vec![],
        auth_time: None,
        created_at: 0,
        expires_at,
        dpop_jkt: None,
    };
    let issued = |jti: &str, expires_at: i64| IssuedToken {
        jti: jti.into(),
        client_id: "app".into(),
        subject: "user".into(),
        token_type: "access_token".into(),
        issued_at: 0,
        expires_at,
        revoked_at: None,
        status_index: None,
        subject_issuer: None,
    };
    store
        .create_authorization_request(&request("old", 999))
        .await
        .expect("request");
    store
        .create_authorization_request(&request("live", 1000))
        .await
        .expect("request");
    store
        .insert_code("code-old", &code(499))
        .await
        .expect("code");
    store
        .insert_code("code-recent", &code(900))
        .await
        .expect("code");
    store.consume_code("code-recent", 600).await.expect("use");
    store
        .insert_refresh_token("rt-expired", &refresh_record("dead", 999))
        .await
        .expect("rt");
    store
        .insert_refresh_token("rt-live", &refresh_record("fam", 5000))
        .await
        .expect("rt");
    store
        .insert_refresh_token("rt-live-revoked", &refresh_record("revoked", 5000))
        .await
        .expect("rt");
    store.revoke_family("revoked", 900).await.expect("revoke");
    store
        .record_issued(&issued("at-expired", 999))
        .await
        .expect("at");
    store
        .record_issued(&issued("at-live", 1000))
        .await
        .expect("at");
    store
        .link_family_token("fam", "at-expired")
        .await
        .expect("link");
    store
        .link_family_token("fam", "at-live")
        .await
        .expect("link");

    // now = 1000; codes are kept until 500 seconds after their expiry in this call.
    let flow = store
        .purge_authorization_state(1000, 500)
        .await
        .expect("purge flow");
    assert_eq!(flow, 3, "one request, one code, one refresh token");
    assert!(
        store
            .authorization_request("old")
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        store
            .authorization_request("live")
            .await
            .expect("get")
            .is_some()
    );
    // The recent used code is still there: a replay revokes its family.
    assert!(matches!(
        store
            .consume_code("code-recent", 1000)
            .await
            .expect("replay"),
        Redemption::Replayed(_)
    ));
    assert_eq!(
        store.consume_code("code-old", 1000).await.expect("purged"),
        Redemption::Unknown
    );
    assert!(
        store
            .refresh_token("rt-expired")
            .await
            .expect("get")
            .is_none()
    );
    assert!(store.refresh_token("rt-live").await.expect("get").is_some());
    // A revoked family stays until it expires, so reuse is still detected.
    assert!(matches!(
        store
            .rotate_refresh_token("rt-live-revoked", 1000)
            .await
            .expect("reuse"),
        Redemption::Replayed(_)
    ));

    let tokens = store
        .purge_expired_tokens(1000)
        .await
        .expect("purge tokens");
    assert_eq!(tokens, 2, "one token and its family link");
    assert!(
        store
            .issued_token("at-expired")
            .await
            .expect("get")
            .is_none()
    );
    assert!(store.issued_token("at-live").await.expect("get").is_some());
    // The live token's link survived: revoking the family still reaches it.
    store.revoke_family("fam", 1001).await.expect("revoke");
    let live = store
        .issued_token("at-live")
        .await
        .expect("get")
        .expect("row");
    assert_eq!(live.revoked_at, Some(1001));
    assert_eq!(
        store
            .purge_authorization_state(1000, 500)
            .await
            .expect("again"),
        0
    );
    assert_eq!(store.purge_expired_tokens(1000).await.expect("again"), 0);
}

/// IDJAG-ISSUE-12: the latest sign-in's claims are what an exchange reads.
async fn user_claims_latest_sign_in_wins_and_old_records_are_purged(store: Store) {
    let claims = |email: &str| {
        json!({ "sub": "u1", "email": email })
            .as_object()
            .cloned()
            .expect("object")
    };
    assert_eq!(
        store.user_claims("https://idp", "user").await.expect("get"),
        None
    );
    store
        .remember_user_claims("https://idp", "user", &claims("old@example.com"), 100)
        .await
        .expect("first");
    store
        .remember_user_claims("https://idp", "user", &claims("new@example.com"), 200)
        .await
        .expect("second");
    // A slower, older sign-in finishing last does not win.
    store
        .remember_user_claims("https://idp", "user", &claims("stale@example.com"), 150)
        .await
        .expect("late");
    let user = store
        .user_claims("https://idp", "user")
        .await
        .expect("get")
        .expect("row");
    assert_eq!(user.claims, claims("new@example.com"));
    assert_eq!(user.updated_at, 200);
    assert!(
        !format!("{user:?}").contains("new@example.com"),
        "Debug hides claim values"
    );
    store
        .remember_user_claims("https://other-idp", "user", &claims("x@example.com"), 50)
        .await
        .expect("other issuer");
    assert_eq!(store.purge_user_claims(200).await.expect("purge"), 1);
    assert!(
        store
            .user_claims("https://other-idp", "user")
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        store
            .user_claims("https://idp", "user")
            .await
            .expect("get")
            .is_some()
    );
}

fn event_names(events: Vec<AuditRecord>) -> Vec<String> {
    events
        .into_iter()
        .map(|record| record.event.event)
        .collect()
}

async fn admin_users_and_sessions_join_the_current_role(store: Store) {
    let user = |name: &str, role| AdminUser {
        username: name.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        role,
        created_at: 100,
        sso: false,
    };
    assert_eq!(store.count_admin_users().await.expect("count"), 0);
    let created = AuditEvent::new(100, "admin_user_created", Decision::Changed);
    store
        .create_admin_user(&user("ada", AdminRole::Admin), &created)
        .await
        .expect("create");
    // A taken name is a conflict and records nothing.
    assert!(matches!(
        store
            .create_admin_user(&user("ada", AdminRole::Auditor), &created)
            .await,
        Err(StoreError::Conflict)
    ));
    let found = store
        .admin_user("ada")
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!((found.role, found.sso), (AdminRole::Admin, false));
    assert!(store.admin_user("bob").await.expect("lookup").is_none());

    let session = |hash: &str, created_at: i64| AdminSessionRecord {
        id_hash: hash.into(),
        username: "ada".into(),
        role: AdminRole::Auditor, // ignored: the role is joined from admin_users
        csrf_token: format!("csrf-{hash}"),
        created_at,
        last_seen_at: created_at,
    };
    store
        .create_admin_session(&session("s1", 1_000))
        .await
        .expect("s1");
    store
        .create_admin_session(&session("s2", 5_000))
        .await
        .expect("s2");
    let s1 = store.admin_session("s1").await.expect("get").expect("s1");
    assert_eq!(
        (s1.role, s1.csrf_token.as_str()),
        (AdminRole::Admin, "csrf-s1")
    );
    store.touch_admin_session("s1", 1_500).await.expect("touch");
    assert_eq!(
        store
            .admin_session("s1")
            .await
            .expect("get")
            .expect("s1")
            .last_seen_at,
        1_500
    );
    // Idle since before 2_000 (s1) goes; s2 stays.
    store
        .purge_admin_sessions(2_000, 0)
        .await
        .expect("purge idle");
    assert!(store.admin_session("s1").await.expect("get").is_none());
    assert!(store.admin_session("s2").await.expect("get").is_some());
    // Created before 6_000 goes, whatever its last use.
    store
        .purge_admin_sessions(0, 6_000)
        .await
        .expect("purge absolute");
    assert!(store.admin_session("s2").await.expect("get").is_none());
    store
        .create_admin_session(&session("s3", 7_000))
        .await
        .expect("s3");
    store.delete_admin_session("s3").await.expect("delete");
    assert!(store.admin_session("s3").await.expect("get").is_none());
    // A session for a user that does not exist is refused by the foreign key.
    let mut orphan = session("s4", 7_000);
    orphan.username = "nobody".into();
    assert!(store.create_admin_session(&orphan).await.is_err());
    assert_eq!(
        event_names(
            store
                .audit_events(&AuditFilter::default())
                .await
                .expect("audit")
        ),
        ["admin_user_created"]
    );
}

async fn sso_admin_users_and_pending_sign_ins(store: Store) {
    let signed_in = AuditEvent::new(100, "admin_sign_in", Decision::Changed);
    store
        .upsert_sso_admin_user("corp:123", AdminRole::Auditor, 100, &signed_in)
        .await
        .expect("first sign-in");
    let user = store
        .admin_user("corp:123")
        .await
        .expect("get")
        .expect("user");
    assert_eq!((user.role, user.sso), (AdminRole::Auditor, true));
    // The role is decided again at every sign-in.
    store
        .upsert_sso_admin_user("corp:123", AdminRole::Admin, 200, &signed_in)
        .await
        .expect("second sign-in");
    let user = store
        .admin_user("corp:123")
        .await
        .expect("get")
        .expect("user");
    assert_eq!((user.role, user.created_at), (AdminRole::Admin, 100));
    // A local account is never turned into an SSO one (and nothing is recorded then).
    let local = AdminUser {
        username: "local:x".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        role: AdminRole::Auditor,
        created_at: 1,
        sso: false,
    };
    let created = AuditEvent::new(1, "admin_user_created", Decision::Changed);
    store
        .create_admin_user(&local, &created)
        .await
        .expect("local");
    assert!(matches!(
        store
            .upsert_sso_admin_user("local:x", AdminRole::Admin, 300, &signed_in)
            .await,
        Err(StoreError::Conflict)
    ));
    let user = store
        .admin_user("local:x")
        .await
        .expect("get")
        .expect("user");
    assert_eq!((user.role, user.sso), (AdminRole::Auditor, false));
    assert_eq!(
        event_names(
            store
                .audit_events(&AuditFilter::default())
                .await
                .expect("audit")
        ),
        ["admin_user_created", "admin_sign_in", "admin_sign_in"]
    );

    let pending = |state: &str, created_at: i64| AdminSsoRequest {
        state_hash: state.into(),
        binding_hash: format!("binding-{state}"),
        nonce: format!("nonce-{state}"),
        pkce_verifier: format!("verifier-{state}"),
        created_at,
        previous_session_hash: (state == "new").then(|| "previous-session-hash".to_string()),
    };
    store
        .create_admin_sso_request(&pending("old", 10), 0)
        .await
        .expect("old");
    // Creating another purges those created before the cut-off.
    store
        .create_admin_sso_request(&pending("new", 1_000), 500)
        .await
        .expect("new");
    assert!(
        store
            .take_admin_sso_request("old")
            .await
            .expect("take")
            .is_none()
    );
    let taken = store
        .take_admin_sso_request("new")
        .await
        .expect("take")
        .expect("new");
    assert_eq!(
        (
            taken.binding_hash.as_str(),
            taken.nonce.as_str(),
            taken.pkce_verifier.as_str(),
            taken.created_at,
            taken.previous_session_hash.as_deref(),
        ),
        (
            "binding-new",
            "nonce-new",
            "verifier-new",
            1_000,
            Some("previous-session-hash")
        )
    );
    // A state is taken once.
    assert!(
        store
            .take_admin_sso_request("new")
            .await
            .expect("again")
            .is_none()
    );
}

async fn admin_trust_changes_are_all_or_nothing_and_spare_config_rows(store: Store) {
    let kind = TrustKind::Client;
    let event = |name: &str| AuditEvent::new(100, name, Decision::Changed);
    store
        .sync_config_trust(kind, &[document("from-file", 1, true, 10)])
        .await
        .expect("config row");
    let before = store.trust_version().await.expect("version");
    assert!(
        store
            .apply_trust_change(
                kind,
                TrustChange::Create(&document("made", 1, false, 20)),
                &event("client_created")
            )
            .await
            .expect("create")
    );
    // Every other instance reloads its registry when the version moves.
    let created = store.trust_version().await.expect("version");
    assert_ne!(before, created, "an admin change moves the trust version");
    // Creating over an existing id, config-managed or not, is a conflict that records nothing.
    for id in ["made", "from-file"] {
        assert!(matches!(
            store
                .apply_trust_change(
                    kind,
                    TrustChange::Create(&document(id, 9, false, 30)),
                    &event("client_created")
                )
                .await,
            Err(StoreError::Conflict)
        ));
    }
    // Config-managed rows are neither updated nor deleted here; nothing is recorded then.
    assert!(
        !store
            .apply_trust_change(
                kind,
                TrustChange::Update(&document("from-file", 2, false, 40)),
                &event("client_updated")
            )
            .await
            .expect("update config row")
    );
    assert!(
        !store
            .apply_trust_change(
                kind,
                TrustChange::Delete("from-file"),
                &event("client_deleted")
            )
            .await
            .expect("delete config row")
    );
    assert!(
        store
            .apply_trust_change(
                kind,
                TrustChange::Update(&document("made", 2, false, 50)),
                &event("client_updated")
            )
            .await
            .expect("update")
    );
    let updated = store.trust_version().await.expect("version");
    assert_ne!(created, updated, "an update moves the trust version");
    let listed = store.list_trust(kind).await.expect("list");
    assert_eq!(
        listed,
        [
            document("from-file", 1, true, 10),
            document("made", 2, false, 50)
        ]
    );
    // Tokens issued to the client being deleted, and to another, before the delete.
    let issued = |jti: &str, client_id: &str| IssuedToken {
        jti: jti.into(),
        client_id: client_id.into(),
        subject: "user".into(),
        token_type: "access_token".into(),
        issued_at: 90,
        expires_at: 10_000,
        revoked_at: None,
        status_index: None,
        subject_issuer: None,
    };
    let refresh = |client_id: &str| RefreshRecord {
        family_id: format!("fam-{client_id}"),
        client_id: client_id.into(),
        subject: "user".into(),
        subject_issuer: "https://idp".into(),
        resource: "https://mcp.example/mcp".into(),
        scopes: vec![],
        auth_time: None,
        issued_at: 90,
        expires_at: 10_000,
        dpop_jkt: None,
    };
    for client_id in ["made", "other"] {
        store
            .record_issued(&issued(&format!("at-{client_id}"), client_id))
            .await
            .expect("issued");
        store
            .insert_refresh_token(&format!("rt-{client_id}"), &refresh(client_id))
            .await
            .expect("refresh");
    }
    assert!(
        store
            .apply_trust_change(kind, TrustChange::Delete("made"), &event("client_deleted"))
            .await
            .expect("delete")
    );
    assert_ne!(
        updated,
        store.trust_version().await.expect("version"),
        "a delete moves the trust version"
    );
    // RFC 7592 §2.3: the deleted client's tokens are revoked with it, at the event's time;
    // another client's are not.
    assert_eq!(access_revoked_at(&store, "at-made").await, Some(100));
    assert_eq!(family_revoked_at(&store, "rt-made").await, Some(100));
    assert_eq!(access_revoked_at(&store, "at-other").await, None);
    assert_eq!(family_revoked_at(&store, "rt-other").await, None);
    assert!(
        !store
            .apply_trust_change(kind, TrustChange::Delete("made"), &event("client_deleted"))
            .await
            .expect("delete again")
    );
    assert_eq!(
        event_names(
            store
                .audit_events(&AuditFilter::default())
                .await
                .expect("audit")
        ),
        ["client_deleted", "client_updated", "client_created"]
    );
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

/// The SQLite settings the group commit's throughput rests on (docs/performance.md): the
/// writers' own connection with its larger page cache, statement journals in memory, rarer
/// checkpoints, and replay records appended to a log without an index on the `jti`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_group_writer_has_its_own_tuned_connection() {
    let database = TestDatabase::sqlite();
    let store = open(&database).await;
    let (Pool::Sqlite(shared), Held::Sqlite(held)) = (&store.pool, &store.held) else {
        panic!("both pools are SQLite");
    };
    let dedicated = held.pool();
    assert_eq!(dedicated.options().get_max_connections(), 1);
    assert!(shared.options().get_max_connections() > 1);
    let pragma = |pool: &SqlitePool, name: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("PRAGMA {name}")))
                .fetch_one(&pool)
                .await
                .expect(name)
        }
    };
    assert_eq!(
        pragma(dedicated, "cache_size").await,
        -SQLITE_WRITER_CACHE_KIB
    );
    assert_eq!(
        pragma(shared, "cache_size").await,
        -2000,
        "SQLite's default elsewhere"
    );
    for pool in [shared, dedicated] {
        assert_eq!(pragma(pool, "temp_store").await, 2, "MEMORY");
        assert_eq!(
            pragma(pool, "wal_autocheckpoint").await,
            i64::from(SQLITE_WAL_AUTOCHECKPOINT_PAGES)
        );
        assert_eq!(
            pragma(pool, "synchronous").await,
            2,
            "FULL: durable commits"
        );
    }
    let schema: String = sqlx::query_scalar(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'replay_records'",
    )
    .fetch_one(dedicated)
    .await
    .expect("schema");
    // An append-only log: its uniqueness is the in-memory set's (src/store/live_jtis.rs).
    assert!(!schema.contains("PRIMARY KEY"), "{schema}");
    assert!(!schema.contains("WITHOUT ROWID"), "{schema}");
    // A replay record written through the writer's connection is in the table the shared pool
    // reads, and refused the second time.
    assert!(store.record_once("i", "j", 9_000).await.expect("record"));
    assert_eq!(count_rows(&store, "replay_records").await, 1);
    assert!(!store.record_once("i", "j", 9_000).await.expect("replay"));
    store.close().await;
}

/// PostgreSQL's replay records became digests in migration 0011: every record an earlier
/// version wrote is still refused after the upgrade (the migration computes in SQL the digest
/// the store computes in Rust), keeps its expiry, and is purged when that passes (CAUTH-06).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replay_records_written_before_the_digest_migration_are_still_refused() {
    let Some(database) = TestDatabase::postgres("replay_digest_migration").await else {
        return;
    };
    let store = Store::connect(database.url(), 4).await.expect("connect");
    let Pool::Postgres(pool) = &store.pool else {
        panic!("a PostgreSQL store");
    };
    migrations::POSTGRES
        .run_to(10, pool)
        .await
        .expect("migrate to the last version with text keys");
    let old = [
        ("client-assertion:agent", "kept", 5_000_i64),
        ("https://idp.example", "expired", 50),
        // Non-ASCII text: the digest covers the UTF-8 bytes on both sides.
        ("https://idp.example/é", "jti-ü", 5_000),
    ];
    for (issuer, jti, expires_at) in old {
        sqlx::query("INSERT INTO replay_records (issuer, jti, expires_at) VALUES ($1, $2, $3)")
            .bind(issuer)
            .bind(jti)
            .bind(expires_at)
            .execute(pool)
            .await
            .expect("an old-form record");
    }
    store.migrate().await.expect("migrate to the digests");
    for (issuer, jti, expires_at) in old {
        assert!(
            !store
                .record_once(issuer, jti, expires_at)
                .await
                .expect("record"),
            "({issuer}, {jti}) was forgotten by the migration"
        );
    }
    assert_eq!(store.purge_expired(100).await.expect("purge"), 1);
    assert!(
        store
            .record_once("https://idp.example", "expired", 200)
            .await
            .expect("purged, usable")
    );
    assert!(
        !store
            .record_once("client-assertion:agent", "kept", 5_000)
            .await
            .expect("still recorded")
    );
    store.close().await;
}

/// SQLite's replay check lives in the memory of the one store that holds the database: a
/// second store on the file can neither claim it nor record a `jti` while the first is open;
/// once the first has closed, the second claims the file and its set, rebuilt from the table,
/// still refuses what the first recorded (a restart forgets no replay) (CAUTH-06, EMA-06).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_replay_set_belongs_to_one_store_and_survives_a_restart() {
    let database = TestDatabase::sqlite();
    let first = open(&database).await;
    first.claim_for_this_process().await.expect("claim");
    assert!(
        first
            .record_once("i", "before", 9_000)
            .await
            .expect("record")
    );
    let batch = [
        ("i".to_string(), "batched".to_string(), 9_000),
        ("i".to_string(), "before".to_string(), 9_000),
    ];
    assert_eq!(
        first.record_once_batch(&batch).await.expect("batch"),
        [true, false]
    );

    let second = open(&database).await;
    let refused = second.claim_for_this_process().await.expect_err("held");
    assert!(
        refused
            .to_string()
            .contains("another frontdesk server is using this SQLite database"),
        "{refused}"
    );
    assert!(matches!(
        second.record_once("i", "other", 9_000).await,
        Err(StoreError::Unavailable(_))
    ));

    first.close().await;
    second
        .claim_for_this_process()
        .await
        .expect("free after close");
    for jti in ["before", "batched"] {
        assert!(
            !second.record_once("i", jti, 9_000).await.expect("replay"),
            "{jti} is still recorded"
        );
    }
    assert!(second.record_once("i", "other", 9_000).await.expect("new"));
    // The purge removes records from the set and the table together.
    assert_eq!(second.purge_expired(9_001).await.expect("purge"), 3);
    assert!(
        second
            .record_once("i", "before", 9_500)
            .await
            .expect("purged")
    );
    second.close().await;
}

/// The SQLite group commit sends a batch's whole transaction (`BEGIN; …; COMMIT`) as one
/// command on a connection it holds, a transaction sqlx does not see. A batch that fails
/// half-way must leave nothing behind: its replay record not stored and not claimed, and the
/// next batch not trapped inside the failed transaction — which reusing the connection would
/// do (its `BEGIN` would fail, or a lone `INSERT` would never be committed). The connection is
/// dropped and the next batch commits on a fresh one, visibly to every other connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_batch_failing_half_way_is_rolled_back_and_its_connection_replaced() {
    let database = TestDatabase::sqlite();
    let store = open(&database).await;
    store.claim_for_this_process().await.expect("claim");
    let writer = store.clone();
    let Held::Sqlite(held) = writer.held.clone() else {
        panic!("SQLite holds a writer connection");
    };
    let Pool::Sqlite(shared) = &store.pool else {
        panic!("SQLite");
    };
    // The audit insert, second in the transaction, fails for one event.
    sqlx::query(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON audit_events \
         WHEN NEW.event = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned event'); END",
    )
    .execute(shared)
    .await
    .expect("trigger");
    let pending = client_assertion;
    let count = |table: &'static str| count_rows(&store, table);

    // A good batch first: the connection is then held between batches.
    let fresh = writer
        .record_events_with_replays(vec![(full_event(1), Some(pending("first")))])
        .await
        .expect("good batch");
    assert_eq!(fresh, [true]);
    assert!(held.is_connected().await);

    let mut poison = full_event(2);
    poison.event = "poison".into();
    let failed = writer
        .record_events_with_replays(vec![(full_event(3), Some(pending("lost"))), (poison, None)])
        .await
        .expect_err("the trigger refuses the batch");
    assert!(matches!(failed, StoreError::Database(_)), "{failed:?}");
    assert!(
        !held.is_connected().await,
        "a failed batch's connection is dropped"
    );
    // Nothing of the failed batch is stored, though its replay insert ran before the failure.
    assert_eq!(count("audit_events").await, 1);
    assert_eq!(count("replay_records").await, 1);
    // Its claim was released: the jti was never accepted, so it is not a replay.
    assert!(
        writer
            .record_once("client-assertion:agent", "lost", 5_000)
            .await
            .expect("lost")
    );

    // Later batches, a lone INSERT and a transaction, commit on a fresh connection and are seen
    // by the shared pool's connections.
    writer
        .insert_events(vec![full_event(4)])
        .await
        .expect("lone insert");
    let fresh = writer
        .record_events_with_replays(vec![(full_event(5), Some(pending("after")))])
        .await
        .expect("batch after the failure");
    assert_eq!(fresh, [true]);
    assert!(held.is_connected().await);
    assert_eq!(count("audit_events").await, 3);
    assert_eq!(count("replay_records").await, 3);
    store.close().await;
}

/// On PostgreSQL the group commit keeps its connections between batches (no ping on return to
/// the pool), at most one per batch in flight and never more than half the pool; a batch that
/// fails hands its connection back to the pool instead of keeping it, its transaction rolled
/// back; and a kept connection that sat idle is checked before use, so a restarted server costs
/// no failed batch (the guarantee the pool's own check gives, `pool_options`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_group_commit_keeps_connections_and_drops_failed_or_dead_ones() {
    let Some(database) = TestDatabase::postgres("held_pg_connections").await else {
        return;
    };
    let store = open(&database).await;
    let writer = store.clone();
    let Held::Postgres(held) = writer.held.clone() else {
        panic!("PostgreSQL keeps pool connections");
    };
    let Pool::Postgres(pool) = &store.pool else {
        panic!("PostgreSQL");
    };
    // `open` asks for a pool of 4. At most one connection per batch in flight is kept, and
    // never more than half of the pool.
    assert_eq!(held.limit(), 2);
    let limit =
        |in_flight| held_connection::HeldPgConnections::new(pool.clone(), in_flight).limit();
    assert_eq!(limit(1), 1, "bounded by the batches in flight");
    assert_eq!(limit(3), 2, "bounded by half the pool");
    let count = |table: &'static str| count_rows(&store, table);
    let pending = client_assertion;

    writer
        .insert_events(vec![full_event(1)])
        .await
        .expect("batch");
    assert_eq!(held.kept(), 1, "kept after a batch");
    // Three batches at once take three connections; only two are kept afterwards.
    let (a, b, c) = tokio::join!(
        writer.record_events_with_replays(vec![(full_event(2), Some(pending("a")))]),
        writer.record_events_with_replays(vec![(full_event(3), Some(pending("b")))]),
        writer.record_events_with_replays(vec![(full_event(4), Some(pending("c")))]),
    );
    for fresh in [a, b, c] {
        assert_eq!(fresh.expect("concurrent batch"), [true]);
    }
    assert_eq!(held.kept(), 2, "never more than the limit");

    // A batch failing after its replay insert leaves nothing and keeps no connection.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN IF NEW.event = 'poison' THEN RAISE EXCEPTION 'poisoned event'; END IF; \
         RETURN NEW; END $$; \
         CREATE TRIGGER refuse_poison BEFORE INSERT ON audit_events \
         FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .execute(pool)
    .await
    .expect("trigger");
    let mut poison = full_event(5);
    poison.event = "poison".into();
    writer
        .record_events_with_replays(vec![(full_event(6), Some(pending("lost"))), (poison, None)])
        .await
        .expect_err("the trigger refuses the batch");
    assert_eq!(
        held.kept(),
        1,
        "the failed batch's connection went back to the pool"
    );
    assert_eq!(count("audit_events").await, 4);
    assert_eq!(count("replay_records").await, 3);
    assert!(
        writer
            .record_once("client-assertion:agent", "lost", 5_000)
            .await
            .expect("never recorded")
    );
    // Many events alone travel as one `COPY` (`pg_copy`): refused half-way, it writes none of
    // them, its connection is not kept, and the next batch copies on another.
    let copied: Vec<AuditEvent> = (0..pg_batch::COPY_FROM)
        .map(|n| full_event(100 + n as i64))
        .collect();
    let mut poisoned = copied.clone();
    if let Some(last) = poisoned.last_mut() {
        last.event = "poison".into();
    }
    writer
        .insert_events(poisoned)
        .await
        .expect_err("the trigger refuses the copy");
    assert_eq!(held.kept(), 0, "the failed copy's connection went back");
    assert_eq!(count("audit_events").await, 4);
    writer.insert_events(copied).await.expect("the next copy");
    assert_eq!(held.kept(), 1);
    let copied_count = i64::try_from(pg_batch::COPY_FROM).expect("small");
    assert_eq!(count("audit_events").await, 4 + copied_count);

    // The kept connection's server process dies while it sits idle: checked, replaced.
    let Some(kept_pid) = kept_backend_pid(&held).await else {
        panic!("one connection is kept");
    };
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 5000)")
        .bind(kept_pid)
        .fetch_one(pool)
        .await
        .expect("terminate");
    assert!(terminated, "the backend did not exit");
    held.age_kept(PING_AFTER_IDLE);
    writer
        .insert_events(vec![full_event(7)])
        .await
        .expect("a fresh connection replaces the dead one");
    assert_eq!(count("audit_events").await, 5 + copied_count);
    assert_eq!(held.kept(), 1);
    assert_ne!(kept_backend_pid(&held).await, Some(kept_pid));
    // Once the store starts closing, a batch still finishing keeps nothing: the pool's `close`
    // waits for every connection, so a kept one would hold the shutdown up for ever.
    held.release_all();
    writer
        .insert_events(vec![full_event(8)])
        .await
        .expect("a batch finishing during shutdown");
    assert_eq!(held.kept(), 0);
    store.close().await;
}

/// A caller that stops waiting cannot abandon a large batch half-way (`record_batch` writes in a
/// task of its own): the batch, a COPY on PostgreSQL, is still committed whole, and the
/// connection it used serves the next batches correctly. sqlx does not count the replies a COPY
/// dropped half-way still owes, so an abandoned one could leave a pooled connection answering
/// the next query with the last one's replies (`pg_copy`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_large_batch_outlives_a_caller_that_stops_waiting() {
    let Some(database) = TestDatabase::postgres("batch_outlives_caller").await else {
        return;
    };
    let store = open(&database).await;
    let size = pg_batch::COPY_FROM;
    let batch: Vec<AuditEvent> = (0..size).map(|n| full_event(n as i64)).collect();
    {
        // Polled once (it cannot be done: it needs the database), then dropped.
        let mut caller = std::pin::pin!(store.record_batch(&batch));
        tokio::select! {
            biased;
            _ = &mut caller => panic!("a batch committed without waiting for the database"),
            () = std::future::ready(()) => {}
        }
    }
    // The batch lands on its own; wait for it (each look is a query, no timer).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let expected = i64::try_from(size).expect("small");
    while count_rows(&store, "audit_events").await < expected {
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned batch was never committed"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(count_rows(&store, "audit_events").await, expected);
    // Later batches, large and small, on the same connections, read back exactly.
    let later: Vec<AuditEvent> = (0..size).map(|n| full_event(1_000 + n as i64)).collect();
    store.record_batch(&later).await.expect("a later copy");
    store
        .record_batch(&batch[..2])
        .await
        .expect("a later insert");
    let records = every_audit_record(&store).await;
    let mut stored: Vec<AuditEvent> = records.into_iter().map(|record| record.event).collect();
    stored.reverse();
    let mut written = batch.clone();
    written.extend(later);
    written.extend_from_slice(&batch[..2]);
    assert_eq!(stored, written);
    store.close().await;
}

/// PostgreSQL writes a batch with replay records as one statement that is all or nothing
/// (CAUTH-06): when a `jti` in it was already recorded, or is in it twice, the statement writes
/// neither the batch's events nor its other records, so the careful path can write them once.
/// With every `jti` new it writes them all, every column intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_batch_statement_is_all_or_nothing() {
    let Some(database) = TestDatabase::postgres("pg_batch_statement").await else {
        return;
    };
    let store = open(&database).await;
    let Pool::Postgres(pool) = &store.pool else {
        panic!("PostgreSQL");
    };
    let record = |jti: &str| (replay::replay_digest("client-assertion:agent", jti), 5_000);
    let mut sparse = AuditEvent::new(2, "token_exchange", Decision::Denied);
    sparse.reason = Some("assertion_replayed".into());
    let events = vec![full_event(1), sparse];
    let count = |table: &'static str| count_rows(&store, table);

    let written = pg_batch::insert_replays_and_events(pool, &[record("a"), record("b")], &events)
        .await
        .expect("all new");
    assert!(written);
    assert_eq!(
        (count("audit_events").await, count("replay_records").await),
        (2, 2)
    );
    let mut stored: Vec<AuditEvent> = store
        .audit_events(&AuditFilter::default())
        .await
        .expect("read")
        .into_iter()
        .map(|record| record.event)
        .collect();
    stored.sort_by_key(|event| event.occurred_at);
    assert_eq!(stored, events, "every column, set or empty, as sent");

    for (records, why) in [
        (vec![record("c"), record("a")], "one recorded before"),
        (vec![record("d"), record("d")], "one twice in the batch"),
    ] {
        let written = pg_batch::insert_replays_and_events(pool, &records, &events)
            .await
            .expect("statement");
        assert!(!written, "{why}");
        assert_eq!(
            (count("audit_events").await, count("replay_records").await),
            (2, 2),
            "{why}: nothing written"
        );
    }
}

/// The server process behind the connection the next batch would take.
async fn kept_backend_pid(held: &held_connection::HeldPgConnections) -> Option<i32> {
    let mut connection = held.take().await.ok()?;
    let pid = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *connection)
        .await
        .ok();
    held.keep(connection);
    pid
}

/// A client assertion's replay record, as a token exchange hands it to the group commit.
fn client_assertion(jti: &str) -> PendingReplay {
    fn replayed(event: &mut AuditEvent) {
        event.decision = Decision::Denied;
    }
    PendingReplay {
        issuer: "client-assertion:agent".into(),
        jti: jti.into(),
        expires_at: 5_000,
        on_replay: replayed,
    }
}

/// Rows in `table`, read through the store's shared pool (not the group commit's connections).
/// The audit log, newest first, up to the admin API's page limit (1,000 rows).
async fn every_audit_record(store: &Store) -> Vec<AuditRecord> {
    store
        .audit_events(&AuditFilter {
            limit: Some(1000),
            ..AuditFilter::default()
        })
        .await
        .expect("read")
}

async fn count_rows(store: &Store, table: &str) -> i64 {
    let query = format!("SELECT COUNT(*) FROM {table}");
    on_pool!(store, pool => {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(query.clone()))
            .fetch_one(pool)
            .await
            .expect("count")
    })
}

/// A lookup key with a NUL character (client-sent text: a sign-in username, a consent form's
/// request id, an admin API path segment) finds nothing, as any unknown key does. On
/// PostgreSQL such a key used to fail the statement, which the endpoints answered as a
/// database outage (docs/decisions.md §30).
async fn lookups_by_a_key_with_a_nul_character_find_nothing(store: Store) {
    let event = AuditEvent::new(100, "admin_change", Decision::Changed);
    assert!(
        store
            .admin_user("ada\0")
            .await
            .expect("admin user")
            .is_none()
    );
    assert!(
        !store
            .revoke_api_token("ci\0", &event)
            .await
            .expect("revoke api token")
    );
    assert!(
        store
            .authorization_request("request\0id")
            .await
            .expect("authorization request")
            .is_none()
    );
    assert!(
        store
            .authorization_request_by_rp_state("\0")
            .await
            .expect("authorization request by state")
            .is_none()
    );
    assert!(
        store
            .issued_token("jti\0")
            .await
            .expect("issued token")
            .is_none()
    );
    assert!(
        !store
            .revoke_token("jti\0", 100)
            .await
            .expect("revoke token")
    );
    assert!(
        store
            .linked_subject("https://idp\0", "user")
            .await
            .expect("linked subject")
            .is_none()
    );
    assert!(
        store
            .user_claims("https://idp", "user\0")
            .await
            .expect("user claims")
            .is_none()
    );
    for kind in [
        TrustKind::IdentityProvider,
        TrustKind::Audience,
        TrustKind::Client,
    ] {
        assert!(
            !store
                .delete_trust(kind, "zeta\0", 100)
                .await
                .expect("delete trust")
        );
    }
    // Nothing of the above was recorded.
    assert!(
        store
            .audit_events(&AuditFilter::default())
            .await
            .expect("audit")
            .is_empty()
    );
}

/// A batch (the group commit's path: on PostgreSQL a multi-row insert, or `COPY` from
/// `pg_batch::COPY_FROM` events; on SQLite a multi-row insert) stores every value as a lone
/// event does (`record`, a plain insert): NUL as U+FFFD, empty lists and absent values as
/// nothing, text beyond ASCII intact.
async fn audit_batches_store_values_as_single_events_do(store: Store) {
    for size in [2, pg_batch::COPY_FROM, pg_batch::COPY_FROM + 3] {
        batch_stores_values_as_single_events_do(&store, size).await;
    }
}

async fn batch_stores_values_as_single_events_do(store: &Store, size: usize) {
    let before = store
        .audit_events(&AuditFilter::default())
        .await
        .expect("read")
        .len();
    let mut odd = full_event(4_000);
    odd.subject = Some("us\0er ü 🦀".into());
    odd.request_id = Some("\0".into());
    odd.issued_jti = Some("jti\0".into());
    odd.scopes_granted = vec!["a\0b".into()];
    odd.detail = Some(AuditDetail::of(
        &json!({"why": "nul \0 here", "ü": [1, null]}),
    ));
    let mut sparse = AuditEvent::new(4_001, "token_exchange", Decision::Denied);
    sparse.reason = Some("invalid_client".into());
    let mut batch = vec![odd.clone(), sparse.clone()];
    batch.extend((2..size).map(|n| full_event(4_000 + n as i64)));
    store.record_batch(&batch).await.expect("batch");
    store.record(&odd).await.expect("single");
    let records = every_audit_record(store).await;
    assert_eq!(records.len(), before + size + 1, "batch of {size}");
    // Newest first: the lone event, then the batch backwards.
    let stored: Vec<&AuditEvent> = records[1..=size].iter().rev().map(|r| &r.event).collect();
    // All but the odd first event are stored exactly as sent (it is compared below).
    assert_eq!(
        stored[1..],
        batch[1..].iter().collect::<Vec<_>>(),
        "batch of {size}, in order"
    );
    let (single, batched, batched_sparse) = (&records[0], &records[size], &records[size - 1]);
    assert_eq!(
        batched.event, single.event,
        "a batch stores what a lone insert does"
    );
    assert_eq!(batched.event.subject.as_deref(), Some("us\u{FFFD}er ü 🦀"));
    assert_eq!(batched.event.request_id.as_deref(), Some("\u{FFFD}"));
    assert_eq!(batched.event.scopes_granted, ["a\0b"], "JSON escapes a NUL");
    assert_eq!(batched.event.detail, odd.detail);
    assert_eq!(batched_sparse.event, sparse);
}

/// The audit log stores a NUL as U+FFFD (`storable`); filtering by the value as it was sent
/// finds the row written from it, on PostgreSQL too, where binding the NUL itself failed the
/// admin page's query.
async fn audit_filters_match_values_in_their_stored_form(store: Store) {
    let mut event = AuditEvent::new(100, "token_exchange", Decision::Denied);
    event.client_id = Some("agent\0x".into());
    event.subject = Some("user\0".into());
    event.audience = Some("\0aud".into());
    event.reason = Some("bad\0reason".into());
    store.record(&event).await.expect("record");
    store
        .record(&AuditEvent::new(101, "token_exchange", Decision::Issued))
        .await
        .expect("record");
    let by = |filter: AuditFilter| {
        let store = store.clone();
        async move { store.audit_events(&filter).await.expect("query") }
    };
    for filter in [
        AuditFilter {
            client_id: Some("agent\0x".into()),
            ..AuditFilter::default()
        },
        AuditFilter {
            subject: Some("user\0".into()),
            ..AuditFilter::default()
        },
        AuditFilter {
            audience: Some("\0aud".into()),
            ..AuditFilter::default()
        },
        AuditFilter {
            reason: Some("bad\0reason".into()),
            ..AuditFilter::default()
        },
    ] {
        let found = by(filter).await;
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].event.client_id.as_deref(), Some("agent\u{FFFD}x"));
    }
    let none = by(AuditFilter {
        client_id: Some("agent".into()),
        ..AuditFilter::default()
    })
    .await;
    assert!(none.is_empty(), "{none:?}");
}

/// Every stored event's `occurred_at`, oldest first (read a page at a time).
async fn stored_times(store: &Store) -> Vec<i64> {
    let mut times = Vec::new();
    let mut before_id = None;
    loop {
        let filter = AuditFilter {
            limit: Some(1000),
            before_id,
            ..Default::default()
        };
        let page = store.audit_events(&filter).await.expect("read the log");
        let Some(last) = page.last() else { break };
        before_id = Some(last.id);
        times.extend(page.iter().map(|record| record.event.occurred_at));
    }
    times.sort_unstable();
    times
}

/// Events at `times`, recorded in batches of at most 500 (SQLite's limit on bound values).
async fn record_at(store: &Store, times: &[i64]) {
    for chunk in times.chunks(500) {
        let events: Vec<AuditEvent> = chunk
            .iter()
            .map(|time| AuditEvent::new(*time, "token_exchange", Decision::Issued))
            .collect();
        store.record_batch(&events).await.expect("record");
    }
}

async fn audit_events_before_a_time_are_deleted_oldest_first_in_bounded_chunks(store: Store) {
    // Recorded newest first, so the oldest events have the highest ids: the chunk follows time,
    // not insertion order.
    record_at(&store, &[202, 201, 200, 104, 103, 102, 101, 100]).await;
    assert_eq!(store.delete_events_before(200, 2).await.expect("chunk"), 2);
    assert_eq!(
        stored_times(&store).await,
        [102, 103, 104, 200, 201, 202],
        "the two oldest went first"
    );
    assert_eq!(store.delete_events_before(200, 10).await.expect("rest"), 3);
    // An event at exactly `before` is not older than it and stays.
    assert_eq!(stored_times(&store).await, [200, 201, 202]);
    assert_eq!(store.delete_events_before(200, 10).await.expect("none"), 0);
    assert_eq!(stored_times(&store).await, [200, 201, 202]);
}

/// Events around a 30-day retention at `NOW`: 2,345 older (more than two purge chunks), one
/// exactly at the cutoff, three younger.
const NOW: i64 = 1_800_000_000;

async fn record_around_a_30_day_cutoff(store: &Store) -> i64 {
    let cutoff = NOW - 30 * 86_400;
    let mut times: Vec<i64> = (1..=2_345).map(|age| cutoff - age).collect();
    times.extend([cutoff, cutoff + 1, NOW - 86_400, NOW]);
    record_at(store, &times).await;
    cutoff
}

/// The purge events in the log, newest first, as (detail, occurred_at).
async fn purge_events(store: &Store) -> Vec<(serde_json::Value, i64)> {
    let filter = AuditFilter {
        decision: Some(Decision::Changed),
        ..Default::default()
    };
    store
        .audit_events(&filter)
        .await
        .expect("read the log")
        .into_iter()
        .filter(|record| record.event.event == "audit_events_purged")
        .map(|record| {
            let detail = record.event.detail.expect("a purge event has its detail");
            (
                serde_json::from_str(detail.as_str()).expect("JSON detail"),
                record.event.occurred_at,
            )
        })
        .collect()
}

async fn retention_deletes_every_event_older_than_its_days_and_audits_the_deletion(store: Store) {
    use crate::retention::{self, PURGE_CHUNK, Purged};
    let cutoff = record_around_a_30_day_cutoff(&store).await;
    assert!(
        2_345 > 2 * u64::from(PURGE_CHUNK),
        "the backlog spans several chunks"
    );
    let purged = retention::apply(&store, 30, "retention", NOW, || false)
        .await
        .expect("purge");
    assert_eq!(
        purged,
        Purged {
            deleted: 2_345,
            before: cutoff
        }
    );
    // What is left: the events at and after the cutoff, and the record of the purge itself.
    assert_eq!(
        stored_times(&store).await,
        [cutoff, cutoff + 1, NOW - 86_400, NOW, NOW]
    );
    assert_eq!(
        purge_events(&store).await,
        [(
            json!({ "actor": "retention", "deleted": 2_345, "before": cutoff }),
            NOW
        )]
    );
    // Nothing older is left: a second purge deletes nothing and records nothing.
    let again = retention::apply(&store, 30, "retention", NOW, || false)
        .await
        .expect("second purge");
    assert_eq!(again.deleted, 0);
    assert_eq!(purge_events(&store).await.len(), 1);
}

async fn a_retention_purge_asked_to_stop_still_audits_the_chunk_it_deleted(store: Store) {
    use crate::retention::{self, PURGE_CHUNK};
    let cutoff = record_around_a_30_day_cutoff(&store).await;
    let purged = retention::apply(&store, 30, "retention", NOW, || true)
        .await
        .expect("purge");
    assert_eq!(
        purged.deleted,
        u64::from(PURGE_CHUNK),
        "one chunk, then the stop"
    );
    assert_eq!(
        purge_events(&store).await,
        [(
            json!({ "actor": "retention", "deleted": PURGE_CHUNK, "before": cutoff }),
            NOW
        )]
    );
    let older = stored_times(&store)
        .await
        .into_iter()
        .filter(|time| *time < cutoff)
        .count();
    assert_eq!(
        older,
        2_345 - PURGE_CHUNK as usize,
        "the rest waits for the next purge"
    );
    // The next purge, not stopped, deletes the rest.
    let rest = retention::apply(&store, 30, "retention", NOW, || false)
        .await
        .expect("the rest");
    assert_eq!(rest.deleted, 2_345 - u64::from(PURGE_CHUNK));
}

/// Token Status List storage: blocks reserved by concurrent instances never overlap, the count
/// of reserved indexes names the lists that exist, and a revoked token's index (however it was
/// revoked) is found in its list's range and nowhere else.
async fn status_indexes_are_reserved_in_disjoint_blocks_and_revocations_show_in_their_range(
    store: Store,
) {
    assert_eq!(store.status_indexes_reserved().await.expect("count"), 0);
    let reservations = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.reserve_status_indexes(1024).await })
    });
    let mut firsts = Vec::new();
    for reservation in reservations {
        firsts.push(reservation.await.expect("task").expect("reserve"));
    }
    firsts.sort_unstable();
    assert_eq!(firsts, (0..8).map(|n| n * 1024).collect::<Vec<_>>());
    assert_eq!(
        store.status_indexes_reserved().await.expect("count"),
        8 * 1024
    );

    let token = |jti: &str, subject: &str, index: i64| IssuedToken {
        jti: jti.into(),
        client_id: "app".into(),
        subject: subject.into(),
        token_type: "access_token".into(),
        issued_at: 900,
        expires_at: 5_000,
        revoked_at: None,
        status_index: Some(index),
        subject_issuer: None,
    };
    for (jti, subject, index) in [("a", "ada", 7), ("b", "bob", 8), ("c", "ada", 4_000)] {
        store
            .record_issued(&token(jti, subject, index))
            .await
            .expect("issued");
    }
    assert_eq!(
        store
            .issued_token("a")
            .await
            .expect("read")
            .map(|t| t.status_index),
        Some(Some(7))
    );
    assert!(
        store
            .revoked_status_indexes(0, 8 * 1024)
            .await
            .expect("none yet")
            .is_empty()
    );
    assert!(store.revoke_token("b", 1_000).await.expect("revoke"));
    let event = AuditEvent::new(1_000, "subject_tokens_revoked", Decision::Changed);
    store
        .revoke_tokens(RevocationScope::Subject("ada"), 1_000, event)
        .await
        .expect("revoke subject");
    let mut revoked = store
        .revoked_status_indexes(0, 8 * 1024)
        .await
        .expect("all");
    revoked.sort_unstable();
    assert_eq!(revoked, vec![7, 8, 4_000]);
    assert_eq!(
        store.revoked_status_indexes(8, 4_000).await.expect("range"),
        vec![8]
    );
}

/// The status lists worth prefetching: those holding a token unexpired at `now` — revoked or
/// not, since a revoked live token is what the list is for — in ascending order. A token
/// expiring at `now` is expired (`exp` is the first instant it is refused), and a token without
/// a status index belongs to no list.
async fn the_status_lists_with_live_tokens_are_those_holding_an_unexpired_one(store: Store) {
    const ENTRIES: i64 = 1 << 20;
    let now = 10_000;
    assert!(
        store
            .status_lists_with_live_tokens(now, ENTRIES)
            .await
            .expect("none yet")
            .is_empty()
    );
    let token = |jti: &str, index: Option<i64>, expires_at: i64| IssuedToken {
        jti: jti.into(),
        client_id: "app".into(),
        subject: "ada".into(),
        token_type: "access_token".into(),
        issued_at: 900,
        expires_at,
        revoked_at: None,
        status_index: index,
        subject_issuer: None,
    };
    for (jti, index, expires_at) in [
        // List 0: expired, one of them exactly at `now`.
        ("expired-0", Some(3), now - 1),
        ("at-now-0", Some(ENTRIES - 1), now),
        // List 1: one live token among expired ones.
        ("expired-1", Some(ENTRIES), now - 300),
        ("live-1", Some(2 * ENTRIES - 1), now + 1),
        // List 2: only expired.
        ("expired-2", Some(2 * ENTRIES + 5), now - 60),
        // List 3: live, and revoked below.
        ("revoked-3", Some(3 * ENTRIES + 9), now + 300),
        // List 5 (skipping 4): two live tokens, listed once.
        ("live-5a", Some(5 * ENTRIES), now + 60),
        ("live-5b", Some(5 * ENTRIES + 1), now + 60),
        // No list at all.
        ("no-status", None, now + 300),
    ] {
        store
            .record_issued(&token(jti, index, expires_at))
            .await
            .expect("issued");
    }
    assert!(store.revoke_token("revoked-3", now).await.expect("revoke"));
    assert_eq!(
        store
            .status_lists_with_live_tokens(now, ENTRIES)
            .await
            .expect("lists"),
        vec![1, 3, 5]
    );
    // Later, only the longest-lived remain; earlier, list 0 and list 2 were live too.
    assert_eq!(
        store
            .status_lists_with_live_tokens(now + 60, ENTRIES)
            .await
            .expect("later"),
        vec![3]
    );
    assert_eq!(
        store
            .status_lists_with_live_tokens(now - 61, ENTRIES)
            .await
            .expect("earlier"),
        vec![0, 1, 2, 3, 5]
    );
}

async fn revoking_a_subject_or_a_client_revokes_only_its_live_tokens_and_codes(store: Store) {
    let now = 1_000;
    let access = |jti: &str, subject: &str, expires_at: i64| IssuedToken {
        jti: jti.into(),
        client_id: "app".into(),
        subject: subject.into(),
        token_type: "access_token".into(),
        issued_at: 900,
        expires_at,
        revoked_at: None,
        status_index: None,
        subject_issuer: None,
    };
    let refresh = |family: &str, subject: &str| RefreshRecord {
        family_id: family.into(),
        client_id: "app".into(),
        subject: subject.into(),
        subject_issuer: "https://idp".into(),
        resource: "https://mcp.example/mcp".into(),
        scopes: vec![],
        auth_time: None,
        issued_at: 900,
        expires_at: 5_000,
        dpop_jkt: None,
    };
    let code = |family: &str, subject: &str| CodeRecord {
        family_id: family.into(),
        client_id: "app".into(),
        redirect_uri: "https://app.example/cb".into(),
        code_challenge: "challenge".into(),
        subject: subject.into(),
        subject_issuer: "https://idp".into(),
        resource: "https://mcp.example/mcp".into(),
        scopes: vec![],
        auth_time: None,
        created_at: 990,
        expires_at: 1_050,
        dpop_jkt: None,
    };
    for (jti, subject, expires_at) in [
        ("ada-1", "ada", 2_000),
        ("ada-2", "ada", 2_000),
        ("ada-old", "ada", 500),
        ("bob-1", "bob", 2_000),
    ] {
        store
            .record_issued(&access(jti, subject, expires_at))
            .await
            .expect("issued");
    }
    for (hash, subject) in [("rt-ada", "ada"), ("rt-bob", "bob")] {
        store
            .insert_refresh_token(hash, &refresh(&format!("fam-{hash}"), subject))
            .await
            .expect("refresh");
    }
    for (hash, subject) in [("code-ada", "ada"), ("code-bob", "bob")] {
        store
            .insert_code(hash, &code(&format!("fam-{hash}"), subject))
            .await
            .expect("code");
    }
    let mut event = AuditEvent::new(now, "subject_tokens_revoked", Decision::Changed);
    event.subject = Some("ada".into());
    event.detail = Some(AuditDetail::of(&json!({ "actor": "test" })));
    let revoked = store
        .revoke_tokens(RevocationScope::Subject("ada"), now, event)
        .await
        .expect("revoke");
    assert_eq!(
        revoked,
        TokenRevocation {
            access_tokens: 2,
            refresh_tokens: 1,
            authorization_codes: 1,
        }
    );
    assert_eq!(access_revoked_at(&store, "ada-1").await, Some(now));
    assert_eq!(access_revoked_at(&store, "ada-2").await, Some(now));
    assert_eq!(
        access_revoked_at(&store, "ada-old").await,
        None,
        "expired: left alone"
    );
    assert_eq!(access_revoked_at(&store, "bob-1").await, None);
    assert_eq!(family_revoked_at(&store, "rt-ada").await, Some(now));
    assert_eq!(family_revoked_at(&store, "rt-bob").await, None);
    // Ada's code is spent (redeeming it is a reuse); Bob's is not.
    assert!(matches!(
        store.consume_code("code-ada", now).await.expect("consume"),
        Redemption::Replayed(_)
    ));
    assert!(matches!(
        store.consume_code("code-bob", now).await.expect("consume"),
        Redemption::Fresh(_)
    ));
    // The event is in the log, with the caller's detail and the counts.
    let events = store
        .audit_events(&AuditFilter::default())
        .await
        .expect("audit");
    let detail = events
        .iter()
        .find(|record| record.event.event == "subject_tokens_revoked")
        .and_then(|record| record.event.detail.as_ref().map(AuditDetail::value))
        .expect("event");
    assert_eq!(
        detail,
        json!({ "actor": "test", "access_tokens": 2, "refresh_tokens": 1, "authorization_codes": 1 })
    );

    // By client: what is still live of `app` (Bob's; his code was redeemed above), and nothing
    // of a client that was issued nothing.
    let later = now + 1;
    let event = AuditEvent::new(later, "client_tokens_revoked", Decision::Changed);
    let none = store
        .revoke_tokens(RevocationScope::Client("other"), later, event.clone())
        .await
        .expect("revoke other");
    assert_eq!(none, TokenRevocation::default());
    let revoked = store
        .revoke_tokens(RevocationScope::Client("app"), later, event)
        .await
        .expect("revoke app");
    assert_eq!(
        revoked,
        TokenRevocation {
            access_tokens: 1,
            refresh_tokens: 1,
            authorization_codes: 0,
        }
    );
    assert_eq!(access_revoked_at(&store, "bob-1").await, Some(later));
    assert_eq!(
        access_revoked_at(&store, "ada-1").await,
        Some(now),
        "kept its time"
    );
    assert_eq!(family_revoked_at(&store, "rt-bob").await, Some(later));

    // By issuer: only the tokens whose subject came from it (the column round-trips).
    for (jti, issuer) in [("eve-1", "https://other-idp"), ("fay-1", "https://idp")] {
        let mut token = access(jti, jti, 2_000);
        token.subject_issuer = Some(issuer.into());
        store.record_issued(&token).await.expect("issued");
    }
    assert_eq!(
        store
            .issued_token("eve-1")
            .await
            .expect("read")
            .and_then(|token| token.subject_issuer),
        Some("https://other-idp".to_string())
    );
    let event = AuditEvent::new(later, "issuer_tokens_revoked", Decision::Changed);
    let revoked = store
        .revoke_tokens(RevocationScope::Issuer("https://other-idp"), later, event)
        .await
        .expect("revoke issuer");
    assert_eq!(revoked.access_tokens, 1);
    assert_eq!(access_revoked_at(&store, "eve-1").await, Some(later));
    assert_eq!(access_revoked_at(&store, "fay-1").await, None);
}

/// REVOKE-05 under concurrency: the kill switch marks the grant families it reaches — of its
/// codes, redeemed or not (one may be being redeemed), and of its live refresh tokens (one may
/// be being rotated) — so that a grant storing its tokens after the revocation read the tables
/// finds the mark. A family marked for a leak stays so; the marks go with the purge.
async fn a_kill_switch_marks_the_families_of_its_codes_and_live_refresh_tokens_revoke_05(
    store: Store,
) {
    let now = 1_000;
    let code = |family: &str, subject: &str, issuer: &str| CodeRecord {
        family_id: family.into(),
        client_id: "app".into(),
        redirect_uri: "https://app.example/cb".into(),
        code_challenge: "challenge".into(),
        subject: subject.into(),
        subject_issuer: issuer.into(),
        resource: "https://mcp.example/mcp".into(),
        scopes: vec![],
        auth_time: None,
        created_at: 990,
        expires_at: 1_050,
        dpop_jkt: None,
    };
    let refresh = |family: &str, subject: &str, client: &str, expires_at: i64| RefreshRecord {
        family_id: family.into(),
        client_id: client.into(),
        subject: subject.into(),
        subject_issuer: "https://idp".into(),
        resource: "https://mcp.example/mcp".into(),
        scopes: vec![],
        auth_time: None,
        issued_at: 900,
        expires_at,
        dpop_jkt: None,
    };
    for (hash, family, subject, issuer) in [
        ("code-ada", "fam-code-ada", "ada", "https://idp"),
        ("code-ada-leaked", "fam-leaked", "ada", "https://idp"),
        ("code-bob", "fam-code-bob", "bob", "https://idp"),
        ("code-eve", "fam-code-eve", "eve", "https://other-idp"),
    ] {
        store
            .insert_code(hash, &code(family, subject, issuer))
            .await
            .expect("code");
    }
    // Ada's code is being redeemed: spent already, its tokens not stored yet.
    assert!(matches!(
        store.consume_code("code-ada", now).await.expect("consume"),
        Redemption::Fresh(_)
    ));
    store.revoke_family("fam-leaked", now).await.expect("leak");
    for (hash, family, subject, client, expires_at) in [
        ("rt-ada", "fam-rt-ada", "ada", "app", 5_000),
        ("rt-ada-old", "fam-rt-ada-old", "ada", "app", 500),
        ("rt-bob", "fam-rt-bob", "bob", "app", 5_000),
        ("rt-bob-other", "fam-rt-bob-other", "bob", "other", 5_000),
    ] {
        store
            .insert_refresh_token(hash, &refresh(family, subject, client, expires_at))
            .await
            .expect("refresh");
    }
    // Ada's refresh token is being rotated: its successor is not stored yet.
    assert!(matches!(
        store
            .rotate_refresh_token("rt-ada", now)
            .await
            .expect("rotate"),
        Redemption::Fresh(_)
    ));
    let revoked = |family: &'static str| {
        let store = store.clone();
        async move { store.family_revoked(family).await.expect("read") }
    };

    let event = AuditEvent::new(now, "subject_tokens_revoked", Decision::Changed);
    store
        .revoke_tokens(RevocationScope::Subject("ada"), now, event)
        .await
        .expect("revoke ada");
    assert_eq!(
        revoked("fam-code-ada").await,
        Some(FamilyRevocation::KillSwitch)
    );
    assert_eq!(
        revoked("fam-rt-ada").await,
        Some(FamilyRevocation::KillSwitch)
    );
    assert_eq!(
        revoked("fam-leaked").await,
        Some(FamilyRevocation::Leaked),
        "a leak stays a leak"
    );
    assert_eq!(revoked("fam-rt-ada-old").await, None, "expired: left alone");
    for family in [
        "fam-code-bob",
        "fam-rt-bob",
        "fam-rt-bob-other",
        "fam-code-eve",
    ] {
        assert_eq!(revoked(family).await, None, "{family}");
    }

    let event = AuditEvent::new(now, "client_tokens_revoked", Decision::Changed);
    store
        .revoke_tokens(RevocationScope::Client("app"), now, event)
        .await
        .expect("revoke app");
    for family in ["fam-code-bob", "fam-rt-bob"] {
        assert_eq!(
            revoked(family).await,
            Some(FamilyRevocation::KillSwitch),
            "{family}"
        );
    }
    assert_eq!(revoked("fam-rt-bob-other").await, None, "another client's");

    let event = AuditEvent::new(now, "issuer_tokens_revoked", Decision::Changed);
    store
        .revoke_tokens(RevocationScope::Issuer("https://other-idp"), now, event)
        .await
        .expect("revoke issuer");
    assert_eq!(
        revoked("fam-code-eve").await,
        Some(FamilyRevocation::KillSwitch)
    );
    assert_eq!(revoked("fam-rt-bob-other").await, None, "another issuer's");

    // The marks matter only while a grant is being issued: they go with the expired codes.
    store
        .purge_authorization_state(now, now + 1)
        .await
        .expect("purge");
    for family in ["fam-code-ada", "fam-rt-ada", "fam-code-eve", "fam-leaked"] {
        assert_eq!(revoked(family).await, None, "{family}");
    }
}

/// When the issued access token `jti` was revoked, if it was.
async fn access_revoked_at(store: &Store, jti: &str) -> Option<i64> {
    store
        .issued_token(jti)
        .await
        .expect("get")
        .and_then(|token| token.revoked_at)
}

/// When the family of the refresh token stored under `hash` was revoked, if it was.
async fn family_revoked_at(store: &Store, hash: &str) -> Option<i64> {
    store
        .refresh_token(hash)
        .await
        .expect("get")
        .and_then(|state| state.revoked_at)
}

/// Two instances syncing the same configuration objects listed in other orders (a rolling
/// update of a file whose entries were reordered) must both succeed on PostgreSQL. Each sync is
/// one transaction locking its rows one by one; in file order, each could hold the row the
/// other needs next, and PostgreSQL would abort one as a deadlock, failing that instance's
/// start-up. The test holds both rows locked until both syncs wait, then releases them at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_syncs_listing_objects_in_other_orders_both_succeed() {
    use sqlx::Connection;
    let Some(database) = TestDatabase::postgres("config_sync_orders").await else {
        return;
    };
    let kind = TrustKind::Audience;
    let first = open(&database).await;
    let second = Store::connect(database.url(), 2).await.expect("connect");
    first
        .sync_config_trust(
            kind,
            &[document("a", 1, true, 10), document("b", 1, true, 10)],
        )
        .await
        .expect("initial sync");
    let mut holder = sqlx::PgConnection::connect(database.url())
        .await
        .expect("holder");
    let mut monitor = sqlx::PgConnection::connect(database.url())
        .await
        .expect("monitor");
    sqlx::raw_sql("BEGIN; SELECT id FROM audiences WHERE id IN ('a', 'b') FOR UPDATE")
        .execute(&mut holder)
        .await
        .expect("lock both rows");
    let sync = |store: Store, ids: [&'static str; 2]| {
        tokio::spawn(async move {
            let documents = ids.map(|id| document(id, 2, true, 20));
            store.sync_config_trust(kind, &documents).await
        })
    };
    let forward = sync(first.clone(), ["a", "b"]);
    let backward = sync(second.clone(), ["b", "a"]);
    test_db::until_waiting(&mut monitor, 2, &[&forward, &backward]).await;
    sqlx::raw_sql("COMMIT")
        .execute(&mut holder)
        .await
        .expect("release");
    forward.await.expect("task").expect("the forward sync");
    backward.await.expect("task").expect("the backward sync");
    assert_eq!(
        first.list_trust(kind).await.expect("list"),
        [document("a", 2, true, 20), document("b", 2, true, 20)]
    );
    second.close().await;
    first.close().await;
}
