//! Single Logout (SAML profiles §4.4) for Tessera's SP, over saml-rs's SLO API with every
//! message signed and verified against the configured IdP certificates only:
//!
//! - **IdP-initiated**: [`receive_logout_request`] checks the IdP's LogoutRequest (its
//!   signature, Issuer, Destination, time, single use) and names the person; the caller
//!   ends their sessions, then answers with [`logout_response`].
//! - **SP-initiated**: [`start_logout`] sends the person's LogoutRequest to the IdP's SLO
//!   service; [`finish_logout`] checks the IdP's LogoutResponse against it.

use std::time::{Duration, SystemTime};

use saml_rs::{
    BrowserInput, ClockSkew, FormField, LogoutRequest, LogoutResponse, LogoutSubject, NameId,
    PendingLogoutRequest, PendingSnapshot, Received, RelayStateParam, ReplayCache, ReplayKey,
    ReplayPolicy, RespondSlo, SamlError, SamlValidationContext, StartSlo,
};
use tessera_core::Reason;
use tessera_core::sso::SsoBinding;

use crate::sp::{Dispatch, SpSite, dispatch_of};
use crate::validate::{Policy, idp_descriptor};
use crate::{IdpTrust, Rejected};

/// A SAML message as the browser brought it.
#[derive(Debug, Clone)]
pub enum Inbound {
    /// HTTP-Redirect: the raw query string, exactly as received (its signature covers it).
    Redirect(String),
    /// HTTP-POST: the form's fields.
    Post(Vec<(String, String)>),
}

/// A LogoutRequest from the IdP that passed every check.
pub struct LogoutAsked {
    pub name_id: String,
    pub session_indexes: Vec<String>,
    pub request_id: String,
    /// Identifiers to remember until their expiry: a second use is a replay.
    pub replay_keys: Vec<(String, i64)>,
    received: Received<LogoutRequest>,
}

impl std::fmt::Debug for LogoutAsked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogoutAsked")
            .field("name_id", &self.name_id)
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

/// A started SP-initiated logout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutStart {
    pub dispatch: Dispatch,
    pub request_id: String,
}

#[derive(Default)]
struct Collect(Vec<(String, i64)>);

impl ReplayCache for Collect {
    fn check_and_store(&mut self, key: ReplayKey, expires_at: SystemTime) -> Result<(), SamlError> {
        let at = expires_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.0.push((format!("{}:{}", key.kind(), key.value()), at));
        Ok(())
    }
}

fn input<M>(i: Inbound) -> BrowserInput<M>
where
    BrowserInput<M>: FromInbound,
{
    <BrowserInput<M> as FromInbound>::from_inbound(i)
}

/// saml-rs's inputs per message type share no trait: this one bridges them.
trait FromInbound {
    fn from_inbound(i: Inbound) -> Self;
}

impl FromInbound for BrowserInput<LogoutRequest> {
    fn from_inbound(i: Inbound) -> Self {
        match i {
            Inbound::Redirect(q) => BrowserInput::<LogoutRequest>::redirect(q),
            Inbound::Post(f) => BrowserInput::<LogoutRequest>::post(fields(f)),
        }
    }
}

impl FromInbound for BrowserInput<LogoutResponse> {
    fn from_inbound(i: Inbound) -> Self {
        match i {
            Inbound::Redirect(q) => BrowserInput::<LogoutResponse>::redirect(q),
            Inbound::Post(f) => BrowserInput::<LogoutResponse>::post(fields(f)),
        }
    }
}

fn fields(f: Vec<(String, String)>) -> Vec<FormField> {
    f.into_iter().map(|(k, v)| FormField::new(k, v)).collect()
}

fn context<'a>(
    now: SystemTime,
    policy: &Policy,
    replay: &'a mut Collect,
) -> SamlValidationContext<'a> {
    let skew_ms = i64::from(policy.skew_seconds) * 1000;
    SamlValidationContext::new(now, ReplayPolicy::RequireCache(replay))
        .with_clock_skew(ClockSkew::from_millis(-skew_ms, skew_ms))
        .with_replay_retention(Duration::from_secs(24 * 3600))
}

/// A refused logout message, by what saml-rs found.
fn refused(e: SamlError) -> Rejected {
    use SamlError as E;
    let reason = match &e {
        E::SignatureMissing | E::AssertionSignatureRequired | E::MissingSigAlg => {
            Reason::SamlUnsigned
        }
        E::SignatureVerification { .. }
        | E::FailedToVerifySignature
        | E::FailedMessageSignatureVerification => Reason::SamlSignatureInvalid,
        E::NoTrustedCertificate | E::CertificateMismatch | E::UnmatchCertificate => {
            Reason::SamlCertUntrusted
        }
        E::PotentialWrappingAttack => Reason::SamlWrappingDetected,
        E::IssuerMismatch { .. } | E::UnmatchIssuer => Reason::SamlIssuerMismatch,
        E::DestinationMismatch { .. } | E::UnmatchDestination => Reason::SamlDestinationMismatch,
        E::InResponseToMismatch { .. } | E::InvalidInResponseTo => Reason::SamlInResponseToMismatch,
        E::RelayStateMismatch { .. } => Reason::SamlRelayStateInvalid,
        E::ReplayDetected { .. } => Reason::SamlReplay,
        E::TimeWindowInvalid { .. } | E::ExpiredSession => Reason::SamlExpired,
        E::StatusNotSuccess { .. } | E::FailedStatus { .. } | E::UndefinedStatus => {
            Reason::SamlStatusNotSuccess
        }
        E::AlgorithmUnsupported => Reason::SamlAlgorithmRefused,
        _ => Reason::SamlMalformed,
    };
    Rejected::new(reason, e.to_string())
}

fn not_configured(why: &str) -> Rejected {
    Rejected::new(Reason::SamlNotConfigured, why)
}

/// The checks on a logout message's raw input that run before any parser, as for a
/// Response: no DTD or processing instruction, and the algorithm allowlist (SHA-1 only
/// with `allow_sha1`), on the posted XML or on the redirect binding's `SigAlg`.
fn check_inbound(inbound: &Inbound, field: &str, policy: &Policy) -> Result<(), Rejected> {
    match inbound {
        Inbound::Post(f) => {
            if let Some((_, v)) = f.iter().find(|(k, _)| k == field) {
                let xml = crate::scan::decode(v.as_bytes())?;
                crate::scan::structure(&xml)?;
                crate::scan::algorithms(&xml, policy.allow_sha1)?;
            }
        }
        Inbound::Redirect(query) => {
            for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                if k == "SigAlg" {
                    crate::scan::check_algorithm("SignatureMethod", &v, policy.allow_sha1)?;
                }
            }
        }
    }
    Ok(())
}

/// Checks a LogoutRequest from the IdP: signed by a configured certificate (over the
/// query for HTTP-Redirect, enveloped for HTTP-POST), from the configured Issuer, to our
/// SLO URL, in time, and not seen before (the caller stores `replay_keys`).
pub fn receive_logout_request(
    site: &SpSite,
    idp: &IdpTrust,
    inbound: Inbound,
    now: SystemTime,
    policy: &Policy,
) -> Result<LogoutAsked, Rejected> {
    check_inbound(&inbound, "SAMLRequest", policy)?;
    let sp = site.service_provider(policy)?;
    let descriptor = idp_descriptor(idp)?;
    let mut replay = Collect::default();
    let received = sp
        .receive_slo(
            &descriptor,
            input(inbound),
            context(now, policy, &mut replay),
        )
        .map_err(refused)?;
    let m = received.message();
    let name_id = m
        .name_id()
        .map(|n| n.value().trim().to_string())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            Rejected::new(
                Reason::SamlNameIdMissing,
                "the LogoutRequest names nobody (no NameID)",
            )
        })?;
    Ok(LogoutAsked {
        name_id,
        session_indexes: m
            .session_indexes()
            .iter()
            .map(|s| s.as_str().to_string())
            .collect(),
        request_id: m.id().as_str().to_string(),
        replay_keys: replay.0,
        received,
    })
}

/// The signed LogoutResponse to `asked`, to the IdP's SLO service by its binding
/// (Success, or Responder when the sessions could not be ended).
pub fn logout_response(
    site: &SpSite,
    idp: &IdpTrust,
    asked: &LogoutAsked,
    ended: bool,
    policy: &Policy,
) -> Result<Dispatch, Rejected> {
    if idp.slo_url.is_none() {
        return Err(not_configured(
            "the IdP has no Single Logout URL to answer to",
        ));
    }
    let sp = site.service_provider(policy)?;
    let descriptor = idp_descriptor(idp)?;
    let mut options = match idp.slo_binding {
        SsoBinding::Redirect => RespondSlo::redirect(),
        SsoBinding::Post => RespondSlo::post(),
    };
    if !ended {
        options = options.status(saml_rs::Status::responder());
    }
    let out = sp
        .respond_slo(&descriptor, &asked.received, options)
        .map_err(|e| not_configured(&e.to_string()))?;
    dispatch_of(idp.slo_binding, &out)
}

/// Starts an SP-initiated logout of `name_id` at the IdP, signed, with `relay` (an
/// opaque handle) as RelayState.
pub fn start_logout(
    site: &SpSite,
    idp: &IdpTrust,
    name_id: &str,
    name_id_format: Option<&str>,
    relay: &str,
    policy: &Policy,
) -> Result<LogoutStart, Rejected> {
    if idp.slo_url.is_none() {
        return Err(not_configured("the IdP has no Single Logout URL"));
    }
    let err = |e: SamlError| not_configured(&e.to_string());
    let sp = site.service_provider(policy)?;
    let descriptor = idp_descriptor(idp)?;
    let format = name_id_format.map(crate::validate::name_id_format_of);
    let subject = LogoutSubject::from_name_id(NameId::new(name_id, format));
    let relay = RelayStateParam::try_from_option(Some(relay.to_string())).map_err(err)?;
    let options = match idp.slo_binding {
        SsoBinding::Redirect => StartSlo::redirect(),
        SsoBinding::Post => StartSlo::post(),
    };
    let started = sp
        .start_slo(&descriptor, subject, options.relay_state(relay))
        .map_err(err)?;
    Ok(LogoutStart {
        dispatch: dispatch_of(idp.slo_binding, &started.outbound)?,
        request_id: started.outbound.id().as_str().to_string(),
    })
}

/// Checks the IdP's LogoutResponse to our request `request_id` (sent with `relay`).
pub fn finish_logout(
    site: &SpSite,
    idp: &IdpTrust,
    request_id: &str,
    relay: &str,
    inbound: Inbound,
    now: SystemTime,
    policy: &Policy,
) -> Result<Vec<(String, i64)>, Rejected> {
    check_inbound(&inbound, "SAMLResponse", policy)?;
    let err = |e: SamlError| Rejected::new(Reason::SamlMalformed, e.to_string());
    let sp = site.service_provider(policy)?;
    let descriptor = idp_descriptor(idp)?;
    let binding = match (&inbound, idp.slo_binding) {
        (Inbound::Redirect(_), _) => saml_rs::LogoutBinding::Redirect,
        (Inbound::Post(_), _) => saml_rs::LogoutBinding::Post,
    };
    let relay = RelayStateParam::try_from_option(Some(relay.to_string())).map_err(err)?;
    let snapshot = PendingSnapshot::<LogoutRequest>::logout_request(
        request_id,
        relay,
        idp.entity_id.as_str(),
        binding,
    );
    let pending = PendingLogoutRequest::from_snapshot(snapshot).map_err(err)?;
    let mut replay = Collect::default();
    sp.finish_slo(
        &descriptor,
        &pending,
        input(inbound),
        context(now, policy, &mut replay),
    )
    .map_err(refused)?;
    Ok(replay.0)
}
