//! The audit writer: group commit of audit events.
//!
//! Handlers hand an event over and wait for its commit; one task collects whatever events
//! arrived meanwhile and writes them in one transaction (one fsync for the group). A
//! response is sent only after its event is durable, so no response ever reports a
//! decision the audit trail lost. On shutdown the task drains what is queued.

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
    let mut events = Vec::with_capacity(MAX_BATCH);
    let mut acks = Vec::with_capacity(MAX_BATCH);
    let mut buf = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut buf, MAX_BATCH).await > 0 {
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
        for a in acks.drain(..) {
            let _ = a.send(ok);
        }
    }
    tracing::debug!("audit writer drained and stopped");
}
