//! The scopes a grant gives: what was asked, within what the client may have, out of
//! the org's catalogue.

use crate::interactive::{OIDC_SCOPES, is_oidc_scope};
use crate::model::ScopeName;
use crate::reason::Reason;
use crate::text::{clip, quoted_list};
use crate::trace::{Check, Denial, Trace};

use super::ClientFacts;

/// Checks the requested scopes (RFC 6749 §3.3): absent means every scope the client may
/// have; malformed, unknown and not-allowed scopes are refused, in that order. For a
/// person's login (`oidc`), the OpenID Connect scopes are in every catalogue and open to
/// every client.
pub(super) fn check_scopes(
    asked: Option<&[String]>,
    cf: &ClientFacts,
    oidc: bool,
    trace: &mut Trace,
) -> Result<Vec<String>, Denial> {
    let in_catalogue = |s: &str| cf.known_scopes.iter().any(|k| k.as_str() == s);
    // The OpenID Connect scopes are a person's: a client's own token never has them
    // (unless the org made a scope of that name itself, before they were built in).
    let login_only = |s: &str| !oidc && is_oidc_scope(s) && !in_catalogue(s);
    let mut allowed: Vec<&str> = cf
        .client
        .scopes
        .iter()
        .map(ScopeName::as_str)
        .filter(|s| !login_only(s))
        .collect();
    let Some(asked) = asked else {
        trace.pass(
            Check::Scope,
            format!(
                "no scope requested: granted every scope the client may have ({})",
                if allowed.is_empty() {
                    "none".into()
                } else {
                    allowed.join(" ")
                }
            ),
        );
        return Ok(allowed.iter().map(|s| s.to_string()).collect());
    };
    if oidc {
        for s in OIDC_SCOPES {
            if !allowed.contains(&s) {
                allowed.push(s);
            }
        }
    }
    let mut malformed = vec![];
    let mut unknown = vec![];
    let mut refused = vec![];
    let mut persons = vec![];
    let mut granted: Vec<String> = vec![];
    for s in asked {
        if ScopeName::parse(s).is_err() {
            malformed.push(clip(s));
        } else if login_only(s) {
            persons.push(s.clone());
        } else if !(in_catalogue(s) || oidc && is_oidc_scope(s)) {
            unknown.push(clip(s));
        } else if !allowed.contains(&s.as_str()) {
            refused.push(s.clone());
        } else if !granted.contains(s) {
            granted.push(s.clone());
        }
    }
    if !malformed.is_empty() {
        return Err(trace.fail(
            Check::Scope,
            Reason::ScopeMalformed,
            format!("malformed scope(s): {}", quoted_list(&malformed)),
        ));
    }
    if !unknown.is_empty() {
        return Err(trace.fail(
            Check::Scope,
            Reason::ScopeUnknown,
            format!(
                "unknown scope(s) {} in org '{}'; the client may have: {}",
                quoted_list(&unknown),
                cf.org.slug,
                if allowed.is_empty() {
                    "none".into()
                } else {
                    allowed.join(" ")
                }
            ),
        ));
    }
    if !persons.is_empty() {
        return Err(trace.fail(
            Check::Scope,
            Reason::ScopeNotAllowed,
            format!(
                "scope(s) {} are for a person's login (the authorization_code grant with openid), not for a token of client '{}' itself",
                quoted_list(&persons),
                cf.client.client_id
            ),
        ));
    }
    if !refused.is_empty() {
        return Err(trace.fail(
            Check::Scope,
            Reason::ScopeNotAllowed,
            format!(
                "client '{}' may not have scope(s) {}; it may have: {}",
                cf.client.client_id,
                quoted_list(&refused),
                if allowed.is_empty() {
                    "none".into()
                } else {
                    allowed.join(" ")
                }
            ),
        ));
    }
    trace.pass(Check::Scope, format!("granted: {}", granted.join(" ")));
    Ok(granted)
}
