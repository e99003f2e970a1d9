//! SCIM `Users`: the org's humans, created, matched, changed, deactivated and deleted
//! through `users.rs` (the admin API's code), each request audited.

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tessera_core::Reason;
use tessera_core::model::{Actor, ScimGroupChange, ScimLink, User, UserState, UserType};
use tessera_core::scim::{self as filter, Resource};
use tessera_core::text::{clip, rfc3339};
use tessera_core::trace::{Check, Trace};

use super::{
    Done, ListQuery, Provisioner, ScimError, USER_SCHEMA, body, boolean, external_id, not_modified,
    patch_ops, path_of, precondition, scim_resource, text, versioned,
};
use crate::clock;
use crate::users::{self, Change, NewUser};

/// Whether SCIM may see this user: a human SCIM has not deleted.
pub(super) fn visible(u: &User) -> bool {
    u.user_type == UserType::Human && u.scim.as_ref().is_none_or(|l| l.deleted_at.is_none())
}

/// A user as SCIM shows it.
fn resource(p: &Provisioner, u: &User) -> Value {
    let mut r = json!({
        "schemas": [USER_SCHEMA],
        "id": u.id,
        "userName": u.username,
        "active": u.effective_state(clock::now()) == UserState::Active,
        "meta": {
            "resourceType": "User",
            "created": rfc3339(u.created_at),
            "lastModified": rfc3339(u.state_changed_at.unwrap_or(u.created_at).max(u.created_at)),
            "location": format!("{}/Users/{}", p.base(), u.id),
        },
    });
    if let Some(ext) = u.scim.as_ref().and_then(|l| l.external_id.as_ref()) {
        r["externalId"] = json!(ext);
    }
    if let Some(n) = &u.display_name {
        r["displayName"] = json!(n);
        r["name"] = json!({"formatted": n});
    }
    if let Some(e) = &u.email {
        r["emails"] = json!([{"value": e, "type": "work", "primary": true}]);
    }
    if !u.roles.is_empty() {
        r["roles"] = json!(
            u.roles
                .iter()
                .map(|r| json!({"value": r}))
                .collect::<Vec<_>>()
        );
    }
    versioned(r)
}

/// A user's attributes as filters read them.
struct Attrs<'a>(&'a User);
struct EmailAttrs<'a>(&'a str);

impl Resource for EmailAttrs<'_> {
    fn values(&self, attr: &str, _: Option<&str>) -> Vec<filter::Value> {
        match attr {
            "value" => vec![filter::Value::Str(self.0.to_string())],
            "type" => vec![filter::Value::Str("work".into())],
            "primary" => vec![filter::Value::Bool(true)],
            _ => vec![],
        }
    }
    fn elements(&self, _: &str) -> Vec<Box<dyn Resource + '_>> {
        vec![]
    }
}

impl Resource for Attrs<'_> {
    fn values(&self, attr: &str, sub: Option<&str>) -> Vec<filter::Value> {
        let u = self.0;
        let s = |v: &str| vec![filter::Value::Str(v.to_string())];
        match (attr, sub) {
            ("id", None) => s(&u.id),
            ("username", None) => s(&u.username),
            ("externalid", None) => u
                .scim
                .as_ref()
                .and_then(|l| l.external_id.as_deref())
                .map(s)
                .unwrap_or_default(),
            ("displayname", None) | ("name", Some("formatted")) => {
                u.display_name.as_deref().map(s).unwrap_or_default()
            }
            ("emails", None | Some("value")) => u.email.as_deref().map(s).unwrap_or_default(),
            ("active", None) => vec![filter::Value::Bool(
                u.effective_state(clock::now()) == UserState::Active,
            )],
            _ => vec![],
        }
    }

    fn elements(&self, attr: &str) -> Vec<Box<dyn Resource + '_>> {
        match (attr, &self.0.email) {
            ("emails", Some(e)) => vec![Box::new(EmailAttrs(e))],
            _ => vec![],
        }
    }
}

/// `GET /scim/v2/{org}/Users`: the org's humans, filtered and paged.
pub async fn list_users(p: Provisioner, Query(q): Query<ListQuery>) -> Result<Response, ScimError> {
    let parsed = q.filter()?;
    let all = p.st.store.list_users(p.org.id).await?;
    let found: Vec<&User> = all
        .iter()
        .filter(|u| visible(u))
        .filter(|u| {
            parsed
                .as_ref()
                .is_none_or(|f| filter::matches(f, &Attrs(u)))
        })
        .collect();
    Ok(q.page(&found, |u| resource(&p, u)))
}

/// The user a request names, recorded in its trace.
async fn target(p: &Provisioner, id: &str, trace: &mut Trace) -> Result<User, ScimError> {
    let u = find(p, id).await?;
    trace.pass(
        Check::ScimResource,
        format!("human '{}' ({})", u.username, u.id),
    );
    Ok(u)
}

/// Links `u` to the IdP's `externalId` when the request names another one, or unlinks
/// the `externalId` a `remove` took away (the person stays provisioned).
async fn relink(p: &Provisioner, u: &User, f: &Fields) -> Result<(), ScimError> {
    let current = u.scim.as_ref().and_then(|l| l.external_id.as_ref());
    let wanted = match (&f.external_id, f.clear.external_id) {
        (Some(ext), _) => Some(ext),
        (None, true) => None,
        (None, false) => return Ok(()),
    };
    if current == wanted {
        return Ok(());
    }
    let link = ScimLink {
        external_id: wanted.cloned(),
        ..u.scim.clone().unwrap_or(ScimLink {
            external_id: None,
            provisioned_by: p.client_id.clone(),
            provisioned_at: clock::now(),
            deleted_at: None,
        })
    };
    p.st.store
        .set_scim_link(p.org.id, &u.id, Some(&link))
        .await?;
    Ok(())
}

async fn find(p: &Provisioner, id: &str) -> Result<User, ScimError> {
    match p.st.store.get_user(p.org.id, id).await? {
        Some(u) if visible(&u) => Ok(u),
        _ => Err(ScimError::not_found(id)),
    }
}

/// `GET /scim/v2/{org}/Users/{id}`.
pub async fn get_user(
    p: Provisioner,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, ScimError> {
    let u = find(&p, &id).await?;
    let r = resource(&p, &u);
    if let Some(res) = not_modified(&headers, &r) {
        return Ok(res);
    }
    Ok(scim_resource(StatusCode::OK, q.project(r)))
}

/// What a SCIM body says about a user.
#[derive(Debug, Default)]
struct Fields {
    user_name: Option<String>,
    external_id: Option<String>,
    display_name: Option<String>,
    email: Option<String>,
    active: Option<bool>,
    /// What a `remove` (or a PUT without it) unassigns, unless set again after.
    clear: Clear,
}

#[derive(Debug, Default, Clone, Copy)]
struct Clear {
    external_id: bool,
    display_name: bool,
    email: bool,
}

/// The primary (else the first) email of an `emails` array.
fn primary_email(v: &Value) -> Result<Option<String>, ScimError> {
    let Some(list) = v.as_array() else {
        return Err(ScimError::invalid("emails must be an array"));
    };
    let pick = list
        .iter()
        .find(|e| {
            e.get("primary")
                .is_some_and(|p| boolean(p, "primary").unwrap_or(false))
        })
        .or_else(|| list.first());
    pick.and_then(|e| e.get("value"))
        .map(|v| text(v, "emails.value"))
        .transpose()
}

/// Reads the attributes Tessera manages from a User resource (POST, PUT, or a PATCH
/// value object). Others are ignored (the enterprise extension, phone numbers, …).
fn fields_of(v: &Value) -> Result<Fields, ScimError> {
    let mut f = Fields::default();
    let Some(obj) = v.as_object() else {
        return Err(ScimError::invalid("a User must be a JSON object"));
    };
    for (k, val) in obj {
        match k.to_ascii_lowercase().as_str() {
            "username" => f.user_name = Some(text(val, "userName")?),
            "externalid" => f.external_id = Some(external_id(val)?),
            "displayname" => f.display_name = Some(text(val, "displayName")?),
            "name" => {
                if f.display_name.is_none()
                    && let Some(n) = name_of(val)
                {
                    f.display_name = Some(n);
                }
            }
            "emails" => f.email = primary_email(val)?,
            "active" => f.active = Some(boolean(val, "active")?),
            "name.formatted" => f.display_name = Some(text(val, "name.formatted")?),
            _ => {}
        }
    }
    Ok(f)
}

/// A display name from a `name` object: `formatted`, else given and family names.
fn name_of(v: &Value) -> Option<String> {
    if let Some(f) = v.get("formatted").and_then(Value::as_str) {
        return Some(f.to_string());
    }
    let parts: Vec<&str> = ["givenName", "familyName"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(Value::as_str))
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// `POST /scim/v2/{org}/Users`: a new human, or an existing one matched once (by
/// externalId, then userName, then email, among humans SCIM has not linked elsewhere).
pub async fn create_user(p: Provisioner, bytes: Bytes) -> Result<Response, ScimError> {
    let mut trace = Trace::default();
    let result = create(&p, &bytes, &mut trace).await;
    let u = p.settle("create_user", None, result, trace).await?;
    let mut res = scim_resource(StatusCode::CREATED, resource(&p, &u));
    if let Ok(v) = HeaderValue::from_str(&format!("{}/Users/{}", p.base(), u.id)) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

async fn create(
    p: &Provisioner,
    bytes: &Bytes,
    trace: &mut Trace,
) -> Result<Done<User>, ScimError> {
    let f = fields_of(&body(bytes)?)?;
    let user_name = f
        .user_name
        .clone()
        .ok_or_else(|| ScimError::invalid("userName is required"))?;
    let now = clock::now();
    let store = &p.st.store;
    let link = |existing: Option<&ScimLink>| ScimLink {
        external_id: f.external_id.clone(),
        provisioned_by: existing
            .map(|l| l.provisioned_by.clone())
            .unwrap_or_else(|| p.client_id.clone()),
        provisioned_at: existing.map(|l| l.provisioned_at).unwrap_or(now),
        deleted_at: None,
    };
    // The person may exist: by externalId, then userName, then email, once.
    let mut existing = None;
    if let Some(ext) = &f.external_id {
        existing = store.user_by_scim_external_id(p.org.id, ext).await?;
        if existing
            .as_ref()
            .is_some_and(|u| u.scim.as_ref().is_some_and(|l| l.deleted_at.is_none()))
        {
            return Err(ScimError::new(
                StatusCode::CONFLICT,
                Some("uniqueness"),
                Some(Reason::ScimUniqueness),
                format!("externalId '{}' is already provisioned", clip(ext)),
            ));
        }
    }
    if existing.is_none() {
        existing = store.user_by_username(p.org.id, &user_name).await?;
    }
    if existing.is_none()
        && let Some(e) = &f.email
    {
        // Only a human is matched by email: a service account sharing the address is
        // not SCIM's, and does not stop the person from being created.
        existing = store
            .user_by_email(p.org.id, e)
            .await?
            .filter(|u| u.user_type == UserType::Human);
    }
    if let Some(u) = existing {
        let taken = || {
            ScimError::new(
                StatusCode::CONFLICT,
                Some("uniqueness"),
                Some(Reason::ScimUniqueness),
                format!("userName '{}' is taken in the org", clip(&user_name)),
            )
        };
        if u.user_type == UserType::Service {
            return Err(taken());
        }
        // Matched once: a person provisioned as another identity is not taken over, nor
        // is a person the IdP deleted by someone new with their old name (a new hire
        // must not inherit a departed person's account, roles and `sub`).
        if let Some(l) = &u.scim
            && l.external_id.is_some()
            && l.external_id != f.external_id
            && (l.deleted_at.is_none() || f.external_id.is_some())
        {
            let detail = if l.deleted_at.is_some() {
                format!(
                    "userName '{}' belonged to another person the IdP deleted: an admin renames or removes that account before the name is given again",
                    clip(&user_name)
                )
            } else {
                format!(
                    "userName '{}' is already provisioned as another identity",
                    clip(&user_name)
                )
            };
            return Err(ScimError::new(
                StatusCode::CONFLICT,
                Some("uniqueness"),
                Some(Reason::ScimUniqueness),
                detail,
            ));
        }
        trace.pass(
            Check::ScimResource,
            format!(
                "human '{}' ({}) exists: matched and linked to this provisioning",
                u.username, u.id
            ),
        );
        // Everything is checked before anything is written.
        let change = plan(&u, &f)?;
        let linked = link(u.scim.as_ref());
        let u = write(p, u, change, trace).await?;
        store.set_scim_link(p.org.id, &u.id, Some(&linked)).await?;
        let u = find(p, &u.id).await?;
        let change = json!({"user_id": u.id, "matched": true, "userName": u.username, "externalId": f.external_id});
        return Ok(Done {
            subject: u.id.clone(),
            value: u,
            change,
        });
    }
    trace.pass(Check::ScimResource, "a new human of the org");
    let u = users::create(
        &p.st,
        &p.org,
        NewUser {
            user_type: UserType::Human,
            username: user_name,
            email: f.email.clone(),
            display_name: f.display_name.clone(),
            roles: vec![],
            password: None,
            scim: Some(link(None)),
        },
    )
    .await?;
    let mut u = u;
    if f.active == Some(false) {
        u = users::change(
            &p.st,
            &p.org,
            u,
            Change {
                state: Some((UserState::Disabled, None)),
                ..Change::default()
            },
            &p.actor(),
        )
        .await?;
    }
    let u = find(p, &u.id).await?;
    trace.pass(
        Check::ScimChange,
        format!("created '{}' ({})", u.username, u.id),
    );
    let change = json!({"user_id": u.id, "created": true, "userName": u.username, "externalId": f.external_id});
    Ok(Done {
        subject: u.id.clone(),
        value: u,
        change,
    })
}

/// What `f` changes on `u` (profile fields, the active flag, the name), by the
/// provisioning rules, without writing anything: a refusal leaves everything as it was.
/// SCIM re-enables only whom provisioning disabled.
fn plan(u: &User, f: &Fields) -> Result<Change, ScimError> {
    let now = clock::now();
    // A value to set, or none where a remove unassigns one; nothing when it is already so.
    let wanted = |set: &Option<String>, clear: bool, now: &Option<String>| {
        let want = match (set, clear) {
            (Some(v), _) => Some(v.clone()),
            (None, true) => None,
            (None, false) => return None,
        };
        (want != *now).then_some(want)
    };
    let mut change = Change {
        email: wanted(&f.email, f.clear.email, &u.email),
        display_name: wanted(&f.display_name, f.clear.display_name, &u.display_name),
        ..Change::default()
    };
    let state = u.effective_state(now);
    match f.active {
        // A locked person too: the lock would lapse, the deactivation must not.
        Some(false) if state != UserState::Disabled => {
            change.state = Some((UserState::Disabled, None))
        }
        Some(true) if state != UserState::Active => {
            let by_provisioning = matches!(u.state_changed_by, Some(Actor::Provisioning { .. }));
            if !by_provisioning {
                return Err(ScimError::new(
                    StatusCode::BAD_REQUEST,
                    Some("mutability"),
                    Some(Reason::ScimMutability),
                    format!(
                        "user '{}' was {} by {}, not by provisioning: only an admin enables them again",
                        u.username,
                        u.state.as_str(),
                        u.state_changed_by
                            .as_ref()
                            .map(|a| a.to_string())
                            .unwrap_or_else(|| "someone".into())
                    ),
                ));
            }
            change.state = Some((UserState::Active, None));
        }
        _ => {}
    }
    // A rename (Okta renames when a person's login changes); another user's name is a
    // conflict that changes nothing.
    change.username = f.user_name.clone().filter(|n| *n != u.username);
    if let Some(name) = &change.username {
        users::check_username(name)?;
    }
    if let Some(Some(e)) = &change.email {
        users::check_email(e)?;
    }
    if let Some(Some(n)) = &change.display_name {
        users::check_display_name(n)?;
    }
    Ok(change)
}

/// Writes a planned change to `u` as the provisioning client, with its trace.
async fn write(
    p: &Provisioner,
    u: User,
    change: Change,
    trace: &mut Trace,
) -> Result<User, ScimError> {
    let what: Vec<&str> = [
        ("userName", change.username.is_some()),
        ("email", change.email.is_some()),
        ("displayName", change.display_name.is_some()),
        ("active", change.state.is_some()),
    ]
    .into_iter()
    .filter(|(_, c)| *c)
    .map(|(n, _)| n)
    .collect();
    if what.is_empty() {
        trace.pass(Check::ScimChange, "nothing to change");
        return Ok(u);
    }
    let ended = matches!(change.state, Some((UserState::Disabled, _)));
    let u = users::change(&p.st, &p.org, u, change, &p.actor()).await?;
    trace.pass(
        Check::ScimChange,
        format!(
            "changed {} of '{}'{}",
            what.join(", "),
            u.username,
            if ended {
                " (disabled: sessions ended, refresh tokens revoked)"
            } else {
                ""
            }
        ),
    );
    Ok(u)
}

/// A PUT's or PATCH's change to `u`: everything checked first (the fields, the
/// `externalId` not being another person's), then written, then the link moved.
async fn update(
    p: &Provisioner,
    u: User,
    f: &Fields,
    trace: &mut Trace,
) -> Result<User, ScimError> {
    let change = plan(&u, f)?;
    if let Some(ext) = &f.external_id
        && u.scim.as_ref().and_then(|l| l.external_id.as_ref()) != Some(ext)
        && let Some(other) = p.st.store.user_by_scim_external_id(p.org.id, ext).await?
        && other.id != u.id
    {
        return Err(ScimError::new(
            StatusCode::CONFLICT,
            Some("uniqueness"),
            Some(Reason::ScimUniqueness),
            format!("externalId '{}' is another person's", clip(ext)),
        ));
    }
    let before = u.clone();
    let u = write(p, u, change, trace).await?;
    relink(p, &before, f).await?;
    Ok(u)
}

/// `PUT /scim/v2/{org}/Users/{id}`: the attributes Tessera manages, replaced.
pub async fn replace_user(
    p: Provisioner,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ScimError> {
    let mut trace = Trace::default();
    let result = async {
        let u = target(&p, &id, &mut trace).await?;
        precondition(&headers, &resource(&p, &u))?;
        let mut f = fields_of(&body(&bytes)?)?;
        // A PUT replaces: what Tessera keeps and the body leaves out is unassigned (not
        // the externalId: it is the person's link to the IdP, kept until removed).
        f.clear.display_name = f.display_name.is_none();
        f.clear.email = f.email.is_none();
        update(&p, u, &f, &mut trace).await
    }
    .await;
    finish(&p, "replace_user", &id, result, trace).await
}

async fn finish(
    p: &Provisioner,
    op: &str,
    id: &str,
    result: Result<User, ScimError>,
    trace: Trace,
) -> Result<Response, ScimError> {
    let result = result.map(|u| Done {
        subject: u.id.clone(),
        change: json!({"user_id": u.id}),
        value: u,
    });
    let u = p.settle(op, Some(id), result, trace).await?;
    let u = find(p, &u.id).await.unwrap_or(u);
    Ok(scim_resource(StatusCode::OK, resource(p, &u)))
}

/// `PATCH /scim/v2/{org}/Users/{id}`: `add`, `replace` and `remove` operations, with a
/// path (`active`, `emails[type eq "work"].value`, `name.formatted`, …) or a value
/// object without one; operation names in any case (Entra ID writes `Replace`).
pub async fn patch_user(
    p: Provisioner,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ScimError> {
    let mut trace = Trace::default();
    let result = async {
        let u = target(&p, &id, &mut trace).await?;
        precondition(&headers, &resource(&p, &u))?;
        let mut f = Fields::default();
        for (op, path, value) in patch_ops(&body(&bytes)?)? {
            match (op.as_str(), path) {
                ("remove", Some(path)) => remove_path(&mut f, &path, u.email.as_deref())?,
                (_, None) => merge(&mut f, fields_of(&value)?),
                (_, Some(path)) => set_path(&mut f, &path, &value)?,
            }
        }
        update(&p, u, &f, &mut trace).await
    }
    .await;
    finish(&p, "patch_user", &id, result, trace).await
}

fn merge(f: &mut Fields, g: Fields) {
    f.user_name = g.user_name.or(f.user_name.take());
    f.external_id = g.external_id.or(f.external_id.take());
    f.display_name = g.display_name.or(f.display_name.take());
    f.email = g.email.or(f.email.take());
    f.active = g.active.or(f.active);
    f.clear.external_id &= f.external_id.is_none();
    f.clear.display_name &= f.display_name.is_none();
    f.clear.email &= f.email.is_none();
}

fn set_path(f: &mut Fields, path: &str, value: &Value) -> Result<(), ScimError> {
    let parsed = path_of(path)?;
    match (parsed.attr.as_str(), parsed.sub.as_deref()) {
        ("active", None) => f.active = Some(boolean(value, "active")?),
        ("username", None) => f.user_name = Some(text(value, "userName")?),
        ("externalid", None) => f.external_id = Some(external_id(value)?),
        ("displayname", None) | ("name", Some("formatted")) => {
            f.display_name = Some(text(value, "displayName")?)
        }
        ("name", None) => f.display_name = name_of(value),
        ("emails", Some("value")) => f.email = Some(text(value, "emails.value")?),
        ("emails", None) => f.email = primary_email(value)?,
        // What Tessera does not keep (phone numbers, titles, the enterprise extension's
        // fields) is accepted and ignored, as IdPs send them with everything else.
        _ => {}
    }
    f.clear.external_id &= f.external_id.is_none();
    f.clear.display_name &= f.display_name.is_none();
    f.clear.email &= f.email.is_none();
    Ok(())
}

/// A `remove` unassigns what Tessera keeps (RFC 7644 §3.5.2.2): the display name (also
/// as `name`), the email, the `externalId`. `userName` and `active` always have a value.
fn remove_path(f: &mut Fields, path: &str, email: Option<&str>) -> Result<(), ScimError> {
    let parsed = path_of(path)?;
    match parsed.attr.as_str() {
        "username" | "active" => {
            return Err(ScimError::new(
                StatusCode::BAD_REQUEST,
                Some("mutability"),
                Some(Reason::ScimMutability),
                format!("{} cannot be removed", parsed.attr),
            ));
        }
        "displayname" | "name" => {
            f.display_name = None;
            f.clear.display_name = true;
        }
        // One email is kept: removing an email (or its value) removes it, when a filter
        // in the path (`emails[type eq "home"]`) picks it.
        "emails"
            if matches!(parsed.sub.as_deref(), None | Some("value"))
                && parsed.filter.as_ref().is_none_or(|flt| {
                    email.is_some_and(|e| filter::matches(flt, &EmailAttrs(e)))
                }) =>
        {
            f.email = None;
            f.clear.email = true;
        }
        "externalid" => {
            f.external_id = None;
            f.clear.external_id = true;
        }
        _ => {}
    }
    Ok(())
}

/// `DELETE /scim/v2/{org}/Users/{id}`: the person is disabled (named as disabled by the
/// provisioning client: sessions end, refresh tokens are revoked) and SCIM sees them no
/// more; the account and its audit history stay.
pub async fn delete_user(
    p: Provisioner,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    let mut trace = Trace::default();
    let result = async {
        let u = target(&p, &id, &mut trace).await?;
        precondition(&headers, &resource(&p, &u))?;
        let u = if u.effective_state(clock::now()) != UserState::Disabled {
            users::change(
                &p.st,
                &p.org,
                u,
                Change {
                    state: Some((UserState::Disabled, None)),
                    ..Change::default()
                },
                &p.actor(),
            )
            .await?
        } else {
            u
        };
        let link = ScimLink {
            deleted_at: Some(clock::now()),
            ..u.scim.clone().unwrap_or(ScimLink {
                external_id: None,
                provisioned_by: p.client_id.clone(),
                provisioned_at: clock::now(),
                deleted_at: None,
            })
        };
        p.st.store.set_scim_link(p.org.id, &u.id, Some(&link)).await?;
        // Out of sight of SCIM, out of its groups: a group shows only people SCIM sees.
        let groups = p.st.store.scim_groups_of(p.org.id, &u.id).await?;
        let leave = ScimGroupChange {
            remove_members: vec![u.id.clone()],
            ..ScimGroupChange::default()
        };
        for g in &groups {
            p.st.store
                .change_scim_group(p.org.id, &g.id, &leave, clock::now())
                .await?;
        }
        trace.pass(
            Check::ScimChange,
            format!(
                "deleted '{}': disabled (sessions ended, refresh tokens revoked), out of {} group(s), no longer visible to SCIM",
                u.username,
                groups.len()
            ),
        );
        Ok(Done {
            subject: u.id.clone(),
            change: json!({"user_id": u.id}),
            value: (),
        })
    }
    .await;
    p.settle("delete_user", Some(&id), result, trace).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
