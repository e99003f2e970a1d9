//! What a database gives the cache layer (`cache.rs`) besides the aggregates: the parts
//! of a token decision's facts, the change feed, and throttle records as stored. Each
//! backend implements [`Backend`]; the layer in front of it is the same for all.

use tessera_core::model::{Client, Org, ScopeName, StoredSecret, Timestamp, User};
use tessera_core::store::{
    AuditStore, BoxFuture, ClientStore, GrantStore, KeyStore, OrgStore, ScimStore, SsoStore,
    StoreResult, ThrottleStore, UserStore,
};
use tessera_core::throttle::{ThrottlePolicy, ThrottleState};

/// What a write changed, for every node's cached token facts. A backend records it in
/// the same write, so a node that reads the feed misses nothing that committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The org itself or its scope catalogue: every client of the org.
    Org(i64),
    /// A client or its secrets.
    Client(String),
    /// A user: the clients that run as them, if a service account.
    User(String),
    /// The signing keys (a rotation): every node reloads them.
    Keys,
}

impl Change {
    /// The stored spelling: kind and key.
    pub fn to_row(&self) -> (&'static str, String) {
        match self {
            Change::Org(id) => ("org", id.to_string()),
            Change::Client(id) => ("client", id.clone()),
            Change::User(id) => ("user", id.clone()),
            Change::Keys => ("keys", String::new()),
        }
    }

    /// Back from the stored spelling; `None` for a kind this version does not know
    /// (a newer node's), which the reader treats as "anything may have changed".
    pub fn from_row(kind: &str, key: String) -> Option<Change> {
        match kind {
            "org" => key.parse().ok().map(Change::Org),
            "client" => Some(Change::Client(key)),
            "user" => Some(Change::User(key)),
            "keys" => Some(Change::Keys),
            _ => None,
        }
    }
}

/// The change feed read from one point on.
#[derive(Debug, Default)]
pub struct Feed {
    /// The feed's position after these changes: pass it to the next read.
    pub head: i64,
    /// What changed with its position, oldest first. A backend that looks back may
    /// return a position the reader has applied already; the reader skips it.
    pub changes: Vec<(i64, Change)>,
    /// Some changes after the point asked for are no longer kept (or could not be
    /// read): the reader must assume that anything changed.
    pub gap: bool,
}

/// A client with what hangs off it, as stored, without its org (which the layer caches
/// once for all the org's clients).
#[derive(Debug, Clone)]
pub struct ClientParts {
    pub client: Client,
    pub secrets: Vec<StoredSecret>,
    pub service_account: Option<User>,
}

/// An org with the names in its scope catalogue.
pub type OrgParts = (Org, Vec<ScopeName>);

/// A throttle record as stored: (key, source address, state).
pub type ThrottleRecord = (String, String, ThrottleState);

/// A database under the cache layer: the aggregates, and what the layer reads and
/// writes to keep its node-local copies right.
pub trait Backend:
    OrgStore
    + ClientStore
    + UserStore
    + ScimStore
    + SsoStore
    + ThrottleStore
    + AuditStore
    + KeyStore
    + GrantStore
    + Send
    + Sync
    + 'static
{
    /// A client with its secrets and service account, read now.
    fn client_parts<'a>(
        &'a self,
        client_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<ClientParts>>>;

    /// An org with the names in its scope catalogue, read now.
    fn org_parts(&self, org_id: i64) -> BoxFuture<'_, StoreResult<Option<OrgParts>>>;

    /// The changes after position `after` (every one that committed after the change at
    /// `after` was read; a backend whose positions can commit out of order returns some
    /// again). `after = i64::MAX` asks for the current head and no change.
    fn changes_after(&self, after: i64) -> BoxFuture<'_, StoreResult<Feed>>;

    /// Throttle records with a failure at or after `since`, or blocked past `now`.
    fn throttle_records(
        &self,
        since: Timestamp,
        now: Timestamp,
    ) -> BoxFuture<'_, StoreResult<Vec<ThrottleRecord>>>;

    /// Counts one failure of (`key`, `source`) by an atomic increment of the stored
    /// record, so the failures of several nodes add up; the block follows `policy`
    /// from the new count. Returns the record as stored now.
    fn count_failure<'a>(
        &'a self,
        key: &'a str,
        source: &'a str,
        policy: ThrottlePolicy,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<ThrottleState>>;

    /// Deletes the record of (`key`, `source`) (a success after failures).
    fn clear_failures<'a>(
        &'a self,
        key: &'a str,
        source: &'a str,
    ) -> BoxFuture<'a, StoreResult<()>>;

    /// Woken when another node may have written to the change feed, for a backend that
    /// can tell (PostgreSQL's LISTEN/NOTIFY): the layer then reads the feed at once
    /// instead of at its next sync. `None`: the sync's poll is all there is.
    fn change_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
}
