//! Tessera's storage: the core's storage traits implemented on SQLite with sqlx, behind
//! a cache layer that any backend shares.
//!
//! [`open`] picks the backend from the database URL, runs the embedded migrations, puts
//! the cache layer ([`Cached`]) in front and returns an `Arc<dyn Store>`; nothing above
//! this crate knows which database runs. A backend implements the aggregates and
//! [`Backend`] (the parts of a token decision's facts, the change feed, throttle
//! records); PostgreSQL joins as a second one.

mod backend;
mod cache;
mod migrate;
mod sqlite;

use std::sync::Arc;

pub use backend::{Backend, Change, ClientParts, Feed, OrgParts, ThrottleRecord};
pub use cache::Cached;
pub use sqlite::SqliteStore;
use tessera_core::store::{Store, StoreError};

/// How far back the first read of throttle records goes, in seconds (the server's sync
/// uses the throttle window).
const SYNC_WINDOW: i64 = i64::MAX / 2;

/// How durable a commit is. `Full` survives power loss (fsync per commit group);
/// `Normal` survives a crash of Tessera but may lose the last commits on power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    #[default]
    Full,
    Normal,
}

/// Opens (and migrates) the database at `url`: `sqlite:PATH`, a plain file path, or
/// `sqlite::memory:`.
pub async fn open(url: &str, durability: Durability) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(StoreError::Backend(
            "PostgreSQL support is not built yet; use an SQLite path".into(),
        ));
    }
    let backend = SqliteStore::open(url, durability).await?;
    Ok(Arc::new(Cached::new(backend, SYNC_WINDOW).await?))
}
