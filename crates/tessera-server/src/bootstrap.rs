//! Bootstrap: an org with an admin service account and a client holding the admin scope.

use tessera_api::{ADMIN_SCOPE, SCIM_SCOPE};
use tessera_core::model::{
    AuthMethod, Client, ClientId, GrantType, IpAllowList, OrgSlug, Scope, ScopeName, StoredSecret,
    User, UserState, UserType,
};
use tessera_core::secret::{SecretString, generate_client_secret, random_id};
use tessera_core::store::{Store, StoreError};

use crate::clock;

/// What bootstrap created: shown once.
#[derive(Debug)]
pub struct Bootstrapped {
    pub org: String,
    pub client_id: String,
    pub client_secret: SecretString,
}

/// Creates org `slug` with the `tessera:admin` and `tessera:scim` scopes, a service account
/// `<slug>-admin` and a client `<slug>-admin` running as it.
pub async fn bootstrap(store: &dyn Store, slug: &OrgSlug) -> Result<Bootstrapped, StoreError> {
    let now = clock::now();
    let org = store.create_org(slug, now).await?;
    let admin_scope = ScopeName::parse(ADMIN_SCOPE).expect("a valid scope name");
    store
        .create_scope(&Scope {
            org_id: org.id,
            name: admin_scope.clone(),
            description: "Full access to this org's admin API".into(),
        })
        .await?;
    store
        .create_scope(&Scope {
            org_id: org.id,
            name: ScopeName::parse(SCIM_SCOPE).expect("a valid scope name"),
            description: format!("SCIM 2.0 provisioning of this org's people (/scim/v2/{slug}/)"),
        })
        .await?;
    let name = format!("{slug}-admin");
    let sa = User {
        id: random_id("usr_"),
        org_id: org.id,
        user_type: UserType::Service,
        username: name.clone(),
        email: None,
        display_name: None,
        roles: vec!["admin".into()],
        state: UserState::Active,
        state_changed_by: None,
        state_changed_at: None,
        locked_until: None,
        password_hash: None,
        saml_name_id: None,
        failed_logins: 0,
        last_password_login_at: None,
        scim: None,
        created_at: now,
    };
    store.create_user(&sa).await?;
    let client_id = ClientId::parse(&name).map_err(|e| StoreError::Conflict(e.0))?;
    let client = Client {
        client_id: client_id.clone(),
        org_id: org.id,
        name: format!("{slug} bootstrap admin"),
        enabled: true,
        grant_types: vec![GrantType::ClientCredentials],
        scopes: vec![admin_scope],
        redirect_uris: vec![],
        auth_methods: vec![AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost],
        ip_allowlist: IpAllowList::default(),
        service_account_id: Some(sa.id.clone()),
        token_ttl: 3600,
        interactive: Default::default(),
        jwks: None,
        jwks_uri: None,
        created_at: now,
    };
    let generated = generate_client_secret();
    let secret = StoredSecret {
        id: random_id("sec_"),
        client_id,
        hash: generated.hash,
        hint: generated.hint,
        created_at: now,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        last_used_from: None,
    };
    store.create_client(&client, Some(&secret)).await?;
    Ok(Bootstrapped {
        org: slug.to_string(),
        client_id: name,
        client_secret: generated.value,
    })
}
