//! Tessera as a service provider: its metadata document and the start of an SP-initiated
//! login (an AuthnRequest over the HTTP-Redirect or the HTTP-POST binding).

use saml_rs::{RelayStateParam, StartSso};
use tessera_core::Reason;
use tessera_core::sso::SsoBinding;

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
    /// The certificate IdPs encrypt assertions to (`use="encryption"` in the metadata).
    pub encryption_certificate: Option<String>,
    /// The Single Logout service (both bindings), in the metadata.
    pub slo_url: Option<String>,
}

impl SpSite {
    pub(crate) fn service_provider(
        &self,
        policy: &Policy,
    ) -> Result<saml_rs::Saml<saml_rs::Sp>, Rejected> {
        service_provider(
            &self.entity_id,
            &self.acs_url,
            policy,
            Some(crate::validate::Local {
                signing_key: &self.signing_key,
                name_id_format: self.name_id_format.as_deref(),
                encryption_certificate: self.encryption_certificate.as_deref(),
                slo_url: self.slo_url.as_deref(),
            }),
        )
    }
}

/// The SP metadata document for `site`: entity id, ACS, NameID format, the certificate
/// that verifies its AuthnRequests (`AuthnRequestsSigned="true"`) and the one IdPs
/// encrypt assertions to.
pub fn sp_metadata(site: &SpSite, policy: &Policy) -> Result<String, Rejected> {
    Ok(site.service_provider(policy)?.metadata_xml().to_string())
}

/// A started login: how to send the browser to the IdP, and the request id the response
/// must answer (kept server-side under the RelayState handle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginStart {
    pub dispatch: Dispatch,
    pub request_id: String,
}

/// How the AuthnRequest reaches the IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatch {
    /// HTTP-Redirect: send the browser to this URL (the request, RelayState, SigAlg and
    /// the signature over the query).
    Redirect(String),
    /// HTTP-POST: the browser posts these fields (`SAMLRequest` with an enveloped
    /// signature, `RelayState`) to `action`.
    Post {
        action: String,
        fields: Vec<(String, String)>,
    },
}

/// Builds the AuthnRequest for `idp`, signed as its binding says (HTTP-Redirect: SigAlg
/// rsa-sha256 and Signature over the query; HTTP-POST: an enveloped XML signature), with
/// `relay` as RelayState (an opaque handle of at most 80 bytes; never the return
/// address); with `force_authn`, `ForceAuthn="true"`.
pub fn start_login(
    site: &SpSite,
    idp: &IdpTrust,
    relay: &str,
    force_authn: bool,
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
    let mut options = match idp.sso_binding {
        SsoBinding::Redirect => StartSso::redirect(),
        SsoBinding::Post => StartSso::post(),
    };
    if force_authn {
        // SAML core §3.4.1: the IdP must authenticate the person afresh, not answer
        // from its own session (OIDC's prompt=login and max_age).
        options = options.force_authn(saml_rs::ForceAuthn::Required);
    }
    let started = sp
        .start_sso(&descriptor, options.relay_state(relay))
        .map_err(config_error)?;
    let dispatch = dispatch_of(idp.sso_binding, &started.outbound)?;
    Ok(LoginStart {
        dispatch,
        request_id: started.outbound.id().as_str().to_string(),
    })
}

/// How an outbound message reaches its peer, by `binding`: the redirect URL, or the
/// HTTP-POST form's action and fields.
pub(crate) fn dispatch_of<M>(
    binding: SsoBinding,
    out: &saml_rs::Outbound<M>,
) -> Result<Dispatch, Rejected> {
    let err = |e: saml_rs::SamlError| Rejected::new(Reason::SamlNotConfigured, e.to_string());
    Ok(match binding {
        SsoBinding::Redirect => Dispatch::Redirect(out.redirect_url().map_err(err)?.to_string()),
        SsoBinding::Post => {
            let form = out.post_form().map_err(err)?;
            Dispatch::Post {
                action: form.action().as_str().to_string(),
                fields: form
                    .fields()
                    .iter()
                    .map(|f| (f.name().to_string(), f.value().to_string()))
                    .collect(),
            }
        }
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
            encryption_certificate: None,
            slo_url: None,
        };
        let idp = IdpTrust {
            entity_id: "https://idp.example/metadata".into(),
            certificates: vec![include_str!("../../../tests/fixtures/samlify-idp.crt").into()],
            sso_url: Some("https://idp.example/sso".into()),
            sso_binding: SsoBinding::Redirect,
            slo_url: None,
            slo_binding: Default::default(),
        };
        let policy = Policy::default();
        let start = start_login(&site, &idp, "handle", false, &policy).unwrap();
        let forced = start_login(&site, &idp, "handle", true, &policy).unwrap();
        let Dispatch::Redirect(forced) = forced.dispatch else {
            panic!("a redirect")
        };
        let query: std::collections::HashMap<String, String> = url_query(&forced);
        let xml = inflate(&query["SAMLRequest"]);
        assert!(xml.contains("ForceAuthn=\"true\""), "{xml}");
        let Dispatch::Redirect(url) = &start.dispatch else {
            panic!("a redirect: {:?}", start.dispatch)
        };
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

    fn url_query(url: &str) -> std::collections::HashMap<String, String> {
        let q = url.split_once('?').map(|x| x.1).unwrap_or_default();
        q.split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| {
                let v = v
                    .replace("%2B", "+")
                    .replace("%2F", "/")
                    .replace("%3D", "=");
                (k.to_string(), v)
            })
            .collect()
    }

    fn inflate(b64: &str) -> String {
        use std::io::Read;
        let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap();
        let mut out = String::new();
        flate2::read::DeflateDecoder::new(&raw[..])
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn a_post_only_idp_gets_a_form_with_an_enveloped_signature() {
        let key = generate_sp_signing_key("test SP").unwrap();
        let site = SpSite {
            entity_id: "https://sp.example/saml/acme/metadata".into(),
            acs_url: "https://sp.example/saml/acme/acs".into(),
            signing_key: key,
            name_id_format: None,
            encryption_certificate: None,
            slo_url: None,
        };
        let idp = IdpTrust {
            entity_id: "https://idp.example/metadata".into(),
            certificates: vec![include_str!("../../../tests/fixtures/samlify-idp.crt").into()],
            sso_url: Some("https://idp.example/sso/post".into()),
            sso_binding: SsoBinding::Post,
            slo_url: None,
            slo_binding: Default::default(),
        };
        let start = start_login(&site, &idp, "handle", false, &Policy::default()).unwrap();
        let Dispatch::Post { action, fields } = &start.dispatch else {
            panic!("a form: {:?}", start.dispatch)
        };
        assert_eq!(action, "https://idp.example/sso/post");
        let field = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(field("RelayState").as_deref(), Some("handle"));
        assert!(field("SigAlg").is_none() && field("Signature").is_none());
        let xml = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            field("SAMLRequest").unwrap(),
        )
        .unwrap();
        let xml = String::from_utf8(xml).unwrap();
        assert!(xml.contains(&start.request_id), "{xml}");
        assert!(xml.contains("SignatureValue"), "enveloped signature: {xml}");
        assert!(
            xml.contains("Destination=\"https://idp.example/sso/post\""),
            "{xml}"
        );
    }
}
