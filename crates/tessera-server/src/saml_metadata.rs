//! IdP metadata URLs: fetched through the fence (`fence.rs`) when an org admin registers
//! one, then refreshed on a schedule, so an IdP's certificate rotation reaches Tessera
//! without anybody: a new signing certificate is trusted as soon as the IdP publishes it
//! (beside the old one while the IdP lists both), and every change is an audit event
//! that says what changed, certificate by certificate, and which certificates have
//! expired.
//!
//! A refresh never changes who the IdP is: metadata naming another `entityID` is
//! refused until an admin registers it again. Each node refreshes every org it finds;
//! a node writes only when what it fetched differs from what is stored.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tessera_core::model::Org;
use tessera_core::sso::SsoConfig;
use tessera_core::text::rfc3339;
use tessera_saml::certs::CertInfo;
use tessera_saml::metadata::IdpFields;

use crate::config::SamlMetadataFetch;
use crate::fence::Fence;
use crate::state::AppState;
use crate::{clock, request_id};

/// The fetcher of metadata URLs, one per server.
pub struct MetadataFetcher {
    fence: Fence,
    http: reqwest::Client,
    pub refresh_seconds: u64,
}

impl MetadataFetcher {
    pub fn new(c: &SamlMetadataFetch) -> Self {
        let fence = Fence {
            section: "saml_metadata",
            trusted_hosts: c.trusted_hosts.clone(),
            timeout_ms: c.timeout_ms,
            max_bytes: c.max_bytes,
        };
        Self {
            http: fence.client("saml metadata"),
            fence,
            refresh_seconds: c.refresh_seconds,
        }
    }

    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// The metadata document at `url`, read: its fields, or why not (one line).
    pub async fn fetch(&self, url: &str) -> Result<(String, IdpFields), String> {
        let body = self
            .fence
            .get(
                &self.http,
                url,
                "application/samlmetadata+xml, application/xml;q=0.9, text/xml;q=0.8",
            )
            .await?;
        let xml = String::from_utf8(body).map_err(|_| "its answer is not UTF-8 text")?;
        let fields = tessera_saml::metadata::read_idp_metadata(&xml)?;
        Ok((xml, fields))
    }
}

/// One certificate, as an admin reads it in an audit event.
fn described(c: &CertInfo, now: i64) -> Value {
    json!({
        "subject": c.subject,
        "not_after": rfc3339(c.not_after),
        "key": c.key,
        "expired": c.not_after <= now,
    })
}

/// What applying fetched metadata to a configuration changes.
#[derive(Debug, Default)]
pub struct Changes {
    pub added: Vec<CertInfo>,
    pub removed: Vec<CertInfo>,
    /// Certificates the IdP still publishes that are past their `not_after`.
    pub expired: Vec<CertInfo>,
    /// Other fields that changed, as `field: old → new`.
    pub fields: Vec<String>,
}

impl Changes {
    pub fn any(&self) -> bool {
        !self.added.is_empty() || !self.removed.is_empty() || !self.fields.is_empty()
    }

    /// The audit record of a refresh.
    pub fn to_json(&self, now: i64) -> Value {
        json!({
            "certificates_added": self.added.iter().map(|c| described(c, now)).collect::<Vec<_>>(),
            "certificates_removed": self.removed.iter().map(|c| described(c, now)).collect::<Vec<_>>(),
            "certificates_expired": self.expired.iter().map(|c| described(c, now)).collect::<Vec<_>>(),
            "fields_changed": self.fields,
        })
    }
}

/// The configuration with the fetched metadata's IdP fields, and what changed. Refused
/// when the metadata names another IdP or a certificate that could never verify.
pub fn apply(
    current: &SsoConfig,
    fields: IdpFields,
    now: i64,
) -> Result<(SsoConfig, Changes), String> {
    if let Some(configured) = &current.idp_entity_id
        && *configured != fields.entity_id
    {
        return Err(format!(
            "the metadata now names the IdP '{}', not the configured '{}': a refresh never changes the IdP (register the metadata URL again to accept it)",
            tessera_core::text::clip(&fields.entity_id),
            tessera_core::text::clip(configured)
        ));
    }
    if fields.signing_certificates.is_empty() {
        return Err(
            "the metadata has no signing certificate (KeyDescriptor use=\"signing\")".into(),
        );
    }
    let inspect = |pem: &String| tessera_saml::certs::inspect(pem, current.allow_rsa_1024);
    let mut new_certs = Vec::new();
    for (i, c) in fields.signing_certificates.iter().enumerate() {
        new_certs.push(inspect(c).map_err(|why| format!("signing certificate {}: {why}", i + 1))?);
    }
    let old_certs: Vec<CertInfo> = current
        .idp_certificates
        .iter()
        .filter_map(|c| inspect(c).ok())
        .collect();
    let mut changes = Changes {
        added: new_certs
            .iter()
            .filter(|n| !old_certs.iter().any(|o| o.pem == n.pem))
            .cloned()
            .collect(),
        removed: old_certs
            .iter()
            .filter(|o| !new_certs.iter().any(|n| n.pem == o.pem))
            .cloned()
            .collect(),
        expired: new_certs
            .iter()
            .filter(|c| c.not_after <= now)
            .cloned()
            .collect(),
        fields: Vec::new(),
    };
    let mut next = current.clone();
    next.idp_entity_id = Some(fields.entity_id);
    next.idp_certificates = new_certs.into_iter().map(|c| c.pem).collect();
    let mut set = |name: &str, old: &mut Option<String>, new: Option<String>| {
        if *old != new {
            changes.fields.push(format!(
                "{name}: {} → {}",
                old.as_deref().unwrap_or("(none)"),
                new.as_deref().unwrap_or("(none)")
            ));
            *old = new;
        }
    };
    // The same rules as an admin's save: https (http on loopback only), bounded length.
    for url in [&fields.sso_url, &fields.slo_url].into_iter().flatten() {
        if url.len() > 2048 || url.chars().any(char::is_control) {
            return Err("a service URL in the metadata is too long or not printable".into());
        }
        crate::admin::sso::check_url(url)?;
    }
    set("idp_sso_url", &mut next.idp_sso_url, fields.sso_url);
    set("idp_slo_url", &mut next.idp_slo_url, fields.slo_url);
    if next.idp_sso_binding != fields.sso_binding {
        changes.fields.push(format!(
            "idp_sso_binding: {} → {}",
            next.idp_sso_binding.as_str(),
            fields.sso_binding.as_str()
        ));
        next.idp_sso_binding = fields.sso_binding;
    }
    if next.idp_slo_url.is_some() && next.idp_slo_binding != fields.slo_binding {
        next.idp_slo_binding = fields.slo_binding;
    }
    if next.idp_sso_url.is_none() {
        return Err("the metadata has no SingleSignOnService (HTTP-Redirect or HTTP-POST)".into());
    }
    Ok((next, changes))
}

/// The outcome of one refresh of one org.
pub enum Refreshed {
    /// Nothing to refresh: no metadata URL.
    NoUrl,
    /// Fetched and applied; what changed (maybe nothing).
    Applied(Box<SsoConfig>, Changes),
    /// The fetch or the document failed; the configuration is unchanged but for the
    /// recorded error.
    Failed(Box<SsoConfig>, String),
}

/// Refreshes one org's metadata now: fetches, applies, writes when anything changed
/// (or the refresh's error did), and audits changes and new errors as `actor`.
pub async fn refresh_org(
    st: &AppState,
    org: &Org,
    actor: &str,
) -> Result<Refreshed, tessera_core::store::StoreError> {
    let Some(first) = st.store.sso_config(org.id).await? else {
        return Ok(Refreshed::NoUrl);
    };
    let Some(url) = first.idp_metadata_url.clone() else {
        return Ok(Refreshed::NoUrl);
    };
    let fetched = st.metadata.fetch(&url).await.map(|(_, fields)| fields);
    // The fetch may have taken seconds: the configuration is replaced only if it is
    // still the one the refresh started from (an admin's change made meanwhile wins and
    // the refresh is applied to it instead).
    for _ in 0..3 {
        let Some(current) = st.store.sso_config(org.id).await? else {
            return Ok(Refreshed::NoUrl);
        };
        if current.idp_metadata_url.as_deref() != Some(url.as_str()) {
            return Ok(Refreshed::NoUrl);
        }
        let now = clock::now();
        let result = fetched
            .clone()
            .and_then(|fields| apply(&current, fields, now));
        match result {
            Ok((mut next, changes)) => {
                next.metadata_refreshed_at = Some(now);
                next.metadata_error = None;
                // The time of a refresh that changed nothing is not worth a write on
                // every node every hour; a change or a cleared error is.
                if (changes.any() || current.metadata_error.is_some())
                    && !st
                        .store
                        .replace_sso_config(org.id, &current, &next, now)
                        .await?
                {
                    continue;
                }
                if changes.any() || !changes.expired.is_empty() {
                    let mut record = changes.to_json(now);
                    record["idp_metadata_url"] = json!(url);
                    audit(st, org, actor, "idp_metadata_refreshed", record).await;
                }
                return Ok(Refreshed::Applied(Box::new(next), changes));
            }
            Err(why) => {
                let mut next = current.clone();
                next.metadata_refreshed_at = Some(now);
                next.metadata_error = Some(why.clone());
                if current.metadata_error.as_deref() != Some(why.as_str()) {
                    if !st
                        .store
                        .replace_sso_config(org.id, &current, &next, now)
                        .await?
                    {
                        continue;
                    }
                    audit(
                        st,
                        org,
                        actor,
                        "idp_metadata_refresh_failed",
                        json!({"idp_metadata_url": url, "error": why}),
                    )
                    .await;
                }
                return Ok(Refreshed::Failed(Box::new(next), why));
            }
        }
    }
    let current = st.store.sso_config(org.id).await?.unwrap_or_default();
    Ok(Refreshed::Failed(
        Box::new(current),
        "the configuration kept changing during the refresh; the next refresh will apply it".into(),
    ))
}

/// An admin-kind audit event of the refresher (best effort: a refresh is retried).
async fn audit(st: &AppState, org: &Org, actor: &str, op: &str, change: Value) {
    let event = crate::admin::admin_event(org.id, actor, op, change);
    if let Err(e) = st.audit.record(event).await {
        tracing::warn!(error = %e, org = %org.slug, "metadata refresh not audited");
    }
}

/// Refreshes every org's metadata URL every `refresh_seconds`, until the server stops.
pub fn spawn_refresher(st: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = Duration::from_secs(st.metadata.refresh_seconds.max(1));
        loop {
            tokio::time::sleep(every).await;
            let orgs = match st.store.list_orgs().await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %e, "metadata refresh: orgs not read");
                    continue;
                }
            };
            for org in orgs {
                let scope = request_id::new_id();
                let done =
                    request_id::scope(scope, refresh_org(&st, &org, "metadata_refresh")).await;
                if let Err(e) = done {
                    tracing::warn!(error = %e, org = %org.slug, "metadata refresh failed");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::sso::SsoBinding;

    fn fields(entity: &str, certs: &[&str]) -> IdpFields {
        IdpFields {
            entity_id: entity.into(),
            sso_url: Some("https://idp.example/sso".into()),
            sso_binding: SsoBinding::Redirect,
            slo_url: None,
            slo_binding: SsoBinding::Redirect,
            signing_certificates: certs.iter().map(|c| c.to_string()).collect(),
            name_id_formats: vec![],
        }
    }

    const OLD: &str = include_str!("../../../tests/fixtures/samlify-idp.crt");
    const NEW: &str = include_str!("../../../tests/fixtures/samlify-idp-2.crt");

    #[test]
    fn a_refresh_follows_the_certificates_but_never_changes_the_idp() {
        let (first, _) = apply(
            &SsoConfig::default(),
            fields("https://idp.example/md", &[OLD]),
            0,
        )
        .unwrap();
        let (both, c) = apply(&first, fields("https://idp.example/md", &[NEW, OLD]), 0).unwrap();
        assert_eq!((c.added.len(), c.removed.len()), (1, 0));
        assert_eq!(both.idp_certificates.len(), 2);
        let (_, c) = apply(&both, fields("https://idp.example/md", &[NEW]), 0).unwrap();
        assert_eq!((c.added.len(), c.removed.len()), (0, 1));
        let (_, c) = apply(&both, fields("https://idp.example/md", &[NEW, OLD]), 0).unwrap();
        assert!(!c.any());
        // Expired certificates are reported (this clock is far in the future).
        let (_, c) = apply(
            &both,
            fields("https://idp.example/md", &[NEW, OLD]),
            i64::MAX / 2,
        )
        .unwrap();
        assert_eq!(c.expired.len(), 2);
        // Another IdP, or none that could sign: refused.
        let e = apply(&both, fields("https://evil.example/md", &[NEW]), 0).unwrap_err();
        assert!(e.contains("never changes the IdP"), "{e}");
        assert!(apply(&both, fields("https://idp.example/md", &[]), 0).is_err());
    }
}
