//! Tessera's storage: the core's [`Store`] trait implemented on SQLite with sqlx.
//!
//! [`open`] picks the backend from the database URL, runs the embedded migrations and
//! returns an `Arc<dyn Store>`; nothing above this crate knows which database runs.
//! PostgreSQL joins as a second module implementing the same trait.

mod hot;
mod migrate;
mod sqlite;

use std::sync::Arc;

pub use sqlite::SqliteStore;
use tessera_core::store::{Store, StoreError};

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
    let store = SqliteStore::open(url, durability).await?;
    Ok(Arc::new(store))
}
