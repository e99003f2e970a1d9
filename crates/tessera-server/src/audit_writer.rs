//! The audit writer: group commit of audit events, pipelined.
//!
//! Handlers hand an event over and wait for it to be durable. One task collects whatever
//! events arrived meanwhile and commits them in one transaction; a second task makes the
//! committed batches durable (one fsync for all of them) and only then acknowledges them.
//! While one fsync runs, the next batch is being written, so the disk's latency no longer
//! caps throughput at one batch per fsync. A response is sent only after its event is
//! durable, so no response ever reports a decision the audit trail lost. On shutdown both
//! tasks drain what is queued.

use std::sync::Arc;

use tessera_core::audit::AuditEvent;
use tessera_core::store::Store;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

/// The most events written in one transaction.
const MAX_BATCH: usize = 1024;

type Ack = oneshot::Sender<bool>;

/// A handle to the audit writer task.
#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<(AuditEvent, Ack)>,
}

/// Why an event could not be recorded.
#[derive(Debug, thiserror::Error)]
#[error("the audit trail could not be written")]
pub struct AuditUnavailable;

impl AuditWriter {
    /// Starts the writer task.
    pub fn start(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(16 * MAX_BATCH);
        let task = tokio::spawn(run(store, rx, metrics));
        (Self { tx }, task)
    }

    /// Records `event` and returns once it is committed.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditUnavailable> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send((event, ack))
            .await
            .map_err(|_| AuditUnavailable)?;
        match done.await {
            Ok(true) => Ok(()),
            _ => Err(AuditUnavailable),
        }
    }
}

async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<(AuditEvent, Ack)>,
    metrics: Arc<Metrics>,
) {
    // Committed batches waiting for their fsync. Bounded, so a slow disk slows the
    // writer down instead of piling up acknowledgements.
    let (committed, to_sync) = mpsc::channel::<Vec<Ack>>(64);
    let syncer = tokio::spawn(sync(store.clone(), to_sync));
    let mut events = Vec::with_capacity(MAX_BATCH);
    let mut buf = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut buf, MAX_BATCH).await > 0 {
        let mut acks = Vec::with_capacity(buf.len());
        for (e, a) in buf.drain(..) {
            events.push(e);
            acks.push(a);
        }
        let ok = match store.append_audit(&events).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, events = events.len(), "audit batch not written");
                false
            }
        };
        metrics.audit_batch(events.len(), ok);
        events.clear();
        if !ok {
            answer(acks, false);
        } else if let Err(mpsc::error::SendError(acks)) = committed.send(acks).await {
            answer(acks, false);
        }
    }
    drop(committed);
    let _ = syncer.await;
    tracing::debug!("audit writer drained and stopped");
}

/// Makes committed batches durable, as many at a time as are waiting, and acknowledges
/// them.
async fn sync(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Vec<Ack>>) {
    let mut batches = Vec::with_capacity(64);
    while rx.recv_many(&mut batches, 64).await > 0 {
        let ok = match store.flush_audit().await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "audit events committed but not made durable");
                false
            }
        };
        for acks in batches.drain(..) {
            answer(acks, ok);
        }
    }
}

fn answer(acks: Vec<Ack>, ok: bool) {
    for a in acks {
        let _ = a.send(ok);
    }
}
