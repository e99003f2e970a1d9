//! Turning the bytes of a token request into a [`TokenRequest`], recording each step in
//! the trace. The HTTP layer hands over the raw pieces ([`RawTokenRequest`]); nothing
//! here knows about HTTP types.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::model::{AuthMethod, GrantType};
use crate::reason::Reason;
use crate::secret::SecretString;
use crate::text::{clip, quoted_list};
use crate::trace::{Check, Denial, Trace};

/// The largest token request body read, in bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// A token request as it arrived, before any parsing.
#[derive(Debug, Clone, Copy)]
pub struct RawTokenRequest<'a> {
    /// The `Content-Type` header, if any.
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    /// The body was larger than the endpoint accepts and was not read.
    pub body_too_large: bool,
    /// The `Authorization` header, if any. Never logged.
    pub authorization: Option<&'a str>,
    pub source_ip: IpAddr,
}

/// The client credentials a request presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedClient {
    pub method: AuthMethod,
    pub client_id: String,
    /// The secret, or for `private_key_jwt` the assertion. `None` for a public client
    /// (method `none`), and in a dry run that did not include the secret: the secret
    /// check is then skipped and says so in the trace.
    pub secret: Option<SecretString>,
}

/// A syntactically valid token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub client: PresentedClient,
    /// The scope tokens asked for; `None` when `scope` was absent (RFC 6749 §3.3 default).
    pub scope: Option<Vec<String>>,
    pub source_ip: IpAddr,
    /// What is asked for, with the parameters only that grant has.
    pub grant: GrantRequest,
}

impl TokenRequest {
    /// The grant type asked for.
    pub fn grant_type(&self) -> GrantType {
        self.grant.grant_type()
    }
}

/// A grant the token endpoint implements, with the parameters of that grant: one variant
/// per grant, so a decision matches over them and no field is "present only for".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantRequest {
    /// RFC 6749 §4.4: nothing beyond the client and the scope.
    ClientCredentials,
    /// RFC 6749 §4.3: the resource owner's username and password.
    Password(ResourceOwnerCredentials),
    /// RFC 6749 §4.1.3 with RFC 7636 §4.5: a code, its redirect URI and PKCE verifier.
    AuthorizationCode(CodeExchange),
    /// RFC 6749 §6: a refresh token.
    RefreshToken(SecretString),
    /// RFC 7522 §2.1: a SAML 2.0 assertion (base64url), never logged or audited.
    SamlBearer(SecretString),
}

/// The parameters of an authorization code exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeExchange {
    /// Never logged, traced or audited.
    pub code: SecretString,
    pub redirect_uri: String,
    /// Never logged, traced or audited.
    pub code_verifier: Option<SecretString>,
}

impl GrantRequest {
    /// The grant type of this request.
    pub fn grant_type(&self) -> GrantType {
        match self {
            GrantRequest::ClientCredentials => GrantType::ClientCredentials,
            GrantRequest::Password(_) => GrantType::Password,
            GrantRequest::AuthorizationCode(_) => GrantType::AuthorizationCode,
            GrantRequest::RefreshToken(_) => GrantType::RefreshToken,
            GrantRequest::SamlBearer(_) => GrantType::SamlBearer,
        }
    }
}

/// `username` and `password` of a password grant (RFC 6749 §4.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceOwnerCredentials {
    pub username: String,
    /// Never logged, traced or audited.
    pub password: SecretString,
}

/// Which client a request names, known even when the request is refused before client
/// authentication completes, so the refusal lands in that client's org audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHint {
    pub client_id: String,
    /// The Basic header decoded to this value alone, without `:secret`.
    pub basic_without_colon: bool,
}

/// The body encodings the token endpoint accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Form,
    Json,
}

/// A request's parameters, in the order they came, with empty values dropped
/// (RFC 6749 §3.1: "parameters sent without a value MUST be treated as if they were
/// omitted").
#[derive(Debug, Default)]
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a raw token request, appending the `content_type`, `body`, `parameters`,
/// `grant_type` and `client_auth` checks to `trace`, and noting in `hint` the client the
/// request names as soon as that is known.
pub fn parse_token_request(
    raw: &RawTokenRequest<'_>,
    trace: &mut Trace,
    hint: &mut Option<ClientHint>,
) -> Result<TokenRequest, Denial> {
    let kind = content_type(raw.content_type, trace)?;
    if raw.body_too_large {
        return Err(trace.fail(
            Check::Body,
            Reason::BodyTooLarge,
            format!(
                "the request body is larger than {} KiB and was not read",
                MAX_BODY / 1024
            ),
        ));
    }
    let params = body(kind, raw.body, TOKEN_IF_EMPTY, trace)?;
    if let Some(id) = params.get("client_id") {
        *hint = Some(ClientHint {
            client_id: id.to_string(),
            basic_without_colon: false,
        });
    }
    no_duplicates(&params, trace)?;
    let grant_type = grant_type(&params, trace)?;
    let client = client_auth(
        raw.authorization,
        &params,
        grant_type.is_interactive(),
        trace,
        hint,
    )?;
    let grant = grant_request(grant_type, &params, trace)?;
    let scope = params.get("scope").map(|s| {
        s.split(' ')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    });
    Ok(TokenRequest {
        client,
        scope,
        source_ip: raw.source_ip,
        grant,
    })
}

/// The parameters of the grant asked for.
fn grant_request(
    grant_type: GrantType,
    params: &Params,
    trace: &mut Trace,
) -> Result<GrantRequest, Denial> {
    match grant_type {
        GrantType::ClientCredentials => Ok(GrantRequest::ClientCredentials),
        GrantType::Password => Ok(GrantRequest::Password(resource_owner(params, trace)?)),
        GrantType::AuthorizationCode => {
            let (code, redirect_uri) = (params.get("code"), params.get("redirect_uri"));
            let (Some(code), Some(redirect_uri)) = (code, redirect_uri) else {
                let missing: Vec<&str> = [("code", code), ("redirect_uri", redirect_uri)]
                    .into_iter()
                    .filter(|(_, v)| v.is_none())
                    .map(|(k, _)| k)
                    .collect();
                return Err(trace.fail(
                    Check::Parameters,
                    Reason::ParameterMissing,
                    format!(
                        "grant_type=authorization_code needs the {} parameter{} (RFC 6749 §4.1.3): the code the authorization endpoint gave and the redirect_uri the authorization request used",
                        quoted_list(missing.iter().copied()),
                        if missing.len() > 1 { "s" } else { "" }
                    ),
                ));
            };
            trace.pass(
                Check::Parameters,
                format!(
                    "authorization code exchange for redirect_uri '{}'{}",
                    clip(redirect_uri),
                    if params.get("code_verifier").is_some() {
                        ", with a PKCE code_verifier"
                    } else {
                        ", without a PKCE code_verifier"
                    }
                ),
            );
            Ok(GrantRequest::AuthorizationCode(CodeExchange {
                code: SecretString::new(code),
                redirect_uri: redirect_uri.to_string(),
                code_verifier: params.get("code_verifier").map(SecretString::new),
            }))
        }
        GrantType::RefreshToken => match params.get("refresh_token") {
            Some(t) => {
                trace.pass(Check::Parameters, "a refresh token to exchange");
                Ok(GrantRequest::RefreshToken(SecretString::new(t)))
            }
            None => Err(trace.fail(
                Check::Parameters,
                Reason::ParameterMissing,
                "grant_type=refresh_token needs the 'refresh_token' parameter (RFC 6749 §6)",
            )),
        },
        GrantType::SamlBearer => match params.get("assertion") {
            Some(a) => {
                trace.pass(Check::Parameters, "a SAML 2.0 assertion to exchange");
                Ok(GrantRequest::SamlBearer(SecretString::new(a)))
            }
            None => Err(trace.fail(
                Check::Parameters,
                Reason::ParameterMissing,
                "grant_type=urn:ietf:params:oauth:grant-type:saml2-bearer needs the 'assertion' parameter: one SAML 2.0 assertion from the org's IdP, base64url-encoded (RFC 7522 §2.1)",
            )),
        },
    }
}

/// A token request given field by field rather than encoded (the dry run): the same
/// grant-type and grant-parameter checks as [`parse_token_request`], after one step that
/// says where the fields came from. `params` holds the grant's own parameters.
pub fn request_from_fields(
    grant_type: &str,
    client: PresentedClient,
    scope: Option<&str>,
    params: &[(&str, &str)],
    source_ip: IpAddr,
    trace: &mut Trace,
) -> Result<TokenRequest, Denial> {
    trace.pass(
        Check::Parameters,
        "dry run: the request's fields as the diagnosis was given them",
    );
    let mut all = vec![("grant_type".to_string(), grant_type.to_string())];
    all.extend(
        params
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let params = Params(all);
    let grant_type = self::grant_type(&params, trace)?;
    trace.pass(
        Check::ClientAuth,
        format!("{}, client_id '{}'", client.method, clip(&client.client_id)),
    );
    let grant = grant_request(grant_type, &params, trace)?;
    Ok(TokenRequest {
        client,
        scope: scope.map(|s| {
            s.split(' ')
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect()
        }),
        source_ip,
        grant,
    })
}

/// A request to an endpoint that authenticates its client and has no grant type
/// (introspection, revocation): the client and the other parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    pub client: PresentedClient,
    /// The parameters besides the client's credentials, as sent.
    pub params: Vec<(String, String)>,
    pub source_ip: IpAddr,
}

impl ClientRequest {
    /// The value of a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses such a request with the token endpoint's rules (content type, body, no
/// repeated parameter, one client authentication); `public_ok` lets a public client name
/// itself with `client_id` alone (revocation, RFC 7009 §2.1).
pub fn parse_client_request(
    raw: &RawTokenRequest<'_>,
    public_ok: bool,
    trace: &mut Trace,
    hint: &mut Option<ClientHint>,
) -> Result<ClientRequest, Denial> {
    let kind = content_type(raw.content_type, trace)?;
    if raw.body_too_large {
        return Err(trace.fail(
            Check::Body,
            Reason::BodyTooLarge,
            format!(
                "the request body is larger than {} KiB and was not read",
                MAX_BODY / 1024
            ),
        ));
    }
    let params = body(
        kind,
        raw.body,
        (
            Reason::ParameterMissing,
            "the request body is empty; send token=<the token>",
        ),
        trace,
    )?;
    if let Some(id) = params.get("client_id") {
        *hint = Some(ClientHint {
            client_id: id.to_string(),
            basic_without_colon: false,
        });
    }
    no_duplicates(&params, trace)?;
    let client = client_auth(raw.authorization, &params, public_ok, trace, hint)?;
    Ok(ClientRequest {
        client,
        params: params
            .0
            .into_iter()
            .filter(|(k, _)| k != "client_secret" && k != "client_id")
            .collect(),
        source_ip: raw.source_ip,
    })
}

/// The password grant's `username` and `password` (RFC 6749 §4.3.2: both required).
fn resource_owner(params: &Params, trace: &mut Trace) -> Result<ResourceOwnerCredentials, Denial> {
    let username = params.get("username");
    let password = params.get("password");
    let missing: Vec<&str> = [("username", username), ("password", password)]
        .into_iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k)
        .collect();
    match (username, password) {
        (Some(u), Some(p)) => {
            trace.pass(
                Check::Parameters,
                format!("password grant for username '{}'", clip(u)),
            );
            Ok(ResourceOwnerCredentials {
                username: u.to_string(),
                password: SecretString::new(p),
            })
        }
        _ => Err(trace.fail(
            Check::Parameters,
            Reason::ParameterMissing,
            format!(
                "grant_type=password needs the {} parameter{} (RFC 6749 §4.3.2); services should use grant_type=client_credentials instead",
                quoted_list(missing.iter().copied()),
                if missing.len() > 1 { "s" } else { "" }
            ),
        )),
    }
}

fn content_type(ct: Option<&str>, trace: &mut Trace) -> Result<BodyKind, Denial> {
    let Some(ct) = ct else {
        trace.pass(
            Check::ContentType,
            "no Content-Type header; body read as application/x-www-form-urlencoded",
        );
        return Ok(BodyKind::Form);
    };
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/x-www-form-urlencoded" => {
            trace.pass(Check::ContentType, "application/x-www-form-urlencoded");
            Ok(BodyKind::Form)
        }
        "application/json" => {
            trace.pass(
                Check::ContentType,
                "application/json (accepted as an extension; the standard is form encoding)",
            );
            Ok(BodyKind::Json)
        }
        _ => Err(trace.fail(
            Check::ContentType,
            Reason::ContentTypeUnsupported,
            format!(
                "Content-Type '{}' is not supported; send application/x-www-form-urlencoded (RFC 6749 §4.4.2) or application/json",
                clip(&media)
            ),
        )),
    }
}

/// What an empty body is refused as: the endpoint's first required parameter.
type IfEmpty = (Reason, &'static str);

const TOKEN_IF_EMPTY: IfEmpty = (
    Reason::GrantTypeMissing,
    "the request body is empty; send at least grant_type=client_credentials",
);

fn body(
    kind: BodyKind,
    body: &[u8],
    if_empty: IfEmpty,
    trace: &mut Trace,
) -> Result<Params, Denial> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(trace.fail(
            Check::Body,
            Reason::BodyMalformed,
            "the request body is not valid UTF-8",
        ));
    };
    let pairs = match kind {
        BodyKind::Form => form_urlencoded::parse(text.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect::<Vec<_>>(),
        BodyKind::Json => json_params(text).map_err(|why| {
            trace.fail(
                Check::Body,
                Reason::BodyMalformed,
                format!("the JSON body cannot be read: {why}"),
            )
        })?,
    };
    let params: Vec<_> = pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    if params.is_empty() {
        return Err(trace.fail(Check::Body, if_empty.0, if_empty.1));
    }
    let names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
    trace.pass(
        Check::Body,
        format!("{} parameter(s): {}", names.len(), names.join(", ")),
    );
    Ok(Params(params))
}

/// Reads a JSON object of parameters, keeping repeated keys (so duplicates are reported,
/// not silently merged). `scope` may also be an array of strings.
fn json_params(text: &str) -> Result<Vec<(String, String)>, String> {
    use serde::de::{Deserializer, MapAccess, Visitor};

    struct Pairs(Vec<(String, serde_json::Value)>);
    impl<'de> serde::Deserialize<'de> for Pairs {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Pairs;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Pairs, A::Error> {
                    let mut v = Vec::new();
                    while let Some((k, val)) = m.next_entry::<String, serde_json::Value>()? {
                        v.push((k, val));
                    }
                    Ok(Pairs(v))
                }
            }
            d.deserialize_map(V)
        }
    }

    let Pairs(raw) = serde_json::from_str(text).map_err(|e| {
        // serde_json's messages name positions and expectations, never the input.
        e.to_string()
    })?;
    let mut out = Vec::with_capacity(raw.len());
    for (k, v) in raw {
        let value = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Null => String::new(),
            serde_json::Value::Array(items) if k == "scope" => {
                let mut parts = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        serde_json::Value::String(s) => parts.push(s),
                        _ => return Err("'scope' must be a string or an array of strings".into()),
                    }
                }
                parts.join(" ")
            }
            _ => {
                return Err(format!("the value of '{}' must be a string", clip(&k)));
            }
        };
        out.push((k, value));
    }
    Ok(out)
}

fn no_duplicates(params: &Params, trace: &mut Trace) -> Result<(), Denial> {
    let mut seen: Vec<&str> = Vec::with_capacity(params.0.len());
    for (k, _) in &params.0 {
        if seen.contains(&k.as_str()) {
            return Err(trace.fail(
                Check::Parameters,
                Reason::ParameterDuplicated,
                format!(
                    "parameter '{}' appears more than once (RFC 6749 §3.2)",
                    clip(k)
                ),
            ));
        }
        seen.push(k);
    }
    trace.pass(Check::Parameters, "no parameter is repeated");
    Ok(())
}

fn grant_type(params: &Params, trace: &mut Trace) -> Result<GrantType, Denial> {
    let Some(g) = params.get("grant_type") else {
        return Err(trace.fail(
            Check::GrantType,
            Reason::GrantTypeMissing,
            "the 'grant_type' parameter is missing; for a service use grant_type=client_credentials",
        ));
    };
    match g.parse::<GrantType>() {
        Ok(gt) if gt.is_implemented() => {
            trace.pass(Check::GrantType, gt.as_str());
            Ok(gt)
        }
        Ok(gt) => Err(trace.fail(
            Check::GrantType,
            Reason::GrantTypeUnsupported,
            format!(
                "grant type '{gt}' is not supported by this server; supported: {}",
                quoted_list(supported_grants())
            ),
        )),
        Err(_) => Err(trace.fail(
            Check::GrantType,
            Reason::GrantTypeUnsupported,
            format!(
                "grant type '{}' is unknown; supported: {}",
                clip(g),
                quoted_list(supported_grants())
            ),
        )),
    }
}

fn supported_grants() -> Vec<&'static str> {
    GrantType::ALL
        .into_iter()
        .filter(|g| g.is_implemented())
        .map(GrantType::as_str)
        .collect()
}

fn client_auth(
    authorization: Option<&str>,
    params: &Params,
    public_ok: bool,
    trace: &mut Trace,
    hint: &mut Option<ClientHint>,
) -> Result<PresentedClient, Denial> {
    let body_id = params.get("client_id");
    let body_secret = params.get("client_secret");
    let check = Check::ClientAuth;
    let assertion_type = params.get("client_assertion_type");
    let assertion = params.get("client_assertion");
    if assertion_type.is_some() || assertion.is_some() {
        return client_assertion(
            assertion_type,
            assertion,
            body_id,
            authorization.is_some() || body_secret.is_some(),
            trace,
            hint,
        );
    }
    if let Some(header) = authorization {
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if !scheme.eq_ignore_ascii_case("basic") {
            // Name the scheme only when it looks like one: a header without a scheme
            // may be a bare credential, which must not be echoed.
            let named = if !scheme.is_empty()
                && scheme.len() <= 16
                && scheme.chars().all(|c| c.is_ascii_alphabetic())
                && !rest.is_empty()
            {
                format!("scheme '{scheme}'")
            } else {
                "a value without a recognisable scheme".to_string()
            };
            return Err(trace.fail(
                check,
                Reason::ClientAuthSchemeUnsupported,
                format!(
                    "the Authorization header carries {named}, which the token endpoint does not accept; use Basic (client_secret_basic) or send client_id and client_secret in the body"
                ),
            ));
        }
        let (id, secret) = decode_basic(rest.trim()).map_err(|(why, alone)| {
            if let Some(value) = alone {
                *hint = Some(ClientHint {
                    client_id: value,
                    basic_without_colon: true,
                });
            }
            trace.fail(check, Reason::BasicHeaderMalformed, why)
        })?;
        *hint = Some(ClientHint {
            client_id: id.clone(),
            basic_without_colon: false,
        });
        if body_secret.is_some() {
            return Err(trace.fail(
                check,
                Reason::ClientAuthMultiple,
                "client credentials were sent both in the Authorization header and in the body (client_secret); use exactly one method (RFC 6749 §2.3)",
            ));
        }
        if let Some(bid) = body_id
            && bid != id
        {
            return Err(trace.fail(
                check,
                Reason::ClientAuthMultiple,
                format!(
                    "client_id '{}' in the body differs from client_id '{}' in the Authorization header",
                    clip(bid),
                    clip(&id)
                ),
            ));
        }
        trace.pass(
            check,
            format!("client_secret_basic, client_id '{}'", clip(&id)),
        );
        return Ok(PresentedClient {
            method: AuthMethod::ClientSecretBasic,
            client_id: id,
            secret: Some(secret),
        });
    }
    match (body_id, body_secret) {
        (Some(id), Some(secret)) => {
            trace.pass(
                check,
                format!("client_secret_post, client_id '{}'", clip(id)),
            );
            Ok(PresentedClient {
                method: AuthMethod::ClientSecretPost,
                client_id: id.to_string(),
                secret: Some(SecretString::new(secret)),
            })
        }
        // A public client (RFC 6749 §2.1) names itself and proves nothing: it may only take
        // part in a person's login, where PKCE binds the code to it.
        (Some(id), None) if public_ok => {
            trace.pass(
                check,
                format!("none (a public client), client_id '{}'", clip(id)),
            );
            Ok(PresentedClient {
                method: AuthMethod::None,
                client_id: id.to_string(),
                secret: None,
            })
        }
        (Some(id), None) => Err(trace.fail(
            check,
            Reason::ClientAuthMissing,
            format!(
                "client_id '{}' was sent without a client_secret; send the secret in the body or use HTTP Basic authentication",
                clip(id)
            ),
        )),
        (None, Some(_)) => Err(trace.fail(
            check,
            Reason::ClientAuthMissing,
            "client_secret was sent without client_id",
        )),
        (None, None) => Err(trace.fail(
            check,
            Reason::ClientAuthMissing,
            "no client credentials: send an Authorization: Basic header with base64(client_id:client_secret), or client_id and client_secret in the body",
        )),
    }
}

/// `private_key_jwt` (RFC 7523 §2.2): the assertion names the client (`sub`); its
/// signature and claims are the decision's to check, against the client's keys.
fn client_assertion(
    assertion_type: Option<&str>,
    assertion: Option<&str>,
    body_id: Option<&str>,
    other_credentials: bool,
    trace: &mut Trace,
    hint: &mut Option<ClientHint>,
) -> Result<PresentedClient, Denial> {
    let check = Check::ClientAuth;
    if other_credentials {
        return Err(trace.fail(
            check,
            Reason::ClientAuthMultiple,
            "a client_assertion came with other client credentials (a client_secret or an Authorization header); use exactly one method (RFC 6749 §2.3)",
        ));
    }
    if assertion_type != Some(crate::client_keys::ASSERTION_TYPE) {
        return Err(trace.fail(
            check,
            Reason::ClientAssertionInvalid,
            format!(
                "client_assertion_type must be '{}' (RFC 7523 §2.2)",
                crate::client_keys::ASSERTION_TYPE
            ),
        ));
    }
    let Some(assertion) = assertion else {
        return Err(trace.fail(
            check,
            Reason::ClientAssertionInvalid,
            "client_assertion_type came without a client_assertion",
        ));
    };
    let claims = crate::client_keys::unverified_claims(assertion);
    let named = claims
        .as_ref()
        .and_then(|c| c.sub.clone().or_else(|| c.iss.clone()));
    let Some(id) = named.or_else(|| body_id.map(str::to_string)) else {
        return Err(trace.fail(
            check,
            Reason::ClientAssertionInvalid,
            "the client_assertion is not a JWT naming its client in 'sub', and no client_id came with it",
        ));
    };
    *hint = Some(ClientHint {
        client_id: id.clone(),
        basic_without_colon: false,
    });
    if let Some(b) = body_id
        && b != id
    {
        return Err(trace.fail(
            check,
            Reason::ClientAssertionInvalid,
            format!(
                "client_id '{}' differs from the client the assertion names ('{}')",
                clip(b),
                clip(&id)
            ),
        ));
    }
    trace.pass(check, format!("private_key_jwt, client_id '{}'", clip(&id)));
    Ok(PresentedClient {
        method: AuthMethod::PrivateKeyJwt,
        client_id: id,
        secret: Some(SecretString::new(assertion)),
    })
}

/// Decodes `base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1). The error
/// text never contains any part of the decoded value; when the value has no `:` it is
/// returned beside the error (it may be a client id alone, as in the seeds).
fn decode_basic(b64: &str) -> Result<(String, SecretString), (String, Option<String>)> {
    let plain = |m: &str| (m.to_string(), None);
    if b64.is_empty() {
        return Err(plain(
            "the Authorization: Basic header carries no credentials",
        ));
    }
    let bytes = STANDARD
        .decode(b64)
        .map_err(|_| plain("the Authorization: Basic value is not valid base64"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| plain("the decoded Authorization: Basic value is not UTF-8"))?;
    let Some((id, secret)) = text.split_once(':') else {
        return Err((
            "the decoded Authorization: Basic value has no ':' between client_id and client_secret; encode 'client_id:client_secret', not the client id alone".into(),
            Some(text),
        ));
    };
    let id = form_decode(id)
        .ok_or_else(|| plain("the client_id in the Basic header is not valid form-url-encoding"))?;
    let secret = form_decode(secret).ok_or_else(|| {
        plain("the client_secret in the Basic header is not valid form-url-encoding")
    })?;
    if id.is_empty() {
        return Err(plain(
            "the client_id in the Authorization: Basic header is empty",
        ));
    }
    Ok((id, SecretString::new(secret)))
}

/// `application/x-www-form-urlencoded` decoding of one component (RFC 6749 §2.3.1, Appendix B).
fn form_decode(s: &str) -> Option<String> {
    if !s.contains(['%', '+']) {
        return Some(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                out.push(v);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Verdict;

    fn raw<'a>(ct: Option<&'a str>, body: &'a str, auth: Option<&'a str>) -> RawTokenRequest<'a> {
        RawTokenRequest {
            content_type: ct,
            body: body.as_bytes(),
            body_too_large: false,
            authorization: auth,
            source_ip: "127.0.0.1".parse().unwrap(),
        }
    }

    fn parse(r: RawTokenRequest) -> (Result<TokenRequest, Denial>, Trace) {
        let mut t = Trace::default();
        let out = parse_token_request(&r, &mut t, &mut None);
        (out, t)
    }

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    #[test]
    fn form_post_credentials() {
        let (r, t) = parse(raw(
            FORM,
            "grant_type=client_credentials&client_id=a&client_secret=s3&scope=x%20y",
            None,
        ));
        let r = r.unwrap();
        assert_eq!(r.client.method, AuthMethod::ClientSecretPost);
        assert_eq!(r.client.secret.unwrap().expose(), "s3");
        assert_eq!(r.scope.unwrap(), vec!["x", "y"]);
        assert!(t.steps().iter().all(|s| s.verdict == Verdict::Pass));
    }

    #[test]
    fn json_body_is_accepted_with_scope_array() {
        let (r, _) = parse(raw(
            Some("application/json; charset=utf-8"),
            r#"{"grant_type":"client_credentials","client_id":"a","client_secret":"s","scope":["p","q"]}"#,
            None,
        ));
        assert_eq!(r.unwrap().scope.unwrap(), vec!["p", "q"]);
    }

    #[test]
    fn refusals() {
        let cases: &[(Option<&str>, &str, Option<&str>, Reason)] = &[
            (
                Some("text/plain"),
                "x",
                None,
                Reason::ContentTypeUnsupported,
            ),
            (
                Some("application/json"),
                "{nope",
                None,
                Reason::BodyMalformed,
            ),
            (
                Some("application/json"),
                r#"{"grant_type":1}"#,
                None,
                Reason::BodyMalformed,
            ),
            (FORM, "", None, Reason::GrantTypeMissing),
            (
                FORM,
                "grant_type=a&grant_type=b",
                None,
                Reason::ParameterDuplicated,
            ),
            (
                Some("application/json"),
                r#"{"grant_type":"client_credentials","grant_type":"x"}"#,
                None,
                Reason::ParameterDuplicated,
            ),
            (FORM, "client_id=a", None, Reason::GrantTypeMissing),
            (
                FORM,
                "grant_type=implicit",
                None,
                Reason::GrantTypeUnsupported,
            ),
            (
                FORM,
                "grant_type=refresh_token&client_id=a",
                None,
                Reason::ParameterMissing,
            ),
            (
                FORM,
                "grant_type=authorization_code&client_id=a&code=x",
                None,
                Reason::ParameterMissing,
            ),
            (
                FORM,
                "grant_type=password&client_id=a&client_secret=s&username=u",
                None,
                Reason::ParameterMissing,
            ),
            (
                FORM,
                "grant_type=client_credentials",
                None,
                Reason::ClientAuthMissing,
            ),
            (
                FORM,
                "grant_type=client_credentials&client_id=a",
                None,
                Reason::ClientAuthMissing,
            ),
            (
                FORM,
                "grant_type=client_credentials&client_secret=a",
                None,
                Reason::ClientAuthMissing,
            ),
            // base64("my-app-id"): the client id alone, as in the seeds.
            (
                FORM,
                "grant_type=client_credentials",
                Some("Basic bXktYXBwLWlk"),
                Reason::BasicHeaderMalformed,
            ),
            (
                FORM,
                "grant_type=client_credentials",
                Some("Basic !!!"),
                Reason::BasicHeaderMalformed,
            ),
            (
                FORM,
                "grant_type=client_credentials",
                Some("Bearer abc"),
                Reason::ClientAuthSchemeUnsupported,
            ),
            (
                FORM,
                "grant_type=client_credentials",
                Some("id:secret"),
                Reason::ClientAuthSchemeUnsupported,
            ),
            // base64("a:b") plus a body secret.
            (
                FORM,
                "grant_type=client_credentials&client_secret=b",
                Some("Basic YTpi"),
                Reason::ClientAuthMultiple,
            ),
            (
                FORM,
                "grant_type=client_credentials&client_id=z",
                Some("Basic YTpi"),
                Reason::ClientAuthMultiple,
            ),
        ];
        for (ct, body, auth, want) in cases {
            let (r, t) = parse(raw(*ct, body, *auth));
            let d = r.expect_err(body);
            assert_eq!(d.reason, *want, "{body} {auth:?}: {}", d.description);
            let last = t.steps().last().unwrap();
            assert_eq!(last.verdict, Verdict::Fail);
        }
    }

    #[test]
    fn basic_is_form_decoded() {
        // base64("my%3Aid:p%40ss+word")
        let h = format!("Basic {}", STANDARD.encode("my%3Aid:p%40ss+word"));
        let (r, _) = parse(raw(FORM, "grant_type=client_credentials", Some(&h)));
        let c = r.unwrap().client;
        assert_eq!(c.client_id, "my:id");
        assert_eq!(c.secret.unwrap().expose(), "p@ss word");
        // A body client_id equal to the Basic one is fine.
        let h = format!("Basic {}", STANDARD.encode("a:b"));
        let (r, _) = parse(raw(
            FORM,
            "grant_type=client_credentials&client_id=a",
            Some(&h),
        ));
        assert_eq!(r.unwrap().client.method, AuthMethod::ClientSecretBasic);
    }

    #[test]
    fn refusal_never_echoes_secret() {
        let secret = "tsec_SUPERSECRETVALUE";
        let h = format!("Basic {}", STANDARD.encode(secret));
        let (r, t) = parse(raw(FORM, "grant_type=client_credentials", Some(&h)));
        let d = r.unwrap_err();
        assert!(!d.description.contains("SUPERSECRET"));
        assert!(!format!("{t:?}").contains("SUPERSECRET"));
        let h = format!("Basic {}", STANDARD.encode(format!("a:{secret}")));
        let (r, t) = parse(raw(
            FORM,
            &format!("grant_type=client_credentials&client_secret={secret}"),
            Some(&h),
        ));
        assert!(!r.unwrap_err().description.contains("SUPERSECRET"));
        assert!(!format!("{t:?}").contains("SUPERSECRET"));
    }

    #[test]
    fn bare_credential_header_is_not_echoed() {
        let (r, _) = parse(raw(
            FORM,
            "grant_type=client_credentials",
            Some("my-app:SUPERSECRET"),
        ));
        assert!(!r.unwrap_err().description.contains("SUPERSECRET"));
        let (r, _) = parse(raw(
            FORM,
            "grant_type=client_credentials",
            Some("SUPERSECRET"),
        ));
        assert!(!r.unwrap_err().description.contains("SUPERSECRET"));
    }

    #[test]
    fn empty_values_are_omitted() {
        let (r, _) = parse(raw(
            FORM,
            "grant_type=client_credentials&client_id=a&client_secret=b&scope=",
            None,
        ));
        assert_eq!(r.unwrap().scope, None);
    }
}
