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
mod cols;
mod migrate;
mod postgres;
mod rows;
mod sqlite;
pub mod testing;

use std::sync::Arc;

pub use backend::{Backend, Change, ClientParts, Feed, OrgParts, ThrottleRecord};
pub use cache::Cached;
pub use postgres::{PgPoolSettings, PgStore};
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

/// Opens (and migrates) the database at `url`: `postgres://…` (or `postgresql://…`) for
/// PostgreSQL, otherwise SQLite (`sqlite:PATH`, a plain file path, or
/// `sqlite::memory:`); the cache layer goes in front either way.
pub async fn open(url: &str, durability: Durability) -> Result<Arc<dyn Store>, StoreError> {
    open_with(url, durability, PgPoolSettings::default()).await
}

/// [`open`] with the PostgreSQL pool's settings.
pub async fn open_with(
    url: &str,
    durability: Durability,
    pool: PgPoolSettings,
) -> Result<Arc<dyn Store>, StoreError> {
    if is_postgres(url) {
        let backend = PgStore::open(url, pool).await?;
        return Ok(Cached::new(backend, SYNC_WINDOW).await?);
    }
    let backend = SqliteStore::open(url, durability).await?;
    Ok(Cached::new(backend, SYNC_WINDOW).await?)
}

/// Now, in Unix seconds.
fn unix_now() -> tessera_core::model::Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Whether a database URL names PostgreSQL.
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The URL with any password replaced by `***`: for logs and error messages.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{path}")
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_a_log_line() {
        assert_eq!(
            redacted("postgres://tessera:s3cr%40t@db.internal:5432/tessera?sslmode=require"),
            "postgres://tessera:***@db.internal:5432/tessera?sslmode=require"
        );
        assert_eq!(
            redacted("postgres://root@127.0.0.1/t"),
            "postgres://root@127.0.0.1/t"
        );
        assert_eq!(redacted("tessera.db"), "tessera.db");
        assert!(is_postgres("postgresql://x/y") && !is_postgres("sqlite:t.db"));
    }
}
