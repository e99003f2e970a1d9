//! Tessera as a service provider: its metadata document and the start of an SP-initiated
//! login (an AuthnRequest over the HTTP-Redirect binding).

use saml_rs::{RelayStateParam, StartSso};
use tessera_core::Reason;

use crate::sp_key::SpSigningKey;
use crate::validate::{Policy, idp_descriptor, service_provider};
use crate::{IdpTrust, Rejected};

/// Tessera's SP for one org: its addresses, its signing key and what it asks IdPs for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpSite {
    /// The entity id (also the metadata URL): the Audience IdPs must name.
    pub entity_id: String,
    /// The assertion consumer service (HTTP-POST binding).
    pub acs_url: String,
    /// Signs every AuthnRequest; its certificate is in the metadata.
    pub signing_key: SpSigningKey,
    /// The NameID format asked for in AuthnRequests and advertised in the metadata.
    pub name_id_format: Option<String>,
}

impl SpSite {
    fn service_provider(&self, policy: &Policy) -> Result<saml_rs::Saml<saml_rs::Sp>, Rejected> {
        service_provider(
            &self.entity_id,
            &self.acs_url,
            policy,
            Some((&self.signing_key, self.name_id_format.as_deref())),
        )
    }
}

/// The SP metadata document for `site`: entity id, ACS, NameID format and the
/// certificate that verifies its AuthnRequests (`AuthnRequestsSigned="true"`).
pub fn sp_metadata(site: &SpSite, policy: &Policy) -> Result<String, Rejected> {
    Ok(site.service_provider(policy)?.metadata_xml().to_string())
}

/// A started login: where to send the browser, and the request id the response must
/// answer (kept server-side under the RelayState handle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginStart {
    pub redirect_url: String,
    pub request_id: String,
}

/// Builds the AuthnRequest for `idp` and the redirect URL carrying it, signed (SigAlg
/// rsa-sha256 and Signature over the query, as the HTTP-Redirect binding says), with
/// `relay` as RelayState (an opaque handle of at most 80 bytes; never the return
/// address).
pub fn start_login(
    site: &SpSite,
    idp: &IdpTrust,
    relay: &str,
    policy: &Policy,
) -> Result<LoginStart, Rejected> {
    if idp.sso_url.is_none() {
        return Err(Rejected::new(
            Reason::SamlNotConfigured,
            "the IdP has no single sign-on URL",
        ));
    }
    let config_error =
        |e: saml_rs::SamlError| Rejected::new(Reason::SamlNotConfigured, e.to_string());
    let sp = site.service_provider(policy)?;
    let descriptor = idp_descriptor(idp)?;
    let relay = RelayStateParam::try_from_option(Some(relay.to_string())).map_err(config_error)?;
    let started = sp
        .start_sso(&descriptor, StartSso::redirect().relay_state(relay))
        .map_err(config_error)?;
    Ok(LoginStart {
        redirect_url: started
            .outbound
            .redirect_url()
            .map_err(config_error)?
            .to_string(),
        request_id: started.outbound.id().as_str().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sp_key::generate_sp_signing_key;

    #[test]
    fn authn_requests_are_signed_and_ask_for_the_configured_name_id_format() {
        let key = generate_sp_signing_key("test SP").unwrap();
        let site = SpSite {
            entity_id: "https://sp.example/saml/acme/metadata".into(),
            acs_url: "https://sp.example/saml/acme/acs".into(),
            signing_key: key.clone(),
            name_id_format: Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".into()),
        };
        let idp = IdpTrust {
            entity_id: "https://idp.example/metadata".into(),
            certificates: vec![include_str!("../../../tests/fixtures/samlify-idp.crt").into()],
            sso_url: Some("https://idp.example/sso".into()),
        };
        let policy = Policy::default();
        let start = start_login(&site, &idp, "handle", &policy).unwrap();
        let url = &start.redirect_url;
        assert!(
            url.starts_with("https://idp.example/sso?SAMLRequest="),
            "{url}"
        );
        assert!(
            url.contains("&SigAlg=") && url.contains("&Signature="),
            "{url}"
        );

        let md = sp_metadata(&site, &policy).unwrap();
        assert!(md.contains("AuthnRequestsSigned=\"true\""), "{md}");
        assert!(md.contains("use=\"signing\""), "{md}");
        assert!(md.contains("nameid-format:emailAddress"), "{md}");
        let body: String = key
            .cert_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        assert!(
            md.contains(&body),
            "the metadata carries the signing certificate"
        );
    }
}
