//! Embedded, ordered migrations, each applied in its own transaction.
//!
//! A small runner instead of `sqlx::migrate!`: the macro needs sqlx's proc-macro stack,
//! which compiles the SQLite driver a second time for the build host; this is 30 lines.

use sqlx::{PgPool, SqlitePool};
use tessera_core::store::StoreError;

/// One migration: its version, name and SQL.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// SQLite migrations, in order.
pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "cache_version",
        sql: include_str!("../migrations/sqlite/0002_cache_version.sql"),
    },
    Migration {
        version: 3,
        name: "sso",
        sql: include_str!("../migrations/sqlite/0003_sso.sql"),
    },
    Migration {
        version: 4,
        name: "saml_sessions",
        sql: include_str!("../migrations/sqlite/0004_saml_sessions.sql"),
    },
    Migration {
        version: 5,
        name: "secret_last_use_trigger",
        sql: include_str!("../migrations/sqlite/0005_secret_last_use_trigger.sql"),
    },
    Migration {
        version: 6,
        name: "saml_sp_key",
        sql: include_str!("../migrations/sqlite/0006_saml_sp_key.sql"),
    },
    Migration {
        version: 7,
        name: "user_display_name",
        sql: include_str!("../migrations/sqlite/0007_user_display_name.sql"),
    },
    Migration {
        version: 8,
        name: "expiry_indexes",
        sql: include_str!("../migrations/sqlite/0008_expiry_indexes.sql"),
    },
    Migration {
        version: 9,
        name: "pending_source",
        sql: include_str!("../migrations/sqlite/0009_pending_source.sql"),
    },
    Migration {
        version: 10,
        name: "interactive_login",
        sql: include_str!("../migrations/sqlite/0010_interactive_login.sql"),
    },
    Migration {
        version: 11,
        name: "client_jwks",
        sql: include_str!("../migrations/sqlite/0011_client_jwks.sql"),
    },
    Migration {
        version: 12,
        name: "key_purpose",
        sql: include_str!("../migrations/sqlite/0012_key_purpose.sql"),
    },
    Migration {
        version: 13,
        name: "login_method",
        sql: include_str!("../migrations/sqlite/0013_login_method.sql"),
    },
    Migration {
        version: 14,
        name: "client_jwks_uri",
        sql: include_str!("../migrations/sqlite/0014_client_jwks_uri.sql"),
    },
    Migration {
        version: 15,
        name: "change_feed",
        sql: include_str!("../migrations/sqlite/0015_change_feed.sql"),
    },
    Migration {
        version: 16,
        name: "key_certificate",
        sql: include_str!("../migrations/sqlite/0016_key_certificate.sql"),
    },
    Migration {
        version: 17,
        name: "scim",
        sql: include_str!("../migrations/sqlite/0017_scim.sql"),
    },
    Migration {
        version: 18,
        name: "scim_tokens",
        sql: include_str!("../migrations/sqlite/0018_scim_tokens.sql"),
    },
    Migration {
        version: 19,
        name: "secret_last_use_per_batch",
        sql: include_str!("../migrations/sqlite/0019_secret_last_use_per_batch.sql"),
    },
];

/// PostgreSQL migrations, in order. They start where SQLite's stand after its 15th:
/// PostgreSQL support began with that schema.
pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "key_certificate",
        sql: include_str!("../migrations/postgres/0002_key_certificate.sql"),
    },
    Migration {
        version: 3,
        name: "scim",
        sql: include_str!("../migrations/postgres/0003_scim.sql"),
    },
    Migration {
        version: 4,
        name: "scim_tokens",
        sql: include_str!("../migrations/postgres/0004_scim_tokens.sql"),
    },
];

/// Any number of nodes may start at once on one PostgreSQL database: the first to take
/// this advisory lock migrates, the others wait for it and then find nothing to do.
const MIGRATION_LOCK: i64 = 0x7465_7373_6572_6121; // "tessera!"

/// Applies every PostgreSQL migration not yet recorded, each in its own transaction,
/// holding a session advisory lock so that nodes starting together do not race.
pub async fn run_postgres(pool: &PgPool, migrations: &[Migration]) -> Result<(), StoreError> {
    let be = |e: sqlx::Error| StoreError::Backend(format!("migration: {e}"));
    let mut conn = pool.acquire().await.map_err(be)?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(be)?;
    let out = async {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS tessera_migrations (
                version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *conn)
        .await
        .map_err(be)?;
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM tessera_migrations")
            .fetch_all(&mut *conn)
            .await
            .map_err(be)?;
        for m in migrations.iter().filter(|m| !applied.contains(&m.version)) {
            let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(be)?;
            sqlx::raw_sql(m.sql).execute(&mut *tx).await.map_err(be)?;
            sqlx::query(
                "INSERT INTO tessera_migrations (version, name, applied_at)
                 VALUES ($1, $2, extract(epoch from now())::bigint)",
            )
            .bind(m.version)
            .bind(m.name)
            .execute(&mut *tx)
            .await
            .map_err(be)?;
            tx.commit().await.map_err(be)?;
            tracing::info!(version = m.version, name = m.name, "applied migration");
        }
        Ok(())
    }
    .await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(be);
    out.and(unlocked.map(|_| ()))
}

/// Applies every migration not yet recorded in `tessera_migrations`.
pub async fn run(pool: &SqlitePool, migrations: &[Migration]) -> Result<(), StoreError> {
    let be = |e: sqlx::Error| StoreError::Backend(format!("migration: {e}"));
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS tessera_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )
    .execute(pool)
    .await
    .map_err(be)?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM tessera_migrations")
        .fetch_all(pool)
        .await
        .map_err(be)?;
    for m in migrations.iter().filter(|m| !applied.contains(&m.version)) {
        let mut tx = pool.begin().await.map_err(be)?;
        sqlx::raw_sql(m.sql).execute(&mut *tx).await.map_err(be)?;
        sqlx::query("INSERT INTO tessera_migrations (version, name, applied_at) VALUES (?, ?, strftime('%s','now'))")
            .bind(m.version)
            .bind(m.name)
            .execute(&mut *tx)
            .await
            .map_err(be)?;
        tx.commit().await.map_err(be)?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
    }
    Ok(())
}
