//! `tessera`: the one binary. `serve` runs the server; `bootstrap` creates an org and its
//! first admin client offline; `admin` drives the admin API; `token` fetches a token like
//! a client would and explains a failure.
//!
//! Configuration is layered: defaults, then the TOML file given by `--config`, then
//! `TESSERA_*` environment variables and flags (clap reads both).

mod admin_cmd;
mod code_flow_cmd;
mod saml_cmd;
mod token_cmd;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use tessera_core::jwt::Alg;
use tessera_core::model::OrgSlug;
use tessera_core::secret::SecretString;
use tessera_core::throttle::ThrottlePolicy;
use tessera_server::{App, Config, MasterKeySource};
use tessera_store::Durability;

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "OAuth 2.0 authorization server whose every refusal explains itself"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Create an org with an admin service account and client, offline; prints JSON
    /// {"org", "client_id", "client_secret"}.
    Bootstrap(BootstrapArgs),
    /// Every admin API operation, as an OAuth client of a running server
    Admin(admin_cmd::AdminArgs),
    /// Fetch a token as a client would; on failure, explain why
    Token(token_cmd::TokenArgs),
    /// SAML tools: `saml check` validates a response offline, as the ACS would
    Saml(saml_cmd::SamlArgs),
}

#[derive(Parser)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "TESSERA_LISTEN")]
    listen: Option<SocketAddr>,
    /// Database: an SQLite file path or sqlite: URL [default: tessera.db]
    #[arg(long, env = "TESSERA_DATABASE_URL")]
    database: Option<String>,
    /// Issuer URL, as clients reach this server [default: http://<listen>]
    #[arg(long, env = "TESSERA_ISSUER")]
    issuer: Option<String>,
    /// TOML configuration file (flags and environment override it)
    #[arg(long, env = "TESSERA_CONFIG")]
    config: Option<PathBuf>,
    /// Audit durability: `full` survives power loss, `normal` survives a crash of Tessera
    #[arg(long, env = "TESSERA_AUDIT_DURABILITY", value_enum)]
    audit_durability: Option<DurabilityArg>,
    /// Algorithm of the first signing key and of rotations that name none: ES256, RS256
    /// or EdDSA [default: ES256]
    #[arg(long, env = "TESSERA_SIGNING_ALG", value_parser = parse_alg)]
    signing_alg: Option<Alg>,
}

fn parse_alg(s: &str) -> Result<Alg, String> {
    Alg::parse(s).map_err(|e| e.to_string())
}

#[derive(Parser)]
struct BootstrapArgs {
    /// The new org's slug
    #[arg(long)]
    org: String,
    /// Database: an SQLite file path or sqlite: URL [default: tessera.db]
    #[arg(long, env = "TESSERA_DATABASE_URL")]
    database: Option<String>,
}

#[derive(Clone, Copy, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DurabilityArg {
    Full,
    Normal,
}

/// The `--config` file. Every key is optional.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    database: Option<String>,
    issuer: Option<String>,
    master_key_file: Option<PathBuf>,
    audit_durability: Option<DurabilityArg>,
    signing_alg: Option<String>,
    key_overlap_seconds: Option<i64>,
    operator_org: Option<String>,
    throttle: Option<FileThrottle>,
    limits: Option<FileLimits>,
    /// Reverse proxies whose `X-Forwarded-For` names the caller (CIDRs or addresses).
    trusted_proxies: Option<Vec<String>>,
    jwks_fetch: Option<FileJwksFetch>,
    saml_metadata: Option<FileSamlMetadata>,
    postgres: Option<FilePostgres>,
}

/// `[saml_metadata]`: how orgs' IdP metadata URLs are fetched (docs/configuration.md).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSamlMetadata {
    trusted_hosts: Option<Vec<String>>,
    timeout_ms: Option<u64>,
    max_bytes: Option<usize>,
    refresh_seconds: Option<u64>,
}

/// `[postgres]`: the pool of each node on PostgreSQL (docs/operations.md).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePostgres {
    max_connections: Option<u32>,
    acquire_timeout_ms: Option<u64>,
    audit_batches_in_flight: Option<usize>,
}

/// `[jwks_fetch]`: how clients' `jwks_uri` are fetched (docs/configuration.md).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJwksFetch {
    trusted_hosts: Option<Vec<String>>,
    timeout_ms: Option<u64>,
    max_bytes: Option<usize>,
    cache_seconds: Option<u64>,
    failure_cache_seconds: Option<u64>,
    refetch_seconds: Option<u64>,
    max_concurrent_fetches: Option<usize>,
    max_cached_uris: Option<usize>,
}

/// `[limits]`: bounds on connections, time and password hashes (docs/operations.md).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_connections: Option<usize>,
    max_connections_per_source: Option<usize>,
    header_read_timeout_seconds: Option<u64>,
    request_timeout_seconds: Option<u64>,
    password_hashes: Option<usize>,
    password_queue: Option<usize>,
    password_wait_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileThrottle {
    free_failures: Option<u32>,
    base_delay_seconds: Option<i64>,
    max_delay_seconds: Option<i64>,
    window_seconds: Option<i64>,
}

const DEFAULT_DB: &str = "tessera.db";

// mimalloc instead of glibc malloc: the token path allocates many small, short-lived
// buffers (trace, claims, response); see docs/performance.md for what it changes.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Serve(args) => rt.block_on(serve(args)),
        Command::Bootstrap(args) => rt.block_on(bootstrap(args)),
        Command::Admin(args) => {
            let code = rt.block_on(admin_cmd::run(args))?;
            std::process::exit(code)
        }
        Command::Token(args) => {
            let code = rt.block_on(token_cmd::run(args))?;
            std::process::exit(code)
        }
        Command::Saml(args) => std::process::exit(saml_cmd::run(args)),
    }
}

/// The master key file for an SQLite database: `tessera-master.key` beside it.
fn default_key_file(database: &str) -> Option<PathBuf> {
    let path = database
        .strip_prefix("sqlite://")
        .or_else(|| database.strip_prefix("sqlite:"))
        .unwrap_or(database);
    if path.contains(":memory:") {
        return None;
    }
    let dir = Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Some(dir.join("tessera-master.key"))
}

fn resolve(args: ServeArgs) -> anyhow::Result<Config> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("config file {} is invalid", path.display()))?
        }
        None => FileConfig::default(),
    };
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("valid"));
    let database = args
        .database
        .or(file.database)
        .unwrap_or_else(|| DEFAULT_DB.into());
    let mut config = Config::new(listen, database.clone());
    config.issuer = args.issuer.or(file.issuer);
    if let Some(issuer) = &config.issuer
        && !(issuer.starts_with("https://") || issuer.starts_with("http://"))
    {
        bail!("--issuer must be an http(s) URL, got '{issuer}'");
    }
    config.durability = match args.audit_durability.or(file.audit_durability) {
        Some(DurabilityArg::Normal) => Durability::Normal,
        _ => Durability::Full,
    };
    config.signing_alg = match (args.signing_alg, file.signing_alg) {
        (Some(alg), _) => alg,
        (None, Some(name)) => parse_alg(&name).map_err(|e| anyhow::anyhow!("signing_alg: {e}"))?,
        (None, None) => Alg::Es256,
    };
    if let Some(o) = file.key_overlap_seconds {
        config.key_overlap_seconds = o;
    }
    if let Some(o) = file.operator_org {
        config.operator_org = o;
    }
    if let Some(t) = file.throttle {
        let d = ThrottlePolicy::default();
        config.throttle = ThrottlePolicy {
            free_failures: t.free_failures.unwrap_or(d.free_failures),
            base_delay: t.base_delay_seconds.unwrap_or(d.base_delay),
            max_delay: t.max_delay_seconds.unwrap_or(d.max_delay),
            window: t.window_seconds.unwrap_or(d.window),
        };
    }
    if let Some(p) = file.trusted_proxies {
        config.trusted_proxies = tessera_core::model::IpAllowList::parse(&p)
            .map_err(|e| anyhow::anyhow!("trusted_proxies: {e}"))?;
    }
    if let Some(l) = file.limits {
        let d = &mut config.limits;
        let positive = |name: &str, v: u64| {
            if v == 0 {
                bail!("[limits] {name} must be at least 1");
            }
            Ok(v)
        };
        if let Some(v) = l.max_connections {
            d.max_connections = positive("max_connections", v as u64)? as usize;
        }
        if let Some(v) = l.max_connections_per_source {
            d.max_connections_per_source =
                positive("max_connections_per_source", v as u64)? as usize;
        }
        if let Some(v) = l.header_read_timeout_seconds {
            d.header_read_timeout_seconds = positive("header_read_timeout_seconds", v)?;
        }
        if let Some(v) = l.request_timeout_seconds {
            d.request_timeout_seconds = positive("request_timeout_seconds", v)?;
        }
        if let Some(v) = l.password_hashes {
            d.password_hashes = positive("password_hashes", v as u64)? as usize;
        }
        if let Some(v) = l.password_queue {
            d.password_queue = v;
        }
        if let Some(v) = l.password_wait_ms {
            d.password_wait_ms = v;
        }
    }
    if let Some(p) = file.postgres {
        let d = &mut config.database_pool;
        if let Some(v) = p.max_connections {
            if v == 0 {
                bail!("[postgres] max_connections must be at least 1");
            }
            d.max_connections = v;
        }
        if let Some(v) = p.acquire_timeout_ms {
            if v == 0 {
                bail!("[postgres] acquire_timeout_ms must be at least 1");
            }
            d.acquire_timeout = std::time::Duration::from_millis(v);
        }
        if let Some(v) = p.audit_batches_in_flight {
            if !(1..=8).contains(&v) {
                bail!("[postgres] audit_batches_in_flight must be 1 to 8");
            }
            d.audit_batches_in_flight = v;
        }
    }
    if let Some(j) = file.jwks_fetch {
        let d = &mut config.jwks_fetch;
        let positive = |name: &str, v: u64| {
            if v == 0 {
                bail!("[jwks_fetch] {name} must be at least 1");
            }
            Ok(v)
        };
        if let Some(v) = j.trusted_hosts {
            d.trusted_hosts = v;
        }
        if let Some(v) = j.timeout_ms {
            d.timeout_ms = positive("timeout_ms", v)?;
        }
        if let Some(v) = j.max_bytes {
            d.max_bytes = positive("max_bytes", v as u64)? as usize;
        }
        if let Some(v) = j.cache_seconds {
            d.cache_seconds = v;
        }
        if let Some(v) = j.failure_cache_seconds {
            d.failure_cache_seconds = positive("failure_cache_seconds", v)?;
        }
        if let Some(v) = j.refetch_seconds {
            d.refetch_seconds = positive("refetch_seconds", v)?;
        }
        if let Some(v) = j.max_concurrent_fetches {
            d.max_concurrent_fetches = positive("max_concurrent_fetches", v as u64)? as usize;
        }
        if let Some(v) = j.max_cached_uris {
            d.max_cached_uris = positive("max_cached_uris", v as u64)? as usize;
        }
    }
    if let Some(m) = file.saml_metadata {
        let d = &mut config.saml_metadata;
        if let Some(v) = m.trusted_hosts {
            d.trusted_hosts = v;
        }
        if let Some(v) = m.timeout_ms {
            if v == 0 {
                bail!("[saml_metadata] timeout_ms must be at least 1");
            }
            d.timeout_ms = v;
        }
        if let Some(v) = m.max_bytes {
            if v == 0 {
                bail!("[saml_metadata] max_bytes must be at least 1");
            }
            d.max_bytes = v;
        }
        if let Some(v) = m.refresh_seconds {
            if v < 60 {
                bail!("[saml_metadata] refresh_seconds must be at least 60");
            }
            d.refresh_seconds = v;
        }
    }
    config.master_key = if let Ok(v) = std::env::var("TESSERA_MASTER_KEY") {
        MasterKeySource::Value(SecretString::new(v))
    } else if let Ok(p) = std::env::var("TESSERA_MASTER_KEY_FILE") {
        MasterKeySource::File {
            path: p.into(),
            generate: false,
        }
    } else if let Some(p) = file.master_key_file {
        MasterKeySource::File {
            path: p,
            generate: false,
        }
    } else if tessera_store::is_postgres(&database) {
        // Every node must decrypt the keys any node made: no key of its own per node.
        bail!(
            "on PostgreSQL every node shares the signing keys, so they share the master key: set TESSERA_MASTER_KEY or TESSERA_MASTER_KEY_FILE (or master_key_file in the config file) to the same key on every node"
        );
    } else {
        match default_key_file(&database) {
            Some(path) => MasterKeySource::File {
                path,
                generate: true,
            },
            None => MasterKeySource::Ephemeral,
        }
    };
    Ok(config)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = resolve(args)?;
    let database = tessera_store::redacted(&config.database_url);
    let app = App::build(config).await?;
    if let Some(b) = &app.bootstrapped {
        println!(
            "\nTessera created org '{}' with an admin client. The secret is shown only this once:\n\n  client_id:     {}\n  client_secret: {}\n\nGet an admin token:\n  curl -s -u '{}:<secret>' -d grant_type=client_credentials {}/oauth/token\n",
            b.org,
            b.client_id,
            b.client_secret.expose(),
            b.client_id,
            app.issuer()
        );
    }
    tracing::info!(addr = %app.local_addr(), issuer = app.issuer(), database, "tessera listening");
    app.run_until_stopped(shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

async fn bootstrap(args: BootstrapArgs) -> anyhow::Result<()> {
    let slug = OrgSlug::parse(&args.org).map_err(|e| anyhow::anyhow!("--org: {e}"))?;
    let database = args.database.unwrap_or_else(|| DEFAULT_DB.into());
    let config = Config::new("127.0.0.1:0".parse()?, database);
    let store = tessera_server::open_store(&config).await?;
    let b = tessera_server::bootstrap(store.as_ref(), &slug)
        .await
        .with_context(|| format!("cannot bootstrap org '{slug}'"))?;
    println!(
        "{}",
        serde_json::json!({
            "org": b.org,
            "client_id": b.client_id,
            "client_secret": b.client_secret.expose(),
        })
    );
    Ok(())
}
