//! Tessera's SAML 2.0 service provider side, without HTTP or SQL: validating a Response
//! ([`validate::validate`], shared by the ACS and `tessera saml check`), the checks on
//! raw input that run before any parser ([`scan`]), and reading IdP metadata
//! ([`metadata`]). The clock is a parameter; replay identifiers are returned for the
//! caller to store.

pub mod certs;
pub mod decrypt;
pub mod metadata;
pub mod scan;
pub mod slo;
pub mod sp;
pub mod sp_key;
pub mod validate;

use tessera_core::Reason;

pub use decrypt::DecryptionKey;
pub use validate::{
    Accepted, Expectation, IdpTrust, Policy, RequestCheck, validate, validate_bearer,
};

/// A refused response: its `saml_*` reason and a detail safe for the audit trail and for
/// an admin (never the assertion itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejected {
    pub reason: Reason,
    pub detail: String,
}

impl Rejected {
    /// A refusal for `reason`.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}
