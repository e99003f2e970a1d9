//! The resource owner password grant (RFC 6749 §4.3): a person's checks
//! ([`authenticate_person`]) behind the client's, then the client's scopes. Gated by SSO
//! enforcement like every password a human types.

use crate::model::Timestamp;
use crate::request::{ResourceOwnerCredentials, TokenRequest};
use crate::trace::{Denial, Trace};

use super::person::{Asker, PersonFacts, PersonOutcome, authenticate_person};
use super::scope::check_scopes;
use super::{ClientFacts, DecideOptions, Decision, Facts, Grant, GrantFacts};

/// The password grant (RFC 6749 §4.3) once the client has authenticated: the person's
/// checks ([`authenticate_person`]), then the client's scopes.
#[allow(clippy::too_many_arguments)]
pub(super) fn decide(
    req: &TokenRequest,
    creds: &ResourceOwnerCredentials,
    facts: &Facts,
    cf: &ClientFacts,
    now: Timestamp,
    opts: DecideOptions,
    trace: &mut Trace,
    d: &mut Decision,
) -> Result<Grant, Denial> {
    let mut p = PersonOutcome::default();
    // Facts loaded for another grant (or none): nobody is known by that username.
    let unknown = PersonFacts::default();
    let person_facts = match &facts.grant {
        GrantFacts::Password(pf) => pf.as_ref(),
        _ => &unknown,
    };
    let person = authenticate_person(
        creds,
        person_facts,
        req.source_ip,
        &cf.org,
        now,
        opts,
        Asker::Client,
        trace,
        &mut p,
    );
    d.subject = p.subject.clone();
    d.grant_reason = p.grant_reason;
    if !opts.dry_run {
        d.person_attempt = p.attempt();
    }
    if p.credential_failure && !opts.dry_run {
        d.throttle_update = Some(opts.throttle.after_failure(&facts.throttle, now));
    }
    let user_id = match person {
        Ok(id) => id,
        Err(denial) => {
            d.login_update = p.login_update;
            return Err(denial);
        }
    };
    let scopes = check_scopes(req.scope.as_deref(), cf, false, trace)?;
    d.login_update = p.login_update;
    Ok(Grant {
        client_id: cf.client.client_id.to_string(),
        org: cf.org.slug.to_string(),
        subject: user_id,
        scopes,
        ttl: cf.client.token_ttl,
        login: None,
    })
}
