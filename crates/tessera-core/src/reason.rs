//! Stable reason codes: why a token request (or a login) was refused.
//!
//! Each code maps to one RFC 6749 §5.2 error and is documented in `docs/errors.md`.
//! Codes are contract: callers match on them, so a code is never renamed.

use serde::{Deserialize, Serialize};

/// The RFC 6749 §5.2 (and RFC 6750) error codes Tessera answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthError {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    /// The server cannot handle the request now (RFC 6749 §4.1.2.1); retry later.
    TemporarilyUnavailable,
    /// The authorization endpoint does not offer this `response_type` (RFC 6749 §4.1.2.1).
    UnsupportedResponseType,
    /// The person or the server refused the authorization request (RFC 6749 §4.1.2.1).
    AccessDenied,
    /// `prompt=none` and the person must log in first (OIDC Core §3.1.2.6).
    LoginRequired,
    /// The server cannot revoke this kind of token (RFC 7009 §2.2.1).
    UnsupportedTokenType,
}

impl OAuthError {
    /// The wire spelling, e.g. `invalid_client`.
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthError::InvalidRequest => "invalid_request",
            OAuthError::InvalidClient => "invalid_client",
            OAuthError::InvalidGrant => "invalid_grant",
            OAuthError::UnauthorizedClient => "unauthorized_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidScope => "invalid_scope",
            OAuthError::TemporarilyUnavailable => "temporarily_unavailable",
            OAuthError::UnsupportedResponseType => "unsupported_response_type",
            OAuthError::AccessDenied => "access_denied",
            OAuthError::LoginRequired => "login_required",
            OAuthError::UnsupportedTokenType => "unsupported_token_type",
        }
    }

    /// The error as the authorization endpoint reports it (RFC 6749 §4.1.2.1 and OIDC
    /// Core §3.1.2.6 list fewer codes than the token endpoint): a refusal about the
    /// person is `access_denied`, one about the client `unauthorized_client`.
    pub fn at_authorization_endpoint(self) -> OAuthError {
        match self {
            OAuthError::InvalidGrant => OAuthError::AccessDenied,
            OAuthError::InvalidClient | OAuthError::UnsupportedGrantType => {
                OAuthError::UnauthorizedClient
            }
            other => other,
        }
    }
}

macro_rules! reasons {
    ($( $variant:ident => $code:literal, $err:ident; )*) => {
        /// Why a request was refused. `code()` is the stable wire spelling.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason { $( $variant, )* }

        impl Reason {
            /// Every reason, in documentation order.
            pub const ALL: &'static [Reason] = &[ $( Reason::$variant, )* ];

            /// The stable code, e.g. `client_secret_mismatch`.
            pub fn code(self) -> &'static str {
                match self { $( Reason::$variant => $code, )* }
            }

            /// The RFC 6749 error this reason is reported as.
            pub fn oauth_error(self) -> OAuthError {
                match self { $( Reason::$variant => OAuthError::$err, )* }
            }

            /// Parses a code back into a reason.
            pub fn from_code(code: &str) -> Option<Reason> {
                match code { $( $code => Some(Reason::$variant), )* _ => None }
            }
        }
    };
}

reasons! {
    ContentTypeUnsupported => "content_type_unsupported", InvalidRequest;
    BodyMalformed => "body_malformed", InvalidRequest;
    BodyTooLarge => "body_too_large", InvalidRequest;
    ParameterDuplicated => "parameter_duplicated", InvalidRequest;
    GrantTypeMissing => "grant_type_missing", InvalidRequest;
    GrantTypeUnsupported => "grant_type_unsupported", UnsupportedGrantType;
    ClientAuthMissing => "client_auth_missing", InvalidClient;
    ClientAuthMultiple => "client_auth_multiple", InvalidRequest;
    ClientAuthSchemeUnsupported => "client_auth_scheme_unsupported", InvalidClient;
    BasicHeaderMalformed => "basic_header_malformed", InvalidClient;
    ClientThrottled => "client_throttled", InvalidClient;
    ClientUnknown => "client_unknown", InvalidClient;
    ClientSecretMismatch => "client_secret_mismatch", InvalidClient;
    ClientSecretExpired => "client_secret_expired", InvalidClient;
    ClientSecretRevoked => "client_secret_revoked", InvalidClient;
    ClientAuthMethodNotAllowed => "client_auth_method_not_allowed", InvalidClient;
    ClientDisabled => "client_disabled", InvalidClient;
    OrgDisabled => "org_disabled", UnauthorizedClient;
    ClientIpNotAllowed => "client_ip_not_allowed", UnauthorizedClient;
    GrantTypeNotAllowed => "grant_type_not_allowed", UnauthorizedClient;
    ServiceAccountDisabled => "service_account_disabled", UnauthorizedClient;
    ServiceAccountLocked => "service_account_locked", UnauthorizedClient;
    ServiceAccountMissing => "service_account_missing", UnauthorizedClient;
    ScopeMalformed => "scope_malformed", InvalidScope;
    ScopeUnknown => "scope_unknown", InvalidScope;
    ScopeNotAllowed => "scope_not_allowed", InvalidScope;
    SsoRequired => "sso_required", UnauthorizedClient;
    UserCredentialsInvalid => "user_credentials_invalid", InvalidGrant;
    ParameterMissing => "parameter_missing", InvalidRequest;
    ServiceAccountNoPassword => "service_account_no_password", InvalidGrant;
    UserDisabled => "user_disabled", InvalidGrant;
    UserLocked => "user_locked", InvalidGrant;
    SsoBreakGlass => "sso_break_glass", InvalidGrant;
    LoginThrottled => "login_throttled", InvalidGrant;
    LoginCsrfInvalid => "login_csrf_invalid", InvalidRequest;
    UserThrottled => "user_throttled", InvalidGrant;
    PasswordCheckBusy => "password_check_busy", TemporarilyUnavailable;
    DatabaseUnavailable => "database_unavailable", TemporarilyUnavailable;
    // The interactive login: the authorization endpoint and its grants.
    ParameterInvalid => "parameter_invalid", InvalidRequest;
    RedirectUriMismatch => "redirect_uri_mismatch", InvalidGrant;
    ResponseTypeUnsupported => "response_type_unsupported", UnsupportedResponseType;
    PkceRequired => "pkce_required", InvalidRequest;
    PkceMethodUnsupported => "pkce_method_unsupported", InvalidRequest;
    PkceVerifierMismatch => "pkce_verifier_mismatch", InvalidGrant;
    PromptUnsupported => "prompt_unsupported", InvalidRequest;
    LoginRequired => "login_required", LoginRequired;
    CodeInvalid => "code_invalid", InvalidGrant;
    CodeExpired => "code_expired", InvalidGrant;
    CodeReused => "code_reused", InvalidGrant;
    RefreshTokenInvalid => "refresh_token_invalid", InvalidGrant;
    RefreshTokenReused => "refresh_token_reused", InvalidGrant;
    RefreshTokenRevoked => "refresh_token_revoked", InvalidGrant;
    RefreshTokenExpired => "refresh_token_expired", InvalidGrant;
    ClientAssertionInvalid => "client_assertion_invalid", InvalidClient;
    ClientAssertionReplayed => "client_assertion_replayed", InvalidClient;
    ClientJwksUnavailable => "client_jwks_unavailable", InvalidClient;
    RevocationUnsupported => "revocation_unsupported", UnsupportedTokenType;
    // SAML SSO refusals (the ACS and `tessera saml check`); never token-endpoint answers.
    SamlBodyTooLarge => "saml_body_too_large", InvalidGrant;
    SamlMalformed => "saml_malformed", InvalidGrant;
    SamlDtdForbidden => "saml_dtd_forbidden", InvalidGrant;
    SamlStatusNotSuccess => "saml_status_not_success", InvalidGrant;
    SamlUnsigned => "saml_unsigned", InvalidGrant;
    SamlSignatureInvalid => "saml_signature_invalid", InvalidGrant;
    SamlCertUntrusted => "saml_cert_untrusted", InvalidGrant;
    SamlWrappingDetected => "saml_wrapping_detected", InvalidGrant;
    SamlSignedContentMismatch => "saml_signed_content_mismatch", InvalidGrant;
    SamlSha1Refused => "saml_sha1_refused", InvalidGrant;
    SamlAlgorithmRefused => "saml_algorithm_refused", InvalidGrant;
    SamlIssuerMismatch => "saml_issuer_mismatch", InvalidGrant;
    SamlDestinationMismatch => "saml_destination_mismatch", InvalidGrant;
    SamlRecipientMismatch => "saml_recipient_mismatch", InvalidGrant;
    SamlAudienceMismatch => "saml_audience_mismatch", InvalidGrant;
    SamlExpired => "saml_expired", InvalidGrant;
    SamlNotYetValid => "saml_not_yet_valid", InvalidGrant;
    SamlInResponseToMismatch => "saml_in_response_to_mismatch", InvalidGrant;
    SamlUnsolicited => "saml_unsolicited", InvalidGrant;
    SamlRelayStateInvalid => "saml_relay_state_invalid", InvalidGrant;
    SamlReplay => "saml_replay", InvalidGrant;
    SamlSubjectConfirmationInvalid => "saml_subject_confirmation_invalid", InvalidGrant;
    SamlNameIdMissing => "saml_name_id_missing", InvalidGrant;
    SamlAuthnStatementMissing => "saml_authn_statement_missing", InvalidGrant;
    SamlConditionUnrecognized => "saml_condition_unrecognized", InvalidGrant;
    SamlPrincipalMismatch => "saml_principal_mismatch", InvalidGrant;
    SamlEncryptedUnsupported => "saml_encrypted_unsupported", InvalidGrant;
    SamlEncryptedCbcUnsigned => "saml_encrypted_cbc_unsigned", InvalidGrant;
    SamlDecryptionFailed => "saml_decryption_failed", InvalidGrant;
    SamlCertExpired => "saml_cert_expired", InvalidGrant;
    SamlNotConfigured => "saml_not_configured", InvalidGrant;
    SamlUserUnknown => "saml_user_unknown", InvalidGrant;
    SamlPendingLimit => "saml_pending_limit", InvalidGrant;
    ScimInvalidFilter => "scim_invalid_filter", InvalidRequest;
    ScimInvalidValue => "scim_invalid_value", InvalidRequest;
    ScimUniqueness => "scim_uniqueness", InvalidRequest;
    ScimNotFound => "scim_not_found", InvalidRequest;
    ScimMutability => "scim_mutability", InvalidRequest;
    ScimVersionMismatch => "scim_version_mismatch", InvalidRequest;
    ScimTokenRefused => "scim_token_refused", InvalidClient;
    ScimThrottled => "scim_throttled", InvalidRequest;
}

impl Reason {
    /// True for the refusals that count as a failed client authentication (throttling).
    pub fn is_auth_failure(self) -> bool {
        matches!(
            self,
            Reason::ClientUnknown
                | Reason::ClientSecretMismatch
                | Reason::ClientSecretExpired
                | Reason::ClientSecretRevoked
        )
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Reason::from_code(&code)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown reason code '{code}'")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.code()), "duplicate code {}", r.code());
            assert_eq!(Reason::from_code(r.code()), Some(*r));
        }
    }

    #[test]
    fn design_table_errors() {
        assert_eq!(
            Reason::ClientAuthMultiple.oauth_error(),
            OAuthError::InvalidRequest
        );
        assert_eq!(
            Reason::GrantTypeUnsupported.oauth_error().as_str(),
            "unsupported_grant_type"
        );
        assert_eq!(
            Reason::ScopeNotAllowed.oauth_error().as_str(),
            "invalid_scope"
        );
        assert_eq!(
            Reason::ClientIpNotAllowed.oauth_error().as_str(),
            "unauthorized_client"
        );
    }
}
