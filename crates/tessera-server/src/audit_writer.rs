//! The audit writer: group commit of audit events, on a thread of its own.
//!
//! Handlers hand an event over and wait for it to be durable. A thread owns the audit
//! trail's connection ([`AuditAppender`]): it takes whatever events arrived while it
//! wrote the previous batch, commits them in one transaction (durable when it returns,
//! with durability `full`) and acknowledges them. A store whose commits run in parallel
//! (PostgreSQL) gets several such threads, one gathering while another commits. A batch thus costs one wake-up of this
//! thread and one of each waiting handler, and no hop through the async runtime or a
//! connection pool. A response is sent only after its event is durable, so no response
//! ever reports a decision the audit trail lost. On shutdown the thread drains what is
//! queued.

use std::sync::Arc;

use tessera_core::audit::AuditEvent;
use tessera_core::store::{AuditAppender, Store, StoreResult};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

/// The most events written in one transaction.
const MAX_BATCH: usize = 1024;

type Ack = oneshot::Sender<bool>;

/// A handle to the audit writer.
#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<(AuditEvent, Ack)>,
}

/// Why an event could not be recorded.
#[derive(Debug, thiserror::Error)]
#[error("the audit trail could not be written")]
pub struct AuditUnavailable;

impl AuditWriter {
    /// Opens the audit connection and starts the writer thread. The returned task ends
    /// once every handle is dropped and the queue is written.
    pub fn start(store: &dyn Store, metrics: Arc<Metrics>) -> StoreResult<(Self, JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel(16 * MAX_BATCH);
        // One thread per batch the store lets commit at once; they take turns at the
        // queue, so one gathers the next batch while another waits for its commit.
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let mut threads = vec![];
        for i in 0..store.audit_batches_in_flight().max(1) {
            let appender = store.audit_appender()?;
            let (rx, metrics) = (rx.clone(), metrics.clone());
            let thread = std::thread::Builder::new()
                .name(format!("tessera-audit-{i}"))
                .spawn(move || run(appender, &rx, &metrics))
                .map_err(|e| {
                    tessera_core::store::StoreError::Backend(format!(
                        "cannot start the audit writer thread: {e}"
                    ))
                })?;
            threads.push(thread);
        }
        let task = tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    tracing::error!("an audit writer thread panicked");
                }
            }
        });
        Ok((Self { tx }, task))
    }

    /// Records `event` and returns once it is durable.
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

type Queue = std::sync::Mutex<mpsc::Receiver<(AuditEvent, Ack)>>;

fn run(mut appender: Box<dyn AuditAppender>, rx: &Queue, metrics: &Metrics) {
    let mut events = Vec::with_capacity(MAX_BATCH);
    let mut acks = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            // The queue is this thread's until its batch is gathered.
            let mut rx = rx.lock().expect("audit queue");
            let Some((e, a)) = rx.blocking_recv() else {
                break;
            };
            events.push(e);
            acks.push(a);
            while events.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok((e, a)) => {
                        events.push(e);
                        acks.push(a);
                    }
                    Err(_) => break,
                }
            }
        }
        let started = std::time::Instant::now();
        let ok = match appender.append(&events) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, events = events.len(), "audit batch not written");
                false
            }
        };
        metrics.audit_batch(events.len(), ok, started.elapsed());
        events.clear();
        for a in acks.drain(..) {
            let _ = a.send(ok);
        }
    }
    tracing::debug!("audit writer drained and stopped");
}
