//! Credential attempts as the handlers take them: a place in a throttle budget reserved
//! before the credential is checked ([`Attempt`]), and a slot for a password hash
//! ([`HashSlots`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tessera_core::store::{Store, StoreError};
use tessera_core::throttle::{
    ALL_SOURCES, AttemptOutcome, PersonThrottle, ThrottlePolicy, ThrottleState, person_key,
};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::clock;

/// Woken whenever an attempt settles or is released, so attempts waiting behind those in
/// flight judge again (process-wide: a spurious wake-up only costs a re-check).
static SETTLED: Notify = Notify::const_new();

/// How many attempts are waiting on [`SETTLED`]: settles wake it only when some are.
static WAITERS: AtomicUsize = AtomicUsize::new(0);

/// One waiting attempt, counted in [`WAITERS`] while it lives.
struct Waiter;

impl Waiter {
    fn new() -> Self {
        WAITERS.fetch_add(1, Ordering::AcqRel);
        Waiter
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        WAITERS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Wakes the attempts waiting for others to settle, if any.
fn wake_waiters() {
    if WAITERS.load(Ordering::Acquire) > 0 {
        SETTLED.notify_waiters();
    }
}

/// The longest an attempt waits for earlier attempts in flight to settle.
const MAX_WAIT: Duration = Duration::from_secs(5);

/// One attempt's place in the budget of (key, source). Dropped without
/// [`settle`](Attempt::settle) (an error, a cancelled request), it is released, or
/// counted as failed once [`count_if_abandoned`](Attempt::count_if_abandoned) was called.
pub struct Attempt {
    store: Arc<dyn Store>,
    key: String,
    source: String,
    policy: ThrottlePolicy,
    /// The state the attempt is judged by (earlier attempts in flight count as failed).
    pub state: ThrottleState,
    /// A place was taken (the state did not block).
    live: bool,
    /// How the attempt ends if it is dropped unsettled.
    on_drop: Option<AttemptOutcome>,
}

impl Attempt {
    /// Reserves a place (see `Store::reserve_attempt`). An attempt that would be blocked
    /// only by attempts still in flight waits for them to settle and judges again (at
    /// most [`MAX_WAIT`]), so a burst is judged as the same attempts one after another
    /// would be: seven right passwords at once are not refused for six that were still
    /// being checked.
    pub async fn take(
        store: &Arc<dyn Store>,
        key: &str,
        source: &str,
        policy: ThrottlePolicy,
    ) -> Attempt {
        let deadline = tokio::time::Instant::now() + MAX_WAIT;
        let mut waiting: Option<Waiter> = None;
        loop {
            // Registered before the reservation that may decide to wait, so a settle in
            // between is not missed; only then, so the usual attempt touches no lock of
            // the notifier.
            let mut settled = waiting.as_ref().map(|_| Box::pin(SETTLED.notified()));
            if let Some(n) = settled.as_mut() {
                n.as_mut().enable();
            }
            let now = clock::now();
            let r = store.reserve_attempt(key, source, &policy, now);
            let blocked = policy.retry_after(&r.judged, now).is_some();
            let only_by_in_flight = blocked && policy.retry_after(&r.committed, now).is_none();
            if !only_by_in_flight || tokio::time::Instant::now() >= deadline {
                return Attempt {
                    store: store.clone(),
                    key: key.to_string(),
                    source: source.to_string(),
                    policy,
                    state: r.judged,
                    live: !blocked,
                    on_drop: None,
                };
            }
            match settled {
                // Judge again once something settled (or the wait ends).
                Some(n) => {
                    let _ = tokio::time::timeout_at(deadline, n).await;
                }
                // First time blocked by attempts in flight: register, then look again.
                None => waiting = Some(Waiter::new()),
            }
        }
    }

    /// True when the budget was exhausted: nothing was reserved.
    pub fn blocked(&self) -> bool {
        !self.live
    }

    /// From now on, an attempt dropped unsettled counts as failed: its credential check
    /// has started, and a caller who disconnects must not get it for free.
    pub fn count_if_abandoned(&mut self) {
        self.on_drop = Some(AttemptOutcome::Failed);
    }

    /// Ends the attempt at the current time: `None` when its credential was never checked.
    pub async fn settle(mut self, outcome: Option<AttemptOutcome>) -> Result<(), StoreError> {
        if !std::mem::take(&mut self.live) {
            return Ok(());
        }
        let done = match outcome {
            None => {
                self.store.release_attempt(&self.key, &self.source);
                Ok(())
            }
            Some(o) => {
                // The node-local part happens in this call, before the future is polled.
                let write = self.store.settle_attempt(
                    &self.key,
                    &self.source,
                    o,
                    &self.policy,
                    clock::now(),
                );
                wake_waiters();
                write.await
            }
        };
        wake_waiters();
        done
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.live {
            return;
        }
        match self.on_drop {
            // The in-memory count is made by the call; the database write is dropped.
            Some(o) => drop(self.store.settle_attempt(
                &self.key,
                &self.source,
                o,
                &self.policy,
                clock::now(),
            )),
            None => self.store.release_attempt(&self.key, &self.source),
        }
        wake_waiters();
    }
}

/// Ends a request's attempts together: its own (client or login page) and, when it took
/// them, the person's.
pub async fn settle_all(
    attempt: Attempt,
    outcome: Option<AttemptOutcome>,
    person: Option<PersonAttempts>,
    person_outcome: Option<AttemptOutcome>,
) -> Result<(), StoreError> {
    let (a, b) = tokio::join!(attempt.settle(outcome), async {
        match person {
            Some(p) => p.settle(person_outcome).await,
            None => Ok(()),
        }
    });
    a.and(b)
}

/// Runs a decision that checks a password hash (argon2id: tens of milliseconds of CPU,
/// about 19 MiB) off the async workers, holding one of the server's hash slots. `decide`
/// learns whether no slot could be had (the decision then refuses as busy); once a slot
/// is held, `started` marks the attempts so that an abandoned check counts. The slot
/// goes with the hash: a cancelled request frees it only when its hash is done.
pub async fn with_hash_slot<T: Send + 'static>(
    st: &crate::state::AppState,
    started: impl FnOnce(),
    decide: impl FnOnce(bool) -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    let permit = st.hash_slots.acquire().await;
    let busy = permit.is_none();
    if !busy {
        started();
    }
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        decide(busy)
    })
    .await
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
    pub async fn take(
        st: &crate::state::AppState,
        org_slug: &str,
        username: &str,
        source: &str,
    ) -> Self {
        let key = person_key(org_slug, username);
        let own = Attempt::take(&st.store, &key, source, st.throttle).await;
        let account = if own.blocked() {
            None
        } else {
            Some(Attempt::take(&st.store, &key, ALL_SOURCES, st.account_throttle).await)
        };
        Self {
            source: own,
            account,
        }
    }

    /// See [`Attempt::count_if_abandoned`].
    pub fn count_if_abandoned(&mut self) {
        self.source.count_if_abandoned();
        if let Some(a) = &mut self.account {
            a.count_if_abandoned();
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

    /// Ends both attempts with the decision's outcome for the person. A right password
    /// clears the record of its own address only: the account-wide record, built by
    /// other addresses, is left to expire, or a botnet would get a fresh budget each
    /// time the person logs in.
    pub async fn settle(self, outcome: Option<AttemptOutcome>) -> Result<(), StoreError> {
        let account_outcome = match outcome {
            Some(AttemptOutcome::Succeeded) => None,
            o => o,
        };
        let (own, account) = (self.source.settle(outcome), async move {
            match self.account {
                Some(a) => a.settle(account_outcome).await,
                None => Ok(()),
            }
        });
        let (a, b) = tokio::join!(own, account);
        a.and(b)
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
        // Leaves the queue however the wait ends, a cancelled request included.
        struct Queued<'a>(&'a AtomicUsize);
        impl Drop for Queued<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _queued = Queued(&self.waiting);
        let permit = tokio::time::timeout(self.wait, self.sem.clone().acquire_owned()).await;
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
    async fn a_cancelled_wait_leaves_the_queue() {
        let slots = HashSlots::new(1, 1, Duration::from_secs(30));
        let _a = slots.acquire().await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(10), slots.acquire()).await;
        assert!(waiting.is_err(), "it was still waiting when dropped");
        assert_eq!(slots.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_wait_ends() {
        let slots = HashSlots::new(1, 1, Duration::from_millis(1));
        let _a = slots.acquire().await.unwrap();
        assert!(slots.acquire().await.is_none());
        assert_eq!(slots.waiting.load(Ordering::Acquire), 0);
    }
}
