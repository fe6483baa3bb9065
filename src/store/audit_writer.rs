//! Group commit for the audit log. Every token response waits until its audit event is committed;
//! doing one transaction per request would make the database's commit latency the throughput
//! limit. Requests hand their event to one writer task, which commits everything that queued up
//! while the previous commit was in flight in a single transaction, then acknowledges each
//! request. No artificial delay: an idle server commits a lone event at once, a busy one batches
//! naturally. Durability is unchanged: nobody is answered before their event is committed.

use tokio::sync::{mpsc, oneshot};

use super::{AuditEvent, AuditLog, Store, StoreError};

/// Most events committed in one transaction.
const MAX_BATCH: usize = 256;
/// Queue bound: beyond it, callers wait (back-pressure) rather than grow memory.
const QUEUE: usize = 4096;

type Job = (AuditEvent, oneshot::Sender<Result<(), String>>);

/// A handle to the writer task; cheap to clone.
#[derive(Clone, Debug)]
pub struct AuditWriter {
    sender: mpsc::Sender<Job>,
}

impl AuditWriter {
    /// Starts the writer task on the current runtime. It ends when every handle is dropped.
    pub fn spawn(store: Store) -> AuditWriter {
        let (sender, mut receiver) = mpsc::channel::<Job>(QUEUE);
        tokio::spawn(async move {
            let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
            while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let events: Vec<AuditEvent> =
                    batch.iter().map(|(event, _)| event.clone()).collect();
                let result = store
                    .record_batch(&events)
                    .await
                    .map_err(|error| error.to_string());
                metrics::histogram!("frontdesk_audit_batch_size").record(events.len() as f64);
                for (_, ack) in batch.drain(..) {
                    let _ = ack.send(result.clone());
                }
            }
        });
        AuditWriter { sender }
    }

    /// Records `event` and returns once it is committed (or failed).
    pub async fn record(&self, event: AuditEvent) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        self.sender
            .send((event, ack))
            .await
            .map_err(|_| StoreError::Unavailable("the audit writer has stopped".into()))?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(StoreError::Unavailable(format!(
                "audit batch failed: {message}"
            ))),
            Err(_) => Err(StoreError::Unavailable(
                "the audit writer has stopped".into(),
            )),
        }
    }
}
