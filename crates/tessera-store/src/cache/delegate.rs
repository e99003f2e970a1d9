//! The cache layer's delegation of every aggregate to the backend: one body per method
//! of the traits in `tessera_core::store`, nothing else (a new method gets its line here;
//! the compiler asks for it). The writes that change cached facts go through
//! `caught_up`, which reads the change feed when they succeed.

use tessera_core::audit::{AuditEvent, AuditFilter};
use tessera_core::decision::LoginUpdate;
use tessera_core::interactive::{AuthCode, LoginGrant, RefreshToken};
use tessera_core::model::{
    Client, Org, OrgSlug, ScimGroup, ScimGroupChange, ScimLink, ScimToken, Scope, StoredSecret,
    Timestamp, User,
};
use tessera_core::session::Session;
use tessera_core::sso::{SamlPending, SsoConfig};
use tessera_core::store::{
    AuditAppender, AuditStore, BoxFuture, ClientStore, GrantStore, KeyStore, OrgStore, Rotation,
    SamlLogin, SamlLoginWritten, ScimStore, SealedSpKey, SsoStore, StoreResult, StoredKey,
    ThrottleStore, UserFields, UserStore,
};

use super::Cached;
use crate::backend::Backend;

impl<B: Backend> OrgStore for Cached<B> {
    fn is_empty(&self) -> BoxFuture<'_, StoreResult<bool>> {
        self.backend.is_empty()
    }

    fn create_org<'a>(
        &'a self,
        slug: &'a OrgSlug,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<Org>> {
        self.caught_up(self.backend.create_org(slug, now))
    }

    fn org_by_slug<'a>(&'a self, slug: &'a str) -> BoxFuture<'a, StoreResult<Option<Org>>> {
        self.backend.org_by_slug(slug)
    }

    fn org_by_id(&self, id: i64) -> BoxFuture<'_, StoreResult<Option<Org>>> {
        self.backend.org_by_id(id)
    }

    fn list_orgs(&self) -> BoxFuture<'_, StoreResult<Vec<Org>>> {
        self.backend.list_orgs()
    }

    fn create_scope<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, StoreResult<()>> {
        self.caught_up(self.backend.create_scope(scope))
    }

    fn list_scopes(&self, org_id: i64) -> BoxFuture<'_, StoreResult<Vec<Scope>>> {
        self.backend.list_scopes(org_id)
    }
}

impl<B: Backend> ClientStore for Cached<B> {
    fn create_client<'a>(
        &'a self,
        client: &'a Client,
        secret: Option<&'a StoredSecret>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.caught_up(self.backend.create_client(client, secret))
    }

    fn get_client<'a>(
        &'a self,
        org_id: i64,
        client_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<Client>>> {
        self.backend.get_client(org_id, client_id)
    }

    fn list_clients(&self, org_id: i64) -> BoxFuture<'_, StoreResult<Vec<Client>>> {
        self.backend.list_clients(org_id)
    }

    fn update_client<'a>(&'a self, client: &'a Client) -> BoxFuture<'a, StoreResult<()>> {
        self.caught_up(self.backend.update_client(client))
    }

    fn delete_client<'a>(
        &'a self,
        org_id: i64,
        client_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let deleted = self
                .caught_up(self.backend.delete_client(org_id, client_id))
                .await;
            if matches!(deleted, Ok(true)) {
                self.throttles.forget_client(client_id);
            }
            deleted
        })
    }

    fn list_secrets<'a>(
        &'a self,
        client_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<StoredSecret>>> {
        self.backend.list_secrets(client_id)
    }

    fn rotate_secret<'a>(
        &'a self,
        new: &'a StoredSecret,
        old_expire_at: Timestamp,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.caught_up(self.backend.rotate_secret(new, old_expire_at, now))
    }

    fn revoke_secret<'a>(
        &'a self,
        client_id: &'a str,
        secret_id: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        self.caught_up(self.backend.revoke_secret(client_id, secret_id, now))
    }
}

impl<B: Backend> UserStore for Cached<B> {
    fn create_user<'a>(&'a self, user: &'a User) -> BoxFuture<'a, StoreResult<()>> {
        self.caught_up(self.backend.create_user(user))
    }

    fn get_user<'a>(
        &'a self,
        org_id: i64,
        id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<User>>> {
        self.backend.get_user(org_id, id)
    }

    fn list_users(&self, org_id: i64) -> BoxFuture<'_, StoreResult<Vec<User>>> {
        self.backend.list_users(org_id)
    }

    fn update_user<'a>(
        &'a self,
        user: &'a User,
        fields: UserFields,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.caught_up(self.backend.update_user(user, fields, now))
    }

    fn user_by_scim_external_id<'a>(
        &'a self,
        org_id: i64,
        external_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<User>>> {
        self.backend.user_by_scim_external_id(org_id, external_id)
    }

    fn set_scim_link<'a>(
        &'a self,
        org_id: i64,
        user_id: &'a str,
        link: Option<&'a ScimLink>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.caught_up(self.backend.set_scim_link(org_id, user_id, link))
    }

    fn user_by_username<'a>(
        &'a self,
        org_id: i64,
        username: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<User>>> {
        self.backend.user_by_username(org_id, username)
    }

    fn record_login<'a>(
        &'a self,
        update: &'a LoginUpdate,
        client_id: Option<&'a str>,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.backend.record_login(update, client_id, now)
    }

    fn password_grant_uses(
        &self,
        org_id: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<(String, Timestamp)>>> {
        self.backend.password_grant_uses(org_id)
    }

    fn user_by_saml_link<'a>(
        &'a self,
        org_id: i64,
        name_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<User>>> {
        self.backend.user_by_saml_link(org_id, name_id)
    }

    fn user_by_email<'a>(
        &'a self,
        org_id: i64,
        email: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<User>>> {
        self.backend.user_by_email(org_id, email)
    }
}

// SCIM's own records are not cached: nothing on the token path reads them (a group's
// roles reach users through `update_user`, which goes through the user delegation).
impl<B: Backend> ScimStore for Cached<B> {
    fn create_scim_group<'a>(&'a self, group: &'a ScimGroup) -> BoxFuture<'a, StoreResult<()>> {
        self.backend.create_scim_group(group)
    }

    fn scim_group<'a>(
        &'a self,
        org_id: i64,
        id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<ScimGroup>>> {
        self.backend.scim_group(org_id, id)
    }

    fn list_scim_groups(&self, org_id: i64) -> BoxFuture<'_, StoreResult<Vec<ScimGroup>>> {
        self.backend.list_scim_groups(org_id)
    }

    fn change_scim_group<'a>(
        &'a self,
        org_id: i64,
        id: &'a str,
        change: &'a ScimGroupChange,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        self.backend.change_scim_group(org_id, id, change, now)
    }

    fn delete_scim_group<'a>(
        &'a self,
        org_id: i64,
        id: &'a str,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        self.backend.delete_scim_group(org_id, id)
    }

    fn scim_groups_of<'a>(
        &'a self,
        org_id: i64,
        user_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<ScimGroup>>> {
        self.backend.scim_groups_of(org_id, user_id)
    }

    fn create_scim_token<'a>(&'a self, token: &'a ScimToken) -> BoxFuture<'a, StoreResult<()>> {
        self.backend.create_scim_token(token)
    }

    fn scim_token_by_hash<'a>(
        &'a self,
        hash: &'a [u8],
    ) -> BoxFuture<'a, StoreResult<Option<ScimToken>>> {
        self.backend.scim_token_by_hash(hash)
    }

    fn list_scim_tokens(&self, org_id: i64) -> BoxFuture<'_, StoreResult<Vec<ScimToken>>> {
        self.backend.list_scim_tokens(org_id)
    }

    fn revoke_scim_token<'a>(
        &'a self,
        org_id: i64,
        id: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        self.backend.revoke_scim_token(org_id, id, now)
    }

    fn touch_scim_token<'a>(
        &'a self,
        id: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.backend.touch_scim_token(id, now)
    }
}

impl<B: Backend> SsoStore for Cached<B> {
    fn sso_config(&self, org_id: i64) -> BoxFuture<'_, StoreResult<Option<SsoConfig>>> {
        self.backend.sso_config(org_id)
    }

    fn put_sso_config<'a>(
        &'a self,
        org_id: i64,
        config: &'a SsoConfig,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.caught_up(self.backend.put_sso_config(org_id, config, now))
    }

    fn replace_sso_config<'a>(
        &'a self,
        org_id: i64,
        expected: &'a SsoConfig,
        config: &'a SsoConfig,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        self.backend
            .replace_sso_config(org_id, expected, config, now)
    }

    fn set_sso_enforced(&self, org_id: i64, enforced: bool) -> BoxFuture<'_, StoreResult<()>> {
        self.caught_up(self.backend.set_sso_enforced(org_id, enforced))
    }

    fn put_saml_pending<'a>(
        &'a self,
        p: &'a SamlPending,
        source: &'a str,
        per_source: u32,
        per_org: u32,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        self.backend
            .put_saml_pending(p, source, per_source, per_org)
    }

    fn take_saml_pending<'a>(
        &'a self,
        handle: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<Option<SamlPending>>> {
        self.backend.take_saml_pending(handle, now)
    }

    fn remember_saml_ids<'a>(
        &'a self,
        org_id: i64,
        keys: &'a [(String, Timestamp)],
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        self.backend.remember_saml_ids(org_id, keys, now)
    }

    fn finish_saml_login<'a>(
        &'a self,
        login: &'a SamlLogin<'a>,
    ) -> BoxFuture<'a, StoreResult<SamlLoginWritten>> {
        self.backend.finish_saml_login(login)
    }

    fn create_session<'a>(&'a self, s: &'a Session) -> BoxFuture<'a, StoreResult<()>> {
        self.backend.create_session(s)
    }

    fn session<'a>(&'a self, id_hash: &'a [u8]) -> BoxFuture<'a, StoreResult<Option<Session>>> {
        self.backend.session(id_hash)
    }

    fn touch_session<'a>(
        &'a self,
        id_hash: &'a [u8],
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.backend.touch_session(id_hash, now)
    }

    fn delete_session<'a>(&'a self, id_hash: &'a [u8]) -> BoxFuture<'a, StoreResult<()>> {
        self.backend.delete_session(id_hash)
    }

    fn end_saml_sessions<'a>(
        &'a self,
        org_id: i64,
        user_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<Session>>> {
        self.backend.end_saml_sessions(org_id, user_id)
    }

    fn prune_sessions(
        &self,
        idle_before: Timestamp,
        created_before: Timestamp,
    ) -> BoxFuture<'_, StoreResult<u64>> {
        self.backend.prune_sessions(idle_before, created_before)
    }
}

impl<B: Backend> ThrottleStore for Cached<B> {
    fn prune_throttle(&self, before: Timestamp, now: Timestamp) -> BoxFuture<'_, StoreResult<u64>> {
        self.backend.prune_throttle(before, now)
    }
}

impl<B: Backend> AuditStore for Cached<B> {
    fn audit_appender(&self) -> StoreResult<Box<dyn AuditAppender>> {
        self.backend.audit_appender()
    }

    fn audit_batches_in_flight(&self) -> usize {
        self.backend.audit_batches_in_flight()
    }

    fn get_audit_event<'a>(
        &'a self,
        org_id: i64,
        request_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<AuditEvent>>> {
        self.backend.get_audit_event(org_id, request_id)
    }

    fn list_audit_events<'a>(
        &'a self,
        org_id: i64,
        filter: &'a AuditFilter,
    ) -> BoxFuture<'a, StoreResult<Vec<AuditEvent>>> {
        self.backend.list_audit_events(org_id, filter)
    }
}

impl<B: Backend> KeyStore for Cached<B> {
    fn saml_sp_key(&self) -> BoxFuture<'_, StoreResult<Option<SealedSpKey>>> {
        self.backend.saml_sp_key()
    }

    fn init_saml_sp_key<'a>(
        &'a self,
        sealed: &'a [u8],
        certificate: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<SealedSpKey>> {
        self.backend.init_saml_sp_key(sealed, certificate, now)
    }

    fn signing_keys(&self) -> BoxFuture<'_, StoreResult<Vec<StoredKey>>> {
        self.backend.signing_keys()
    }

    fn add_signing_key<'a>(
        &'a self,
        key: &'a StoredKey,
        old_remove_after: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.caught_up(self.backend.add_signing_key(key, old_remove_after))
    }
}

impl<B: Backend> GrantStore for Cached<B> {
    fn create_auth_code<'a>(&'a self, code: &'a AuthCode) -> BoxFuture<'a, StoreResult<()>> {
        self.backend.create_auth_code(code)
    }

    fn auth_code<'a>(&'a self, hash: &'a [u8]) -> BoxFuture<'a, StoreResult<Option<AuthCode>>> {
        self.backend.auth_code(hash)
    }

    fn redeem_auth_code<'a>(
        &'a self,
        hash: &'a [u8],
        grant: &'a LoginGrant,
        refresh: Option<&'a RefreshToken>,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        self.backend.redeem_auth_code(hash, grant, refresh, now)
    }

    fn start_login_grant<'a>(
        &'a self,
        grant: &'a LoginGrant,
        refresh: Option<&'a RefreshToken>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.backend.start_login_grant(grant, refresh)
    }

    fn burn_auth_code<'a>(
        &'a self,
        hash: &'a [u8],
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.backend.burn_auth_code(hash, now)
    }

    fn login_grant<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<LoginGrant>>> {
        self.backend.login_grant(id)
    }

    fn refresh_token<'a>(
        &'a self,
        hash: &'a [u8],
    ) -> BoxFuture<'a, StoreResult<Option<(RefreshToken, LoginGrant)>>> {
        self.backend.refresh_token(hash)
    }

    fn rotate_refresh_token<'a>(
        &'a self,
        old: &'a [u8],
        next: &'a RefreshToken,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<Rotation>> {
        self.backend.rotate_refresh_token(old, next, now)
    }

    fn revoke_login_grant<'a>(
        &'a self,
        id: &'a str,
        reason: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        self.backend.revoke_login_grant(id, reason, now)
    }

    fn revoke_user_grants<'a>(
        &'a self,
        org_id: i64,
        user_id: &'a str,
        reason: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<u64>> {
        self.backend
            .revoke_user_grants(org_id, user_id, reason, now)
    }

    fn revoke_client_grants<'a>(
        &'a self,
        client_id: &'a str,
        reason: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<u64>> {
        self.backend.revoke_client_grants(client_id, reason, now)
    }

    fn revoke_session_grants<'a>(
        &'a self,
        sid: &'a str,
        reason: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<u64>> {
        self.backend.revoke_session_grants(sid, reason, now)
    }

    fn user_grants<'a>(
        &'a self,
        org_id: i64,
        user_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<LoginGrant>>> {
        self.backend.user_grants(org_id, user_id)
    }

    fn remember_assertion_id<'a>(
        &'a self,
        client_id: &'a str,
        jti: &'a str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        self.backend
            .remember_assertion_id(client_id, jti, expires_at, now)
    }

    fn prune_grants(&self, before: Timestamp) -> BoxFuture<'_, StoreResult<u64>> {
        self.backend.prune_grants(before)
    }
}
