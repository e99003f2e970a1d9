//! The storage traits the core needs, one per aggregate (orgs, clients, users, SSO and
//! sessions, throttling, the audit trail, keys, the interactive login's grants), and
//! [`Store`], which combines them. Each database implements them (SQLite now,
//! PostgreSQL next), one module per aggregate; nothing above the store knows which one
//! runs.
//!
//! Methods return boxed futures so the server can hold an `Arc<dyn Store>` and choose
//! the backend at start-up.

use std::future::Future;
use std::pin::Pin;

use crate::audit::{AuditEvent, AuditFilter};
use crate::decision::{Facts, LoginUpdate};
use crate::interactive::{AuthCode, LoginGrant, RefreshToken};
use crate::model::{
    Client, Org, OrgSlug, ScimGroup, ScimGroupChange, ScimLink, ScimToken, Scope, StoredSecret,
    Timestamp, User,
};
use crate::session::Session;
use crate::sso::{SamlPending, SsoConfig};
use crate::throttle::{AttemptOutcome, Reservation, ThrottlePolicy};

/// The SAML SP signing key as stored: (private key sealed with the master key,
/// certificate PEM).
pub type SealedSpKey = (Vec<u8>, String);

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Storage failures, as the layers above see them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken: the message names what already exists.
    #[error("{0}")]
    Conflict(String),
    /// The record to change does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The database failed; the message is for the log, not for callers.
    #[error("database error: {0}")]
    Backend(String),
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// A successful SAML login's writes, for [`SsoStore::finish_saml_login`].
#[derive(Debug)]
pub struct SamlLogin<'a> {
    /// The response's and assertion's identifiers, each with when it may be forgotten.
    pub replay_keys: &'a [(String, Timestamp)],
    /// The user who logs in (a human), as the IdP's attributes left them.
    pub user: &'a User,
    pub user_write: UserWrite,
    /// The stored user the login was planned from (`None` for a user to create): if the
    /// stored row differs when the transaction reads it (disabled, locked, linked
    /// elsewhere meanwhile), nothing is written and the login must be planned again.
    pub planned_from: Option<&'a User>,
    /// The hash of the session this browser had, which ends.
    pub old_session: Option<&'a [u8]>,
    /// The browser session the login starts (none for the SAML bearer grant).
    pub session: Option<&'a Session>,
    pub now: Timestamp,
}

/// Which admin-managed fields [`UserStore::update_user`] writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserFields {
    /// The username (a conflict when another user of the org has it).
    pub username: bool,
    pub email: bool,
    pub display_name: bool,
    pub roles: bool,
    /// The state with who changed it and when, and the lock's end; back to `active`, the
    /// failed-login counter restarts. Written only if the stored user is not already in
    /// that state at the time of the write (a lock is always written: it may move the
    /// lock's end), so a repeated `active` keeps who changed the state last.
    pub state: bool,
}

/// How [`SsoStore::finish_saml_login`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamlLoginWritten {
    /// The login is written: user, session, replay record.
    Done,
    /// An identifier was seen before: a replay. Nothing written.
    Replayed,
    /// The stored user is no longer the one the login was planned from. Nothing written.
    Stale,
}

/// What a SAML login writes to its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserWrite {
    /// The stored user already matches the IdP's attributes.
    Unchanged,
    /// Email, display name, roles and the SAML link, and nothing else: a login never
    /// undoes a concurrent change of the user's state, lock or password.
    FromIdp,
    /// A user provisioned just in time.
    Create,
}

/// A signing key as stored: the private key sealed with the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    pub sealed_private_key: Vec<u8>,
    pub created_at: Timestamp,
    /// When the key stopped signing (None: the current key).
    pub retired_at: Option<Timestamp>,
    /// When the key leaves the JWK Set.
    pub remove_after: Option<Timestamp>,
    /// What it is for: [`KEY_PURPOSE_ACCESS`], [`KEY_PURPOSE_ID_TOKEN`] or
    /// [`KEY_PURPOSE_SAML_ENCRYPTION`].
    pub purpose: String,
    /// Its certificate (PEM), for a key published as one (the SAML encryption key).
    pub certificate: Option<String>,
}

/// A signing key of access tokens.
pub const KEY_PURPOSE_ACCESS: &str = "access";
/// A signing key of OpenID Connect ID tokens (RS256).
pub const KEY_PURPOSE_ID_TOKEN: &str = "id_token";
/// The SAML SP's decryption key (RSA, PKCS#8), published as an encryption certificate in
/// the SP metadata; a retired one still decrypts until its `remove_after`.
pub const KEY_PURPOSE_SAML_ENCRYPTION: &str = "saml_encryption";

/// Appends audit events from a thread of its own, without an async runtime: the audit
/// writer's group commit calls it with whatever events arrived meanwhile.
pub trait AuditAppender: Send {
    /// Appends `events` in one transaction and records the last use of the secrets that
    /// granted tokens. Once it returns the events are committed and, when the store was
    /// opened for full durability, survive a power cut.
    fn append(&mut self, events: &[AuditEvent]) -> StoreResult<()>;
}

/// How a refresh token's rotation went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The old token is now used and the new one stored.
    Rotated,
    /// Another request used the old token first: this use is a replay.
    AlreadyUsed,
}

/// The interactive login's records: authorization codes, grants (refresh token
/// families), refresh tokens, used client assertion ids.
pub trait GrantStore: Send + Sync + 'static {
    /// Stores a new authorization code.
    fn create_auth_code<'a>(&'a self, code: &'a AuthCode) -> BoxFuture<'a, StoreResult<()>>;
    /// The code with this hash, used or not (expired ones are forgotten after a while).
    fn auth_code<'a>(&'a self, hash: &'a [u8]) -> BoxFuture<'a, StoreResult<Option<AuthCode>>>;
    /// The exchange of a code, in one transaction: marks it used if nobody did (false:
    /// another exchange was first) and stores the grant it starts and its first refresh
    /// token, if any.
    fn redeem_auth_code<'a>(
        &'a self,
        hash: &'a [u8],
        grant: &'a LoginGrant,
        refresh: Option<&'a RefreshToken>,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>>;
    /// Starts a grant without a code (the SAML bearer grant), with its first refresh
    /// token, in one transaction.
    fn start_login_grant<'a>(
        &'a self,
        grant: &'a LoginGrant,
        refresh: Option<&'a RefreshToken>,
    ) -> BoxFuture<'a, StoreResult<()>>;
    /// Marks a code used without a grant (its second use).
    fn burn_auth_code<'a>(
        &'a self,
        hash: &'a [u8],
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>>;
    /// A grant by id.
    fn login_grant<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<LoginGrant>>>;
    /// A refresh token and its grant.
    fn refresh_token<'a>(
        &'a self,
        hash: &'a [u8],
    ) -> BoxFuture<'a, StoreResult<Option<(RefreshToken, LoginGrant)>>>;
    /// Marks `old` used and stores `next`, if nobody used `old` first.
    fn rotate_refresh_token<'a>(
        &'a self,
        old: &'a [u8],
        next: &'a RefreshToken,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<Rotation>>;
    /// Revokes one grant (no-op when it already is); true when it was live.
    fn revoke_login_grant<'a>(
        &'a self,
        id: &'a str,
        reason: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>>;
    /// Revokes every live grant of a user and ends their browser sessions; returns how
    /// many grants.
    fn revoke_user_grants<'a>(
        &'a self,
        org_id: i64,
        user_id: &'a str,
        reason: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<u64>>;
    /// Revokes every live grant of a client; returns how many.
    fn revoke_client_grants<'a>(
        &'a self,
        client_id: &'a str,
        reason: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<u64>>;
    /// Revokes every live grant of a browser session (logout); returns how many.
    fn revoke_session_grants<'a>(
        &'a self,
        sid: &'a str,
        reason: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<u64>>;
    /// A user's grants, newest first (live and ended).
    fn user_grants<'a>(
        &'a self,
        org_id: i64,
        user_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<LoginGrant>>>;
    /// Remembers a client assertion's `jti` until `expires_at`; false when it was seen.
    fn remember_assertion_id<'a>(
        &'a self,
        client_id: &'a str,
        jti: &'a str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>>;
    /// Forgets codes, refresh tokens and assertion ids past their end before `before`.
    fn prune_grants(&self, before: Timestamp) -> BoxFuture<'_, StoreResult<u64>>;
}

/// Orgs and their scope catalogues.
pub trait OrgStore: Send + Sync + 'static {
    /// True when no org exists yet (a fresh database).
    fn is_empty(&self) -> BoxFuture<'_, StoreResult<bool>>;
    fn create_org<'a>(
        &'a self,
        slug: &'a OrgSlug,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<Org>>;
    fn org_by_slug<'a>(&'a self, slug: &'a str) -> BoxFuture<'a, StoreResult<Option<Org>>>;
    fn org_by_id(&self, id: i64) -> BoxFuture<'_, StoreResult<Option<Org>>>;
    /// Every org, oldest first (a background job's round over them).
    fn list_orgs(&self) -> BoxFuture<'_, StoreResult<Vec<Org>>>;
    fn create_scope<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, StoreResult<()>>;
    fn list_scopes(&self, org_id: i64) -> BoxFuture<'_, StoreResult<Vec<Scope>>>;
}

/// Clients, their secrets, and the facts a token decision reads about one.
pub trait ClientStore: Send + Sync + 'static {
    /// Creates a client with its first secret (none for a public client), in one
    /// transaction.
    fn create_client<'a>(
        &'a self,
        client: &'a Client,
        secret: Option<&'a StoredSecret>,
    ) -> BoxFuture<'a, StoreResult<()>>;
    fn get_client<'a>(
        &'a self,
        org_id: i64,
        client_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<Client>>>;
    fn list_clients(&self, org_id: i64) -> BoxFuture<'_, StoreResult<Vec<Client>>>;
    fn update_client<'a>(&'a self, client: &'a Client) -> BoxFuture<'a, StoreResult<()>>;
    /// Deletes a client, its secrets and throttle records.
    fn delete_client<'a>(
        &'a self,
        org_id: i64,
        client_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<bool>>;
    fn list_secrets<'a>(
        &'a self,
        client_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<StoredSecret>>>;
    /// Adds `new` and makes every other active secret expire at `old_expire_at` (or
    /// earlier if it already would), in one transaction. Refused (`Conflict`) when two
    /// secrets are already active at `now`.
    fn rotate_secret<'a>(
        &'a self,
        new: &'a StoredSecret,
        old_expire_at: Timestamp,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>>;
    /// Marks a secret revoked; false when it does not exist.
    fn revoke_secret<'a>(
        &'a self,
        client_id: &'a str,
        secret_id: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>>;
}

/// People and service accounts.
pub trait UserStore: Send + Sync + 'static {
    fn create_user<'a>(&'a self, user: &'a User) -> BoxFuture<'a, StoreResult<()>>;
    fn get_user<'a>(&'a self, org_id: i64, id: &'a str)
    -> BoxFuture<'a, StoreResult<Option<User>>>;
    fn list_users(&self, org_id: i64) -> BoxFuture<'_, StoreResult<Vec<User>>>;
    /// Writes the admin-managed `fields` of `user` and nothing else: an edit never undoes
    /// a concurrent change of a field it was not asked to change (an IdP's roles, a first
    /// SSO login's link, a failed login's count). Whether the state changes is decided
    /// against the stored row at `now`, not against the caller's copy.
    fn update_user<'a>(
        &'a self,
        user: &'a User,
        fields: UserFields,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>>;
    /// The org's human whose SCIM `externalId` is `external_id`.
    fn user_by_scim_external_id<'a>(
        &'a self,
        org_id: i64,
        external_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<User>>>;
    /// Sets (or, with `None`, removes) a human's link to SCIM provisioning; a conflict
    /// when another user of the org has that `externalId`.
    fn set_scim_link<'a>(
        &'a self,
        org_id: i64,
        user_id: &'a str,
        link: Option<&'a ScimLink>,
    ) -> BoxFuture<'a, StoreResult<()>>;
    fn user_by_username<'a>(
        &'a self,
        org_id: i64,
        username: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<User>>>;
    /// Applies a password attempt's outcome: counts a failure (and locks the account when
    /// the update says so), or resets the count and records the login and, for a password
    /// grant, the client's use of it.
    fn record_login<'a>(
        &'a self,
        update: &'a LoginUpdate,
        client_id: Option<&'a str>,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>>;
    /// Each client's last password grant in the org.
    fn password_grant_uses(
        &self,
        org_id: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<(String, Timestamp)>>>;
    fn user_by_saml_link<'a>(
        &'a self,
        org_id: i64,
        name_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<User>>>;
    /// The org's user with this email (case-insensitive).
    fn user_by_email<'a>(
        &'a self,
        org_id: i64,
        email: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<User>>>;
}

/// SCIM provisioning's own records: groups with their members, and long-lived tokens.
pub trait ScimStore: Send + Sync + 'static {
    /// Creates a group with its members; a conflict when the org has a group of that
    /// name. Members that are not humans of the org are left out (a service account is
    /// never a member, whatever a caller asks).
    fn create_scim_group<'a>(&'a self, group: &'a ScimGroup) -> BoxFuture<'a, StoreResult<()>>;
    fn scim_group<'a>(
        &'a self,
        org_id: i64,
        id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<ScimGroup>>>;
    /// The org's groups with their members, by name.
    fn list_scim_groups(&self, org_id: i64) -> BoxFuture<'_, StoreResult<Vec<ScimGroup>>>;
    /// Applies `change` in one transaction (so concurrent membership changes add up):
    /// false when the group does not exist; a conflict when the new name is taken.
    /// Members are filtered as in [`create_scim_group`](ScimStore::create_scim_group).
    fn change_scim_group<'a>(
        &'a self,
        org_id: i64,
        id: &'a str,
        change: &'a ScimGroupChange,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>>;
    /// Deletes a group and its memberships; false when it did not exist.
    fn delete_scim_group<'a>(
        &'a self,
        org_id: i64,
        id: &'a str,
    ) -> BoxFuture<'a, StoreResult<bool>>;
    /// The groups a user is a member of (members left empty), by name.
    fn scim_groups_of<'a>(
        &'a self,
        org_id: i64,
        user_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<ScimGroup>>>;
    fn create_scim_token<'a>(&'a self, token: &'a ScimToken) -> BoxFuture<'a, StoreResult<()>>;
    /// The token with this SHA-256, revoked or expired ones included.
    fn scim_token_by_hash<'a>(
        &'a self,
        hash: &'a [u8],
    ) -> BoxFuture<'a, StoreResult<Option<ScimToken>>>;
    fn list_scim_tokens(&self, org_id: i64) -> BoxFuture<'_, StoreResult<Vec<ScimToken>>>;
    /// Revokes a token (no-op when it already is); false when it does not exist.
    fn revoke_scim_token<'a>(
        &'a self,
        org_id: i64,
        id: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>>;
    /// Records a token's use (callers do it at most once a minute per token).
    fn touch_scim_token<'a>(
        &'a self,
        id: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>>;
}

/// An org's SSO configuration, SAML logins in flight and their replay cache, and
/// browser sessions.
pub trait SsoStore: Send + Sync + 'static {
    fn sso_config(&self, org_id: i64) -> BoxFuture<'_, StoreResult<Option<SsoConfig>>>;
    fn put_sso_config<'a>(
        &'a self,
        org_id: i64,
        config: &'a SsoConfig,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>>;
    /// Switches SSO enforcement for humans on or off.
    /// Replaces the org's configuration only if it is still `expected` (as written):
    /// false when someone changed it meanwhile (a background refresh must not undo an
    /// admin's change).
    fn replace_sso_config<'a>(
        &'a self,
        org_id: i64,
        expected: &'a SsoConfig,
        config: &'a SsoConfig,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>>;
    fn set_sso_enforced(&self, org_id: i64, enforced: bool) -> BoxFuture<'_, StoreResult<()>>;
    /// Stores a pending login started from `source`, unless `source` already has
    /// `per_source` pending logins or the org `per_org` (unexpired at
    /// `p.expires_at - PENDING_SECONDS`): false then, and nothing is stored. This bounds
    /// what unauthenticated requests can make the database hold.
    fn put_saml_pending<'a>(
        &'a self,
        p: &'a SamlPending,
        source: &'a str,
        per_source: u32,
        per_org: u32,
    ) -> BoxFuture<'a, StoreResult<bool>>;
    /// Takes (deletes and returns) a pending login: `None` when unknown, already used or
    /// expired at `now`. Each handle is usable once.
    fn take_saml_pending<'a>(
        &'a self,
        handle: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<Option<SamlPending>>>;
    /// Remembers a response's identifiers until they expire, in one transaction; false
    /// when one of them was seen before (a replay), on this node or another.
    fn remember_saml_ids<'a>(
        &'a self,
        org_id: i64,
        keys: &'a [(String, Timestamp)],
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<bool>>;
    /// Writes a successful SAML login in one transaction (one synced commit): remembers
    /// the response's identifiers as [`remember_saml_ids`](SsoStore::remember_saml_ids)
    /// does, checks the user is still as planned, applies [`SamlLogin::user_write`],
    /// ends the browser's previous session and starts the new one. Nothing is written
    /// unless it answers [`SamlLoginWritten::Done`]; `Conflict`, with nothing written,
    /// when a user to create clashes with an existing one.
    fn finish_saml_login<'a>(
        &'a self,
        login: &'a SamlLogin<'a>,
    ) -> BoxFuture<'a, StoreResult<SamlLoginWritten>>;
    fn create_session<'a>(&'a self, s: &'a Session) -> BoxFuture<'a, StoreResult<()>>;
    fn session<'a>(&'a self, id_hash: &'a [u8]) -> BoxFuture<'a, StoreResult<Option<Session>>>;
    fn touch_session<'a>(
        &'a self,
        id_hash: &'a [u8],
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>>;
    fn delete_session<'a>(&'a self, id_hash: &'a [u8]) -> BoxFuture<'a, StoreResult<()>>;
    /// Ends a person's SAML browser sessions in an org (the IdP's Single Logout): deletes
    /// them and returns them, so what they gave clients can be revoked.
    fn end_saml_sessions<'a>(
        &'a self,
        org_id: i64,
        user_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<Session>>>;
    /// Forgets sessions idle since `idle_before` or created before `created_before` (both
    /// inclusive: such a session is no longer live), so sessions nobody comes back to do
    /// not stay in the database. Returns how many were removed.
    fn prune_sessions(
        &self,
        idle_before: Timestamp,
        created_before: Timestamp,
    ) -> BoxFuture<'_, StoreResult<u64>>;
}

/// Throttle records as stored: failures per (key, source address), where the key is a
/// client id, an org's login page or a username (see `crate::throttle`). Attempts are
/// taken and settled through [`HotPath`], which keeps this node's copy in front.
pub trait ThrottleStore: Send + Sync + 'static {
    /// Forgets throttle records whose last failure is older than `before` and whose block
    /// has lifted, so failures against made-up client ids cannot grow the table forever.
    /// Returns how many were removed.
    fn prune_throttle(&self, before: Timestamp, now: Timestamp) -> BoxFuture<'_, StoreResult<u64>>;
}

/// The audit trail.
pub trait AuditStore: Send + Sync + 'static {
    /// The audit trail's writer, for a thread of its own (see [`AuditAppender`]). Called
    /// once, at startup.
    fn audit_appender(&self) -> StoreResult<Box<dyn AuditAppender>>;
    /// How many audit batches may be committing at once, each through an appender of
    /// its own: 1 where commits serialize anyway (SQLite); more where the database takes
    /// them in parallel and a commit's wait, not its work, bounds the rate.
    fn audit_batches_in_flight(&self) -> usize {
        1
    }
    fn get_audit_event<'a>(
        &'a self,
        org_id: i64,
        request_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<AuditEvent>>>;
    fn list_audit_events<'a>(
        &'a self,
        org_id: i64,
        filter: &'a AuditFilter,
    ) -> BoxFuture<'a, StoreResult<Vec<AuditEvent>>>;
}

/// Signing keys: the access and ID tokens' keys, and the SAML SP key.
pub trait KeyStore: Send + Sync + 'static {
    /// The SP key as stored, if one was made.
    fn saml_sp_key(&self) -> BoxFuture<'_, StoreResult<Option<SealedSpKey>>>;
    /// Stores the SP key unless another node stored one first; returns the stored one.
    fn init_saml_sp_key<'a>(
        &'a self,
        sealed: &'a [u8],
        certificate: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<SealedSpKey>>;
    /// Every stored signing key, oldest first (in the order they were added, also within
    /// one second).
    fn signing_keys(&self) -> BoxFuture<'_, StoreResult<Vec<StoredKey>>>;
    /// Inserts `key` as the current key and retires the previous current key at
    /// `key.created_at`, keeping it published until `old_remove_after`.
    fn add_signing_key<'a>(
        &'a self,
        key: &'a StoredKey,
        old_remove_after: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>>;
}

/// The token path's reads and the throttle budgets, served from node-local copies:
/// what a storage layer keeps in front of a database (`tessera-store`'s cache layer),
/// refreshed from what every node changed.
pub trait HotPath: Send + Sync + 'static {
    /// Loads what a decision about `client_id` from `source_ip` needs.
    fn token_facts<'a>(
        &'a self,
        client_id: &'a str,
        source_ip: &'a str,
    ) -> BoxFuture<'a, StoreResult<Facts>>;
    /// Takes one attempt from the budget of (`key`, `source`) under `policy` at `now`,
    /// atomically with every other attempt on this node. The attempt is judged by the
    /// stored record with every attempt still in flight counted as a failure
    /// ([`Reservation::judged`]). When that state is blocked (`policy.retry_after` says
    /// so) nothing is taken; otherwise the caller ends the attempt with
    /// [`settle_attempt`](HotPath::settle_attempt) or [`release_attempt`](HotPath::release_attempt).
    fn reserve_attempt(
        &self,
        key: &str,
        source: &str,
        policy: &ThrottlePolicy,
        now: Timestamp,
    ) -> Reservation;
    /// Ends a reserved attempt whose credential was checked: a failure is counted (on this
    /// node at once, in the database by an atomic increment, so several nodes add up), a
    /// success clears the record. The node-local part is done before this returns its
    /// future, so dropping the future loses at most the database write.
    fn settle_attempt<'a>(
        &'a self,
        key: &'a str,
        source: &'a str,
        outcome: AttemptOutcome,
        policy: &ThrottlePolicy,
        now: Timestamp,
    ) -> BoxFuture<'a, StoreResult<()>>;
    /// Ends a reserved attempt that never reached its credential check.
    fn release_attempt(&self, key: &str, source: &str);
    /// Refreshes node-local copies from the database: what other nodes changed since the
    /// last call (cached client facts, throttle records of the last `window` seconds).
    /// The server calls it every second.
    fn sync(&self, window: i64) -> BoxFuture<'_, StoreResult<()>>;

    /// A number that moves each time any node changes the signing keys, as far as this
    /// node has read (through `sync`, or at once for a change made through it): the
    /// server reloads its keys when it moves.
    fn keys_generation(&self) -> u64;
}

/// Everything Tessera stores: the aggregates, with the hot path in front.
pub trait Store:
    OrgStore
    + ClientStore
    + UserStore
    + ScimStore
    + SsoStore
    + ThrottleStore
    + AuditStore
    + KeyStore
    + GrantStore
    + HotPath
{
}

impl<T> Store for T where
    T: OrgStore
        + ClientStore
        + UserStore
        + ScimStore
        + SsoStore
        + ThrottleStore
        + AuditStore
        + KeyStore
        + GrantStore
        + HotPath
{
}
