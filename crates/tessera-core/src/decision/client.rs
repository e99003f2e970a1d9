//! Client authentication, shared by every grant: the throttle of (client id, source),
//! the client, its secret, how it authenticated, whether it and its org are enabled, its
//! IP allow-list and whether it may use the grant it asks for.

use std::net::IpAddr;

use crate::model::{AuthMethod, GrantType, StoredSecret, Timestamp};
use crate::reason::Reason;
use crate::request::PresentedClient;
use crate::secret::{hash_client_secret, hashes_equal};
use crate::text::{clip, quoted_list, rfc3339};
use crate::throttle::ThrottleState;
use crate::trace::{Check, Denial, Trace};

use super::{ClientFacts, DecideOptions, Decision, Facts, SecretUse};

/// Authenticates the client a request presents and checks what it may do whatever it
/// asks for (enabled, its org, its IP allow-list); returns the client's facts.
pub(super) fn authenticate<'f>(
    presented: &PresentedClient,
    source_ip: IpAddr,
    facts: &'f Facts,
    now: Timestamp,
    opts: DecideOptions,
    trace: &mut Trace,
    d: &mut Decision,
) -> Result<&'f ClientFacts, Denial> {
    let presented_id = clip(&presented.client_id);

    // Throttle before anything touches the secret.
    if opts.dry_run {
        trace.skip(
            Check::Throttle,
            format!(
                "dry run: throttling not applied ({} recent failure(s) from {})",
                facts.throttle.failures, source_ip
            ),
        );
    } else if let Some(wait) = opts.throttle.retry_after(&facts.throttle, now) {
        let mut denial = trace.fail(
            Check::Throttle,
            Reason::ClientThrottled,
            format!(
                "too many failed authentications for client '{presented_id}' from {}; retry after {wait} s",
                source_ip
            ),
        );
        denial.retry_after = Some(wait);
        return Err(denial);
    } else {
        trace.pass(
            Check::Throttle,
            format!(
                "{} recent failure(s) from {}",
                facts.throttle.failures, source_ip
            ),
        );
    }

    let fail_auth = |trace: &mut Trace, d: &mut Decision, check, reason, detail: String| {
        if !opts.dry_run {
            d.throttle_update = Some(opts.throttle.after_failure(&facts.throttle, now));
        }
        Err(trace.fail(check, reason, detail))
    };

    let Some(cf) = &facts.client else {
        return fail_auth(
            trace,
            d,
            Check::Client,
            Reason::ClientUnknown,
            format!(
                "no client has client_id '{presented_id}'; check the client id and that you are calling the right server (issuer)"
            ),
        );
    };
    let client = &cf.client;
    trace.pass(
        Check::Client,
        format!(
            "client '{presented_id}' ('{}') in org '{}'",
            clip(&client.name),
            cf.org.slug
        ),
    );

    // The secret: compare against every stored secret, each in constant time.
    match &presented.secret {
        _ if presented.method == AuthMethod::None => {
            if !client.auth_methods.contains(&AuthMethod::None) {
                return Err(trace.fail(
                    Check::ClientSecret,
                    Reason::ClientAuthMissing,
                    format!(
                        "client '{presented_id}' is confidential and sent no credentials: authenticate with {}; only a public client (token_endpoint_auth_methods [\"none\"]) sends its client_id alone",
                        quoted_list(client.auth_methods.iter().map(|m| m.as_str()))
                    ),
                ));
            }
            trace.skip(
                Check::ClientSecret,
                "a public client has no secret; PKCE binds its codes to it",
            );
        }
        None => trace.skip(
            Check::ClientSecret,
            "dry run without a secret: assumed to match an active secret",
        ),
        Some(secret) => {
            let presented = hash_client_secret(secret.expose());
            let mut matched: Option<&StoredSecret> = None;
            for s in &cf.secrets {
                if hashes_equal(&presented, &s.hash) && matched.is_none() {
                    matched = Some(s);
                }
            }
            let active = cf.secrets.iter().filter(|s| s.is_active(now)).count();
            match matched {
                None => {
                    return fail_auth(
                        trace,
                        d,
                        Check::ClientSecret,
                        Reason::ClientSecretMismatch,
                        format!(
                            "the client_secret does not match any of the {active} active secret(s) of client '{presented_id}'"
                        ),
                    );
                }
                Some(s) if s.revoked_at.is_some() => {
                    let at = rfc3339(s.revoked_at.unwrap_or_default());
                    return fail_auth(
                        trace,
                        d,
                        Check::ClientSecret,
                        Reason::ClientSecretRevoked,
                        format!(
                            "the client_secret is secret {} (…{}) of client '{presented_id}', revoked at {at}; use a current secret",
                            s.id, s.hint
                        ),
                    );
                }
                Some(s) if !s.is_active(now) => {
                    let at = rfc3339(s.expires_at.unwrap_or_default());
                    return fail_auth(
                        trace,
                        d,
                        Check::ClientSecret,
                        Reason::ClientSecretExpired,
                        format!(
                            "the client_secret is secret {} (…{}) of client '{presented_id}', whose grace period ended at {at} after a rotation; use the newer secret",
                            s.id, s.hint
                        ),
                    );
                }
                Some(s) => {
                    d.secret_used = Some(SecretUse {
                        id: s.id.clone(),
                        hint: s.hint.clone(),
                    });
                    let expiry = match s.expires_at {
                        Some(e) => format!(", expires at {} (rotation grace)", rfc3339(e)),
                        None => String::new(),
                    };
                    trace.pass(
                        Check::ClientSecret,
                        format!("matches secret {} (…{}){expiry}", s.id, s.hint),
                    );
                    if !opts.dry_run && facts.throttle.failures > 0 {
                        d.throttle_update = Some(ThrottleState::default());
                    }
                }
            }
        }
    }

    // Authenticated from here on: descriptions may be precise about policy.
    if !client.auth_methods.contains(&presented.method) {
        return Err(trace.fail(
            Check::ClientAuthMethod,
            Reason::ClientAuthMethodNotAllowed,
            format!(
                "client '{presented_id}' may not authenticate with {}; allowed: {}",
                presented.method,
                quoted_list(client.auth_methods.iter().map(|m| m.as_str()))
            ),
        ));
    }
    trace.pass(Check::ClientAuthMethod, presented.method.as_str());

    check_enabled(cf, trace)?;

    if client.ip_allowlist.is_empty() {
        trace.pass(
            Check::SourceIp,
            format!("{} (client has no IP allow-list)", source_ip),
        );
    } else if client.ip_allowlist.allows(source_ip) {
        trace.pass(
            Check::SourceIp,
            format!(
                "{} is inside the allow-list {}",
                source_ip,
                client.ip_allowlist.to_strings().join(", ")
            ),
        );
    } else {
        return Err(trace.fail(
            Check::SourceIp,
            Reason::ClientIpNotAllowed,
            format!(
                "source address {} is outside client '{presented_id}''s IP allow-list ({})",
                source_ip,
                client.ip_allowlist.to_strings().join(", ")
            ),
        ));
    }

    Ok(cf)
}

/// The client may use `grant`.
pub(super) fn check_grant_allowed(
    cf: &ClientFacts,
    grant: GrantType,
    trace: &mut Trace,
) -> Result<(), Denial> {
    let client = &cf.client;
    if !client.grant_types.contains(&grant) {
        let allowed = if client.grant_types.is_empty() {
            "none".to_string()
        } else {
            client
                .grant_types
                .iter()
                .map(|g| g.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(trace.fail(
            Check::GrantTypeAllowed,
            Reason::GrantTypeNotAllowed,
            format!(
                "client '{}' may not use grant type '{grant}'; allowed: {allowed}",
                client.client_id
            ),
        ));
    }
    trace.pass(
        Check::GrantTypeAllowed,
        format!("'{grant}' is enabled on the client"),
    );
    Ok(())
}

/// The client and its org are enabled: the token endpoint's checks after
/// authentication, and the authorization endpoint's once it trusts the redirect URI.
pub(super) fn check_enabled(cf: &ClientFacts, trace: &mut Trace) -> Result<(), Denial> {
    if !cf.client.enabled {
        return Err(trace.fail(
            Check::ClientEnabled,
            Reason::ClientDisabled,
            format!(
                "client '{}' is disabled; an org admin can enable it",
                clip(cf.client.client_id.as_str())
            ),
        ));
    }
    trace.pass(Check::ClientEnabled, "enabled");
    if !cf.org.enabled {
        return Err(trace.fail(
            Check::Org,
            Reason::OrgDisabled,
            format!("org '{}' is disabled", cf.org.slug),
        ));
    }
    trace.pass(Check::Org, format!("org '{}' is enabled", cf.org.slug));
    Ok(())
}
