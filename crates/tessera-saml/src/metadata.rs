//! Reading an IdP's metadata document into the fields Tessera stores.

use saml_rs::constants::{Binding, CertUse};
use saml_rs::metadata::idp::IdpMetadata;
use tessera_core::sso::SsoBinding;

/// What an IdP metadata document says about the IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpFields {
    pub entity_id: String,
    /// The single sign-on URL: the HTTP-Redirect one, or the HTTP-POST one when the IdP
    /// offers only that.
    pub sso_url: Option<String>,
    /// The binding of `sso_url`.
    pub sso_binding: SsoBinding,
    /// The Single Logout URL (HTTP-Redirect preferred, else HTTP-POST), if any.
    pub slo_url: Option<String>,
    pub slo_binding: SsoBinding,
    /// Signing certificates, bare base64 as in the document.
    pub signing_certificates: Vec<String>,
    pub name_id_formats: Vec<String>,
}

/// Parses IdP metadata XML. Errors say what is missing or wrong, for a field-level
/// message.
pub fn read_idp_metadata(xml: &str) -> Result<IdpFields, String> {
    crate::scan::structure(xml.trim()).map_err(|e| e.detail)?;
    let m = IdpMetadata::from_xml(xml).map_err(|e| format!("not IdP metadata: {e}"))?;
    let entity_id = m
        .get_entity_id()
        .map(str::to_string)
        .ok_or("the metadata has no entityID")?;
    let signing_certificates: Vec<String> = m
        .x509_certificates(CertUse::Signing)
        .into_iter()
        .map(|c| c.split_whitespace().collect())
        .collect();
    // Redirect first: every IdP that offers it accepts it, and it needs no page of ours.
    let (sso_url, sso_binding) = match m.get_single_sign_on_service(Binding::Redirect) {
        Some(url) => (Some(url), SsoBinding::Redirect),
        None => (
            m.get_single_sign_on_service(Binding::Post),
            SsoBinding::Post,
        ),
    };
    let (slo_url, slo_binding) = match m.get_single_logout_service(Binding::Redirect) {
        Some(url) => (Some(url), SsoBinding::Redirect),
        None => (m.get_single_logout_service(Binding::Post), SsoBinding::Post),
    };
    Ok(IdpFields {
        entity_id,
        sso_url,
        sso_binding,
        slo_url,
        slo_binding,
        signing_certificates,
        name_id_formats: m.get_name_id_format(),
    })
}
