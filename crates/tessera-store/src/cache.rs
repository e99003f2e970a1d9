//! The cache layer: one [`Cached`] in front of any [`Backend`], with node-local copies
//! of what the token path reads, so a token request touches no disk except its audit
//! write.
//!
//! - [`FactsCache`]: each client's facts (client, secrets, org, service account, scope
//!   catalogue), and each org with its scope catalogue, shared by its clients' facts.
//!   Invalidated per key from the backend's change feed ([`Change`]): right after a
//!   write through this node that changes facts, and by [`HotPath::sync`] (every second
//!   by the server) for what other nodes wrote. No entry lives longer than [`MAX_AGE`],
//!   whatever the feed says.
//! - [`ThrottleMirror`]: the failure records of (key, source address) pairs. The
//!   database stays the source of truth: this node writes through (an atomic increment
//!   in the backend), and `sync` merges what other nodes recorded since the last poll.
//!
//! Loads race with invalidations safely: a load notes the generation before reading the
//! database and its result is kept only if no invalidation happened meanwhile.

mod delegate;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tessera_core::decision::{ClientFacts, Facts};
use tessera_core::model::{Org, ScopeName, Timestamp};
use tessera_core::store::{BoxFuture, HotPath, StoreError, StoreResult};
use tessera_core::throttle::{AttemptOutcome, Reservation, ThrottlePolicy, ThrottleState};

use crate::backend::{Backend, Change};
use crate::unix_now;

/// The longest a cached entry is trusted without a reload.
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// The most entries of one kind cached; past it that map starts over (a bound, not an
/// LRU).
const MAX_ENTRIES: usize = 200_000;

/// An org and its scope catalogue, as the facts of each of its clients share them.
pub type OrgFacts = (Arc<Org>, Arc<[ScopeName]>);

/// Cached client facts, and the orgs they share.
#[derive(Default)]
pub struct FactsCache {
    clients: Aged<String, Arc<ClientFacts>>,
    orgs: Aged<i64, OrgFacts>,
    generation: AtomicU64,
}

/// Entries trusted for [`MAX_AGE`], kept only if loaded at the current generation.
struct Aged<K, V>(RwLock<HashMap<K, (V, Instant)>>);

impl<K, V> Default for Aged<K, V> {
    fn default() -> Self {
        Self(RwLock::default())
    }
}

impl<K: Eq + std::hash::Hash, V: Clone> Aged<K, V> {
    fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + std::hash::Hash + ?Sized,
    {
        let map = self.0.read().expect("facts cache lock");
        map.get(key)
            .filter(|(_, at)| at.elapsed() < MAX_AGE)
            .map(|(v, _)| v.clone())
    }

    /// Keeps `value` if the cache is still at `generation`: checked under this map's
    /// lock, which [`FactsCache::invalidate`] holds while it moves the generation.
    fn insert(&self, key: K, value: V, current: &AtomicU64, generation: u64) {
        let mut map = self.0.write().expect("facts cache lock");
        if current.load(Ordering::Acquire) != generation {
            return;
        }
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(key, (value, Instant::now()));
    }
}

impl FactsCache {
    /// The current generation; pass it to [`FactsCache::insert`] after a load.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The cached facts of `client_id`, if fresh.
    pub fn get(&self, client_id: &str) -> Option<Arc<ClientFacts>> {
        self.clients.get(client_id)
    }

    /// Keeps facts loaded while the cache was at `generation`.
    pub fn insert(&self, client_id: &str, facts: Arc<ClientFacts>, generation: u64) {
        self.clients
            .insert(client_id.to_string(), facts, &self.generation, generation);
    }

    /// The cached org `id` with its scope catalogue, if fresh.
    pub fn get_org(&self, id: i64) -> Option<OrgFacts> {
        self.orgs.get(&id)
    }

    /// Keeps an org loaded while the cache was at `generation`.
    pub fn insert_org(&self, id: i64, facts: OrgFacts, generation: u64) {
        self.orgs.insert(id, facts, &self.generation, generation);
    }

    /// Forgets what one change makes stale.
    pub fn apply(&self, change: &Change) {
        let mut clients = self.clients.0.write().expect("facts cache lock");
        let mut orgs = self.orgs.0.write().expect("facts cache lock");
        self.generation.fetch_add(1, Ordering::AcqRel);
        match change {
            Change::Client(id) => {
                clients.remove(id.as_str());
            }
            Change::Org(org) => {
                orgs.remove(org);
                clients.retain(|_, (f, _)| f.org.id != *org);
            }
            Change::User(user) => {
                clients.retain(|_, (f, _)| {
                    f.client.service_account_id.as_deref() != Some(user.as_str())
                });
            }
            // Not a cached fact: the layer counts it for the key reload (`keys_generation`).
            Change::Keys => {}
        }
    }

    /// Forgets everything (the feed could not say what changed).
    pub fn invalidate(&self) {
        let mut clients = self.clients.0.write().expect("facts cache lock");
        let mut orgs = self.orgs.0.write().expect("facts cache lock");
        self.generation.fetch_add(1, Ordering::AcqRel);
        clients.clear();
        orgs.clear();
    }
}

/// How many applied change positions a node remembers (for a backend's look back).
const APPLIED_KEPT: usize = 4_096;

/// The cache layer over a backend: the aggregates are the backend's (`delegate.rs`),
/// the hot path is this node's.
pub struct Cached<B> {
    backend: B,
    facts: FactsCache,
    throttles: ThrottleMirror,
    /// The change feed's position this node has applied.
    seen: AtomicI64,
    /// Moves each time the feed says the signing keys changed (or may have).
    keys_generation: AtomicU64,
    /// The positions applied lately, so a backend's look back applies each change once.
    applied: Mutex<std::collections::BTreeSet<i64>>,
    /// When `sync` last merged throttle records (seconds).
    last_sync: AtomicI64,
}

impl<B: Backend> Cached<B> {
    /// Puts the layer in front of `backend`, starting at the feed's head with the
    /// throttle records of the last `window` seconds.
    pub async fn new(backend: B, window: i64) -> StoreResult<Arc<Self>> {
        let head = backend.changes_after(i64::MAX).await?.head;
        let layer = Self {
            backend,
            facts: FactsCache::default(),
            throttles: ThrottleMirror::default(),
            seen: AtomicI64::new(head),
            keys_generation: AtomicU64::new(0),
            applied: Mutex::default(),
            last_sync: AtomicI64::new(0),
        };
        layer.merge_throttles(window).await?;
        let layer = Arc::new(layer);
        // A backend that signals changes: read the feed as soon as it does (the sync's
        // poll stays, for a signal lost while a connection was down). The task ends
        // with the layer.
        if let Some(signal) = layer.backend.change_signal() {
            let weak = Arc::downgrade(&layer);
            tokio::spawn(async move {
                loop {
                    signal.notified().await;
                    let Some(layer) = weak.upgrade() else { return };
                    if let Err(e) = layer.read_feed().await {
                        tracing::debug!(error = %e, "change feed not read on a signal; the next sync will");
                    }
                }
            });
        }
        Ok(layer)
    }

    /// Applies what the feed says changed since this node last read it.
    async fn read_feed(&self) -> StoreResult<()> {
        let feed = self
            .backend
            .changes_after(self.seen.load(Ordering::Acquire))
            .await?;
        let mut applied = self.applied.lock().expect("applied changes");
        for (seq, c) in &feed.changes {
            if applied.insert(*seq) && !feed.gap {
                self.facts.apply(c);
                if *c == Change::Keys {
                    self.keys_generation.fetch_add(1, Ordering::AcqRel);
                }
            }
        }
        if feed.gap {
            self.facts.invalidate();
            self.keys_generation.fetch_add(1, Ordering::AcqRel);
        }
        while applied.len() > APPLIED_KEPT {
            applied.pop_first();
        }
        drop(applied);
        self.seen.fetch_max(feed.head, Ordering::AcqRel);
        Ok(())
    }

    /// After a write through this node that changed facts: its change is in the feed,
    /// so read it now. If that fails, forget everything rather than serve stale facts
    /// until the next sync.
    async fn catch_up(&self) {
        if let Err(e) = self.read_feed().await {
            tracing::warn!(error = %e, "reading the change feed after a write failed; cache cleared");
            self.facts.invalidate();
        }
    }

    /// A write through this node that may change cached facts: once it succeeded, its
    /// change is in the feed, which this node reads at once.
    fn caught_up<'a, T: Send + 'a>(
        &'a self,
        write: BoxFuture<'a, StoreResult<T>>,
    ) -> BoxFuture<'a, StoreResult<T>> {
        Box::pin(async move {
            let out = write.await;
            if out.is_ok() {
                self.catch_up().await;
            }
            out
        })
    }

    async fn merge_throttles(&self, window: i64) -> StoreResult<()> {
        let now = unix_now();
        let since = self
            .last_sync
            .swap(now, Ordering::AcqRel)
            .max(now.saturating_sub(window))
            - 1;
        let rows = self.backend.throttle_records(since, now).await?;
        self.throttles
            .merge(rows, now.saturating_sub(window.min(now)), now);
        Ok(())
    }

    /// A client's facts, from the cache when fresh.
    async fn client_facts(&self, client_id: &str) -> StoreResult<Option<Arc<ClientFacts>>> {
        if let Some(f) = self.facts.get(client_id) {
            return Ok(Some(f));
        }
        let generation = self.facts.generation();
        let Some(parts) = self.backend.client_parts(client_id).await? else {
            return Ok(None);
        };
        let (org, known_scopes) = self.org_facts(parts.client.org_id).await?;
        let facts = Arc::new(ClientFacts {
            client: parts.client,
            secrets: parts.secrets,
            org,
            service_account: parts.service_account,
            known_scopes,
        });
        self.facts.insert(client_id, facts.clone(), generation);
        Ok(Some(facts))
    }

    /// An org with its scope catalogue, from the cache when it has them: a cold start
    /// over many clients of one org then reads the org once, not once per client.
    async fn org_facts(&self, org_id: i64) -> StoreResult<OrgFacts> {
        if let Some(f) = self.facts.get_org(org_id) {
            return Ok(f);
        }
        let generation = self.facts.generation();
        let (org, scopes) = self.backend.org_parts(org_id).await?.ok_or_else(|| {
            StoreError::Backend(format!("a client of org {org_id}, which is gone"))
        })?;
        let facts: OrgFacts = (Arc::new(org), scopes.into());
        self.facts.insert_org(org_id, facts.clone(), generation);
        Ok(facts)
    }
}

impl<B: Backend> HotPath for Cached<B> {
    fn token_facts<'a>(
        &'a self,
        client_id: &'a str,
        source_ip: &'a str,
    ) -> BoxFuture<'a, StoreResult<Facts>> {
        Box::pin(async move {
            let throttle = self.throttles.get(client_id, source_ip);
            Ok(Facts {
                client: self.client_facts(client_id).await?,
                throttle,
                ..Facts::default()
            })
        })
    }

    fn reserve_attempt(
        &self,
        key: &str,
        source: &str,
        policy: &ThrottlePolicy,
        now: Timestamp,
    ) -> Reservation {
        self.throttles.reserve(key, source, policy, now)
    }

    fn settle_attempt<'a>(
        &'a self,
        key: &'a str,
        source: &'a str,
        outcome: AttemptOutcome,
        policy: &ThrottlePolicy,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>> {
        // The node-local part now, before the future is polled (see the trait).
        let persist = self
            .throttles
            .settle(key, source, Some(outcome), policy, now);
        let policy = *policy;
        Box::pin(async move {
            match persist {
                Persist::Nothing => Ok(()),
                Persist::Clear => self.backend.clear_failures(key, source).await,
                Persist::Failure => {
                    let stored = self.backend.count_failure(key, source, policy, now).await?;
                    self.throttles.learn(key, source, stored);
                    Ok(())
                }
            }
        })
    }

    fn release_attempt(&self, key: &str, source: &str) {
        self.throttles.release(key, source);
    }

    fn sync(&self, window: i64) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            self.read_feed().await?;
            self.merge_throttles(window).await
        })
    }

    fn keys_generation(&self) -> u64 {
        self.keys_generation.load(Ordering::Acquire)
    }
}

/// The mirror's key of a (key, source address) pair: one string, so a reservation
/// allocates once. Neither part holds a NUL.
fn pair_key(key: &str, source: &str) -> String {
    let mut k = String::with_capacity(key.len() + source.len() + 1);
    k.push_str(key);
    k.push('\0');
    k.push_str(source);
    k
}

/// What this node knows of a pair: the committed record and its attempts in flight.
#[derive(Debug, Default, Clone, Copy)]
struct Pair {
    state: ThrottleState,
    in_flight: u32,
}

impl Pair {
    fn idle(&self) -> bool {
        self.in_flight == 0 && self.state.failures == 0
    }
}

/// The throttle records this node knows of, and the attempts in flight on this node.
/// Every operation holds one lock for its read and its write, so concurrent attempts on
/// one pair are ordered as if they came one after the other.
#[derive(Default)]
pub struct ThrottleMirror {
    map: Mutex<HashMap<String, Pair>>,
}

/// What a settled attempt leaves for the database to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persist {
    /// Count one failure.
    Failure,
    /// Delete the record (it had failures).
    Clear,
    /// Nothing.
    Nothing,
}

impl ThrottleMirror {
    /// The committed record of a pair (default: no failures).
    pub fn get(&self, key: &str, source: &str) -> ThrottleState {
        let map = self.map.lock().expect("throttle mirror lock");
        if map.is_empty() {
            return ThrottleState::default();
        }
        map.get(&pair_key(key, source))
            .map(|p| p.state)
            .unwrap_or_default()
    }

    /// Takes an attempt (see `Store::reserve_attempt`).
    pub fn reserve(
        &self,
        key: &str,
        source: &str,
        policy: &ThrottlePolicy,
        now: Timestamp,
    ) -> Reservation {
        let mut map = self.map.lock().expect("throttle mirror lock");
        let k = pair_key(key, source);
        let pair = map.get(&k).copied().unwrap_or_default();
        let judged = policy.after_failures(&pair.state, pair.in_flight, now);
        if policy.retry_after(&judged, now).is_none() {
            map.entry(k).or_default().in_flight += 1;
        }
        Reservation {
            judged,
            committed: pair.state,
        }
    }

    /// Ends an attempt on this node; says what the database must record.
    pub fn settle(
        &self,
        key: &str,
        source: &str,
        outcome: Option<AttemptOutcome>,
        policy: &ThrottlePolicy,
        now: Timestamp,
    ) -> Persist {
        let mut map = self.map.lock().expect("throttle mirror lock");
        let k = pair_key(key, source);
        let Some(pair) = map.get_mut(&k) else {
            // Forgotten meanwhile (the client was deleted): a failure still counts.
            return match outcome {
                Some(AttemptOutcome::Failed) => Persist::Failure,
                _ => Persist::Nothing,
            };
        };
        pair.in_flight = pair.in_flight.saturating_sub(1);
        let persist = match outcome {
            None => Persist::Nothing,
            Some(AttemptOutcome::Failed) => {
                pair.state = policy.after_failure(&pair.state, now);
                Persist::Failure
            }
            Some(AttemptOutcome::Succeeded) => {
                let had = pair.state.failures > 0;
                pair.state = ThrottleState::default();
                if had {
                    Persist::Clear
                } else {
                    Persist::Nothing
                }
            }
        };
        if pair.idle() {
            map.remove(&k);
        }
        persist
    }

    /// Gives back the place of an attempt that never reached its credential check.
    pub fn release(&self, key: &str, source: &str) {
        // A release changes no record: the policy and the time play no part.
        self.settle(key, source, None, &ThrottlePolicy::default(), 0);
    }

    /// Takes the database's record of a pair after an increment, if it knows more than
    /// this node (other nodes' failures).
    pub fn learn(&self, key: &str, source: &str, state: ThrottleState) {
        let mut map = self.map.lock().expect("throttle mirror lock");
        let pair = map.entry(pair_key(key, source)).or_default();
        if state.failures >= pair.state.failures || state.last_failure > pair.state.last_failure {
            pair.state = state;
        }
        if pair.idle() {
            map.remove(&pair_key(key, source));
        }
    }

    /// Forgets every record of a client (it was deleted).
    pub fn forget_client(&self, client_id: &str) {
        let mut map = self.map.lock().expect("throttle mirror lock");
        let prefix = pair_key(client_id, "");
        map.retain(|k, _| !k.starts_with(&prefix));
    }

    /// Merges records read from the database, and forgets local ones older than
    /// `stale_before` whose block has lifted and that have no attempt in flight.
    pub fn merge(
        &self,
        rows: Vec<(String, String, ThrottleState)>,
        stale_before: Timestamp,
        now: Timestamp,
    ) {
        let mut map = self.map.lock().expect("throttle mirror lock");
        for (c, ip, s) in rows {
            let e = map.entry(pair_key(&c, &ip)).or_default();
            if s.last_failure >= e.state.last_failure {
                e.state = s;
            }
        }
        map.retain(|_, p| {
            p.in_flight > 0
                || (p.state.failures > 0
                    && (p.state.last_failure >= stale_before
                        || p.state.blocked_until.is_some_and(|b| b > now)))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_gets_the_attempts_a_sequence_would() {
        let m = ThrottleMirror::default();
        let p = ThrottlePolicy::default();
        let now = 1_000_000;
        let allowed = (0..60)
            .filter(|_| {
                p.retry_after(&m.reserve("c", "ip", &p, now).judged, now)
                    .is_none()
            })
            .count();
        assert_eq!(
            allowed, 6,
            "five free failures and the one that starts the block"
        );
        for _ in 0..6 {
            m.settle("c", "ip", Some(AttemptOutcome::Failed), &p, now);
        }
        assert_eq!(m.get("c", "ip").failures, 6);
        assert!(
            p.retry_after(&m.reserve("c", "ip", &p, now).judged, now)
                .is_some()
        );
    }

    #[test]
    fn released_and_succeeded_attempts_give_their_place_back() {
        let m = ThrottleMirror::default();
        let p = ThrottlePolicy::default();
        let now = 1_000_000;
        m.reserve("c", "ip", &p, now);
        let second = m.reserve("c", "ip", &p, now);
        assert_eq!(second.judged.failures, 1, "one in flight");
        assert_eq!(second.committed.failures, 0, "none settled");
        m.release("c", "ip");
        assert_eq!(
            m.settle("c", "ip", Some(AttemptOutcome::Succeeded), &p, now),
            Persist::Nothing
        );
        assert!(m.map.lock().unwrap().is_empty(), "nothing left behind");
        m.reserve("c", "ip", &p, now);
        assert_eq!(
            m.settle("c", "ip", Some(AttemptOutcome::Failed), &p, now),
            Persist::Failure
        );
        m.reserve("c", "ip", &p, now);
        assert_eq!(
            m.settle("c", "ip", Some(AttemptOutcome::Succeeded), &p, now),
            Persist::Clear
        );
        assert_eq!(m.get("c", "ip"), ThrottleState::default());
    }

    #[test]
    fn pairs_of_one_client_are_forgotten_together() {
        let m = ThrottleMirror::default();
        let p = ThrottlePolicy::default();
        for (c, ip) in [("c1", "a"), ("c1", "b"), ("c10", "a")] {
            m.reserve(c, ip, &p, 5);
            m.settle(c, ip, Some(AttemptOutcome::Failed), &p, 5);
        }
        m.forget_client("c1");
        assert_eq!(m.get("c1", "a").failures, 0);
        assert_eq!(m.get("c1", "b").failures, 0);
        assert_eq!(m.get("c10", "a").failures, 1);
    }
}
