//! The authorization code grant's exchange (RFC 6749 §4.1.3, RFC 7636 §4.6): the code,
//! once and soon, by the client it was issued to, with the same redirect URI and the
//! PKCE verifier of its challenge; then the person as they are now.

use crate::interactive::{LoginGrant, s256};
use crate::model::{GrantType, Timestamp};
use crate::reason::Reason;
use crate::request::CodeExchange;
use crate::secret::{hash_client_secret, hashes_equal};
use crate::text::{clip, rfc3339};
use crate::trace::{Check, Denial, Trace};

use super::person::{Asker, check_human_state};
use super::{
    ClientFacts, CodeFacts, DecideOptions, Decision, Facts, Grant, GrantEffect, GrantFacts,
    LoginIssue,
};

/// The code exchange once the client has authenticated.
pub(super) fn decide(
    x: &CodeExchange,
    facts: &Facts,
    cf: &ClientFacts,
    now: Timestamp,
    opts: DecideOptions,
    trace: &mut Trace,
    d: &mut Decision,
) -> Result<Grant, Denial> {
    let unknown = CodeFacts::default();
    let cx = match &facts.grant {
        GrantFacts::Code(c) => c.as_ref(),
        _ => &unknown,
    };
    let client_id = cf.client.client_id.as_str();
    let Some(code) = &cx.code else {
        return Err(trace.fail(
            Check::Code,
            Reason::CodeInvalid,
            "the code is not one this server issued, or it expired long enough ago to be forgotten; start a new authorization request",
        ));
    };
    d.subject = Some(code.user_id.clone());
    if let Some(used) = code.used_at {
        // RFC 6749 §4.1.2: a second use is refused and what the first issued is revoked.
        if !opts.dry_run {
            d.grant_effect = Some(GrantEffect::Revoke {
                grant_id: code.grant_id.clone(),
                reason: Reason::CodeReused,
            });
        }
        return Err(trace.fail(
            Check::Code,
            Reason::CodeReused,
            format!(
                "the code was already exchanged at {}; a code works once, so the tokens of its first exchange (grant {}) are revoked: a code seen twice may have leaked",
                rfc3339(used),
                code.grant_id
            ),
        ));
    }
    if code.expires_at <= now {
        return Err(trace.fail(
            Check::Code,
            Reason::CodeExpired,
            format!(
                "the code expired at {} ({} s after it was issued); exchange codes at once, or start a new authorization request",
                rfc3339(code.expires_at),
                code.expires_at - code.created_at
            ),
        ));
    }
    if code.client_id != client_id {
        return Err(trace.fail(
            Check::Code,
            Reason::CodeInvalid,
            format!("the code was issued to another client, not to '{client_id}'"),
        ));
    }
    trace.pass(
        Check::Code,
        format!(
            "issued to '{client_id}' at {} for user {}, unused, expires at {}",
            rfc3339(code.created_at),
            code.user_id,
            rfc3339(code.expires_at)
        ),
    );

    if x.redirect_uri != code.redirect_uri {
        return Err(trace.fail(
            Check::RedirectUri,
            Reason::RedirectUriMismatch,
            format!(
                "redirect_uri '{}' differs from '{}', which the authorization request used (RFC 6749 §4.1.3: it must be the same)",
                clip(&x.redirect_uri),
                clip(&code.redirect_uri)
            ),
        ));
    }
    trace.pass(
        Check::RedirectUri,
        "the same as the authorization request's",
    );

    match (&code.code_challenge, &x.code_verifier) {
        (Some(challenge), Some(verifier)) => {
            if !hashes_equal(
                &hash_client_secret(&s256(verifier.expose())),
                &hash_client_secret(challenge),
            ) {
                return Err(trace.fail(
                    Check::Pkce,
                    Reason::PkceVerifierMismatch,
                    "the code_verifier does not match the code_challenge of the authorization request (S256); send the verifier generated for this request",
                ));
            }
            trace.pass(Check::Pkce, "the code_verifier matches the S256 challenge");
        }
        (Some(_), None) => {
            return Err(trace.fail(
                Check::Pkce,
                Reason::PkceVerifierMismatch,
                "the authorization request sent a code_challenge, so the exchange needs its code_verifier (RFC 7636 §4.5)",
            ));
        }
        (None, Some(_)) => {
            return Err(trace.fail(
                Check::Pkce,
                Reason::PkceVerifierMismatch,
                "a code_verifier came, but the authorization request sent no code_challenge (RFC 9700 §2.1.1)",
            ));
        }
        (None, None) => trace.skip(
            Check::Pkce,
            "no PKCE: the client is confidential and an admin turned pkce_required off",
        ),
    }

    let Some(user) = &cx.user else {
        return Err(trace.fail(
            Check::ResourceOwner,
            Reason::CodeInvalid,
            format!("user {} of the code no longer exists", code.user_id),
        ));
    };
    check_human_state(user, now, Asker::Client, trace)?;

    let scopes = code.scopes.clone();
    trace.pass(
        Check::Scope,
        format!(
            "granted at the authorization endpoint: {}",
            if scopes.is_empty() {
                "none".to_string()
            } else {
                scopes.join(" ")
            }
        ),
    );
    let c = &cf.client;
    let refresh = c.grant_types.contains(&GrantType::RefreshToken);
    let grant = LoginGrant {
        id: code.grant_id.clone(),
        org_id: code.org_id,
        client_id: client_id.to_string(),
        user_id: user.id.clone(),
        scopes: scopes.clone(),
        nonce: code.nonce.clone(),
        auth_time: code.auth_time,
        sid: code.sid.clone(),
        auth_method: code.auth_method.clone(),
        created_at: now,
        expires_at: now + c.interactive.refresh_token_ttl,
        revoked_at: None,
        revoked_reason: None,
    };
    if !opts.dry_run {
        d.grant_effect = Some(GrantEffect::Redeem {
            code_hash: code.hash.clone(),
            grant: Box::new(grant),
        });
    }
    Ok(Grant {
        client_id: client_id.to_string(),
        org: cf.org.slug.to_string(),
        subject: user.id.clone(),
        ttl: c.token_ttl,
        login: Some(Box::new(LoginIssue {
            grant_id: code.grant_id.clone(),
            sid: code.sid.clone(),
            auth_time: code.auth_time,
            nonce: code.nonce.clone(),
            id_token: scopes.iter().any(|s| s == "openid"),
            refresh_idle_until: refresh.then(|| {
                (now + c.interactive.refresh_idle_ttl).min(now + c.interactive.refresh_token_ttl)
            }),
            user: user.clone(),
        })),
        scopes,
    })
}
