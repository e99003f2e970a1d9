//! Credential attempts as the handlers take them: a place in a throttle budget reserved
//! before the credential is checked ([`Attempt`]), and a slot for a password hash
//! ([`HashSlots`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tessera_core::model::Timestamp;
use tessera_core::store::{Store, StoreError};
use tessera_core::throttle::{
    ALL_SOURCES, AttemptOutcome, PersonThrottle, ThrottlePolicy, ThrottleState, person_key,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One attempt's place in the budget of (key, source). Dropped without
/// [`settle`](Attempt::settle) (an error, a cancelled request), it is released.
pub struct Attempt {
    store: Arc<dyn Store>,
    key: String,
    source: String,
    policy: ThrottlePolicy,
    /// The state the attempt is judged by (earlier attempts in flight count as failed).
    pub state: ThrottleState,
    /// A place was taken (the state did not block).
    live: bool,
}

impl Attempt {
    /// Reserves a place (see `Store::reserve_attempt`).
    pub fn take(
        store: &Arc<dyn Store>,
        key: &str,
        source: &str,
        policy: ThrottlePolicy,
        now: Timestamp,
    ) -> Attempt {
        let state = store.reserve_attempt(key, source, &policy, now);
        Attempt {
            store: store.clone(),
            key: key.to_string(),
            source: source.to_string(),
            policy,
            state,
            live: policy.retry_after(&state, now).is_none(),
        }
    }

    /// True when the budget was exhausted: nothing was reserved.
    pub fn blocked(&self) -> bool {
        !self.live
    }

    /// Ends the attempt: `None` when its credential was never checked.
    pub async fn settle(
        mut self,
        outcome: Option<AttemptOutcome>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if !std::mem::take(&mut self.live) {
            return Ok(());
        }
        match outcome {
            None => {
                self.store.release_attempt(&self.key, &self.source);
                Ok(())
            }
            Some(o) => {
                self.store
                    .settle_attempt(&self.key, &self.source, o, &self.policy, now)
                    .await
            }
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.live {
            self.store.release_attempt(&self.key, &self.source);
        }
    }
}

/// How a throttle update a decision asks for ends the attempt it was judged by: a failure
/// counted, a record cleared, or (none) nothing checked.
pub fn outcome_of(update: Option<ThrottleState>) -> Option<AttemptOutcome> {
    update.map(|s| {
        if s.failures > 0 {
            AttemptOutcome::Failed
        } else {
            AttemptOutcome::Succeeded
        }
    })
}

/// A person's attempt in the budgets of their username: from this source, and (once
/// that one has room) from all sources.
pub struct PersonAttempts {
    source: Attempt,
    account: Option<Attempt>,
}

impl PersonAttempts {
    /// Reserves places for a password attempt for `username` in org `org_slug`.
    pub fn take(
        st: &crate::state::AppState,
        org_slug: &str,
        username: &str,
        source: &str,
        now: Timestamp,
    ) -> Self {
        let key = person_key(org_slug, username);
        let own = Attempt::take(&st.store, &key, source, st.throttle, now);
        let account = (!own.blocked())
            .then(|| Attempt::take(&st.store, &key, ALL_SOURCES, st.account_throttle, now));
        Self {
            source: own,
            account,
        }
    }

    /// The records the decision judges the attempt by.
    pub fn throttle(&self) -> PersonThrottle {
        PersonThrottle {
            source: self.source.state,
            account: self.account.as_ref().map(|a| a.state).unwrap_or_default(),
        }
    }

    /// True when a budget was exhausted (no password will be checked).
    pub fn blocked(&self) -> bool {
        self.source.blocked() || self.account.as_ref().is_some_and(Attempt::blocked)
    }

    /// Ends both attempts with the decision's outcome for the person.
    pub async fn settle(
        self,
        outcome: Option<AttemptOutcome>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.source.settle(outcome, now).await?;
        if let Some(a) = self.account {
            a.settle(outcome, now).await?;
        }
        Ok(())
    }
}

/// The bound on password hashes (argon2id, about 19 MiB and tens of milliseconds each) in
/// flight: `slots` run at once, up to `queue` more wait at most `wait` for a slot, and
/// anything beyond is answered at once as busy. Unauthenticated requests can trigger a
/// hash, so this is what bounds their memory and CPU.
pub struct HashSlots {
    sem: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    wait: Duration,
}

impl HashSlots {
    pub fn new(slots: usize, queue: usize, wait: Duration) -> Self {
        Self {
            sem: Arc::new(Semaphore::new(slots.max(1))),
            waiting: AtomicUsize::new(0),
            queue,
            wait,
        }
    }

    /// A slot, or `None` when the queue is full or the wait ran out.
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.sem.clone().try_acquire_owned() {
            return Some(p);
        }
        // The queue's bound, taken atomically: concurrent callers cannot overshoot it.
        let queued = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (w < self.queue).then_some(w + 1)
            });
        if queued.is_err() {
            return None;
        }
        let permit = tokio::time::timeout(self.wait, self.sem.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        permit.ok().and_then(Result::ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_and_queue_are_bounded() {
        let slots = Arc::new(HashSlots::new(2, 3, Duration::from_secs(30)));
        let a = slots.acquire().await.unwrap();
        let _b = slots.acquire().await.unwrap();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let s = slots.clone();
                tokio::spawn(async move { s.acquire().await.is_some() })
            })
            .collect();
        while slots.waiting.load(Ordering::Acquire) < 3 {
            tokio::task::yield_now().await;
        }
        assert!(slots.acquire().await.is_none(), "the queue is full");
        drop(a);
        // The freed slot goes to each waiter in turn (each gives it back at once).
        for w in waiters {
            assert!(w.await.unwrap());
        }
    }

    #[tokio::test]
    async fn a_wait_ends() {
        let slots = HashSlots::new(1, 1, Duration::from_millis(1));
        let _a = slots.acquire().await.unwrap();
        assert!(slots.acquire().await.is_none());
        assert_eq!(slots.waiting.load(Ordering::Acquire), 0);
    }
}
