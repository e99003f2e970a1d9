//! Tessera as a service provider: its metadata document and the start of an SP-initiated
//! login (an AuthnRequest over the HTTP-Redirect binding).

use saml_rs::{RelayStateParam, StartSso};
use tessera_core::Reason;

use crate::validate::{Policy, idp_descriptor, service_provider};
use crate::{IdpTrust, Rejected};

/// Tessera's SP addresses for one org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpSite {
    /// The entity id (also the metadata URL): the Audience IdPs must name.
    pub entity_id: String,
    /// The assertion consumer service (HTTP-POST binding).
    pub acs_url: String,
}

/// The SP metadata document for `site`.
pub fn sp_metadata(site: &SpSite, policy: &Policy) -> Result<String, Rejected> {
    let sp = service_provider(&site.entity_id, &site.acs_url, policy)?;
    Ok(sp.metadata_xml().to_string())
}

/// A started login: where to send the browser, and the request id the response must
/// answer (kept server-side under the RelayState handle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginStart {
    pub redirect_url: String,
    pub request_id: String,
}

/// Builds the AuthnRequest for `idp` and the redirect URL carrying it, with `relay` as
/// RelayState (an opaque handle of at most 80 bytes; never the return address).
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
    let sp = service_provider(&site.entity_id, &site.acs_url, policy)?;
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
