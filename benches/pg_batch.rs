//! What a group-commit batch of audit events costs PostgreSQL's processes, written the way the
//! store writes it (`Store::record_batch`: a binary `COPY` from `pg_batch::COPY_FROM` events
//! on, `store/pg_copy.rs`; an `INSERT` below) and as one multi-row `INSERT … VALUES` with a
//! parameter per cell (rebuilt here as the baseline: how every batch was written before). Both
//! run in the same minutes, alternating, on one database, and the figure is CPU time (user +
//! system, from `/proc`) of every `postgres` process per event — the database's share of the
//! shared cores, which wall-clock time on a noisy machine hides. The bench process's own CPU
//! is shown too; the store's side also copies each batch (`record_batch` takes a slice).
//!
//! Run (docs/performance.md, "Sixteenth run"):
//! ```sh
//! createdb -h 127.0.0.1 -U postgres frontdesk_bench
//! FRONTDESK_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/frontdesk_bench \
//!   CARGO_TARGET_DIR=/work/target-release cargo bench --bench pg_batch
//! dropdb -h 127.0.0.1 -U postgres frontdesk_bench
//! ```
//! Knobs: `PG_BATCH_ROUNDS` (default 5), `PG_BATCH_BATCHES` per method and round (default
//! 2000), `PG_BATCH_SIZE` (default 32, what a busy group commit gathers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Instant;

use frontdesk::store::{AuditDetail, AuditEvent, AuditLog, Decision, Store};
use sqlx::postgres::{PgConnection, Postgres};
use sqlx::{Connection, QueryBuilder};

#[path = "support/proc_cpu.rs"]
mod proc_cpu;
use proc_cpu::{processes_cpu, processes_cpu_delta};

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// A token exchange's event as the token endpoint writes it.
fn event(n: usize) -> AuditEvent {
    let mut event = AuditEvent::new(1_765_000_000 + n as i64, "token_exchange", Decision::Issued);
    event.request_id = Some(format!("{n:016x}-req"));
    event.client_id = Some("agent".into());
    event.grant_type = Some("urn:ietf:params:oauth:grant-type:token-exchange".into());
    event.subject_issuer = Some("https://idp.bench.example".into());
    event.subject = Some(format!("user-{}", n % 4096));
    event.audience = Some("https://as.saas.example".into());
    event.scopes_requested = vec!["read".into()];
    event.scopes_granted = vec!["read".into()];
    event.issued_jti = Some(format!("{n:032x}"));
    event.issued_expires_at = Some(1_765_000_300 + n as i64);
    event.detail = Some(AuditDetail::of(&serde_json::json!({
        "audience_id": "saas",
        "identity_provider": "corp",
        "issued_token_type": "urn:ietf:params:oauth:token-type:id-jag",
        "subject_jti": format!("{n:x}"),
        "subject_token_type": "id_token",
    })));
    event
}

/// The statement the store sent before `COPY`: the baseline.
async fn insert_values(connection: &mut PgConnection, events: &[AuditEvent]) {
    let list =
        |items: &[String]| (!items.is_empty()).then(|| serde_json::to_string(items).unwrap());
    let mut builder = QueryBuilder::<Postgres>::new(
        "INSERT INTO audit_events (occurred_at, request_id, event, decision, reason, error_code, \
         client_id, grant_type, subject_issuer, subject, audience, resources, scopes_requested, \
         scopes_granted, issued_jti, issued_expires_at, detail) ",
    );
    builder.push_values(events, |mut row, event| {
        row.push_bind(event.occurred_at)
            .push_bind(event.request_id.as_deref())
            .push_bind(event.event.as_str())
            .push_bind(event.decision.as_str())
            .push_bind(event.reason.as_deref())
            .push_bind(event.error_code.as_deref())
            .push_bind(event.client_id.as_deref())
            .push_bind(event.grant_type.as_deref())
            .push_bind(event.subject_issuer.as_deref())
            .push_bind(event.subject.as_deref())
            .push_bind(event.audience.as_deref())
            .push_bind(list(&event.resources))
            .push_bind(list(&event.scopes_requested))
            .push_bind(list(&event.scopes_granted))
            .push_bind(event.issued_jti.as_deref())
            .push_bind(event.issued_expires_at)
            .push_bind(event.detail.as_ref().map(AuditDetail::as_str));
    });
    builder.build().execute(connection).await.unwrap();
}

/// This process's CPU ticks so far.
fn own_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[derive(Clone, Copy, PartialEq)]
enum Method {
    Values,
    Store,
}

fn main() {
    let Ok(url) = std::env::var("FRONTDESK_BENCH_POSTGRES_URL") else {
        eprintln!("pg_batch: set FRONTDESK_BENCH_POSTGRES_URL to an empty PostgreSQL database");
        return;
    };
    let rounds = knob("PG_BATCH_ROUNDS", 5);
    let batches = knob("PG_BATCH_BATCHES", 2000);
    let size = knob("PG_BATCH_SIZE", 32);
    // sysconf(_SC_CLK_TCK) is 100 on Linux.
    let micros_per_tick = 10_000.0;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = Store::connect(&url, 4).await.unwrap();
        store.migrate().await.unwrap();
        let mut connection = PgConnection::connect(&url).await.unwrap();
        let events: Vec<Vec<AuditEvent>> = (0..batches)
            .map(|b| (0..size).map(|i| event(b * size + i)).collect())
            .collect();
        println!("method  round  events  postgres µs/event  bench process µs/event  wall µs/batch");
        let mut totals: HashMap<&str, (f64, f64, usize)> = HashMap::new();
        for round in 1..=rounds {
            // Alternate which goes first: a machine that speeds up or slows down favours neither.
            let order = if round % 2 == 1 {
                [Method::Values, Method::Store]
            } else {
                [Method::Store, Method::Values]
            };
            for method in order {
                let name = if method == Method::Store {
                    "store"
                } else {
                    "values"
                };
                let (pg_before, own_before, started) =
                    (processes_cpu("postgres"), own_ticks(), Instant::now());
                for batch in &events {
                    match method {
                        Method::Store => store.record_batch(batch).await.unwrap(),
                        Method::Values => insert_values(&mut connection, batch).await,
                    }
                }
                let wall = started.elapsed();
                let pg = processes_cpu_delta(&pg_before, &processes_cpu("postgres")) as f64
                    * micros_per_tick;
                let own = (own_ticks() - own_before) as f64 * micros_per_tick;
                let count = batches * size;
                println!(
                    "{name:<7} {round:>5}  {count:>6}  {:>17.2}  {:>22.2}  {:>13.0}",
                    pg / count as f64,
                    own / count as f64,
                    wall.as_micros() as f64 / batches as f64
                );
                let total = totals.entry(name).or_default();
                total.0 += pg;
                total.1 += own;
                total.2 += count;
            }
        }
        for name in ["values", "store"] {
            let (pg, own, count) = totals[name];
            println!(
                "{name:<7} all    {count:>6}  {:>17.2}  {:>22.2}",
                pg / count as f64,
                own / count as f64
            );
        }
        store.close().await;
    });
}
