//! Client authentication, shared by every grant: the throttle of (client id, source),
//! the client, its secret, how it authenticated, whether it and its org are enabled, its
//! IP allow-list and whether it may use the grant it asks for.

use std::net::IpAddr;

use crate::client_keys::{ClientKey, verify_assertion};
use crate::model::{AuthMethod, GrantType, StoredSecret, Timestamp};
use crate::reason::Reason;
use crate::request::PresentedClient;
use crate::secret::{hash_client_secret, hashes_equal};
use crate::text::{clip, quoted_list, rfc3339};
use crate::throttle::ThrottleState;
use crate::trace::{Check, Denial, Trace};

use super::{AssertionUse, ClientFacts, DecideOptions, Decision, Facts, SecretUse};

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
        Some(assertion) if presented.method == AuthMethod::PrivateKeyJwt => {
            let checked = check_assertion(assertion.expose(), cf, facts, now, opts, trace);
            match checked {
                Ok(used) => {
                    if !opts.dry_run {
                        d.assertion_use = Some(used);
                        if facts.throttle.failures > 0 {
                            d.throttle_update = Some(ThrottleState::default());
                        }
                    }
                }
                Err(denial) => {
                    // Keys the server could not fetch say nothing about the caller: an
                    // outage of the client's key server must not lock the client out.
                    if !opts.dry_run && denial.reason != Reason::ClientJwksUnavailable {
                        d.throttle_update = Some(opts.throttle.after_failure(&facts.throttle, now));
                    }
                    return Err(denial);
                }
            }
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

/// The longest an assertion may live, in seconds: its `jti` is remembered until it
/// expires, so this bounds what an authenticated client can make the server store.
pub const MAX_ASSERTION_SECONDS: i64 = 3600;

/// A `private_key_jwt` assertion (RFC 7523 §3): signed by one of the client's keys,
/// `iss` and `sub` the client, `aud` this server, unexpired, with a `jti` not seen.
fn check_assertion(
    jwt: &str,
    cf: &ClientFacts,
    facts: &Facts,
    now: Timestamp,
    opts: DecideOptions,
    trace: &mut Trace,
) -> Result<AssertionUse, Denial> {
    let id = cf.client.client_id.as_str();
    let check = Check::ClientAssertion;
    let invalid = |trace: &mut Trace, detail: String| {
        Err(trace.fail(check, Reason::ClientAssertionInvalid, detail))
    };
    // The keys registered inline, or those the server fetched from the client's
    // `jwks_uri` for this request.
    let set = match (&cf.client.jwks, &cf.client.jwks_uri, &facts.remote_jwks) {
        (Some(set), _, _) => set,
        (None, Some(_), Some(Ok(set))) => set.as_ref(),
        (None, Some(uri), fetched) => {
            let why = match fetched {
                Some(Err(e)) => e.as_str(),
                _ => "they were not fetched",
            };
            // The caller has not authenticated yet: what went wrong with the fetch is
            // for the org admin's trace only.
            return Err(trace.fail_quietly(
                check,
                Reason::ClientJwksUnavailable,
                format!(
                    "client '{id}''s keys could not be read from its jwks_uri {}: {why}",
                    clip(uri)
                ),
                format!(
                    "client '{id}''s public keys could not be fetched from its jwks_uri; an org admin can look this request up"
                ),
            ));
        }
        (None, None, _) => {
            return invalid(
                trace,
                format!(
                    "client '{id}' has no registered keys (jwks or jwks_uri); an org admin can add its public JWK Set"
                ),
            );
        }
    };
    let keys = match ClientKey::parse_set(set) {
        Ok(k) => k,
        Err(e) => {
            let from = if cf.client.jwks.is_some() {
                "registered keys"
            } else {
                "keys at its jwks_uri"
            };
            return invalid(trace, format!("client '{id}''s {from} are unusable: {e}"));
        }
    };
    let claims = match verify_assertion(jwt, &keys) {
        Ok(c) => c,
        Err(e) => return invalid(trace, e),
    };
    if claims.iss.as_deref() != Some(id) || claims.sub.as_deref() != Some(id) {
        return invalid(
            trace,
            format!(
                "the assertion's 'iss' and 'sub' must both be the client id '{id}' (RFC 7523 §3)"
            ),
        );
    }
    let token_endpoint = format!("{}/oauth/token", opts.issuer);
    let introspection = format!("{}/oauth/introspect", opts.issuer);
    let revocation = format!("{}/oauth/revoke", opts.issuer);
    let accepted = [
        opts.issuer,
        token_endpoint.as_str(),
        introspection.as_str(),
        revocation.as_str(),
    ];
    if !claims.aud.any_of(&accepted) {
        return invalid(
            trace,
            format!(
                "the assertion's 'aud' must be this server's token endpoint ({token_endpoint}) or its issuer ({})",
                opts.issuer
            ),
        );
    }
    let Some(exp) = claims.exp else {
        return invalid(trace, "the assertion has no 'exp'".into());
    };
    if exp <= now {
        return invalid(trace, format!("the assertion expired at {}", rfc3339(exp)));
    }
    if exp - now > MAX_ASSERTION_SECONDS {
        return invalid(
            trace,
            format!(
                "the assertion's 'exp' is {} s away; at most {MAX_ASSERTION_SECONDS} s are accepted",
                exp - now
            ),
        );
    }
    if claims.nbf.is_some_and(|n| n > now + 60) {
        return invalid(trace, "the assertion is not valid yet ('nbf')".into());
    }
    let jti = match claims.jti {
        Some(j) if !j.is_empty() && j.len() <= 256 => j,
        _ => {
            return invalid(
                trace,
                "the assertion needs a 'jti' of 1 to 256 characters, new for every assertion"
                    .into(),
            );
        }
    };
    if facts.assertion_seen {
        return Err(trace.fail(
            check,
            Reason::ClientAssertionReplayed,
            format!(
                "client '{id}' already used an assertion with jti '{}'; each assertion works once",
                clip(&jti)
            ),
        ));
    }
    trace.pass(
        check,
        format!(
            "signed by a registered key of '{id}', expires at {}, jti '{}'",
            rfc3339(exp),
            clip(&jti)
        ),
    );
    Ok(AssertionUse {
        jti,
        expires_at: exp,
    })
}
