//! The client credentials grant (RFC 6749 §4.4): a service, as its service account or
//! as itself. SSO enforcement never touches it; the trace says so every time.

use crate::model::{Timestamp, User};
use crate::reason::Reason;
use crate::request::TokenRequest;
use crate::text::{clip, rfc3339};
use crate::trace::{Check, Denial, Trace};

use super::person::state_change;
use super::scope::check_scopes;
use super::{ClientFacts, Decision, Grant};

/// The client credentials grant once the client has authenticated.
pub(super) fn decide(
    req: &TokenRequest,
    cf: &ClientFacts,
    now: Timestamp,
    trace: &mut Trace,
    d: &mut Decision,
) -> Result<Grant, Denial> {
    let client = &cf.client;
    let presented_id = clip(&req.client.client_id);
    let subject = match (&client.service_account_id, &cf.service_account) {
        (None, _) => {
            trace.skip(
                Check::ServiceAccount,
                "the client runs as itself (no service account); sub is the client id",
            );
            client.client_id.to_string()
        }
        (Some(id), None) => {
            return Err(trace.fail(
                Check::ServiceAccount,
                Reason::ServiceAccountMissing,
                format!(
                    "client '{presented_id}' runs as service account {id}, which no longer exists"
                ),
            ));
        }
        (Some(_), Some(sa)) => {
            d.subject = Some(sa.id.clone());
            check_service_account(sa, now, trace)?;
            sa.id.clone()
        }
    };

    let scopes = check_scopes(req.scope.as_deref(), cf, false, trace)?;

    // SSO enforcement governs humans; the trace says so on every machine grant.
    if cf.org.sso_enforced {
        trace.pass(
            Check::SsoPolicy,
            "this org enforces SAML SSO for humans; client_credentials is never subject to SSO enforcement",
        );
    } else {
        trace.skip(
            Check::SsoPolicy,
            "this org does not enforce SSO; client_credentials is never subject to it anyway",
        );
    }

    d.subject = Some(subject.clone());
    Ok(Grant {
        client_id: client.client_id.to_string(),
        org: cf.org.slug.to_string(),
        subject,
        scopes,
        ttl: client.token_ttl,
        login: None,
    })
}

fn check_service_account(sa: &User, now: Timestamp, trace: &mut Trace) -> Result<(), Denial> {
    use crate::model::UserState;
    let (by, at) = state_change(sa);
    match sa.effective_state(now) {
        UserState::Active => {
            trace.pass(
                Check::ServiceAccount,
                format!("service account '{}' ({}) is active", sa.username, sa.id),
            );
            Ok(())
        }
        UserState::Disabled => Err(trace.fail(
            Check::ServiceAccount,
            Reason::ServiceAccountDisabled,
            format!(
                "service account '{}' ({}) was disabled by {by} at {at}; an org admin can re-enable it (PATCH /api/v2/users/{} {{\"enabled\": true}})",
                sa.username, sa.id, sa.id
            ),
        )),
        UserState::Locked => {
            let until = sa
                .locked_until
                .map(|u| format!("until {}", rfc3339(u)))
                .unwrap_or_else(|| "until an admin unlocks it".into());
            Err(trace.fail(
                Check::ServiceAccount,
                Reason::ServiceAccountLocked,
                format!(
                    "service account '{}' ({}) was locked by {by} at {at}, {until}",
                    sa.username, sa.id
                ),
            ))
        }
    }
}
