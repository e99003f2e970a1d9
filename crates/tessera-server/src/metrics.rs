//! Prometheus metrics, kept in atomics and rendered as text at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tessera_core::Reason;

/// Counters the server keeps.
pub struct Metrics {
    granted: AtomicU64,
    denied: Vec<AtomicU64>,
    audit_batches: AtomicU64,
    audit_events: AtomicU64,
    audit_failures: AtomicU64,
    /// Audit commits by duration, one counter per [`COMMIT_BUCKETS_US`] bucket and one
    /// for longer ones (rendered cumulative, as Prometheus wants).
    commit_buckets: [AtomicU64; COMMIT_BUCKETS_US.len() + 1],
    commit_micros: AtomicU64,
    connections_refused: AtomicU64,
}

/// Upper bounds of the audit commit histogram, in microseconds: from what one fsync on
/// a fast disk takes to what would show in every request's latency.
const COMMIT_BUCKETS_US: [u64; 10] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000,
];

impl Default for Metrics {
    fn default() -> Self {
        Self {
            granted: AtomicU64::new(0),
            denied: Reason::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            audit_batches: AtomicU64::new(0),
            audit_events: AtomicU64::new(0),
            audit_failures: AtomicU64::new(0),
            commit_buckets: Default::default(),
            commit_micros: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts one token decision.
    pub fn token(&self, reason: Option<Reason>) {
        match reason {
            None => self.granted.fetch_add(1, Relaxed),
            Some(r) => {
                let i = Reason::ALL.iter().position(|x| *x == r).unwrap_or(0);
                self.denied[i].fetch_add(1, Relaxed)
            }
        };
    }

    /// Counts a connection closed at once because `max_connections` were open.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Relaxed);
    }

    /// Counts one audit batch.
    pub fn audit_batch(&self, events: usize, ok: bool, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = COMMIT_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(COMMIT_BUCKETS_US.len());
        self.commit_buckets[bucket].fetch_add(1, Relaxed);
        self.commit_micros.fetch_add(us, Relaxed);
        self.audit_batches.fetch_add(1, Relaxed);
        self.audit_events.fetch_add(events as u64, Relaxed);
        if !ok {
            self.audit_failures.fetch_add(1, Relaxed);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(4096);
        s.push_str(
            "# HELP tessera_token_requests_total Token endpoint decisions by outcome and reason.\n",
        );
        s.push_str("# TYPE tessera_token_requests_total counter\n");
        let _ = writeln!(
            s,
            "tessera_token_requests_total{{outcome=\"granted\",reason=\"\"}} {}",
            self.granted.load(Relaxed)
        );
        for (r, c) in Reason::ALL.iter().zip(&self.denied) {
            let _ = writeln!(
                s,
                "tessera_token_requests_total{{outcome=\"denied\",reason=\"{}\"}} {}",
                r.code(),
                c.load(Relaxed)
            );
        }
        for (name, help, v) in [
            (
                "tessera_audit_batches_total",
                "Audit transactions committed or failed.",
                &self.audit_batches,
            ),
            (
                "tessera_audit_events_total",
                "Audit events handed to the writer.",
                &self.audit_events,
            ),
            (
                "tessera_audit_batch_failures_total",
                "Audit transactions that failed.",
                &self.audit_failures,
            ),
            (
                "tessera_connections_refused_total",
                "Connections closed at once because max_connections were open.",
                &self.connections_refused,
            ),
        ] {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        }
        let name = "tessera_audit_commit_seconds";
        let _ = writeln!(
            s,
            "# HELP {name} Time to write and commit one audit batch (durable when the \
             durability is full); every request of the batch waits for it.\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (i, c) in self.commit_buckets.iter().enumerate() {
            cumulative += c.load(Relaxed);
            match COMMIT_BUCKETS_US.get(i) {
                Some(us) => {
                    let le = *us as f64 / 1e6;
                    let _ = writeln!(s, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let sum = self.commit_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(s, "{name}_sum {sum}\n{name}_count {cumulative}");
        s
    }
}
