//! The state every handler shares.

use std::sync::Arc;

use tessera_core::store::Store;
use tessera_core::throttle::ThrottlePolicy;

use crate::attempts::HashSlots;
use crate::audit_writer::AuditWriter;
use crate::keys::KeyRing;
use crate::metrics::Metrics;

/// Shared application state.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub keys: Arc<KeyRing>,
    pub audit: AuditWriter,
    pub metrics: Arc<Metrics>,
    /// The issuer URL, without a trailing slash.
    pub issuer: String,
    /// The same, for the decision options (`Copy`): leaked once per server built.
    pub issuer_static: &'static str,
    pub throttle: ThrottlePolicy,
    /// The account-wide ceiling of a person's failed passwords.
    pub account_throttle: ThrottlePolicy,
    /// The bound on password hashes in flight.
    pub hash_slots: HashSlots,
    /// How long a rotated-out signing key stays published, in seconds.
    pub key_overlap_seconds: i64,
    /// The algorithm of a rotation that names none.
    pub signing_alg: tessera_core::jwt::Alg,
    /// The org whose admins may change server-wide settings.
    pub operator_org: String,
    /// Clients' JWK Sets fetched from their `jwks_uri`.
    pub jwks: crate::jwks_fetch::JwksCache,
    /// Fetches orgs' IdP metadata URLs (through the fence).
    pub metadata: crate::saml_metadata::MetadataFetcher,
}

/// What handlers extract.
pub type Shared = Arc<AppState>;

impl AppState {
    /// The decision options of a real (not dry-run) decision on this server.
    pub fn decide_options(&self) -> tessera_core::decision::DecideOptions {
        tessera_core::decision::DecideOptions {
            throttle: self.throttle,
            account_throttle: self.account_throttle,
            issuer: self.issuer_static,
            ..Default::default()
        }
    }
}
