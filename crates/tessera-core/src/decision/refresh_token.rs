//! The refresh token grant (RFC 6749 §6) with rotation (RFC 9700 §4.14.2): a token
//! works once; the next comes with each use, and a used one presented again revokes the
//! whole family, since one of its two holders is not the client.

use crate::model::Timestamp;
use crate::reason::Reason;
use crate::request::TokenRequest;
use crate::text::{quoted_list, rfc3339};
use crate::trace::{Check, Denial, Trace};

use super::person::{Asker, check_human_state};
use super::{
    ClientFacts, DecideOptions, Decision, Facts, Grant, GrantEffect, GrantFacts, LoginIssue,
    RefreshFacts,
};

/// A refresh once the client has authenticated (the token itself was looked up by its
/// hash when the facts were loaded).
pub(super) fn decide(
    req: &TokenRequest,
    facts: &Facts,
    cf: &ClientFacts,
    now: Timestamp,
    opts: DecideOptions,
    trace: &mut Trace,
    d: &mut Decision,
) -> Result<Grant, Denial> {
    let unknown = RefreshFacts::default();
    let rf = match &facts.grant {
        GrantFacts::Refresh(r) => r.as_ref(),
        _ => &unknown,
    };
    let client_id = cf.client.client_id.as_str();
    let Some((token, grant)) = &rf.token else {
        return Err(trace.fail(
            Check::RefreshToken,
            Reason::RefreshTokenInvalid,
            "the refresh token is not one this server issued, or its family ended long enough ago to be forgotten; log the person in again",
        ));
    };
    d.subject = Some(grant.user_id.clone());
    if grant.client_id != client_id {
        return Err(trace.fail(
            Check::RefreshToken,
            Reason::RefreshTokenInvalid,
            format!("the refresh token was issued to another client, not to '{client_id}'"),
        ));
    }
    if let Some(at) = grant.revoked_at {
        return Err(trace.fail(
            Check::RefreshToken,
            Reason::RefreshTokenRevoked,
            format!(
                "the refresh token's grant {} was revoked at {} ({}); log the person in again",
                grant.id,
                rfc3339(at),
                grant
                    .revoked_reason
                    .as_deref()
                    .unwrap_or("no reason recorded")
            ),
        ));
    }
    if let Some(used) = token.used_at {
        if !opts.dry_run {
            d.grant_effect = Some(GrantEffect::Revoke {
                grant_id: grant.id.clone(),
                reason: Reason::RefreshTokenReused,
            });
        }
        return Err(trace.fail(
            Check::RefreshToken,
            Reason::RefreshTokenReused,
            format!(
                "the refresh token was already used at {}; each use returns the next one, so a used one seen again means two holders: every token of its grant {} is revoked",
                rfc3339(used),
                grant.id
            ),
        ));
    }
    if grant.expires_at <= now || token.idle_expires_at <= now {
        let (what, at) = if grant.expires_at <= now {
            ("the grant's absolute lifetime", grant.expires_at)
        } else {
            ("its idle lifetime (unused too long)", token.idle_expires_at)
        };
        return Err(trace.fail(
            Check::RefreshToken,
            Reason::RefreshTokenExpired,
            format!(
                "the refresh token ended at {} with {what}; log the person in again",
                rfc3339(at)
            ),
        ));
    }
    trace.pass(
        Check::RefreshToken,
        format!(
            "unused, of grant {} (login at {}), ends at {}",
            grant.id,
            rfc3339(grant.auth_time),
            rfc3339(token.idle_expires_at.min(grant.expires_at))
        ),
    );

    let Some(user) = &rf.user else {
        return Err(trace.fail(
            Check::ResourceOwner,
            Reason::RefreshTokenRevoked,
            format!("user {} of the grant no longer exists", grant.user_id),
        ));
    };
    check_human_state(user, now, Asker::Client, trace)?;
    // SSO enforced since a password login: the person logs in again, through the IdP.
    if cf.org.sso_enforced && grant.auth_method != "saml" && !rf.break_glass {
        return Err(trace.fail(
            Check::SsoPolicy,
            Reason::SsoRequired,
            format!(
                "org '{}' enforces SAML SSO and this grant comes from a login by {}; the person logs in again through SSO",
                cf.org.slug, grant.auth_method
            ),
        ));
    }

    // RFC 6749 §6: a narrower scope may be asked for, never a wider one.
    let scopes = match &req.scope {
        None => {
            trace.pass(
                Check::Scope,
                format!(
                    "no scope requested: the grant's ({})",
                    grant.scopes.join(" ")
                ),
            );
            grant.scopes.clone()
        }
        Some(asked) => {
            let wider: Vec<&str> = asked
                .iter()
                .filter(|s| !grant.scopes.contains(s))
                .map(String::as_str)
                .collect();
            if !wider.is_empty() {
                return Err(trace.fail(
                    Check::Scope,
                    Reason::ScopeNotAllowed,
                    format!(
                        "scope(s) {} were not granted at the login; a refresh may ask for the grant's scopes ({}) or fewer",
                        quoted_list(wider),
                        grant.scopes.join(" ")
                    ),
                ));
            }
            let mut granted: Vec<String> = Vec::new();
            for s in asked {
                if !granted.contains(s) {
                    granted.push(s.clone());
                }
            }
            trace.pass(Check::Scope, format!("granted: {}", granted.join(" ")));
            granted
        }
    };
    if !opts.dry_run {
        d.grant_effect = Some(GrantEffect::Rotate {
            old_hash: token.hash.clone(),
        });
    }
    let c = &cf.client;
    Ok(Grant {
        client_id: client_id.to_string(),
        org: cf.org.slug.to_string(),
        subject: user.id.clone(),
        ttl: c.token_ttl,
        login: Some(Box::new(LoginIssue {
            grant_id: grant.id.clone(),
            sid: grant.sid.clone(),
            auth_time: grant.auth_time,
            // OIDC Core §12.2: a refreshed ID token carries no nonce.
            nonce: None,
            id_token: scopes.iter().any(|s| s == "openid"),
            refresh_idle_until: Some((now + c.interactive.refresh_idle_ttl).min(grant.expires_at)),
            user: user.clone(),
        })),
        scopes,
    })
}
