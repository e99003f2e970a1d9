//! The server's configuration, already resolved from defaults, file, environment and flags
//! (the CLI does the layering).

use std::net::SocketAddr;
use std::path::PathBuf;

use tessera_core::secret::SecretString;
use tessera_core::throttle::ThrottlePolicy;
use tessera_store::Durability;

/// Where the master key comes from.
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    /// The key itself (standard base64), e.g. from `TESSERA_MASTER_KEY`.
    Value(SecretString),
    /// A file holding it; created with a new key when missing (`generate`).
    File { path: PathBuf, generate: bool },
    /// A new key for this process only (in-memory databases, tests).
    Ephemeral,
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `sqlite:PATH`, a file path, `sqlite::memory:`, or `postgres://…`.
    pub database_url: String,
    /// The PostgreSQL pool's bounds (unused on SQLite).
    pub database_pool: tessera_store::PgPoolSettings,
    /// The issuer URL (`iss`), without a trailing slash. `None`: `http://<listen>`.
    pub issuer: Option<String>,
    pub master_key: MasterKeySource,
    pub durability: Durability,
    pub throttle: ThrottlePolicy,
    /// The account-wide ceiling of a person's failed passwords from all addresses.
    pub account_throttle: ThrottlePolicy,
    /// Server limits on what clients, and strangers, can make it hold.
    pub limits: Limits,
    /// Reverse proxies whose `X-Forwarded-For` names the caller (empty: none; the TCP
    /// peer is the caller). See `tessera_core::forwarded`.
    pub trusted_proxies: tessera_core::model::IpAllowList,
    /// The algorithm of the first signing key and of rotations that name none.
    pub signing_alg: tessera_core::jwt::Alg,
    /// How long a rotated-out signing key stays published, in seconds.
    pub key_overlap_seconds: i64,
    /// How often each node reloads signing keys from the database, in seconds.
    pub key_reload_seconds: u64,
    /// Create org `default` and an admin client when the database is empty.
    pub bootstrap_on_empty: bool,
    /// The operator's org: only its admins may act on server-wide settings such as the
    /// signing keys shared by every org.
    pub operator_org: String,
    /// How clients' `jwks_uri` are fetched.
    pub jwks_fetch: JwksFetch,
    pub saml_metadata: SamlMetadataFetch,
}

impl Config {
    /// Defaults for `listen` and `database_url`; everything else at its default.
    pub fn new(listen: SocketAddr, database_url: impl Into<String>) -> Self {
        Self {
            listen,
            database_url: database_url.into(),
            database_pool: tessera_store::PgPoolSettings::default(),
            issuer: None,
            master_key: MasterKeySource::Ephemeral,
            durability: Durability::Full,
            throttle: ThrottlePolicy::default(),
            account_throttle: ThrottlePolicy::account_ceiling(),
            limits: Limits::default(),
            trusted_proxies: tessera_core::model::IpAllowList::default(),
            signing_alg: tessera_core::jwt::Alg::Es256,
            key_overlap_seconds: 86_400 + 3_600,
            key_reload_seconds: 30,
            bootstrap_on_empty: true,
            operator_org: "default".into(),
            jwks_fetch: JwksFetch::default(),
            saml_metadata: SamlMetadataFetch::default(),
        }
    }
}

/// Bounds on connections, time and work (docs/operations.md lists each with its default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Password hashes (argon2id, about 19 MiB each) computed at once.
    pub password_hashes: usize,
    /// Password checks waiting for a slot; beyond this they are answered busy at once.
    pub password_queue: usize,
    /// The longest a password check waits for a slot, in milliseconds.
    pub password_wait_ms: u64,
    /// Open connections at once; past it new ones are closed at once.
    pub max_connections: usize,
    /// Open connections from one host (an IPv4 address, an IPv6 /64).
    pub max_connections_per_source: usize,
    /// Seconds a request head may take to arrive whole, counted from the connection
    /// opening or the previous response (so also the idle keep-alive timeout).
    pub header_read_timeout_seconds: u64,
    /// Seconds a request may take, reading its body included.
    pub request_timeout_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            password_hashes: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            password_queue: 64,
            password_wait_ms: 2_000,
            max_connections: 1_024,
            max_connections_per_source: 256,
            header_read_timeout_seconds: 10,
            request_timeout_seconds: 30,
        }
    }
}

/// `[saml_metadata]`: fetching and refreshing orgs' IdP metadata URLs
/// (`saml_metadata.rs`), through the fence of `fence.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlMetadataFetch {
    /// Hosts that may resolve to non-public addresses and may use plain `http`.
    pub trusted_hosts: Vec<String>,
    /// The longest a fetch may take, connecting included, in milliseconds.
    pub timeout_ms: u64,
    /// The largest metadata document accepted, in bytes.
    pub max_bytes: usize,
    /// How often each registered metadata URL is fetched again, in seconds.
    pub refresh_seconds: u64,
}

impl Default for SamlMetadataFetch {
    fn default() -> Self {
        Self {
            trusted_hosts: Vec::new(),
            timeout_ms: 10_000,
            max_bytes: 1024 * 1024,
            refresh_seconds: 3600,
        }
    }
}

/// `[jwks_fetch]`: the fence around fetching clients' `jwks_uri` (`jwks_fetch.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksFetch {
    /// Host names (as written in the URL) that may resolve to private, loopback or
    /// link-local addresses and may be fetched over plain `http`: an internal key
    /// server. Empty by default: only `https` to public addresses.
    pub trusted_hosts: Vec<String>,
    /// The longest a fetch may take, connecting included, in milliseconds.
    pub timeout_ms: u64,
    /// The largest JWK Set accepted, in bytes.
    pub max_bytes: usize,
    /// How long a fetched set is used before it is fetched again, in seconds.
    pub cache_seconds: u64,
    /// How long a failed fetch is remembered (and answered from) before another try.
    pub failure_cache_seconds: u64,
    /// The least time between two fetches of one URL caused by an unknown `kid`.
    pub refetch_seconds: u64,
    /// Fetches in flight at once, over all URLs.
    pub max_concurrent_fetches: usize,
    /// URLs cached at once; past it the one asked for least recently gives way.
    pub max_cached_uris: usize,
}

impl Default for JwksFetch {
    fn default() -> Self {
        Self {
            trusted_hosts: Vec::new(),
            timeout_ms: 5_000,
            max_bytes: 64 * 1024,
            cache_seconds: 300,
            failure_cache_seconds: 30,
            refetch_seconds: 60,
            max_concurrent_fetches: 8,
            max_cached_uris: 1_024,
        }
    }
}
