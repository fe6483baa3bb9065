//! Group commit. Every token response waits until what it depends on (its audit event, its
//! replay record) is committed; one transaction per request would make the database's commit
//! latency the throughput limit. Requests hand their item to one writer task per kind, which
//! commits everything that queued up while the previous commit was in flight in a single
//! transaction, then answers each request. Durability is unchanged: nobody is answered before
//! their item is committed.
//!
//! A busy writer also lingers. When [`BUSY`] or more items queued up while a previous commit
//! ran (for this batch or the one before), more are surely on their way, and the batch is held
//! back until it has [`GATHER`] items, for at most [`GATHER_AT_MOST`]. Every commit costs the
//! same fixed work whatever its size (the WAL sync, the hand-off to SQLite's thread and back, a
//! round trip to PostgreSQL and its flush), and sized by the commit's own latency alone the
//! batches stayed small (a median of 8 events on SQLite). Lingering to 32 made durable exchanges
//! faster in all twelve alternating pairs on both databases (+0.4 to +17 %), cut PostgreSQL's
//! CPU per exchange by a quarter and lowered p99 (docs/performance.md, fifteenth run; decisions
//! §31). An idle or lightly loaded server never lingers: a lone item, or a few, are committed at
//! once.
//!
//! On PostgreSQL up to [`POSTGRES_COMMITS_IN_FLIGHT`] batches commit at once, each on its own
//! connection: a commit waits for the WAL flush, and with only one in flight every request that
//! arrived meanwhile waited for the whole flush before its own could start, which capped
//! throughput at (batch size ÷ commit latency) with the server's CPU mostly idle
//! (docs/performance.md). PostgreSQL merges concurrent flushes itself. SQLite has a single
//! writer, so there a second concurrent commit would only wait for the lock: one at a time.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{AuditEvent, PendingReplay, ReplayStore, Store, StoreError};

/// Most items committed in one transaction.
const MAX_BATCH: usize = 256;
/// Queue bound: beyond it, callers wait (back-pressure) rather than grow memory.
const QUEUE: usize = 4096;
/// Batches committing at the same time per writer on PostgreSQL (each holds a pool connection).
/// Two, not three: with the group commit's connections held (decisions §28) a third commit in
/// flight only added contention on this machine's two cores — 2 against 3 measured +2.5 %
/// exchanges/s with lower CPU per exchange in all four alternating pairs, and 5 measured −10 %
/// (docs/performance.md, tenth run). One in flight caps throughput at batch size ÷ commit
/// latency.
pub(super) const POSTGRES_COMMITS_IN_FLIGHT: usize = 2;

/// A batch that already has this many items when its turn to commit comes shows a busy server:
/// it lingers for more. Fewer are committed at once, so a lightly loaded server adds no latency.
const BUSY: usize = 4;
/// A lingering batch is committed as soon as it has this many items. 16 and 32 both measured
/// +4 to +14 % exchanges/s against committing at once, 32 the more on PostgreSQL, where it also
/// cut the database's CPU per exchange from 20 to 15 µs (docs/performance.md, fifteenth run).
const GATHER: usize = 32;
/// The longest a batch lingers: what a request can lose to it. tokio's timer rounds it up to the
/// next millisecond tick.
const GATHER_AT_MOST: Duration = Duration::from_millis(2);

type BatchResult<R> = Result<Vec<R>, String>;

/// Lets a batch of a busy writer — this batch or the `previous` one had at least [`BUSY`]
/// items — linger until it has [`GATHER`] items or [`GATHER_AT_MOST`] has passed; every item
/// that arrives meanwhile joins it. (The previous batch counts too: on PostgreSQL, with two
/// commits in flight, a slot that frees just after the other took the queue finds only a few
/// items even under load.)
async fn gather<J>(receiver: &mut mpsc::Receiver<J>, batch: &mut Vec<J>, previous: usize) {
    if batch.len().max(previous) < BUSY || batch.len() >= GATHER {
        return;
    }
    let deadline = tokio::time::sleep(GATHER_AT_MOST);
    tokio::pin!(deadline);
    while batch.len() < GATHER {
        let room = GATHER - batch.len();
        tokio::select! {
            received = receiver.recv_many(batch, room) => {
                if received == 0 {
                    return;
                }
            }
            () = &mut deadline => return,
        }
    }
}
type Commit<T, R> = Box<
    dyn Fn(Store, Vec<T>) -> Pin<Box<dyn Future<Output = BatchResult<R>> + Send>> + Send + Sync,
>;
type Job<T, R> = (T, oneshot::Sender<Result<R, String>>);

/// Answers every request of a committed (or failed) batch.
fn answer<R: Clone>(
    acks: Vec<oneshot::Sender<Result<R, String>>>,
    expected: usize,
    outcome: BatchResult<R>,
) {
    match outcome {
        Ok(answers) if answers.len() == expected => {
            for (ack, answer) in acks.into_iter().zip(answers) {
                let _ = ack.send(Ok(answer));
            }
        }
        Ok(_) => {
            for ack in acks {
                let _ = ack.send(Err("batch answered the wrong number of items".into()));
            }
        }
        Err(message) => {
            for ack in acks {
                let _ = ack.send(Err(message.clone()));
            }
        }
    }
}

/// A group-committing writer for items of type `T`, answering each with an `R`.
pub struct BatchWriter<T, R> {
    sender: mpsc::Sender<Job<T, R>>,
}

impl<T, R> Clone for BatchWriter<T, R> {
    fn clone(&self) -> Self {
        BatchWriter {
            sender: self.sender.clone(),
        }
    }
}

impl<T, R> std::fmt::Debug for BatchWriter<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BatchWriter")
    }
}

impl<T: Send + 'static, R: Clone + Send + 'static> BatchWriter<T, R> {
    /// Starts the writer task; `commit` writes one batch in one transaction and returns one
    /// answer per item, in order. The task ends when every handle is dropped.
    fn spawn(store: Store, name: &'static str, commit: Commit<T, R>) -> BatchWriter<T, R> {
        let (sender, mut receiver) = mpsc::channel::<Job<T, R>>(QUEUE);
        let in_flight = match store.backend() {
            super::Backend::Postgres => POSTGRES_COMMITS_IN_FLIGHT,
            super::Backend::Sqlite => 1,
        };
        let commit = std::sync::Arc::new(commit);
        tokio::spawn(async move {
            let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(in_flight));
            let mut batch: Vec<Job<T, R>> = Vec::with_capacity(MAX_BATCH);
            let mut previous = 0;
            loop {
                // Wait for a free commit slot first, so the batch keeps growing while every
                // slot is busy.
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                if receiver.recv_many(&mut batch, MAX_BATCH).await == 0 {
                    return;
                }
                gather(&mut receiver, &mut batch, previous).await;
                previous = batch.len();
                let (items, acks): (Vec<T>, Vec<_>) = batch.drain(..).unzip();
                metrics::histogram!("frontdesk_group_commit_batch_size", "writer" => name)
                    .record(items.len() as f64);
                let (store, commit) = (store.clone(), commit.clone());
                tokio::spawn(async move {
                    let expected = items.len();
                    let outcome = commit(store, items).await;
                    drop(slot);
                    answer(acks, expected, outcome);
                });
            }
        });
        BatchWriter { sender }
    }

    /// Queues `item` and returns its answer once the batch holding it is committed.
    async fn submit(&self, item: T) -> Result<R, StoreError> {
        let (ack, done) = oneshot::channel();
        self.sender
            .send((item, ack))
            .await
            .map_err(|_| StoreError::Unavailable("the group-commit writer has stopped".into()))?;
        match done.await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(message)) => Err(StoreError::Unavailable(format!("batch failed: {message}"))),
            Err(_) => Err(StoreError::Unavailable(
                "the group-commit writer has stopped".into(),
            )),
        }
    }
}

/// Group-committed audit events, each optionally with the replay record of its request.
#[derive(Clone, Debug)]
pub struct AuditWriter(Sink);

/// Where audit events go.
#[derive(Clone, Debug)]
enum Sink {
    /// Committed by the group-commit writer before anyone is answered: the only sink a server
    /// ever has.
    Batched(BatchWriter<(AuditEvent, Option<PendingReplay>), bool>),
    /// Nowhere: the load test's baseline without durable writes.
    Discarded,
}

impl AuditWriter {
    /// Starts the writer task on the current runtime.
    pub fn spawn(store: Store) -> AuditWriter {
        AuditWriter(Sink::Batched(BatchWriter::spawn(
            store,
            "audit",
            Box::new(|store, items| {
                Box::pin(async move {
                    store
                        .record_events_with_replays(items)
                        .await
                        .map_err(|error| error.to_string())
                })
            }),
        )))
    }

    /// A writer that acknowledges every event at once and writes nothing — neither the event
    /// nor the replay record riding with it. It exists so the load test can measure what the
    /// durable writes cost against the same server without them (the performance issue's
    /// "< 20 % against the same run without audit"); only the `frontdesk-unaudited` benchmark
    /// binary asks for it, and no configuration, flag or environment variable of `frontdesk`
    /// reaches it.
    #[doc(hidden)]
    pub fn discarding_for_benchmarks() -> AuditWriter {
        AuditWriter(Sink::Discarded)
    }

    /// Records `event` and returns once it is committed (or failed).
    pub async fn record(&self, event: AuditEvent) -> Result<(), StoreError> {
        match &self.0 {
            Sink::Batched(writer) => writer.submit((event, None)).await.map(|_| ()),
            Sink::Discarded => Ok(()),
        }
    }

    /// Records `event` and the replay record `pending` in one transaction and returns once both
    /// are committed. `Ok(false)`: the `jti` had already been recorded, so the event was written
    /// as rewritten by `pending.on_replay` and the request must be refused.
    pub async fn record_with_replay(
        &self,
        event: AuditEvent,
        pending: PendingReplay,
    ) -> Result<bool, StoreError> {
        match &self.0 {
            Sink::Batched(writer) => writer.submit((event, Some(pending))).await,
            Sink::Discarded => Ok(true),
        }
    }
}

/// Group-committed replay records (`jti`s of client assertions and redeemed grants).
#[derive(Clone, Debug)]
pub struct ReplayWriter {
    writer: BatchWriter<(String, String, i64), bool>,
    store: Store,
}

impl ReplayWriter {
    /// Starts the writer task on the current runtime.
    pub fn spawn(store: Store) -> ReplayWriter {
        let writer = BatchWriter::spawn(
            store.clone(),
            "replay",
            Box::new(|store, records| {
                Box::pin(async move {
                    store
                        .record_once_batch(&records)
                        .await
                        .map_err(|error| error.to_string())
                })
            }),
        );
        ReplayWriter { writer, store }
    }
}

impl ReplayStore for ReplayWriter {
    async fn record_once(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        self.writer
            .submit((issuer.to_string(), jti.to_string(), expires_at))
            .await
    }

    async fn record_once_batch(
        &self,
        records: &[(String, String, i64)],
    ) -> Result<Vec<bool>, StoreError> {
        self.store.record_once_batch(records).await
    }

    async fn purge_expired(&self, now: i64) -> Result<u64, StoreError> {
        self.store.purge_expired(now).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use tokio::time::Instant;

    use super::*;

    /// Queues `items` after `after` of (paused, virtual) time.
    fn later(sender: &mpsc::Sender<usize>, items: std::ops::Range<usize>, after: Duration) {
        let sender = sender.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            for item in items {
                sender.send(item).await.unwrap();
            }
        });
    }

    #[tokio::test(start_paused = true)]
    async fn a_few_items_are_committed_at_once() {
        let (sender, mut receiver) = mpsc::channel(64);
        later(&sender, 100..140, Duration::from_millis(1));
        let mut batch: Vec<usize> = (0..BUSY - 1).collect();
        let started = Instant::now();
        gather(&mut receiver, &mut batch, 0).await;
        assert_eq!(batch.len(), BUSY - 1);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_batch_lingers_until_it_is_full_and_no_longer() {
        let (sender, mut receiver) = mpsc::channel(64);
        later(&sender, 100..110, Duration::from_millis(1));
        later(&sender, 200..240, Duration::from_millis(1));
        let mut batch: Vec<usize> = (0..BUSY).collect();
        let started = Instant::now();
        gather(&mut receiver, &mut batch, 0).await;
        assert_eq!(batch.len(), GATHER, "{batch:?}");
        assert_eq!(started.elapsed(), Duration::from_millis(1));
        // What did not fit waits for the next batch.
        assert_eq!(receiver.len(), BUSY + 10 + 40 - GATHER);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_batch_lingers_at_most_gather_at_most() {
        let (sender, mut receiver) = mpsc::channel(64);
        later(&sender, 100..102, Duration::from_millis(1));
        later(&sender, 200..202, Duration::from_secs(5));
        let mut batch: Vec<usize> = (0..BUSY).collect();
        let started = Instant::now();
        gather(&mut receiver, &mut batch, 0).await;
        assert_eq!(batch.len(), BUSY + 2);
        assert!(
            started.elapsed() >= GATHER_AT_MOST,
            "{:?}",
            started.elapsed()
        );
        assert!(started.elapsed() <= GATHER_AT_MOST + Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_few_items_after_a_busy_batch_linger_too() {
        let (sender, mut receiver) = mpsc::channel(64);
        later(&sender, 100..140, Duration::from_millis(1));
        let mut batch = vec![0];
        let started = Instant::now();
        gather(&mut receiver, &mut batch, BUSY).await;
        assert_eq!(batch.len(), GATHER);
        assert_eq!(started.elapsed(), Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_is_committed_at_once() {
        let (sender, mut receiver) = mpsc::channel(64);
        later(&sender, 100..140, Duration::ZERO);
        let mut batch: Vec<usize> = (0..GATHER).collect();
        let started = Instant::now();
        gather(&mut receiver, &mut batch, 0).await;
        assert_eq!(batch.len(), GATHER);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_queue_ends_the_linger() {
        let (sender, mut receiver) = mpsc::channel::<usize>(64);
        drop(sender);
        let mut batch: Vec<usize> = (0..BUSY).collect();
        let started = Instant::now();
        gather(&mut receiver, &mut batch, 0).await;
        assert_eq!(batch.len(), BUSY);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
