//! SCIM `Groups`: the names an IdP pushes, with the org's humans in them. A group's
//! `displayName` (or its `externalId`) is looked up in the org's group mapping, the one
//! SAML logins use (`group_roles`), and its members' roles follow their groups. Only
//! humans SCIM sees can be members: a service account's id is answered as SCIM answers
//! it everywhere, `404`, and the store leaves such ids out whatever it is asked.

use std::collections::{BTreeSet, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tessera_core::Reason;
use tessera_core::model::{ScimGroup, ScimGroupChange, User};
use tessera_core::scim::{self as filter, Resource};
use tessera_core::secret::random_id;
use tessera_core::text::{clip, rfc3339};
use tessera_core::trace::{Check, Trace};

use super::users::visible;
use super::{
    Done, ListQuery, Provisioner, ScimError, body, external_id, not_modified, patch_ops, path_of,
    precondition, scim_resource, text, versioned,
};
use crate::clock;
use crate::users::{self, Change};

pub(super) const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The most members one request may name (a body is at most 64 KiB anyway).
const MAX_MEMBERS_PER_REQUEST: usize = 1_000;

/// The humans SCIM sees among the ids a request body names (any `value` in an array):
/// looked up one by one, so the work follows the request (bounded by its size), never
/// the size of the org.
async fn people(p: &Provisioner, body: &Bytes) -> Result<HashMap<String, User>, ScimError> {
    fn ids(v: &Value, in_array: bool, out: &mut BTreeSet<String>) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| ids(i, true, out)),
            Value::Object(o) => {
                if in_array && let Some(Value::String(id)) = o.get("value") {
                    out.insert(id.clone());
                }
                o.values().for_each(|i| ids(i, false, out));
            }
            _ => {}
        }
    }
    let mut named = BTreeSet::new();
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        ids(&v, false, &mut named);
    }
    let mut found = HashMap::new();
    for id in named {
        if let Some(u) = p.st.store.get_user(p.org.id, &id).await?
            && visible(&u)
        {
            found.insert(id, u);
        }
    }
    Ok(found)
}

/// A group as SCIM shows it. Its members are humans SCIM sees: the store takes only
/// humans, and a person SCIM deletes leaves their groups. (No `display`: RFC 7643 §2.4
/// makes it the client's to set, and Tessera does not keep one.)
fn resource(p: &Provisioner, g: &ScimGroup) -> Value {
    let base = p.base();
    let members: Vec<Value> = g
        .members
        .iter()
        .map(|id| {
            json!({
                "value": id,
                "type": "User",
                "$ref": format!("{base}/Users/{id}"),
            })
        })
        .collect();
    let mut r = json!({
        "schemas": [GROUP_SCHEMA],
        "id": g.id,
        "displayName": g.display_name,
        "members": members,
        "meta": {
            "resourceType": "Group",
            "created": rfc3339(g.created_at),
            "lastModified": rfc3339(g.updated_at),
            "location": format!("{base}/Groups/{}", g.id),
        },
    });
    if let Some(ext) = &g.external_id {
        r["externalId"] = json!(ext);
    }
    versioned(r)
}

/// A group's attributes as filters read them.
struct Attrs<'a>(&'a ScimGroup);
struct MemberAttrs<'a>(&'a str);

impl Resource for MemberAttrs<'_> {
    fn values(&self, attr: &str, _: Option<&str>) -> Vec<filter::Value> {
        match attr {
            "value" => vec![filter::Value::Str(self.0.to_string())],
            "type" => vec![filter::Value::Str("User".into())],
            _ => vec![],
        }
    }
    fn elements(&self, _: &str) -> Vec<Box<dyn Resource + '_>> {
        vec![]
    }
}

impl Resource for Attrs<'_> {
    fn values(&self, attr: &str, sub: Option<&str>) -> Vec<filter::Value> {
        let g = self.0;
        let s = |v: &str| vec![filter::Value::Str(v.to_string())];
        match (attr, sub) {
            ("id", None) => s(&g.id),
            ("displayname", None) => s(&g.display_name),
            ("externalid", None) => g.external_id.as_deref().map(s).unwrap_or_default(),
            ("members", None | Some("value")) => g
                .members
                .iter()
                .map(|m| filter::Value::Str(m.clone()))
                .collect(),
            _ => vec![],
        }
    }

    fn elements(&self, attr: &str) -> Vec<Box<dyn Resource + '_>> {
        match attr {
            "members" => self
                .0
                .members
                .iter()
                .map(|m| Box::new(MemberAttrs(m)) as Box<dyn Resource>)
                .collect(),
            _ => vec![],
        }
    }
}

/// `GET /scim/v2/{org}/Groups`: the org's groups, filtered (`displayName eq "…"`, as Okta
/// and Entra ID look a group up before creating it) and paged.
pub async fn list_groups(
    p: Provisioner,
    Query(q): Query<ListQuery>,
) -> Result<Response, ScimError> {
    let parsed = q.filter()?;
    let all = p.st.store.list_scim_groups(p.org.id).await?;
    let found: Vec<&ScimGroup> = all
        .iter()
        .filter(|g| {
            parsed
                .as_ref()
                .is_none_or(|f| filter::matches(f, &Attrs(g)))
        })
        .collect();
    Ok(q.page(&found, |g| resource(&p, g)))
}

async fn find(p: &Provisioner, id: &str) -> Result<ScimGroup, ScimError> {
    p.st.store.scim_group(p.org.id, id).await?.ok_or_else(|| {
        ScimError::new(
            StatusCode::NOT_FOUND,
            None,
            Some(Reason::ScimNotFound),
            format!("no group {} here", clip(id)),
        )
    })
}

/// The group a request names, recorded in its trace.
async fn target(p: &Provisioner, id: &str, trace: &mut Trace) -> Result<ScimGroup, ScimError> {
    let g = find(p, id).await?;
    trace.pass(
        Check::ScimResource,
        format!("group '{}' ({})", g.display_name, g.id),
    );
    Ok(g)
}

/// `GET /scim/v2/{org}/Groups/{id}`.
pub async fn get_group(
    p: Provisioner,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, ScimError> {
    let g = find(&p, &id).await?;
    let r = resource(&p, &g);
    if let Some(res) = not_modified(&headers, &r) {
        return Ok(res);
    }
    Ok(scim_resource(StatusCode::OK, q.project(r)))
}

/// The user ids of a `members` value (`[{"value": "…"}, …]`), each one a human SCIM
/// sees: anything else is answered `404`, as SCIM answers it everywhere.
fn member_ids(
    v: &Value,
    people: &HashMap<String, User>,
    trace: &mut Trace,
) -> Result<Vec<String>, ScimError> {
    let list = match v {
        Value::Array(list) => list.as_slice(),
        Value::Null => &[],
        // Some IdPs send one member object without the array.
        Value::Object(_) => std::slice::from_ref(v),
        _ => return Err(ScimError::invalid("members must be an array")),
    };
    if list.len() > MAX_MEMBERS_PER_REQUEST {
        return Err(ScimError::invalid(format!(
            "at most {MAX_MEMBERS_PER_REQUEST} members per request"
        )));
    }
    let mut ids = Vec::with_capacity(list.len());
    for m in list {
        let id = m
            .get("value")
            .map(|v| text(v, "members.value"))
            .transpose()?
            .ok_or_else(|| ScimError::invalid("each member needs a value (the user's id)"))?;
        if !people.contains_key(&id) {
            return Err(ScimError::new(
                StatusCode::NOT_FOUND,
                None,
                Some(Reason::ScimNotFound),
                format!("no user {} here to be a member", clip(&id)),
            ));
        }
        ids.push(id);
    }
    if !ids.is_empty() {
        trace.pass(
            Check::ScimResource,
            format!("{} member(s), each a human of the org", ids.len()),
        );
    }
    Ok(ids)
}

/// What a Group body (POST, PUT, or a path-less PATCH value) says.
#[derive(Default)]
struct Fields {
    display_name: Option<String>,
    external_id: Option<String>,
    members: Option<Vec<String>>,
}

fn fields_of(
    v: &Value,
    people: &HashMap<String, User>,
    trace: &mut Trace,
) -> Result<Fields, ScimError> {
    let Some(obj) = v.as_object() else {
        return Err(ScimError::invalid("a Group must be a JSON object"));
    };
    let mut f = Fields::default();
    for (k, val) in obj {
        match k.to_ascii_lowercase().as_str() {
            "displayname" => f.display_name = Some(display_name(val)?),
            "externalid" => f.external_id = Some(external_id(val)?),
            "members" => f.members = Some(member_ids(val, people, trace)?),
            _ => {}
        }
    }
    Ok(f)
}

fn display_name(v: &Value) -> Result<String, ScimError> {
    let name = text(v, "displayName")?;
    if name.trim().is_empty() || name.chars().count() > 256 {
        return Err(ScimError::invalid("displayName is 1 to 256 characters"));
    }
    crate::admin::printable("displayName", &name)?;
    Ok(name)
}

/// `POST /scim/v2/{org}/Groups`.
pub async fn create_group(p: Provisioner, bytes: Bytes) -> Result<Response, ScimError> {
    let mut trace = Trace::default();
    let people = people(&p, &bytes).await?;
    let result = async {
        let f = fields_of(&body(&bytes)?, &people, &mut trace)?;
        let name = f
            .display_name
            .ok_or_else(|| ScimError::invalid("displayName is required"))?;
        let now = clock::now();
        let mut members = f.members.unwrap_or_default();
        members.sort();
        members.dedup();
        let g = ScimGroup {
            id: random_id("grp_"),
            org_id: p.org.id,
            display_name: name,
            external_id: f.external_id,
            members,
            created_at: now,
            updated_at: now,
        };
        p.st.store
            .create_scim_group(&g)
            .await
            .map_err(|e| match e {
                tessera_core::store::StoreError::Conflict(_) => ScimError::new(
                    StatusCode::CONFLICT,
                    Some("uniqueness"),
                    Some(Reason::ScimUniqueness),
                    format!("the org has a group '{}' already", clip(&g.display_name)),
                ),
                other => other.into(),
            })?;
        trace.pass(
            Check::ScimChange,
            format!("created group '{}' ({})", g.display_name, g.id),
        );
        let roles = sync_roles(&p, g.members.iter().cloned().collect(), &mut trace).await?;
        Ok(Done {
            subject: g.id.clone(),
            change: json!({"group_id": g.id, "displayName": g.display_name,
                           "members_added": g.members, "roles_changed": roles}),
            value: g,
        })
    }
    .await;
    let g = p.settle("create_group", None, result, trace).await?;
    let mut res = scim_resource(StatusCode::CREATED, resource(&p, &g));
    if let Ok(v) = HeaderValue::from_str(&format!("{}/Groups/{}", p.base(), g.id)) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// Applies `change` to group `id` and brings the roles of everyone whose groups changed
/// in line with the org's mapping.
async fn apply(
    p: &Provisioner,
    before: &ScimGroup,
    change: ScimGroupChange,
    trace: &mut Trace,
) -> Result<Done<ScimGroup>, ScimError> {
    let named: Vec<String> = change
        .add_members
        .iter()
        .chain(&change.remove_members)
        .chain(change.replace_members.iter().flatten())
        .cloned()
        .collect();
    let renamed = change
        .display_name
        .as_ref()
        .is_some_and(|n| *n != before.display_name)
        || change
            .external_id
            .as_ref()
            .is_some_and(|e| *e != before.external_id);
    let found =
        p.st.store
            .change_scim_group(p.org.id, &before.id, &change, clock::now())
            .await
            .map_err(|e| match e {
                tessera_core::store::StoreError::Conflict(_) => ScimError::new(
                    StatusCode::CONFLICT,
                    Some("uniqueness"),
                    Some(Reason::ScimUniqueness),
                    format!(
                        "the org has a group '{}' already",
                        clip(change.display_name.as_deref().unwrap_or_default())
                    ),
                ),
                other => other.into(),
            })?;
    if !found {
        return Err(ScimError::new(
            StatusCode::NOT_FOUND,
            None,
            Some(Reason::ScimNotFound),
            format!("no group {} here", clip(&before.id)),
        ));
    }
    let after = find(p, &before.id).await?;
    let old: BTreeSet<&String> = before.members.iter().collect();
    let new: BTreeSet<&String> = after.members.iter().collect();
    let added: Vec<&String> = new.difference(&old).copied().collect();
    let removed: Vec<&String> = old.difference(&new).copied().collect();
    trace.pass(
        Check::ScimChange,
        format!(
            "group '{}': {} member(s) added, {} removed{}",
            after.display_name,
            added.len(),
            removed.len(),
            if renamed { ", renamed" } else { "" }
        ),
    );
    // A rename moves every member's mapping; otherwise those who came or went, and
    // everyone the request named (a concurrent change may have made its own diff
    // empty: their roles are recomputed from what is stored either way).
    let mut affected: BTreeSet<String> = if renamed {
        old.union(&new).map(|s| s.to_string()).collect()
    } else {
        added
            .iter()
            .chain(&removed)
            .map(|s| s.to_string())
            .collect()
    };
    affected.extend(named);
    let roles = sync_roles(p, affected, trace).await?;
    Ok(Done {
        subject: after.id.clone(),
        change: json!({"group_id": after.id, "displayName": after.display_name,
                       "members_added": added, "members_removed": removed,
                       "renamed": renamed, "roles_changed": roles}),
        value: after,
    })
}

/// Gives each of `user_ids` the roles their groups map to in the org's mapping (the
/// `group_roles` SAML uses): when the org maps none, roles stay as admins set them.
/// Returns whose roles changed, and to what.
async fn sync_roles(
    p: &Provisioner,
    user_ids: BTreeSet<String>,
    trace: &mut Trace,
) -> Result<Value, ScimError> {
    let Some(config) =
        p.st.store
            .sso_config(p.org.id)
            .await?
            .filter(|c| !c.group_roles.is_empty())
    else {
        return Ok(json!({}));
    };
    let mut changed = serde_json::Map::new();
    for id in user_ids {
        let Some(u) = p.st.store.get_user(p.org.id, &id).await? else {
            continue;
        };
        if !visible(&u) {
            continue;
        }
        let names: Vec<String> =
            p.st.store
                .scim_groups_of(p.org.id, &id)
                .await?
                .into_iter()
                .flat_map(|g| std::iter::once(g.display_name).chain(g.external_id))
                .collect();
        let roles = config.roles_for(&names);
        if roles == u.roles {
            continue;
        }
        let username = u.username.clone();
        users::change(
            &p.st,
            &p.org,
            u,
            Change {
                roles: Some(roles.clone()),
                ..Change::default()
            },
            &p.actor(),
        )
        .await?;
        trace.pass(
            Check::ScimChange,
            format!(
                "roles of '{username}' now [{}] (the org's group mapping)",
                roles.join(", ")
            ),
        );
        changed.insert(id, json!(roles));
    }
    Ok(Value::Object(changed))
}

/// `PUT /scim/v2/{org}/Groups/{id}`: name, externalId and members replaced.
pub async fn replace_group(
    p: Provisioner,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ScimError> {
    let mut trace = Trace::default();
    let people = people(&p, &bytes).await?;
    let result = async {
        let g = target(&p, &id, &mut trace).await?;
        precondition(&headers, &resource(&p, &g))?;
        let f = fields_of(&body(&bytes)?, &people, &mut trace)?;
        let change = ScimGroupChange {
            display_name: Some(
                f.display_name
                    .ok_or_else(|| ScimError::invalid("displayName is required"))?,
            ),
            external_id: Some(f.external_id),
            replace_members: Some(f.members.unwrap_or_default()),
            ..ScimGroupChange::default()
        };
        apply(&p, &g, change, &mut trace).await
    }
    .await;
    let g = p.settle("replace_group", Some(&id), result, trace).await?;
    Ok(scim_resource(StatusCode::OK, resource(&p, &g)))
}

/// A PATCH's membership operations, applied in order: either all members replaced (and
/// then changed), or members added and removed (never both for one person).
#[derive(Default)]
struct Members {
    replaced: Option<BTreeSet<String>>,
    added: BTreeSet<String>,
    removed: BTreeSet<String>,
}

impl Members {
    fn add(&mut self, ids: Vec<String>) {
        for id in ids {
            match &mut self.replaced {
                Some(all) => {
                    all.insert(id);
                }
                None => {
                    self.removed.remove(&id);
                    self.added.insert(id);
                }
            }
        }
    }

    fn remove(&mut self, ids: Vec<String>) {
        for id in ids {
            match &mut self.replaced {
                Some(all) => {
                    all.remove(&id);
                }
                None => {
                    self.added.remove(&id);
                    self.removed.insert(id);
                }
            }
        }
    }

    fn replace(&mut self, ids: Vec<String>) {
        self.replaced = Some(ids.into_iter().collect());
        self.added.clear();
        self.removed.clear();
    }

    /// The members now, from the stored ones.
    fn current(&self, stored: &[String]) -> Vec<String> {
        match &self.replaced {
            Some(all) => all.iter().cloned().collect(),
            None => stored
                .iter()
                .filter(|m| !self.removed.contains(*m))
                .chain(self.added.iter())
                .cloned()
                .collect(),
        }
    }

    fn into_change(self, change: &mut ScimGroupChange) {
        change.replace_members = self.replaced.map(|all| all.into_iter().collect());
        change.add_members = self.added.into_iter().collect();
        change.remove_members = self.removed.into_iter().collect();
    }
}

/// `PATCH /scim/v2/{org}/Groups/{id}`: members added (`add` with path `members`),
/// removed (`remove` with path `members[value eq "…"]`, or with path `members` and the
/// members as value, as Entra ID sends it, or all of them), replaced; `displayName` and
/// `externalId` replaced with a path or a value object. Answers `204` as Okta and Entra
/// ID expect, unless asked for `attributes`.
pub async fn patch_group(
    p: Provisioner,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
    bytes: Bytes,
) -> Result<Response, ScimError> {
    let mut trace = Trace::default();
    let people = people(&p, &bytes).await?;
    let result = async {
        let g = target(&p, &id, &mut trace).await?;
        precondition(&headers, &resource(&p, &g))?;
        let mut change = ScimGroupChange::default();
        // The members as the operations so far leave them, in order: later operations see
        // what earlier ones did (a filter, too), and the store gets the net effect.
        let mut members = Members::default();
        for (op, path, value) in patch_ops(&body(&bytes)?)? {
            let parsed = path.as_deref().map(path_of).transpose()?;
            match (op.as_str(), parsed) {
                (_, None) => {
                    let f = fields_of(&value, &people, &mut trace)?;
                    change.display_name = f.display_name.or(change.display_name);
                    if let Some(e) = f.external_id {
                        change.external_id = Some(Some(e));
                    }
                    if let Some(m) = f.members {
                        if op == "add" {
                            members.add(m);
                        } else {
                            members.replace(m);
                        }
                    }
                }
                (_, Some(path)) if path.attr == "displayname" && op != "remove" => {
                    change.display_name = Some(display_name(&value)?);
                }
                ("remove", Some(path)) if path.attr == "displayname" => {
                    return Err(ScimError::new(
                        StatusCode::BAD_REQUEST,
                        Some("mutability"),
                        Some(Reason::ScimMutability),
                        "displayName cannot be removed",
                    ));
                }
                (_, Some(path)) if path.attr == "externalid" => {
                    change.external_id = Some(if op == "remove" {
                        None
                    } else {
                        Some(external_id(&value)?)
                    });
                }
                (_, Some(path)) if path.attr == "members" && op != "remove" => {
                    if path.filter.is_some() || path.sub.is_some() {
                        return Err(ScimError::new(
                            StatusCode::BAD_REQUEST,
                            Some("mutability"),
                            Some(Reason::ScimMutability),
                            "a member is added or removed, never changed in place: use add, or remove with members[value eq \"…\"]",
                        ));
                    }
                    let ids = member_ids(&value, &people, &mut trace)?;
                    if op == "add" {
                        members.add(ids);
                    } else {
                        members.replace(ids);
                    }
                }
                ("remove", Some(path)) if path.attr == "members" => {
                    let gone: Vec<String> = match (&path.filter, &value) {
                        (Some(f), _) => members
                            .current(&g.members)
                            .into_iter()
                            .filter(|m| filter::matches(f, &MemberAttrs(m)))
                            .collect(),
                        // Entra ID: the members to remove as the value. An id that is not
                        // a member is nothing to remove (no 404 for what SCIM can't see).
                        (None, Value::Array(_) | Value::Object(_)) => {
                            let list = match &value {
                                Value::Array(l) => l.clone(),
                                other => vec![other.clone()],
                            };
                            list.iter()
                                .filter_map(|m| m.get("value").and_then(Value::as_str))
                                .map(str::to_string)
                                .collect()
                        }
                        (None, _) => {
                            members.replace(vec![]);
                            vec![]
                        }
                    };
                    members.remove(gone);
                }
                // What Tessera does not keep on a group is accepted and ignored.
                _ => {}
            }
        }
        members.into_change(&mut change);
        apply(&p, &g, change, &mut trace).await
    }
    .await;
    let g = p.settle("patch_group", Some(&id), result, trace).await?;
    if q.attributes.is_some() || q.excluded_attributes.is_some() {
        return Ok(scim_resource(StatusCode::OK, q.project(resource(&p, &g))));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /scim/v2/{org}/Groups/{id}`: the group goes, and its members' roles follow.
pub async fn delete_group(
    p: Provisioner,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    let mut trace = Trace::default();
    let result = async {
        let g = target(&p, &id, &mut trace).await?;
        precondition(&headers, &resource(&p, &g))?;
        p.st.store.delete_scim_group(p.org.id, &g.id).await?;
        trace.pass(
            Check::ScimChange,
            format!(
                "deleted group '{}' ({} member(s))",
                g.display_name,
                g.members.len()
            ),
        );
        let roles = sync_roles(&p, g.members.iter().cloned().collect(), &mut trace).await?;
        Ok(Done {
            subject: g.id.clone(),
            change: json!({"group_id": g.id, "displayName": g.display_name, "roles_changed": roles}),
            value: (),
        })
    }
    .await;
    p.settle("delete_group", Some(&id), result, trace).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
