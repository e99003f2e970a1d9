//! Validating one SAML Response: the ACS and `tessera saml check` both call [`validate`].
//!
//! Order: size and decoding, DTD and processing-instruction refusal, KeyInfo certificates
//! written as PEM text unwrapped, the algorithm allowlist (SHA-1 with its own reason) —
//! all on the raw text — then saml-rs with a policy
//! whose every field is set here (signature from a configured certificate only, over the
//! exact element read; Destination, Recipient, Audience, Issuer, time with skew,
//! InResponseTo, Status; wrapping and duplicate IDs refused), then our own checks on what
//! it verified: the Response's Issuer, the verified signature algorithms again, an
//! AuthnStatement and a non-empty NameID. Identity (NameID, attributes) comes only from
//! the verified assertion.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use saml_rs::metadata::generate::{Endpoint, IdpMetadataConfig, try_generate_idp_metadata};
use saml_rs::{
    AcsEndpoint, AssertionSignaturePolicy, AudienceValidationPolicy, AuthnRequest,
    AuthnRequestSigningPolicy, BrowserInput, CertificatePem, ClockSkew, Credentials, EntityId,
    FormField, IdpDescriptor, LogoutPolicy, MetadataTrustPolicy, NameIdCreationPolicy,
    NameIdFormat, Pending, PendingSnapshot, PrivateKeyPem, RelayStateParam, ReplayCache, ReplayKey,
    ReplayPolicy, ResponseSignaturePolicy, Saml, SamlError, SamlValidationContext, SpConfig,
    SpValidationPolicy, SsoResponse, XmlPolicy, XmlSignatureProfile,
};
use tessera_core::Reason;

use crate::decrypt::{self, DecryptionKey};
use crate::sp_key::SpSigningKey;
use crate::{Rejected, scan};

/// The IdP a response must come from.
#[derive(Debug, Clone, Default)]
pub struct IdpTrust {
    /// The Issuer its responses carry.
    pub entity_id: String,
    /// Its signing certificates (PEM or bare base64); any one may sign.
    pub certificates: Vec<String>,
    /// Where AuthnRequests go; not needed to validate a response.
    pub sso_url: Option<String>,
    /// The binding AuthnRequests go by.
    pub sso_binding: tessera_core::sso::SsoBinding,
    /// Its Single Logout service (LogoutRequests and LogoutResponses), if it has one.
    pub slo_url: Option<String>,
    pub slo_binding: tessera_core::sso::SsoBinding,
}

/// What the SP expects of a response.
#[derive(Debug, Clone)]
pub struct Expectation {
    /// Our entity id: the Audience.
    pub sp_entity_id: String,
    /// Our ACS URL: the Destination and the bearer Recipient.
    pub acs_url: String,
    pub in_response_to: RequestCheck,
    /// The SP's decryption keys, newest first (none: encrypted assertions are refused).
    pub decryption_keys: Vec<DecryptionKey>,
    /// The clock.
    pub now: SystemTime,
    pub policy: Policy,
}

/// How `InResponseTo` is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestCheck {
    /// The response must answer this AuthnRequest.
    Request(String),
    /// IdP-initiated: the response must not claim to answer any request.
    Unsolicited,
    /// Offline checks without a request id: whatever request the response names is
    /// taken as the expected one (InResponseTo is not checked).
    NotChecked,
}

/// Validation choices beyond the always-on checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Accept SHA-1 signatures and digests (legacy IdPs only).
    pub allow_sha1: bool,
    /// Accept IdP certificates with 1024-bit RSA keys (legacy IdPs only).
    pub allow_rsa_1024: bool,
    /// Allowed clock difference with the IdP.
    pub skew_seconds: u32,
    /// The Assertion itself must be signed (a Response signature is not enough).
    pub require_signed_assertion: bool,
    /// The Response must be signed.
    pub require_signed_response: bool,
    /// Some configured certificate must be inside its validity period at `now`.
    pub check_cert_validity: bool,
    /// The assertion must say how the person authenticated (an AuthnStatement): the Web
    /// Browser SSO profile requires it; the bearer grant (RFC 7522 §3) does not.
    pub require_authn_statement: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            allow_sha1: false,
            allow_rsa_1024: false,
            skew_seconds: tessera_core::sso::DEFAULT_CLOCK_SKEW_SECONDS,
            require_signed_assertion: false,
            require_signed_response: false,
            check_cert_validity: false,
            require_authn_statement: true,
        }
    }
}

/// A response that passed every check: who logged in, and what must never be accepted
/// again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub name_id: String,
    pub name_id_format: Option<String>,
    /// Attribute name → values, from the verified assertion only.
    pub attributes: BTreeMap<String, Vec<String>>,
    /// The assertion's Issuer.
    pub issuer: String,
    pub response_id: String,
    pub assertion_id: String,
    pub in_response_to: Option<String>,
    /// Identifiers to remember until their expiry so a replay is refused
    /// (`kind:value`, expiry as Unix seconds).
    pub replay_keys: Vec<(String, i64)>,
    /// The algorithms of the verified signatures.
    pub signature_algorithms: Vec<String>,
    /// The content encryption of an encrypted assertion (None: it was not encrypted).
    pub encryption_algorithm: Option<String>,
}

/// Validates one response (raw XML, base64, or deflate+base64) from `idp`.
pub fn validate(input: &[u8], idp: &IdpTrust, expect: &Expectation) -> Result<Accepted, Rejected> {
    let xml = scan::decode(input)?;
    scan::structure(&xml)?;
    let xml = scan::unwrap_pem_certificates(xml);
    scan::algorithms(&xml, expect.policy.allow_sha1)?;
    check_certificates(idp, expect)?;
    // An encrypted assertion is decrypted first, then takes the same path as a plain one.
    let (xml, opened_idp, attested, encryption_algorithm) = if decrypt::is_encrypted(&xml) {
        let o = decrypt::open(&xml, idp, &expect.decryption_keys, xml_limits())?;
        scan::algorithms(&o.xml, expect.policy.allow_sha1)?;
        let mut trusted = idp.clone();
        if let Some(a) = &o.attested {
            trusted.certificates.push(a.certificate.clone());
        }
        (o.xml, Some(trusted), o.attested, Some(o.content_algorithm))
    } else {
        (xml, None, None, None)
    };
    let idp = opened_idp.as_ref().unwrap_or(idp);
    if scan::has_element(&xml, "EncryptedID") {
        return Err(Rejected::new(
            Reason::SamlNameIdMissing,
            "the Subject names the person with an EncryptedID; Tessera reads a plain NameID only (encrypt the whole assertion instead: that hides the NameID too)",
        ));
    }

    let skew_ms = i64::from(expect.policy.skew_seconds) * 1000;
    let sp = service_provider(&expect.sp_entity_id, &expect.acs_url, &expect.policy, None)?;
    let descriptor = idp_descriptor(idp)?;
    let mut replay = CollectReplay::default();
    let context = SamlValidationContext::new(expect.now, ReplayPolicy::RequireCache(&mut replay))
        .with_clock_skew(ClockSkew::from_millis(-skew_ms, skew_ms))
        .with_replay_retention(Duration::from_secs(24 * 3600));
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &xml);
    let form = BrowserInput::<SsoResponse>::post(vec![FormField::new("SAMLResponse", encoded)]);
    let request = match &expect.in_response_to {
        RequestCheck::Request(id) => Some(id.clone()),
        RequestCheck::Unsolicited => None,
        RequestCheck::NotChecked => scan::in_response_to(&xml),
    };
    let outcome = match request {
        Some(id) => {
            let snapshot = PendingSnapshot::<AuthnRequest>::authn_request(
                id.as_str(),
                RelayStateParam::absent(),
                idp.entity_id.as_str(),
                "post",
                expect.acs_url.as_str(),
                "post",
            );
            let pending = Pending::<AuthnRequest>::from_snapshot(snapshot)
                .map_err(|e| Rejected::new(Reason::SamlInResponseToMismatch, e.to_string()))?;
            sp.finish_sso(&descriptor, &pending, form, context)
        }
        None => sp.accept_unsolicited_sso(&descriptor, form, context),
    };
    let session = outcome.map_err(|e| rejected_by_saml_rs(e, &xml, expect))?;

    // Our own checks on what was verified.
    let mut algorithms = Vec::new();
    if let Some(a) = &attested {
        // The IdP's Response signature, verified before decryption; the signature that
        // stands for it now is ours and is not listed.
        scan::check_algorithm(
            "SignatureMethod",
            &a.idp_algorithm,
            expect.policy.allow_sha1,
        )?;
        algorithms.push(a.idp_algorithm.clone());
    }
    for s in session.verified_xml_signatures() {
        use saml_rs::VerifiedXmlSignatureCoverage as C;
        if attested.is_some()
            && matches!(
                s.coverage(),
                C::ResponseRoot | C::ResponseRootAndConsumedAssertion
            )
        {
            continue;
        }
        scan::check_algorithm(
            "SignatureMethod",
            s.algorithm_uri(),
            expect.policy.allow_sha1,
        )?;
        algorithms.push(s.algorithm_uri().to_string());
    }
    if algorithms.is_empty() {
        return Err(Rejected::new(
            Reason::SamlUnsigned,
            "no verified XML signature covers the assertion",
        ));
    }
    if let Some(issuer) = scan::response_issuer(&xml)
        && issuer != idp.entity_id
    {
        return Err(Rejected::new(
            Reason::SamlIssuerMismatch,
            format!(
                "the Response's Issuer is '{}', not the configured IdP '{}'",
                clip(&issuer),
                clip(&idp.entity_id)
            ),
        ));
    }
    // Web Browser SSO: the assertion must say how and when the person authenticated
    // (SAML profiles §4.1.4.2); an assertion without it only describes someone.
    if expect.policy.require_authn_statement && session.authn_sessions().is_empty() {
        return Err(Rejected::new(
            Reason::SamlAuthnStatementMissing,
            "the assertion has no AuthnStatement: it does not say that the person authenticated",
        ));
    }
    let name_id = session.name_id().value().trim().to_string();
    if name_id.is_empty() {
        return Err(Rejected::new(
            Reason::SamlNameIdMissing,
            "the assertion's NameID is empty",
        ));
    }
    let mut attributes = BTreeMap::new();
    for a in session.attributes().as_slice() {
        let values: Vec<String> = a.values().iter().map(|v| v.as_str().to_string()).collect();
        attributes
            .entry(a.name().to_string())
            .or_insert_with(Vec::new)
            .extend(values);
    }
    Ok(Accepted {
        name_id,
        name_id_format: session.name_id().format().map(|f| f.as_uri().to_string()),
        attributes,
        issuer: session.issuer().as_str().to_string(),
        response_id: session.response_id().as_str().to_string(),
        assertion_id: session.assertion_id().as_str().to_string(),
        in_response_to: session.in_response_to().map(|m| m.as_str().to_string()),
        replay_keys: replay.keys,
        signature_algorithms: algorithms,
        encryption_algorithm,
    })
}

/// The configured certificates must all be usable (a configuration error otherwise),
/// and with `check_cert_validity`, one must be valid at `now`.
pub fn check_certificates(idp: &IdpTrust, expect: &Expectation) -> Result<(), Rejected> {
    if idp.certificates.is_empty() {
        return Err(Rejected::new(
            Reason::SamlNotConfigured,
            "the IdP has no signing certificate: no response can be trusted",
        ));
    }
    let mut infos = Vec::new();
    for (i, c) in idp.certificates.iter().enumerate() {
        let info = crate::certs::inspect(c, expect.policy.allow_rsa_1024).map_err(|why| {
            Rejected::new(
                Reason::SamlNotConfigured,
                format!("IdP certificate {}: {why}", i + 1),
            )
        })?;
        infos.push(info);
    }
    if expect.policy.check_cert_validity {
        let now = unix(expect.now);
        if !infos
            .iter()
            .any(|c| c.not_before <= now && now < c.not_after)
        {
            let spans: Vec<String> = infos
                .iter()
                .map(|c| {
                    format!(
                        "{} to {}",
                        tessera_core::text::rfc3339(c.not_before),
                        tessera_core::text::rfc3339(c.not_after)
                    )
                })
                .collect();
            return Err(Rejected::new(
                Reason::SamlCertExpired,
                format!(
                    "no configured IdP certificate is valid at {} (valid: {})",
                    tessera_core::text::rfc3339(now),
                    spans.join("; ")
                ),
            ));
        }
    }
    Ok(())
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// What only outbound messages and the metadata need.
pub(crate) struct Local<'a> {
    /// Signs AuthnRequests; advertised with `use="signing"`.
    pub signing_key: &'a SpSigningKey,
    /// The NameID format asked for.
    pub name_id_format: Option<&'a str>,
    /// Advertised with `use="encryption"`.
    pub encryption_certificate: Option<&'a str>,
    /// Our Single Logout service, both bindings.
    pub slo_url: Option<&'a str>,
}

/// Our SP, with every validation-policy field chosen here (never a preset: saml-rs's
/// defaults skip the audience check and change between releases). `local` adds what only
/// outbound messages and the metadata need.
pub(crate) fn service_provider(
    sp_entity_id: &str,
    acs_url: &str,
    p: &Policy,
    local: Option<Local<'_>>,
) -> Result<Saml<saml_rs::Sp>, Rejected> {
    let skew_ms = i64::from(p.skew_seconds) * 1000;
    let config_error = |e: SamlError| Rejected::new(Reason::SamlNotConfigured, e.to_string());
    let policy = SpValidationPolicy {
        assertions: if p.require_signed_assertion {
            AssertionSignaturePolicy::RequireSigned
        } else {
            // A Response signature may cover the assertion; that one assertion is then
            // what is read. An unsigned response is still refused (checked above and by
            // saml-rs: some trusted signature must cover the consumed assertion).
            AssertionSignaturePolicy::AllowUnsignedForCompatibility
        },
        responses: if p.require_signed_response {
            ResponseSignaturePolicy::RequireSigned
        } else {
            ResponseSignaturePolicy::RequireForEncryptedCbc
        },
        // Our own allowlist (scan.rs) runs before and after; this one only restricts
        // what the provider can verify at all.
        xml_signatures: XmlSignatureProfile::AllowProviderSupportedForCompatibility,
        authn_requests: if local.is_some() {
            AuthnRequestSigningPolicy::Sign
        } else {
            AuthnRequestSigningPolicy::DoNotSignForCompatibility
        },
        audience: AudienceValidationPolicy::Validate,
        name_id_creation: NameIdCreationPolicy::DoNotAllowCreate,
        logout: LogoutPolicy::recommended(),
    };
    let xml_policy = XmlPolicy {
        clock_drifts: (-skew_ms, skew_ms),
        redirect_inflate_max_bytes: 1024 * 1024,
        limits: xml_limits(),
        encryption: Default::default(),
    };
    let mut config = SpConfig::builder(EntityId::try_new(sp_entity_id).map_err(config_error)?)
        .acs_endpoint(AcsEndpoint::post(acs_url).map_err(config_error)?)
        .validation(policy)
        .xml(xml_policy);
    if let Some(local) = local {
        config = config.credentials(Credentials {
            signing_key: Some(PrivateKeyPem::new(local.signing_key.key_pem.clone())),
            signing_certificate: Some(CertificatePem::new(local.signing_key.cert_pem.clone())),
            encryption_certificate: local
                .encryption_certificate
                .map(|c| CertificatePem::new(c.to_string())),
            ..Credentials::default()
        });
        if let Some(url) = local.slo_url {
            config = config
                .slo_endpoint(saml_rs::SloEndpoint::redirect(url).map_err(config_error)?)
                .slo_endpoint(saml_rs::SloEndpoint::post(url).map_err(config_error)?);
        }
        if let Some(format) = local.name_id_format {
            config = config.name_id_format(name_id_format_of(format));
        }
    }
    let config = config.build().map_err(config_error)?;
    Saml::sp(config).map_err(config_error)
}

/// The parser's bounds, for every parse of a message from outside.
pub(crate) fn xml_limits() -> saml_rs::xml::XmlLimits {
    saml_rs::xml::XmlLimits {
        max_bytes: 1024 * 1024,
        max_depth: 64,
        max_nodes: 10_000,
        max_attributes_per_element: 64,
        max_attribute_value_bytes: 16 * 1024,
        max_text_bytes: 64 * 1024,
    }
}

/// saml-rs's name for a NameID format URI.
pub(crate) fn name_id_format_of(uri: &str) -> NameIdFormat {
    [
        NameIdFormat::EmailAddress,
        NameIdFormat::Persistent,
        NameIdFormat::Transient,
        NameIdFormat::Entity,
        NameIdFormat::Unspecified,
        NameIdFormat::Kerberos,
        NameIdFormat::WindowsDomainQualifiedName,
        NameIdFormat::X509SubjectName,
    ]
    .into_iter()
    .find(|f| f.as_uri() == uri)
    .unwrap_or_else(|| NameIdFormat::Custom(uri.to_string()))
}

/// The IdP as saml-rs wants it: metadata we generate from the configured fields, so the
/// only keys it trusts are the configured certificates.
pub fn idp_descriptor(idp: &IdpTrust) -> Result<IdpDescriptor, Rejected> {
    let config_error = |e: SamlError| {
        Rejected::new(
            Reason::SamlNotConfigured,
            format!("the IdP configuration is unusable: {e}"),
        )
    };
    let certs: Vec<String> = idp
        .certificates
        .iter()
        .map(|c| crate::certs::verifiable(c))
        .collect();
    let metadata = try_generate_idp_metadata(&IdpMetadataConfig {
        entity_id: idp.entity_id.clone(),
        signing_certs: certs,
        single_sign_on_service: vec![Endpoint::new(
            match idp.sso_binding {
                tessera_core::sso::SsoBinding::Redirect => saml_rs::constants::Binding::Redirect,
                tessera_core::sso::SsoBinding::Post => saml_rs::constants::Binding::Post,
            },
            // Validation never sends anything: any URL will do when none is configured.
            idp.sso_url.as_deref().unwrap_or("https://idp.invalid/sso"),
        )],
        single_logout_service: idp
            .slo_url
            .iter()
            .map(|url| {
                Endpoint::new(
                    match idp.slo_binding {
                        tessera_core::sso::SsoBinding::Redirect => {
                            saml_rs::constants::Binding::Redirect
                        }
                        tessera_core::sso::SsoBinding::Post => saml_rs::constants::Binding::Post,
                    },
                    url.as_str(),
                )
            })
            .collect(),
        // Tessera signs every AuthnRequest; IdPs that do not ask for it ignore it.
        want_authn_requests_signed: true,
        ..IdpMetadataConfig::default()
    })
    .map_err(config_error)?;
    IdpDescriptor::from_metadata_xml_for(
        EntityId::try_new(idp.entity_id.as_str()).map_err(config_error)?,
        &metadata,
        MetadataTrustPolicy::UnsignedForCompatibility,
    )
    .map_err(config_error)
}

/// Records the identifiers saml-rs would have us remember; the caller stores them in the
/// database (shared by every node), where a second use is refused.
#[derive(Default)]
struct CollectReplay {
    keys: Vec<(String, i64)>,
}

impl ReplayCache for CollectReplay {
    fn check_and_store(&mut self, key: ReplayKey, expires_at: SystemTime) -> Result<(), SamlError> {
        let at = expires_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.keys
            .push((format!("{}:{}", key.kind(), key.value()), at));
        Ok(())
    }
}

/// Maps a saml-rs refusal to our reason, with a detail that names what differed.
fn rejected_by_saml_rs(e: SamlError, xml: &str, expect: &Expectation) -> Rejected {
    use SamlError as E;
    let detail = e.to_string();
    let reason = match &e {
        E::Base64(_) | E::Deflate(_) | E::Xml(_) => Reason::SamlMalformed,
        E::IssuerMismatch { .. } | E::UnmatchIssuer => Reason::SamlIssuerMismatch,
        E::DestinationMismatch { .. } | E::UnmatchDestination => Reason::SamlDestinationMismatch,
        E::InResponseToMismatch { .. } | E::InvalidInResponseTo => {
            if matches!(expect.in_response_to, RequestCheck::Unsolicited) {
                Reason::SamlUnsolicited
            } else {
                Reason::SamlInResponseToMismatch
            }
        }
        E::RelayStateMismatch { .. } => Reason::SamlRelayStateInvalid,
        E::AudienceMismatch { .. } | E::UnmatchAudience => Reason::SamlAudienceMismatch,
        E::UnrecognizedCondition { .. } => Reason::SamlConditionUnrecognized,
        E::PrincipalMismatch => Reason::SamlPrincipalMismatch,
        E::StatusNotSuccess { .. } | E::FailedStatus { .. } | E::UndefinedStatus => {
            Reason::SamlStatusNotSuccess
        }
        E::TimeWindowInvalid { .. } | E::ExpiredSession => time_reason(xml, expect),
        E::SubjectConfirmationInvalid { reason } => {
            use saml_rs::error::SubjectConfirmationReason as R;
            match reason {
                R::RecipientMismatch => Reason::SamlRecipientMismatch,
                R::TimeWindowInvalid => time_reason(xml, expect),
                R::InResponseToMismatch => Reason::SamlInResponseToMismatch,
                _ => Reason::SamlSubjectConfirmationInvalid,
            }
        }
        E::SubjectUnconfirmed => Reason::SamlSubjectConfirmationInvalid,
        E::ReplayDetected { .. } => Reason::SamlReplay,
        E::SignatureMissing | E::AssertionSignatureRequired => Reason::SamlUnsigned,
        E::SignatureVerification { .. }
        | E::FailedToVerifySignature
        | E::FailedMessageSignatureVerification => Reason::SamlSignatureInvalid,
        E::ReferenceResolution { .. } | E::SignedReferenceMismatch => {
            Reason::SamlSignedContentMismatch
        }
        E::PotentialWrappingAttack => Reason::SamlWrappingDetected,
        E::AlgorithmUnsupported | E::MissingSigAlg => Reason::SamlAlgorithmRefused,
        E::NoTrustedCertificate | E::CertificateMismatch | E::UnmatchCertificate => {
            Reason::SamlCertUntrusted
        }
        E::MissingKey(_) => Reason::SamlEncryptedUnsupported,
        E::Unsupported(m) | E::Invalid(m) | E::ProtocolProfile(m)
            if m.to_ascii_lowercase().contains("encrypt") =>
        {
            Reason::SamlEncryptedUnsupported
        }
        _ => Reason::SamlMalformed,
    };
    Rejected::new(reason, detail)
}

/// Tells an expired response from one not yet valid, from the bounds it states.
fn time_reason(xml: &str, expect: &Expectation) -> Reason {
    let now = expect
        .now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let skew = i64::from(expect.policy.skew_seconds);
    let parse = |s: &String| tessera_core::text::parse_rfc3339(s);
    let (before, _) = scan::time_bounds(xml);
    if before.iter().filter_map(parse).any(|nb| now + skew < nb) {
        Reason::SamlNotYetValid
    } else {
        Reason::SamlExpired
    }
}

fn clip(s: &str) -> String {
    tessera_core::text::clip(s)
}

/// The largest bearer assertion read (RFC 7522 grant), decoded.
pub const MAX_BEARER_ASSERTION: usize = 256 * 1024;

/// Validates the assertion of an RFC 7522 bearer grant: one `Assertion` (base64url, as
/// §2.1 says; standard base64 is read too), which must carry the IdP's own signature.
/// It goes through [`validate`] inside an unsigned Response made here, so every rule of
/// a browser login applies (issuer, signature, audience, bearer confirmation with
/// `Recipient` = the token endpoint, time, replay identifiers), except that an
/// AuthnStatement is not required (§3 item 6 makes it optional).
///
/// `audiences` are tried in turn: what names this authorization server (§3 item 2); the
/// caller passes the org's SP entity id, an audience of that org alone.
pub fn validate_bearer(
    assertion: &str,
    idp: &IdpTrust,
    audiences: &[String],
    token_endpoint: &str,
    now: SystemTime,
    mut policy: Policy,
) -> Result<Accepted, Rejected> {
    use base64::Engine;
    let text = assertion.trim();
    if text.len() > MAX_BEARER_ASSERTION * 4 / 3 + 4 {
        return Err(Rejected::new(
            Reason::SamlMalformed,
            "the assertion is larger than 256 KiB",
        ));
    }
    let engines = [
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::STANDARD,
    ];
    let bytes = engines
        .iter()
        .find_map(|e| e.decode(text).ok())
        .ok_or_else(|| {
            Rejected::new(
                Reason::SamlMalformed,
                "the assertion parameter is not base64url (RFC 7522 §2.1)",
            )
        })?;
    let xml = String::from_utf8(bytes)
        .map_err(|_| Rejected::new(Reason::SamlMalformed, "the assertion is not UTF-8 XML"))?;
    let mut body = xml.trim();
    if let Some(rest) = body.strip_prefix("<?xml") {
        body = rest
            .split_once("?>")
            .map(|(_, r)| r.trim_start())
            .unwrap_or("");
    }
    scan::structure(body)?;
    let root = saml_rs::xml::dom::parse_with_limits(body, xml_limits())
        .map_err(|e| Rejected::new(Reason::SamlMalformed, e.to_string()))?;
    if root.root.local_name != "Assertion" {
        return Err(Rejected::new(
            Reason::SamlMalformed,
            format!(
                "the assertion parameter holds a <{}>, not one <Assertion> (RFC 7522 §2.1)",
                tessera_core::text::clip(&root.root.local_name)
            ),
        ));
    }
    // The envelope: unsigned, so the assertion's own signature is what is trusted.
    let mut id = [0u8; 16];
    tessera_core::secret::random_bytes(&mut id);
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let instant = tessera_core::text::rfc3339(unix(now));
    let envelope = format!(
        "<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" ID=\"_bearer-{id}\" Version=\"2.0\" IssueInstant=\"{instant}\" Destination=\"{dest}\"><samlp:Status><samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:Success\"/></samlp:Status>{body}</samlp:Response>",
        dest = xml_attr(token_endpoint),
    );
    policy.require_signed_assertion = true;
    policy.require_signed_response = false;
    policy.require_authn_statement = false;
    let mut last = None;
    for audience in audiences {
        let expect = Expectation {
            sp_entity_id: audience.clone(),
            acs_url: token_endpoint.to_string(),
            in_response_to: RequestCheck::Unsolicited,
            decryption_keys: Vec::new(),
            now,
            policy,
        };
        match validate(envelope.as_bytes(), idp, &expect) {
            Err(e) if e.reason == Reason::SamlAudienceMismatch => last = Some(e),
            other => return other,
        }
    }
    Err(last
        .map(|mut e| {
            e.detail = format!(
                "{}; a bearer assertion's Audience must be {}",
                e.detail,
                audiences.join(" or ")
            );
            e
        })
        .unwrap_or_else(|| Rejected::new(Reason::SamlAudienceMismatch, "no audience to accept")))
}

fn xml_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('"', "&quot;")
}
