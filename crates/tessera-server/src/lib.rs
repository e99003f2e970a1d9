//! Tessera's HTTP server (axum): a thin layer that turns requests into plain values,
//! calls the core and the store, and maps results to responses.
//!
//! [`App::build`] opens the database, loads keys and binds the listener (port 0 in
//! tests); [`App::run_until_stopped`] serves until the shutdown signal, lets in-flight
//! requests finish and flushes the audit writer.

mod admin;
mod attempts;
mod audit_writer;
mod authorize;
pub mod bootstrap;
mod clients;
mod clock;
pub mod config;
mod console;
mod cors;
mod end_session;
mod enforcement;
mod error;
mod fence;
mod html;
mod introspect;
mod jwks_fetch;
mod keys;
mod login;
mod meta;
mod metrics;
mod request_id;
mod saml;
mod saml_metadata;
mod scim;
mod scopes;
mod serve;
mod session;
mod slo;
mod state;
mod token;
mod token_service;
mod userinfo;
mod users;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tessera_core::jwt::MasterKey;
use tessera_core::model::OrgSlug;
use tessera_core::store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use bootstrap::{Bootstrapped, bootstrap};
pub use config::{Config, Limits, MasterKeySource};

use crate::audit_writer::AuditWriter;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::state::{AppState, Shared};

/// A built server, bound and ready to serve.
pub struct App {
    listener: TcpListener,
    state: Shared,
    audit_task: JoinHandle<()>,
    reload_task: JoinHandle<()>,
    sync_task: JoinHandle<()>,
    limits: Limits,
    trusted_proxies: Arc<tessera_core::model::IpAllowList>,
    /// Credentials created because the database was empty (print them once).
    pub bootstrapped: Option<Bootstrapped>,
}

/// Reads the master key from its source, creating a key file when asked to.
pub fn load_master_key(src: &MasterKeySource) -> anyhow::Result<MasterKey> {
    match src {
        MasterKeySource::Value(v) => {
            MasterKey::from_base64(v.expose()).context("TESSERA_MASTER_KEY is not usable")
        }
        MasterKeySource::Ephemeral => Ok(MasterKey::from_base64(&MasterKey::generate_base64())?),
        MasterKeySource::File { path, generate } => {
            if !path.exists() && *generate {
                let key = MasterKey::generate_base64();
                write_private_file(path, &key)
                    .with_context(|| format!("cannot create master key file {}", path.display()))?;
                tracing::warn!(
                    path = %path.display(),
                    "no TESSERA_MASTER_KEY or TESSERA_MASTER_KEY_FILE given: generated a master key in this file. \
                     Signing keys are encrypted with it: back it up with the database, or set TESSERA_MASTER_KEY"
                );
            }
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read master key file {}", path.display()))?;
            MasterKey::from_base64(&text)
                .with_context(|| format!("master key file {} is not usable", path.display()))
        }
    }
}

fn write_private_file(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// Opens the store named by the configuration.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    tessera_store::open_with(
        &config.database_url,
        config.durability,
        config.database_pool,
    )
    .await
    .with_context(|| {
        format!(
            "cannot open database {}",
            tessera_store::redacted(&config.database_url)
        )
    })
}

impl App {
    /// Opens the database (migrating it), bootstraps an empty one, loads the signing keys
    /// and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = open_store(&config).await?;
        // Everything that can fail comes before bootstrap, so that the credentials it
        // prints once are never created by a start that then fails.
        if let MasterKeySource::File {
            path,
            generate: true,
        } = &config.master_key
            && !path.exists()
            && !store.signing_keys().await?.is_empty()
        {
            anyhow::bail!(
                "the database holds signing keys but the master key file {} is missing: restore it from your backup, or point TESSERA_MASTER_KEY / TESSERA_MASTER_KEY_FILE at it (a new key could not decrypt them)",
                path.display()
            );
        }
        let master = load_master_key(&config.master_key)?;
        let keys = Arc::new(
            KeyRing::load(store.as_ref(), master, config.signing_alg)
                .await
                .context("cannot load signing keys")?,
        );
        let signer_alg = keys.get().signer.alg();
        if signer_alg != config.signing_alg {
            tracing::info!(
                current = %signer_alg,
                signing_alg = %config.signing_alg,
                "the current signing key is {signer_alg}; signing_alg {} applies from the next rotation (POST /api/v2/signing-keys/rotate)",
                config.signing_alg
            );
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let bootstrapped = if config.bootstrap_on_empty && store.is_empty().await? {
            let slug = OrgSlug::parse("default").expect("valid slug");
            match bootstrap(store.as_ref(), &slug).await {
                Ok(b) => Some(b),
                // Another node on the same database bootstrapped it first: that node
                // printed the credentials.
                Err(tessera_core::store::StoreError::Conflict(_)) if !store.is_empty().await? => {
                    tracing::info!("another node bootstrapped the database first");
                    None
                }
                Err(e) => return Err(e).context("bootstrap"),
            }
        } else {
            None
        };
        let addr = listener.local_addr()?;
        let issuer = config
            .issuer
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"))
            .trim_end_matches('/')
            .to_string();
        let metrics = Arc::new(Metrics::default());
        let (audit, audit_task) = AuditWriter::start(store.as_ref(), metrics.clone())
            .context("cannot start the audit writer")?;
        let sync_task = {
            let store = store.clone();
            let window = config.throttle.window;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if let Err(e) = store.sync(window).await {
                        tracing::warn!(error = %e, "node-local caches not refreshed");
                    }
                }
            })
        };
        let reload_task = {
            let (keys, store) = (keys.clone(), store.clone());
            let every = Duration::from_secs(config.key_reload_seconds.max(1));
            let window = config.throttle.window;
            tokio::spawn(async move {
                // Keys are reloaded as soon as the change feed says another node rotated
                // them (checked every second), and every `key_reload_seconds` anyway.
                let mut seen = store.keys_generation();
                let mut last = tokio::time::Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let generation = store.keys_generation();
                    let due = last.elapsed() >= every;
                    if generation != seen || due {
                        if let Err(e) = keys.reload(store.as_ref()).await {
                            tracing::error!(error = %e, "signing keys not reloaded");
                        } else {
                            seen = generation;
                        }
                    }
                    if !due {
                        continue;
                    }
                    last = tokio::time::Instant::now();
                    let now = clock::now();
                    match store.prune_throttle(now - window, now).await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(records = n, "pruned stale throttle records"),
                        Err(e) => tracing::warn!(error = %e, "throttle records not pruned"),
                    }
                    use tessera_core::session::{ABSOLUTE_SECONDS, IDLE_SECONDS};
                    match store
                        .prune_sessions(now - IDLE_SECONDS, now - ABSOLUTE_SECONDS)
                        .await
                    {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(sessions = n, "pruned ended browser sessions"),
                        Err(e) => tracing::warn!(error = %e, "ended sessions not pruned"),
                    }
                    // Ended codes and grants are kept a day, so a late replay still finds
                    // them and is refused with its precise reason, then forgotten.
                    match store.prune_grants(now - 86_400).await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(records = n, "pruned ended codes and grants"),
                        Err(e) => tracing::warn!(error = %e, "ended codes and grants not pruned"),
                    }
                }
            })
        };
        let issuer_static: &'static str = Box::leak(issuer.clone().into_boxed_str());
        let state = Arc::new(AppState {
            store,
            keys,
            audit,
            metrics,
            issuer,
            issuer_static,
            throttle: config.throttle,
            account_throttle: config.account_throttle,
            hash_slots: attempts::HashSlots::new(
                config.limits.password_hashes,
                config.limits.password_queue,
                Duration::from_millis(config.limits.password_wait_ms),
            ),
            key_overlap_seconds: config.key_overlap_seconds,
            signing_alg: config.signing_alg,
            operator_org: config.operator_org.clone(),
            jwks: jwks_fetch::JwksCache::new(config.jwks_fetch.clone()),
            metadata: saml_metadata::MetadataFetcher::new(&config.saml_metadata),
        });
        Ok(Self {
            listener,
            state,
            audit_task,
            reload_task,
            sync_task,
            limits: config.limits.clone(),
            trusted_proxies: Arc::new(config.trusted_proxies.clone()),
            bootstrapped,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// Serves until `shutdown` completes; in-flight requests finish and every queued
    /// audit event is written before this returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let App {
            listener,
            state,
            audit_task,
            reload_task,
            sync_task,
            limits,
            trusted_proxies,
            ..
        } = self;
        serve::check_descriptor_limit(limits.max_connections);
        let router = router(state.clone(), &limits);
        let connection_limits = serve::ConnectionLimits {
            max_connections: limits.max_connections,
            max_connections_per_source: limits.max_connections_per_source,
            header_read_timeout: Duration::from_secs(limits.header_read_timeout_seconds.max(1)),
            shutdown_grace: Duration::from_secs(limits.request_timeout_seconds.max(1)),
            trusted_proxies,
        };
        let metadata_task = saml_metadata::spawn_refresher(state.clone());
        serve::serve(
            listener,
            router,
            connection_limits,
            state.metrics.clone(),
            shutdown,
        )
        .await;
        metadata_task.abort();
        reload_task.abort();
        sync_task.abort();
        // The router (and its clones of the writer handle) are gone: the writer drains.
        drop(state);
        audit_task.await.context("audit writer")?;
        tracing::info!("stopped; audit trail flushed");
        Ok(())
    }
}

fn router(state: Shared, limits: &Limits) -> Router {
    let request_timeout = Duration::from_secs(limits.request_timeout_seconds.max(1));
    Router::new()
        .route(
            "/oauth/token",
            post(token::token)
                .layer(DefaultBodyLimit::max(tessera_core::request::MAX_BODY))
                .fallback(meta::token_wrong_method),
        )
        .route(
            "/oauth/authorize",
            get(authorize::authorize).post(authorize::authorize_post),
        )
        .route(
            "/oauth/introspect",
            post(introspect::introspect)
                .layer(DefaultBodyLimit::max(tessera_core::request::MAX_BODY)),
        )
        .route(
            "/oauth/revoke",
            post(introspect::revoke).layer(DefaultBodyLimit::max(tessera_core::request::MAX_BODY)),
        )
        .route(
            "/oauth/userinfo",
            get(userinfo::userinfo)
                .post(userinfo::userinfo)
                .layer(DefaultBodyLimit::max(16 * 1024)),
        )
        .route(
            "/oauth/logout",
            get(end_session::end_session)
                .post(end_session::end_session)
                .layer(DefaultBodyLimit::max(16 * 1024)),
        )
        .route("/oauth/jwks", get(meta::jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(meta::oauth_metadata),
        )
        .route(
            "/.well-known/openid-configuration",
            get(meta::openid_configuration),
        )
        .route("/healthz", get(meta::healthz))
        .route("/readyz", get(meta::readyz))
        .route("/metrics", get(meta::metrics))
        .route("/docs/errors", get(meta::errors_page))
        .route("/assets/tessera.css", get(meta::stylesheet))
        .route("/assets/saml-post.js", get(meta::saml_post_script))
        .route("/saml/{org}/metadata", get(saml::metadata))
        .route("/saml/{org}/login", get(saml::login))
        .route(
            "/saml/{org}/slo",
            get(slo::slo_get)
                .post(slo::slo_post)
                .layer(DefaultBodyLimit::max(slo::SLO_BODY_LIMIT)),
        )
        .route("/saml/{org}/logout", post(slo::logout))
        .route(
            "/scim/v2/{org}/ServiceProviderConfig",
            get(scim::service_provider_config),
        )
        .route("/scim/v2/{org}/ResourceTypes", get(scim::resource_types))
        .route(
            "/scim/v2/{org}/ResourceTypes/{id}",
            get(scim::resource_type),
        )
        .route("/scim/v2/{org}/Schemas", get(scim::schemas))
        .route("/scim/v2/{org}/Schemas/{id}", get(scim::schema))
        .route("/scim/v2/{org}/.search", post(scim::not_offered))
        .route("/scim/v2/{org}/Users/.search", post(scim::not_offered))
        .route("/scim/v2/{org}/Groups/.search", post(scim::not_offered))
        .route("/scim/v2/{org}/Bulk", post(scim::not_offered))
        .route(
            "/scim/v2/{org}/{*rest}",
            axum::routing::any(scim::no_such_endpoint),
        )
        .route(
            "/scim/v2/{org}/Users",
            get(scim::list_users)
                .post(scim::create_user)
                .layer(DefaultBodyLimit::max(scim::BODY_LIMIT)),
        )
        .route(
            "/scim/v2/{org}/Users/{id}",
            get(scim::get_user)
                .put(scim::replace_user)
                .patch(scim::patch_user)
                .delete(scim::delete_user)
                .layer(DefaultBodyLimit::max(scim::BODY_LIMIT)),
        )
        .route(
            "/scim/v2/{org}/Groups",
            get(scim::list_groups)
                .post(scim::create_group)
                .layer(DefaultBodyLimit::max(scim::BODY_LIMIT)),
        )
        .route(
            "/scim/v2/{org}/Groups/{id}",
            get(scim::get_group)
                .put(scim::replace_group)
                .patch(scim::patch_group)
                .delete(scim::delete_group)
                .layer(DefaultBodyLimit::max(scim::BODY_LIMIT)),
        )
        .route(
            "/saml/{org}/acs",
            post(saml::acs).layer(DefaultBodyLimit::max(saml::ACS_BODY_LIMIT)),
        )
        .route(
            "/login/{org}",
            get(login::show)
                .post(login::submit)
                .layer(DefaultBodyLimit::max(16 * 1024)),
        )
        .route("/session", get(session::whoami))
        .route("/logout", post(session::logout))
        .merge(
            console::routes()
                .layer(DefaultBodyLimit::max(16 * 1024))
                .layer(axum::middleware::from_fn(html::no_store)),
        )
        .nest(
            "/api/v2",
            admin::routes()
                .layer(DefaultBodyLimit::max(admin::BODY_LIMIT))
                .layer(axum::middleware::from_fn(html::no_store)),
        )
        .fallback(meta::not_found)
        .layer(axum::middleware::from_fn(move |req, next| {
            serve::edge(request_timeout, req, next)
        }))
        .layer(axum::middleware::from_fn(request_id::middleware))
        .with_state(state)
}

/// The admin API's OpenAPI document (JSON), built from the code without a database.
pub fn openapi_document() -> String {
    admin::openapi::document()
}

/// Reason codes missing from docs/errors.md (empty when every code is documented).
pub fn undocumented_reasons() -> Vec<&'static str> {
    meta::undocumented_reasons()
}
