//! Group commit. Every token response waits until what it depends on (its audit event, its
//! replay record) is committed; one transaction per request would make the database's commit
//! latency the throughput limit. Requests hand their item to one writer task per kind, which
//! commits everything that queued up while the previous commit was in flight in a single
//! transaction, then answers each request. Durability is unchanged: nobody is answered before
//! their item is committed.
//!
//! A busy server also gathers: token requests announce themselves when they start
//! ([`AuditWriter::expect`]), and while some of them are still being computed the writer holds
//! a batch of fewer than [`GATHER`] items back for them, at most [`GATHER_AT_MOST`]. Every commit
//! costs the same fixed work whatever its size (a WAL sync, the hand-off to SQLite's thread and
//! back, a round trip to PostgreSQL and its flush), and left to the commit's own latency the
//! batches stayed small (a median of 8 events on SQLite): gathering 32 made a durable exchange
//! 5–13 % cheaper on both databases and lowered p99 (docs/performance.md, fifteenth run). An idle
//! server still commits a lone item at once: nothing is held when no other request is on its
//! way.
//!
//! On PostgreSQL up to [`POSTGRES_COMMITS_IN_FLIGHT`] batches commit at once, each on its own
//! connection: a commit waits for the WAL flush, and with only one in flight every request that
//! arrived meanwhile waited for the whole flush before its own could start, which capped
//! throughput at (batch size ÷ commit latency) with the server's CPU mostly idle
//! (docs/performance.md). PostgreSQL merges concurrent flushes itself. SQLite has a single
//! writer, so there a second concurrent commit would only wait for the lock: one at a time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};

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

/// A batch smaller than this is held back while announced requests are still being computed.
/// 32: against committing at once, 16 and 32 measured +4 to +14 % exchanges/s on both databases,
/// 32 the more on PostgreSQL, where it also cut the database's CPU per exchange by a quarter
/// (docs/performance.md, fifteenth run).
pub(super) const GATHER: usize = 32;
/// The longest a batch is held back for announced requests. It bounds what a request can lose
/// to one that is slow to compute (a JWKS fetch, an argon2 verification); tokio's timer rounds
/// it up to the next millisecond.
pub(super) const GATHER_AT_MOST: Duration = Duration::from_millis(2);

type BatchResult<R> = Result<Vec<R>, String>;
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

/// Requests that have announced an item and not yet queued it (or given up).
#[derive(Debug, Default)]
struct Expected {
    count: AtomicUsize,
    /// Woken when the count falls to zero, so a held batch is committed at once.
    none_left: Notify,
}

/// A request's announcement that it will queue an item with a writer: while it lives, the
/// writer may hold a small batch back for it. Dropped when the item is queued, or when the
/// request ends without one (an error, a cancelled request), which ends the wait.
#[derive(Debug)]
#[must_use = "the announcement ends when this is dropped"]
pub struct Expecting(Option<Arc<Expected>>);

impl Drop for Expecting {
    fn drop(&mut self) {
        if let Some(expected) = self.0.take()
            && expected.count.fetch_sub(1, Ordering::AcqRel) == 1
        {
            expected.none_left.notify_one();
        }
    }
}

/// Holds `batch` back while it has fewer than [`GATHER`] items and announced requests are still
/// being computed, for at most [`GATHER_AT_MOST`]; every item that arrives meanwhile joins it.
async fn gather<J>(receiver: &mut mpsc::Receiver<J>, batch: &mut Vec<J>, expected: &Expected) {
    let waiting =
        |batch: &Vec<J>| batch.len() < GATHER && expected.count.load(Ordering::Acquire) > 0;
    if !waiting(batch) {
        return;
    }
    let deadline = tokio::time::sleep(GATHER_AT_MOST);
    tokio::pin!(deadline);
    while waiting(batch) {
        let room = MAX_BATCH - batch.len();
        tokio::select! {
            received = receiver.recv_many(batch, room) => {
                if received == 0 {
                    return;
                }
            }
            () = expected.none_left.notified() => {}
            () = &mut deadline => break,
        }
    }
    // An announcement ends only after its item is queued: whatever the last ones queued is in
    // the channel now, though the wake-up that ended the wait may have come first.
    while batch.len() < MAX_BATCH {
        match receiver.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

/// A group-committing writer for items of type `T`, answering each with an `R`.
pub struct BatchWriter<T, R> {
    sender: mpsc::Sender<Job<T, R>>,
    expected: Arc<Expected>,
}

impl<T, R> Clone for BatchWriter<T, R> {
    fn clone(&self) -> Self {
        BatchWriter {
            sender: self.sender.clone(),
            expected: self.expected.clone(),
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
        let expected = Arc::new(Expected::default());
        let gathering = expected.clone();
        let in_flight = match store.backend() {
            super::Backend::Postgres => POSTGRES_COMMITS_IN_FLIGHT,
            super::Backend::Sqlite => 1,
        };
        let commit = std::sync::Arc::new(commit);
        tokio::spawn(async move {
            let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(in_flight));
            let mut batch: Vec<Job<T, R>> = Vec::with_capacity(MAX_BATCH);
            loop {
                // Wait for a free commit slot first, so the batch keeps growing while every
                // slot is busy.
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                if receiver.recv_many(&mut batch, MAX_BATCH).await == 0 {
                    return;
                }
                gather(&mut receiver, &mut batch, &gathering).await;
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
        BatchWriter { sender, expected }
    }

    /// Announces an item that the caller will queue soon.
    fn expect(&self) -> Expecting {
        self.expected.count.fetch_add(1, Ordering::AcqRel);
        Expecting(Some(self.expected.clone()))
    }

    /// Queues `item` and returns its answer once the batch holding it is committed. The
    /// caller's announcement, if any, ends once the item is queued.
    async fn submit(&self, item: T, announced: Option<Expecting>) -> Result<R, StoreError> {
        let (ack, done) = oneshot::channel();
        let sent = self.sender.send((item, ack)).await;
        drop(announced);
        sent.map_err(|_| StoreError::Unavailable("the group-commit writer has stopped".into()))?;
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

    /// Announces that the caller (a token request, as it starts) will record an event: until
    /// the returned guard is handed to [`Self::record_expected`] or
    /// [`Self::record_with_replay`], or dropped, a busy writer may hold a small batch back for
    /// the event (see the module's comment).
    pub fn expect(&self) -> Expecting {
        match &self.0 {
            Sink::Batched(writer) => writer.expect(),
            Sink::Discarded => Expecting(None),
        }
    }

    /// How many announced events are not yet queued: requests still being computed. Zero
    /// whenever no token request is in progress (tests check that every request ends its
    /// announcement; a leaked one would hold every batch back for [`GATHER_AT_MOST`]).
    pub fn announced(&self) -> usize {
        match &self.0 {
            Sink::Batched(writer) => writer.expected.count.load(Ordering::Acquire),
            Sink::Discarded => 0,
        }
    }

    /// Records `event` and returns once it is committed (or failed).
    pub async fn record(&self, event: AuditEvent) -> Result<(), StoreError> {
        match &self.0 {
            Sink::Batched(writer) => writer.submit((event, None), None).await.map(|_| ()),
            Sink::Discarded => Ok(()),
        }
    }

    /// [`Self::record`] for an event announced with [`Self::expect`].
    pub async fn record_expected(
        &self,
        event: AuditEvent,
        announced: Expecting,
    ) -> Result<(), StoreError> {
        match &self.0 {
            Sink::Batched(writer) => writer
                .submit((event, None), Some(announced))
                .await
                .map(|_| ()),
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
        announced: Expecting,
    ) -> Result<bool, StoreError> {
        match &self.0 {
            Sink::Batched(writer) => writer.submit((event, Some(pending)), Some(announced)).await,
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
            .submit((issuer.to_string(), jti.to_string(), expires_at), None)
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

    fn announce(expected: &Arc<Expected>) -> Expecting {
        expected.count.fetch_add(1, Ordering::AcqRel);
        Expecting(Some(expected.clone()))
    }

    /// Queues `item` after `after` of (paused, virtual) time, then ends its announcement.
    fn later(sender: &mpsc::Sender<u32>, item: Option<u32>, after: Duration, announced: Expecting) {
        let sender = sender.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if let Some(item) = item {
                sender.send(item).await.unwrap();
            }
            drop(announced);
        });
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_held_when_no_request_is_announced() {
        let expected = Arc::new(Expected::default());
        let (_sender, mut receiver) = mpsc::channel::<u32>(8);
        let mut batch = vec![1];
        let started = Instant::now();
        gather(&mut receiver, &mut batch, &expected).await;
        assert_eq!(batch, [1]);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_for_the_announced_items_and_no_longer() {
        let expected = Arc::new(Expected::default());
        let (sender, mut receiver) = mpsc::channel::<u32>(8);
        later(
            &sender,
            Some(2),
            Duration::from_millis(1),
            announce(&expected),
        );
        later(
            &sender,
            Some(3),
            Duration::from_millis(1),
            announce(&expected),
        );
        let mut batch = vec![1];
        let started = Instant::now();
        gather(&mut receiver, &mut batch, &expected).await;
        batch.sort_unstable();
        assert_eq!(batch, [1, 2, 3]);
        assert_eq!(started.elapsed(), Duration::from_millis(1));
        assert_eq!(expected.count.load(Ordering::Acquire), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_announcement_dropped_without_an_item_ends_the_wait() {
        let expected = Arc::new(Expected::default());
        let (sender, mut receiver) = mpsc::channel::<u32>(8);
        later(&sender, None, Duration::from_millis(1), announce(&expected));
        let mut batch = vec![1];
        let started = Instant::now();
        gather(&mut receiver, &mut batch, &expected).await;
        assert_eq!(batch, [1]);
        assert_eq!(started.elapsed(), Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_request_holds_a_batch_back_at_most_gather_at_most() {
        let expected = Arc::new(Expected::default());
        let (sender, mut receiver) = mpsc::channel::<u32>(8);
        let slow = announce(&expected);
        later(&sender, Some(2), Duration::from_secs(5), slow);
        let mut batch = vec![1];
        let started = Instant::now();
        gather(&mut receiver, &mut batch, &expected).await;
        assert_eq!(batch, [1]);
        assert!(
            started.elapsed() >= GATHER_AT_MOST,
            "{:?}",
            started.elapsed()
        );
        assert!(started.elapsed() < GATHER_AT_MOST + Duration::from_millis(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_is_committed_while_more_are_announced() {
        let expected = Arc::new(Expected::default());
        let (_sender, mut receiver) = mpsc::channel::<u32>(8);
        let _still_computing = announce(&expected);
        let mut batch: Vec<u32> = (0..GATHER as u32).collect();
        let started = Instant::now();
        gather(&mut receiver, &mut batch, &expected).await;
        assert_eq!(batch.len(), GATHER);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_discarding_writer_announces_nothing() {
        let writer = AuditWriter::discarding_for_benchmarks();
        let announced = writer.expect();
        assert!(announced.0.is_none());
        writer
            .record_expected(
                AuditEvent::new(0, "token_request", super::super::Decision::Issued),
                announced,
            )
            .await
            .unwrap();
    }
}
