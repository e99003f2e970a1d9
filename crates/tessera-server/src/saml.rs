//! The SAML service provider for each org: `GET /saml/{org}/metadata`,
//! `GET /saml/{org}/login?return_to=...` (SP-initiated, by HTTP-Redirect or, for IdPs
//! that offer only that, an auto-submitted HTTP-POST form) and
//! `POST /saml/{org}/acs` (HTTP-POST); plus the browser session a login starts
//! (`GET /session`, `POST /logout`).
//!
//! The ACS validates with the same function as `tessera saml check`, keeps RelayState
//! handles and the replay cache in the database (shared by every node), maps the verified
//! identity to a user (link, email once, or just-in-time), and audits every attempt with
//! its trace. A refusal shows the person a page with the reason code and request id only.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_core::Reason;
use tessera_core::model::{Org, User};
use tessera_core::sso::{self, LoginPlan, SamlPending, SsoConfig};
use tessera_core::store::{SamlLogin, SamlLoginWritten, StoreError, UserWrite};
use tessera_core::text::clip;
use tessera_core::trace::{Check, Trace};
use tessera_saml::sp::{SpSite, sp_metadata, start_login};
use tessera_saml::{Expectation, IdpTrust, Policy, RequestCheck};

use crate::clock;
use crate::html::{page, unavailable};
use crate::session::{self, DEFAULT_RETURN, check_return_to};
use crate::state::{AppState, Shared};

/// The org's SP addresses (what a response must name).
pub(crate) fn addresses(st: &AppState, org: &Org) -> (String, String) {
    let base = format!("{}/saml/{}", st.issuer, org.slug);
    (format!("{base}/metadata"), format!("{base}/acs"))
}

/// The org's SP with its signing key, or the page saying the key is unavailable.
pub(crate) async fn site(st: &AppState, org: &Org, config: &SsoConfig) -> Result<SpSite, Response> {
    let signing_key = match st.keys.saml_sp_key(st.store.as_ref()).await {
        Ok(k) => (*k).clone(),
        Err(e) => return Err(unavailable(e)),
    };
    let encryption_certificate = match st.keys.saml_encryption(st.store.as_ref()).await {
        Ok(set) => set.saml_encryption.first().map(|k| k.cert_pem.clone()),
        Err(e) => return Err(unavailable(e)),
    };
    let (entity_id, acs_url) = addresses(st, org);
    Ok(SpSite {
        entity_id,
        acs_url,
        signing_key,
        name_id_format: config.name_id_format.clone(),
        encryption_certificate,
        slo_url: Some(format!("{}/saml/{}/slo", st.issuer, org.slug)),
    })
}

pub(crate) fn policy(c: &SsoConfig) -> Policy {
    Policy {
        allow_sha1: c.allow_sha1,
        allow_rsa_1024: c.allow_rsa_1024,
        skew_seconds: c.clock_skew_seconds,
        ..Policy::default()
    }
}

pub(crate) fn trust(c: &SsoConfig) -> IdpTrust {
    IdpTrust {
        entity_id: c.idp_entity_id.clone().unwrap_or_default(),
        certificates: c.idp_certificates.clone(),
        sso_url: c.idp_sso_url.clone(),
        sso_binding: c.idp_sso_binding,
        slo_url: c.idp_slo_url.clone(),
        slo_binding: c.idp_slo_binding,
    }
}

/// Why an org cannot take a SAML login: the page to show, and the org when it exists
/// but has no identity provider (the ACS audits that attempt in the org's trail).
pub(crate) struct NoSso {
    pub(crate) page: Response,
    unconfigured: Option<Org>,
}

/// The org and its SSO configuration, or the page saying why there is none.
pub(crate) async fn org_sso(st: &AppState, slug: &str) -> Result<(Org, SsoConfig), NoSso> {
    let only_page = |page| NoSso {
        page,
        unconfigured: None,
    };
    let org = match st.store.org_by_slug(slug).await {
        Ok(Some(o)) => o,
        Ok(None) => {
            return Err(only_page(page(
                StatusCode::NOT_FOUND,
                "Unknown organisation",
                &format!("There is no organisation '{}' here.", clip(slug)),
                None,
            )));
        }
        Err(e) => return Err(only_page(unavailable(e))),
    };
    match st.store.sso_config(org.id).await {
        Ok(Some(c)) if c.has_idp() => Ok((org, c)),
        Ok(_) => Err(NoSso {
            page: page(
                StatusCode::NOT_FOUND,
                "Single sign-on is not set up",
                &format!(
                    "Organisation '{}' has no identity provider configured. An admin sets it with PUT /api/v2/sso/saml.",
                    org.slug
                ),
                Some(Reason::SamlNotConfigured),
            ),
            unconfigured: Some(org),
        }),
        Err(e) => Err(only_page(unavailable(e))),
    }
}

/// `GET /saml/{org}/metadata`: what to give the IdP.
pub async fn metadata(State(st): State<Shared>, Path(slug): Path<String>) -> Response {
    let org = match st.store.org_by_slug(&slug).await {
        Ok(Some(o)) => o,
        Ok(None) => return StatusCode::NOT_FOUND.into_response(),
        Err(e) => return unavailable(e),
    };
    let config = st
        .store
        .sso_config(org.id)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let sp = match site(&st, &org, &config).await {
        Ok(sp) => sp,
        Err(page) => return page,
    };
    match sp_metadata(&sp, &policy(&config)) {
        Ok(xml) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/samlmetadata+xml"),
            )],
            xml,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "SP metadata");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    return_to: Option<String>,
    /// `1`: the IdP must authenticate the person afresh (ForceAuthn), as OIDC's
    /// `prompt=login` and `max_age` ask.
    force_authn: Option<String>,
}

/// `GET /saml/{org}/login`: sends the browser to the IdP with an AuthnRequest.
pub async fn login(
    State(st): State<Shared>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Path(slug): Path<String>,
    Query(q): Query<LoginQuery>,
) -> Response {
    let (org, config) = match org_sso(&st, &slug).await {
        Ok(x) => x,
        Err(no) => return no.page,
    };
    let return_to = match check_return_to(&st, q.return_to.as_deref().unwrap_or(DEFAULT_RETURN)) {
        Ok(r) => r,
        Err(why) => return page(StatusCode::BAD_REQUEST, "Bad return address", &why, None),
    };
    let mut raw = [0u8; 16];
    tessera_core::secret::random_bytes(&mut raw);
    let handle = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw);
    let sp = match site(&st, &org, &config).await {
        Ok(sp) => sp,
        Err(page) => return page,
    };
    let force = q.force_authn.as_deref() == Some("1");
    let start = match start_login(&sp, &trust(&config), &handle, force, &policy(&config)) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, org = %org.slug, "AuthnRequest not built");
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Single sign-on is misconfigured",
                "The identity provider configuration cannot be used; an admin should check it (GET /api/v2/sso/saml).",
                Some(e.reason),
            );
        }
    };
    let pending = SamlPending {
        handle,
        org_id: org.id,
        request_id: start.request_id,
        return_to,
        expires_at: clock::now() + sso::PENDING_SECONDS,
    };
    match put_pending(&st, peer, &pending).await {
        Ok(true) => {}
        Ok(false) => {
            // Not an audit event: starting a login is not one either, and a row per
            // refused start would let the flood this bound stops grow the audit trail.
            let mut res = page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many sign-ins in progress",
                "Too many sign-ins were started from your network in the last minutes and not finished; finish one, or try again in a few minutes.",
                Some(Reason::SamlPendingLimit),
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            return res;
        }
        Err(e) => return unavailable(e),
    }
    crate::slo::send(start.dispatch)
}

/// Keeps a started login or logout under its RelayState handle, within the bounds per
/// source and per org; false when a bound is reached.
pub(crate) async fn put_pending(
    st: &AppState,
    peer: std::net::SocketAddr,
    pending: &SamlPending,
) -> Result<bool, StoreError> {
    st.store
        .put_saml_pending(
            pending,
            &crate::serve::host_key(peer.ip()).to_string(),
            sso::PENDING_PER_SOURCE,
            sso::PENDING_PER_ORG,
        )
        .await
}

/// The largest ACS body read (a SAMLResponse of 256 KiB in base64, plus the form).
pub const ACS_BODY_LIMIT: usize = 300 * 1024;

/// `POST /saml/{org}/acs`: validates the response and starts a session.
pub async fn acs(
    State(st): State<Shared>,
    Path(slug): Path<String>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let source = peer.ip().to_string();
    let (org, config) = match org_sso(&st, &slug).await {
        Ok(x) => x,
        Err(NoSso {
            page,
            unconfigured: Some(org),
        }) => {
            // A response posted to an org without an IdP is a login attempt all the same:
            // the org's admins see it (and its source) in their trail.
            let mut trace = Trace::default();
            let denial = trace.fail(
                Check::SamlResponse,
                Reason::SamlNotConfigured,
                "the organisation has no identity provider configured",
            );
            let result = session::LoginResult::Denied(denial.reason, denial.description);
            if session::audit_login(&st, &org, None, result, trace, Some(&source))
                .await
                .is_err()
            {
                return unavailable("audit");
            }
            return page;
        }
        Err(NoSso { page, .. }) => return page,
    };
    let mut trace = Trace::default();
    let now = clock::now();
    let outcome = consume(&st, &org, &config, &headers, body, now, &mut trace).await;
    let Verified {
        user,
        cookie,
        return_to,
    } = match outcome {
        Ok(x) => x,
        Err(Failure::Refused(reason)) => {
            let detail = trace
                .failed()
                .map(|s| s.detail.to_string())
                .unwrap_or_default();
            let result = session::LoginResult::Denied(reason, detail);
            if session::audit_login(&st, &org, None, result, trace, Some(&source))
                .await
                .is_err()
            {
                return unavailable("audit");
            }
            return refused_page(reason);
        }
        Err(Failure::Unavailable(e)) => return unavailable(e),
    };
    let result = session::LoginResult::Granted(None);
    if session::audit_login(
        &st,
        &org,
        Some(user.id.clone()),
        result,
        trace,
        Some(&source),
    )
    .await
    .is_err()
    {
        return unavailable("audit");
    }
    session::landing(&return_to, &cookie)
}

/// A login the ACS accepted and wrote: its user, the new session's cookie, where to go.
struct Verified {
    user: User,
    cookie: String,
    return_to: String,
}

enum Failure {
    /// Refused: the failing step is in the trace.
    Refused(Reason),
    Unavailable(String),
}

/// The ACS checks in order, each recorded in `trace`: RelayState, the response, replay,
/// the user. Returns the user and session (saved) and where to send them.
async fn consume(
    st: &AppState,
    org: &Org,
    config: &SsoConfig,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    now: i64,
    trace: &mut Trace,
) -> Result<Verified, Failure> {
    let store_err = |e: tessera_core::store::StoreError| Failure::Unavailable(e.to_string());
    let refuse = |trace: &mut Trace, check, reason, detail: String| {
        trace.fail(check, reason, detail);
        Err(Failure::Refused(reason))
    };
    let Ok(body) = body else {
        return refuse(
            trace,
            Check::SamlResponse,
            Reason::SamlBodyTooLarge,
            format!(
                "the posted form is larger than {} KiB",
                ACS_BODY_LIMIT / 1024
            ),
        );
    };
    let form_ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let fields: BTreeMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let Some(response) = fields.get("SAMLResponse").filter(|_| form_ok) else {
        return refuse(
            trace,
            Check::SamlResponse,
            Reason::SamlMalformed,
            "no SAMLResponse field in a form-encoded POST (HTTP-POST binding)".into(),
        );
    };

    // RelayState: the handle of a login this server started.
    // A logout's handle (crate::slo) is never a login's: not taken here.
    let relay = fields
        .get("RelayState")
        .filter(|r| !r.is_empty() && !r.starts_with(crate::slo::HANDLE_PREFIX));
    let (check, return_to) = match relay {
        Some(handle) => match st
            .store
            .take_saml_pending(handle, now)
            .await
            .map_err(store_err)?
        {
            Some(p) if p.org_id == org.id => {
                trace.pass(
                    Check::SamlRelayState,
                    format!(
                        "answers the login started for AuthnRequest {} (returning to {})",
                        p.request_id,
                        clip(&p.return_to)
                    ),
                );
                (RequestCheck::Request(p.request_id), p.return_to)
            }
            _ => {
                return refuse(
                    trace,
                    Check::SamlRelayState,
                    Reason::SamlRelayStateInvalid,
                    "the RelayState names no pending login of this org: unknown, already used, or older than 10 minutes".into(),
                );
            }
        },
        None if config.allow_idp_initiated => {
            trace.pass(
                Check::SamlRelayState,
                "no RelayState: an IdP-initiated login, which this org allows",
            );
            (RequestCheck::Unsolicited, DEFAULT_RETURN.to_string())
        }
        None => {
            return refuse(
                trace,
                Check::SamlRelayState,
                Reason::SamlUnsolicited,
                "no RelayState: an IdP-initiated login, which this org does not allow (allow_idp_initiated is off); start at /saml/{org}/login".into(),
            );
        }
    };

    let (sp_entity_id, acs_url) = addresses(st, org);
    // Only an encrypted response needs the keys (and the first one made, when none is).
    let encrypted = tessera_saml::scan::decode(response.as_bytes())
        .is_ok_and(|xml| tessera_saml::decrypt::is_encrypted(&xml));
    let decryption_keys = if encrypted {
        match st.keys.saml_encryption(st.store.as_ref()).await {
            Ok(set) => set
                .saml_encryption
                .iter()
                .map(|k| tessera_saml::DecryptionKey {
                    key_pem: k.key_pem.clone(),
                })
                .collect(),
            Err(e) => return Err(Failure::Unavailable(e.to_string())),
        }
    } else {
        Vec::new()
    };
    let expect = Expectation {
        sp_entity_id,
        acs_url,
        in_response_to: check,
        decryption_keys,
        now: std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(now.max(0) as u64),
        policy: policy(config),
    };
    // Signature checks and decryption are CPU work: off the async workers.
    let idp = trust(config);
    let response = response.clone();
    let validated = tokio::task::spawn_blocking(move || {
        tessera_saml::validate(response.as_bytes(), &idp, &expect)
    })
    .await
    .map_err(|e| Failure::Unavailable(e.to_string()))?;
    let accepted = match validated {
        Ok(a) => a,
        Err(r) => return refuse(trace, Check::SamlResponse, r.reason, r.detail),
    };
    trace.pass(
        Check::SamlResponse,
        format!(
            "signed ({}) by '{}'{}; NameID '{}'",
            accepted.signature_algorithms.join(", "),
            clip(&accepted.issuer),
            accepted
                .encryption_algorithm
                .as_deref()
                .map(|a| format!(
                    "; assertion encrypted ({})",
                    a.rsplit('#').next().unwrap_or(a)
                ))
                .unwrap_or_default(),
            clip(&accepted.name_id)
        ),
    );

    // Who logs in, planned from reads; the replay check, a re-read of that user and the
    // writes share one transaction. If the user changed in between (disabled, locked,
    // linked elsewhere, or provisioned by a concurrent login), the login is planned again.
    let identity = config.identity(&accepted.name_id, &accepted.attributes);
    let wanted = provisioned_username(&identity);
    // A username someone else holds is never a link (that would hand them this identity's
    // sessions): a new user gets the first free `name-N` instead.
    let mut n = 1;
    let mut concurrent = false;
    let mut tries = 0;
    let (next, user, write, linked_by_email) = loop {
        tries += 1;
        if tries > MAX_PLAN_TRIES {
            return Err(Failure::Unavailable(format!(
                "the login could not be written after {MAX_PLAN_TRIES} tries (no free username near '{wanted}', or the user kept changing)"
            )));
        }
        let by_link = st
            .store
            .user_by_saml_link(org.id, &identity.name_id)
            .await
            .map_err(store_err)?;
        let by_email = match (&by_link, &identity.email) {
            (None, Some(e)) => st.store.user_by_email(org.id, e).await.map_err(store_err)?,
            _ => None,
        };
        // The stored user the plan starts from, checked again when it is written.
        let stored = by_link.clone().or_else(|| by_email.clone());
        let linked_by_email = by_link.is_none();
        let new_user = || {
            User::new_human(
                format!("usr_{}", ulid::Ulid::new().to_string().to_lowercase()),
                org.id,
                if n == 1 {
                    wanted.clone()
                } else {
                    numbered_username(&wanted, n)
                },
                now,
            )
        };
        let (user, write) =
            match sso::plan_saml_login(config, &identity, by_link, by_email, new_user, now) {
                // Most logins change nothing: then nothing is written to the user.
                LoginPlan::Linked(u) if stored.as_ref() == Some(&u) => (u, UserWrite::Unchanged),
                LoginPlan::Linked(u) | LoginPlan::LinkedByEmail(u) => (u, UserWrite::FromIdp),
                LoginPlan::Provisioned(u) => (u, UserWrite::Create),
                LoginPlan::Refused(reason, detail) => {
                    // A refused response is spent all the same.
                    if !st
                        .store
                        .remember_saml_ids(org.id, &accepted.replay_keys, now)
                        .await
                        .map_err(store_err)?
                    {
                        return refuse(
                            trace,
                            Check::SamlReplay,
                            Reason::SamlReplay,
                            replayed(&accepted),
                        );
                    }
                    trace.pass(Check::SamlReplay, FIRST_USE);
                    return refuse(trace, Check::SamlUser, reason, detail);
                }
            };
        let next = session::Next::new(headers, org, &user, "saml", now);
        let login = SamlLogin {
            replay_keys: &accepted.replay_keys,
            user: &user,
            user_write: write,
            planned_from: stored.as_ref().filter(|_| write != UserWrite::Create),
            old_session: next.old.as_deref(),
            session: Some(&next.session),
            now,
        };
        match st.store.finish_saml_login(&login).await {
            Ok(SamlLoginWritten::Done) => break (next, user, write, linked_by_email),
            Ok(SamlLoginWritten::Replayed) => {
                return refuse(
                    trace,
                    Check::SamlReplay,
                    Reason::SamlReplay,
                    replayed(&accepted),
                );
            }
            Ok(SamlLoginWritten::Stale) => concurrent = true,
            // The unique index refused the new user: the same identity, provisioned
            // meanwhile by a concurrent login (found by link next time round, when the
            // number is unused), or a username another user holds (the next number).
            Err(StoreError::Conflict(_)) if write == UserWrite::Create => {
                concurrent = true;
                n += 1;
            }
            Err(e) => return Err(store_err(e)),
        }
    };
    trace.pass(Check::SamlReplay, FIRST_USE);
    let detail = match write {
        UserWrite::Unchanged if concurrent => format!(
            "user '{}' ({}), linked to this NameID (written meanwhile by a concurrent login)",
            user.username, user.id
        ),
        UserWrite::Unchanged => format!(
            "user '{}' ({}), linked to this NameID",
            user.username, user.id
        ),
        UserWrite::FromIdp if linked_by_email => format!(
            "user '{}' ({}) found by email and linked to this NameID (first SSO login)",
            user.username, user.id
        ),
        UserWrite::FromIdp => format!(
            "user '{}' ({}), linked to this NameID; email, name or roles updated from the IdP",
            user.username, user.id
        ),
        UserWrite::Create => format!(
            "user '{}' ({}) provisioned just in time{}, roles: {}",
            user.username,
            user.id,
            if user.username == wanted {
                String::new()
            } else {
                format!(" ('{wanted}' belongs to another user)")
            },
            if user.roles.is_empty() {
                "none".into()
            } else {
                user.roles.join(", ")
            }
        ),
    };
    trace.pass(Check::SamlUser, detail);
    Ok(Verified {
        cookie: next.cookie(st),
        user,
        return_to,
    })
}

/// The replay step's detail when a response was used before.
fn replayed(a: &tessera_saml::Accepted) -> String {
    format!(
        "response {} / assertion {} was already used",
        clip(&a.response_id),
        clip(&a.assertion_id)
    )
}

/// The replay step's detail on a first use.
const FIRST_USE: &str = "first use of this response and assertion";

/// How many times a login is planned and written: a just-in-time user tries `name`,
/// `name-2`, … and a user changed meanwhile is planned again.
const MAX_PLAN_TRIES: usize = 20;

/// `base-n`, within the 128 characters a username may have.
pub(crate) fn numbered_username(base: &str, n: usize) -> String {
    let suffix = format!("-{n}");
    let keep = base.len().min(128 - suffix.len());
    format!("{}{suffix}", &base[..keep])
}

/// A username for a just-in-time user: the email, else the NameID, within the
/// characters usernames allow.
pub(crate) fn provisioned_username(identity: &sso::SamlIdentity) -> String {
    let base = identity.email.as_deref().unwrap_or(&identity.name_id);
    let name: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._@+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect();
    if name.is_empty() {
        "saml-user".into()
    } else {
        name
    }
}

fn refused_page(reason: Reason) -> Response {
    let (status, text) = match reason {
        Reason::SamlExpired | Reason::SamlNotYetValid => (
            StatusCode::BAD_REQUEST,
            "The sign-in response arrived outside its validity window. Start again; if it keeps happening, the clocks of the identity provider and this server disagree.",
        ),
        Reason::SamlRelayStateInvalid | Reason::SamlInResponseToMismatch | Reason::SamlReplay => (
            StatusCode::BAD_REQUEST,
            "This sign-in was already used or has expired. Start again from the login page.",
        ),
        Reason::SamlUserUnknown | Reason::UserDisabled | Reason::UserLocked => (
            StatusCode::FORBIDDEN,
            "Your identity was verified, but it gives no access here. Ask an administrator.",
        ),
        _ => (
            StatusCode::BAD_REQUEST,
            "The identity provider's response could not be accepted. An administrator can look it up with the reference below.",
        ),
    };
    page(status, "Sign-in failed", text, Some(reason))
}
