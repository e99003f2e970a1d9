//! The state every handler shares.

use std::sync::Arc;

use tessera_core::store::Store;
use tessera_core::throttle::ThrottlePolicy;

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
    pub throttle: ThrottlePolicy,
    /// How long a rotated-out signing key stays published, in seconds.
    pub key_overlap_seconds: i64,
    /// The algorithm of a rotation that names none.
    pub signing_alg: tessera_core::jwt::Alg,
    /// The org whose admins may change server-wide settings.
    pub operator_org: String,
}

/// What handlers extract.
pub type Shared = Arc<AppState>;
