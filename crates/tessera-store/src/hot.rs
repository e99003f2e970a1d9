//! Node-local copies of what the token path reads, so a token request touches no disk
//! except its audit write.
//!
//! - [`FactsCache`]: each client's facts (client, secrets, org, service account, scope
//!   catalogue), and each org with its scope catalogue, shared by its clients' facts.
//!   Every write through this node clears it at once; writes by other nodes are seen
//!   through a version number in the database, polled by [`crate::Store::sync`] (every
//!   second by the server), and no entry lives longer than [`MAX_AGE`].
//! - [`ThrottleMirror`]: the failure records of (client id, source address) pairs. The
//!   database stays the source of truth: this node writes through, and `sync` merges
//!   what other nodes recorded since the last poll.
//!
//! Loads race with invalidations safely: a load notes the generation before reading the
//! database and its result is kept only if no invalidation happened meanwhile.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tessera_core::decision::ClientFacts;
use tessera_core::model::{Org, ScopeName, Timestamp};
use tessera_core::throttle::ThrottleState;

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

    /// Forgets everything (after any change to clients, users, scopes or orgs).
    pub fn invalidate(&self) {
        let mut clients = self.clients.0.write().expect("facts cache lock");
        let mut orgs = self.orgs.0.write().expect("facts cache lock");
        self.generation.fetch_add(1, Ordering::AcqRel);
        clients.clear();
        orgs.clear();
    }
}

type PairKey = (String, String);

/// The throttle records this node knows of.
#[derive(Default)]
pub struct ThrottleMirror {
    map: Mutex<HashMap<PairKey, ThrottleState>>,
}

impl ThrottleMirror {
    /// The record of a pair (default: no failures).
    pub fn get(&self, client_id: &str, source_ip: &str) -> ThrottleState {
        let map = self.map.lock().expect("throttle mirror lock");
        if map.is_empty() {
            return ThrottleState::default();
        }
        map.get(&(client_id.to_string(), source_ip.to_string()))
            .copied()
            .unwrap_or_default()
    }

    /// Records a pair's new state (`None` or zero failures: forget it).
    pub fn set(&self, client_id: &str, source_ip: &str, state: Option<ThrottleState>) {
        let mut map = self.map.lock().expect("throttle mirror lock");
        let key = (client_id.to_string(), source_ip.to_string());
        match state {
            Some(s) if s.failures > 0 => {
                map.insert(key, s);
            }
            _ => {
                map.remove(&key);
            }
        }
    }

    /// Forgets every record of a client (it was deleted).
    pub fn forget_client(&self, client_id: &str) {
        let mut map = self.map.lock().expect("throttle mirror lock");
        map.retain(|(c, _), _| c != client_id);
    }

    /// Merges records read from the database, and forgets local ones older than
    /// `stale_before` whose block has lifted.
    pub fn merge(
        &self,
        rows: Vec<(String, String, ThrottleState)>,
        stale_before: Timestamp,
        now: Timestamp,
    ) {
        let mut map = self.map.lock().expect("throttle mirror lock");
        for (c, ip, s) in rows {
            let e = map.entry((c, ip)).or_default();
            if s.last_failure >= e.last_failure {
                *e = s;
            }
        }
        map.retain(|_, s| {
            s.last_failure >= stale_before || s.blocked_until.is_some_and(|b| b > now)
        });
    }
}
