//! Single Logout for each org's SAML SP: `GET|POST /saml/{org}/slo` takes the IdP's
//! LogoutRequests (IdP-initiated: the person's SAML sessions in this org end, with what
//! they gave clients, and a signed LogoutResponse goes back) and its LogoutResponses to
//! ours; `POST /saml/{org}/logout` ends the browser's session here and, when the IdP has
//! a Single Logout service, sends the person there with a signed LogoutRequest.
//!
//! Every IdP-initiated logout and every refused message is audited (kind `login`) with
//! its trace; the person sees the reason code and request id only.

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_core::Reason;
use tessera_core::model::Org;
use tessera_core::sso::{self, SamlPending, SsoConfig};
use tessera_core::text::clip;
use tessera_core::trace::{Check, Trace};
use tessera_saml::slo::{self as saml_slo, Inbound};
use tessera_saml::sp::Dispatch;

use crate::clock;
use crate::html::{page, post_form, unavailable};
use crate::saml::{org_sso, policy, site, trust};
use crate::session::{self, LoginResult, audit_login};
use crate::state::{AppState, Shared};

/// How the RelayState handle of a logout starts: never a login's (those are base64url,
/// without dots), so neither endpoint can consume the other's.
pub const HANDLE_PREFIX: &str = "slo.";

/// The largest logout message read (a LogoutRequest or LogoutResponse is small).
pub const SLO_BODY_LIMIT: usize = 64 * 1024;

fn system_time(now: i64) -> std::time::SystemTime {
    std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(now.max(0) as u64)
}

/// The browser's answer for a dispatch: a redirect, or the HTTP-POST page.
pub(crate) fn send(d: Dispatch) -> Response {
    match d {
        Dispatch::Post { action, fields } => post_form(&action, &fields),
        Dispatch::Redirect(url) => match HeaderValue::from_str(&url) {
            Ok(v) => {
                let mut res = StatusCode::FOUND.into_response();
                res.headers_mut().insert(header::LOCATION, v);
                res.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                res
            }
            Err(_) => page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Single sign-on is misconfigured",
                "The identity provider's URL is not usable.",
                Some(Reason::SamlNotConfigured),
            ),
        },
    }
}

fn signed_out() -> Response {
    page(
        StatusCode::OK,
        "Signed out",
        "You are signed out of this service.",
        None,
    )
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `GET /saml/{org}/slo`: a logout message by HTTP-Redirect.
pub async fn slo_get(
    State(st): State<Shared>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Path(slug): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let fields: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    slo(&st, peer, &slug, &fields, Inbound::Redirect(query.clone())).await
}

/// `POST /saml/{org}/slo`: a logout message by HTTP-POST.
pub async fn slo_post(
    State(st): State<Shared>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Path(slug): Path<String>,
    body: Bytes,
) -> Response {
    let fields: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    slo(&st, peer, &slug, &fields, Inbound::Post(fields.clone())).await
}

async fn slo(
    st: &AppState,
    peer: std::net::SocketAddr,
    slug: &str,
    fields: &[(String, String)],
    inbound: Inbound,
) -> Response {
    let (org, config) = match org_sso(st, slug).await {
        Ok(x) => x,
        Err(no) => return no.page,
    };
    let source = crate::serve::host_key(peer.ip()).to_string();
    if field(fields, "SAMLRequest").is_some() {
        idp_initiated(st, &org, &config, inbound, &source).await
    } else if field(fields, "SAMLResponse").is_some() {
        let relay = field(fields, "RelayState").unwrap_or_default().to_string();
        logout_finished(st, &org, &config, inbound, &relay, &source).await
    } else {
        page(
            StatusCode::BAD_REQUEST,
            "Not a logout message",
            "This address takes SAML LogoutRequest and LogoutResponse messages from the organisation's identity provider.",
            Some(Reason::SamlMalformed),
        )
    }
}

/// The IdP asks to end a person's sessions.
async fn idp_initiated(
    st: &AppState,
    org: &Org,
    config: &SsoConfig,
    inbound: Inbound,
    source: &str,
) -> Response {
    let mut trace = Trace::default();
    let sp = match site(st, org, config).await {
        Ok(sp) => sp,
        Err(page) => return page,
    };
    let now = clock::now();
    let idp = trust(config);
    let p = policy(config);
    let refuse = |trace: Trace, reason: Reason, detail: String| async move {
        let _ = audit_login(
            st,
            org,
            None,
            LoginResult::Denied(reason, detail),
            trace,
            Some(source),
        )
        .await;
        page(
            StatusCode::BAD_REQUEST,
            "Logout refused",
            "The identity provider's logout request could not be accepted. An administrator can look it up with the reference below.",
            Some(reason),
        )
    };
    let asked = match saml_slo::receive_logout_request(&sp, &idp, inbound, system_time(now), &p) {
        Ok(a) => a,
        Err(r) => {
            trace.fail(Check::SamlResponse, r.reason, r.detail.clone());
            return refuse(trace, r.reason, r.detail).await;
        }
    };
    trace.pass(
        Check::SamlResponse,
        format!(
            "LogoutRequest {} signed by '{}' for NameID '{}'{}",
            clip(&asked.request_id),
            clip(&idp.entity_id),
            clip(&asked.name_id),
            if asked.session_indexes.is_empty() {
                String::new()
            } else {
                format!(
                    " (session index {})",
                    clip(&asked.session_indexes.join(", "))
                )
            }
        ),
    );
    match st
        .store
        .remember_saml_ids(org.id, &asked.replay_keys, now)
        .await
    {
        Ok(true) => trace.pass(Check::SamlReplay, "first use of this LogoutRequest"),
        Ok(false) => {
            let detail = format!("LogoutRequest {} was already used", clip(&asked.request_id));
            trace.fail(Check::SamlReplay, Reason::SamlReplay, detail.clone());
            return refuse(trace, Reason::SamlReplay, detail).await;
        }
        Err(e) => return unavailable(e),
    }
    // The person, in this org only: a NameID names nobody in another org.
    let user = match st.store.user_by_saml_link(org.id, &asked.name_id).await {
        Ok(u) => u,
        Err(e) => return unavailable(e),
    };
    let subject = user.as_ref().map(|u| u.id.clone());
    let detail = match &user {
        Some(u) => {
            let ended = match st.store.end_saml_sessions(org.id, &u.id).await {
                Ok(e) => e,
                Err(e) => return unavailable(e),
            };
            for s in &ended {
                if let Err(e) = st
                    .store
                    .revoke_session_grants(&s.sid(), "saml_logout", now)
                    .await
                {
                    return unavailable(e);
                }
            }
            format!(
                "user '{}' ({}): {} SAML session(s) in org '{}' ended, with the refresh tokens they gave clients{}",
                u.username,
                u.id,
                ended.len(),
                org.slug,
                if asked.session_indexes.is_empty() {
                    ""
                } else {
                    " (every SAML session of this person: Tessera does not tell the IdP's sessions apart)"
                }
            )
        }
        None => format!(
            "no user of org '{}' is linked to this NameID: nothing to end",
            org.slug
        ),
    };
    trace.pass(Check::SamlUser, detail);
    if audit_login(
        st,
        org,
        subject,
        LoginResult::Granted(None),
        trace,
        Some(source),
    )
    .await
    .is_err()
    {
        return unavailable("the audit trail is unavailable");
    }
    if config.idp_slo_url.is_none() {
        return signed_out();
    }
    match saml_slo::logout_response(&sp, &idp, &asked, true, &p) {
        Ok(d) => send(d),
        Err(e) => {
            tracing::error!(error = %e, org = %org.slug, "LogoutResponse not built");
            signed_out()
        }
    }
}

/// The IdP answers the LogoutRequest that `POST /saml/{org}/logout` sent.
async fn logout_finished(
    st: &AppState,
    org: &Org,
    config: &SsoConfig,
    inbound: Inbound,
    relay: &str,
    source: &str,
) -> Response {
    let now = clock::now();
    if !relay.starts_with(HANDLE_PREFIX) {
        return page(
            StatusCode::BAD_REQUEST,
            "Logout not recognised",
            "This logout answer does not match a logout started here. You are signed out of this service all the same.",
            Some(Reason::SamlRelayStateInvalid),
        );
    }
    let pending = match st.store.take_saml_pending(relay, now).await {
        Ok(Some(p)) if p.org_id == org.id => p,
        Ok(_) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Logout not recognised",
                "This logout answer does not match a logout started here (or it was used already). You are signed out of this service all the same.",
                Some(Reason::SamlRelayStateInvalid),
            );
        }
        Err(e) => return unavailable(e),
    };
    let sp = match site(st, org, config).await {
        Ok(sp) => sp,
        Err(page) => return page,
    };
    let idp = trust(config);
    let mut trace = Trace::default();
    match saml_slo::finish_logout(
        &sp,
        &idp,
        &pending.request_id,
        relay,
        inbound,
        system_time(now),
        &policy(config),
    ) {
        Ok(_) => {
            trace.pass(
                Check::SamlResponse,
                format!(
                    "the IdP ended its session: LogoutResponse to {}",
                    clip(&pending.request_id)
                ),
            );
            let _ = audit_login(
                st,
                org,
                None,
                LoginResult::Granted(None),
                trace,
                Some(source),
            )
            .await;
            signed_out()
        }
        Err(r) => {
            trace.fail(Check::SamlResponse, r.reason, r.detail.clone());
            let _ = audit_login(
                st,
                org,
                None,
                LoginResult::Denied(r.reason, r.detail),
                trace,
                Some(source),
            )
            .await;
            page(
                StatusCode::BAD_REQUEST,
                "Signed out here only",
                "You are signed out of this service, but the identity provider's answer could not be accepted: your session there may still be open.",
                Some(r.reason),
            )
        }
    }
}

/// `POST /saml/{org}/logout`: ends this browser's session and, when the session came from
/// the org's IdP and the IdP has a Single Logout service, continues there.
pub async fn logout(
    State(st): State<Shared>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = session::foreign_origin(&st, &headers, "POST /saml/{org}/logout") {
        return refused;
    }
    let ended = match session::end_current(&st, &headers).await {
        Ok(s) => s,
        Err(e) => return unavailable(e),
    };
    let mut res = logout_at_idp(&st, peer, &slug, ended).await;
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&st, "", 0)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

async fn logout_at_idp(
    st: &AppState,
    peer: std::net::SocketAddr,
    slug: &str,
    ended: Option<tessera_core::session::Session>,
) -> Response {
    let Ok((org, config)) = org_sso(st, slug).await else {
        return signed_out();
    };
    let Some(s) = ended.filter(|s| s.method == "saml" && s.org_id == org.id) else {
        return signed_out();
    };
    if config.idp_slo_url.is_none() {
        return signed_out();
    }
    let name_id = match st.store.get_user(org.id, &s.user_id).await {
        Ok(Some(u)) => match u.saml_name_id {
            Some(n) => n,
            None => return signed_out(),
        },
        Ok(None) => return signed_out(),
        Err(e) => return unavailable(e),
    };
    let sp = match site(st, &org, &config).await {
        Ok(sp) => sp,
        Err(page) => return page,
    };
    let mut raw = [0u8; 16];
    tessera_core::secret::random_bytes(&mut raw);
    let handle = format!(
        "{HANDLE_PREFIX}{}",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw)
    );
    let start = match saml_slo::start_logout(
        &sp,
        &trust(&config),
        &name_id,
        config.name_id_format.as_deref(),
        &handle,
        &policy(&config),
    ) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, org = %org.slug, "LogoutRequest not built");
            return signed_out();
        }
    };
    let pending = SamlPending {
        handle,
        org_id: org.id,
        request_id: start.request_id,
        return_to: session::DEFAULT_RETURN.to_string(),
        expires_at: clock::now() + sso::PENDING_SECONDS,
    };
    match crate::saml::put_pending(st, peer, &pending).await {
        Ok(true) => send(start.dispatch),
        // Too many in flight: signed out here; the IdP's session stays.
        Ok(false) => signed_out(),
        Err(e) => unavailable(e),
    }
}
