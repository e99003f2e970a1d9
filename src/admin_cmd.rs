//! `tessera admin`: every admin API operation from the command line. It is an OAuth client
//! of the server itself: it gets a token with `client_credentials` and caches it until
//! shortly before it expires.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use tessera_core::text::shown;

use crate::token_cmd::exit;

mod scim;

#[derive(Parser, Debug)]
pub struct AdminArgs {
    /// The server's base URL
    #[arg(
        long,
        env = "TESSERA_URL",
        global = true,
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// The admin client's id (it must hold the tessera:admin scope)
    #[arg(
        id = "admin_client_id",
        long = "admin-client-id",
        env = "TESSERA_CLIENT_ID",
        global = true,
        default_value = ""
    )]
    pub client_id: String,
    /// The admin client's secret
    #[arg(
        id = "admin_client_secret",
        long = "admin-client-secret",
        env = "TESSERA_CLIENT_SECRET",
        global = true,
        hide_env_values = true,
        default_value = ""
    )]
    pub client_secret: String,
    /// Machine-readable output (the server's JSON)
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Users and service accounts
    #[command(subcommand)]
    Users(UsersCmd),
    /// OAuth clients
    #[command(subcommand)]
    Clients(ClientsCmd),
    /// Client secrets: list with last use, rotate with a grace period, revoke
    #[command(subcommand)]
    Secrets(SecretsCmd),
    /// The org's scope catalogue
    #[command(subcommand)]
    Scopes(ScopesCmd),
    /// The audit trail: tail it, or explain one decision
    #[command(subcommand)]
    Audit(AuditCmd),
    /// SAML single sign-on: the org's IdP, the enforcement preview, enforcement
    #[command(subcommand)]
    Sso(SsoCmd),
    /// SCIM provisioning: set an IdP up, its long-lived tokens, recent activity
    #[command(subcommand)]
    Scim(scim::ScimCmd),
    /// Dry-run a token request: the decision and trace the token endpoint would give
    Diagnose(DiagnoseArgs),
    /// Rotate the server's signing key (operator org only)
    RotateSigningKey {
        /// The new key's algorithm: ES256, RS256 or EdDSA [default: the server's signing_alg]
        #[arg(long)]
        alg: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum UsersCmd {
    List,
    Show {
        id: String,
    },
    /// Create a user (`--type service` for a service account)
    Create {
        #[arg(long = "type", default_value = "service")]
        user_type: String,
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    Enable {
        id: String,
    },
    Disable {
        id: String,
    },
    /// Lift a lock (and enable)
    Unlock {
        id: String,
    },
    /// What the person's logins gave clients: grants (refresh token families)
    Grants {
        id: String,
    },
    /// Revoke one grant: its refresh tokens stop, its access tokens turn inactive
    RevokeGrant {
        id: String,
        grant_id: String,
    },
    /// Log the person out everywhere: sessions end, every grant is revoked
    Logout {
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum SsoCmd {
    /// The configuration, with the addresses to give the IdP
    Show,
    /// Replace the configuration, as `PUT /api/v2/sso/saml` does: options left out take
    /// their defaults. Enforcement is switched with `enforce` and `unenforce`.
    Set(Box<SsoFields>),
    /// What enforcement would change now, and the preview id that `enforce` needs
    Impact,
    /// Switch enforcement on: humans log in through the IdP; machines are unaffected
    Enforce {
        /// The preview id `tessera admin sso impact` printed
        #[arg(long, required_unless_present = "force", conflicts_with = "force")]
        preview_id: Option<String>,
        /// Switch on without looking at the impact (audited as forced)
        #[arg(long)]
        force: bool,
    },
    /// Switch enforcement off: humans may use local passwords again
    Unenforce,
    /// Fetch the registered IdP metadata URL now and show what changed
    RefreshMetadata,
    /// The SP's encryption keys (shared by every org): the certificate IdPs encrypt to
    EncryptionKeys,
    /// A new SP encryption key; the previous one still decrypts for the overlap, while
    /// each IdP gets the new certificate (operator org only)
    RotateEncryptionKey {
        /// Days the previous key still decrypts (1 to 365)
        #[arg(long, default_value_t = 30)]
        overlap_days: u32,
    },
}

#[derive(Args, Debug, Default)]
pub struct SsoFields {
    /// The IdP's metadata document, a file (`-`: standard input); fills the entity id,
    /// SSO URL, certificates and NameID format, which options given here override
    #[arg(long, value_name = "FILE", conflicts_with = "metadata_url")]
    metadata: Option<PathBuf>,
    /// Where the IdP publishes its metadata (https): fetched now, then refreshed on a
    /// schedule so its certificate rotations reach Tessera by themselves
    #[arg(long, value_name = "URL")]
    metadata_url: Option<String>,
    /// The IdP's entity id (the Issuer of its responses)
    #[arg(long)]
    idp_entity_id: Option<String>,
    /// The IdP's single sign-on URL
    #[arg(long)]
    idp_sso_url: Option<String>,
    /// How AuthnRequests reach the IdP: redirect (default) or post, for IdPs that offer
    /// only HTTP-POST (taken from --metadata when given)
    #[arg(long, value_name = "BINDING", value_parser = ["redirect", "post"])]
    idp_sso_binding: Option<String>,
    /// The IdP's Single Logout URL (taken from --metadata when given)
    #[arg(long)]
    idp_slo_url: Option<String>,
    /// How logout messages reach it: redirect (default) or post
    #[arg(long, value_name = "BINDING", value_parser = ["redirect", "post"])]
    idp_slo_binding: Option<String>,
    /// An IdP signing certificate, a PEM file (repeat while the IdP rotates)
    #[arg(long = "idp-cert", value_name = "PEM_FILE")]
    idp_certs: Vec<PathBuf>,
    /// The NameID format to ask the IdP for (e.g. urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress)
    #[arg(long)]
    name_id_format: Option<String>,
    /// The attribute carrying the email
    #[arg(long)]
    attribute_email: Option<String>,
    /// The attribute carrying the display name
    #[arg(long)]
    attribute_display_name: Option<String>,
    /// The attribute carrying the groups
    #[arg(long)]
    attribute_groups: Option<String>,
    /// IdP group to Tessera roles, `GROUP=ROLE[,ROLE...]`, split at the last `=` (so a
    /// group DN such as `CN=Admins,OU=Groups=admin` works); repeat for several groups
    #[arg(long = "group-role", value_name = "GROUP=ROLES")]
    group_roles: Vec<String>,
    /// Provision unknown people just in time at their first login
    #[arg(long)]
    jit: bool,
    /// Accept SHA-1 signatures and digests (legacy IdPs only)
    #[arg(long)]
    allow_sha1: bool,
    /// Accept IdP certificates with 1024-bit RSA keys (legacy IdPs only)
    #[arg(long)]
    allow_rsa_1024: bool,
    /// Accept IdP-initiated logins (no AuthnRequest of ours)
    #[arg(long)]
    allow_idp_initiated: bool,
    /// Allowed clock difference with the IdP, seconds [server default: 60]
    #[arg(long, value_name = "SECONDS")]
    clock_skew: Option<u32>,
    /// A user exempt from enforcement (repeat for several)
    #[arg(long = "break-glass", value_name = "USER_ID")]
    break_glass: Vec<String>,
    /// Drop the settings that are set now and not given here (without it, `set` refuses
    /// and lists them)
    #[arg(long)]
    replace: bool,
}

/// The settings of the stored configuration `current` (the API's view) that `new`
/// would drop, by field name: `set` replaces the whole configuration, and a forgotten
/// `--break-glass` must not silently end an exemption.
fn dropped_sso_settings(current: &Value, new: &tessera_api::PutSsoConfig) -> Vec<String> {
    let mut dropped = vec![];
    let metadata = new.idp_metadata_xml.is_some() || new.idp_metadata_url.is_some();
    let set = |k: &str| !current[k].is_null();
    if set("idp_entity_id") && !metadata && new.idp_entity_id.is_none() {
        dropped.push("the IdP (idp_entity_id, idp_sso_url, idp_certificates)".to_string());
    }
    for (k, given) in [
        ("name_id_format", new.name_id_format.is_some() || metadata),
        ("attribute_email", new.attribute_email.is_some()),
        (
            "attribute_display_name",
            new.attribute_display_name.is_some(),
        ),
        ("attribute_groups", new.attribute_groups.is_some()),
        ("clock_skew_seconds", new.clock_skew_seconds.is_some()),
    ] {
        let default_skew = k == "clock_skew_seconds" && current[k] == json!(60);
        if set(k) && !given && !default_skew {
            dropped.push(k.to_string());
        }
    }
    for (k, given) in [
        ("jit_provisioning", new.jit_provisioning),
        ("allow_sha1", new.allow_sha1),
        ("allow_rsa_1024", new.allow_rsa_1024),
        ("allow_idp_initiated", new.allow_idp_initiated),
    ] {
        if current[k] == json!(true) && !given {
            dropped.push(k.to_string());
        }
    }
    let groups = current["group_roles"].as_object();
    if groups.is_some_and(|g| g.keys().any(|k| !new.group_roles.contains_key(k))) {
        dropped.push("group_roles".to_string());
    }
    let exempt = current["break_glass_user_ids"].as_array().cloned();
    let lost: Vec<String> = exempt
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
        .filter(|id| !new.break_glass_user_ids.iter().any(|n| n == id))
        .map(|id| shown(id).into_owned())
        .collect();
    if !lost.is_empty() {
        dropped.push(format!("break_glass_user_ids ({})", lost.join(", ")));
    }
    dropped
}

/// `PUT /api/v2/sso/saml`'s body from `sso set`'s options, reading the files they name.
fn put_sso_body(f: &SsoFields) -> Result<tessera_api::PutSsoConfig, Failure> {
    let read = |path: &PathBuf, what: &str| -> Result<String, Failure> {
        let text = if path.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(path)
        };
        text.map_err(|e| Failure {
            code: exit::USAGE,
            message: format!("cannot read the {what} {}: {e}", path.display()),
        })
    };
    let stdin_reads = f
        .metadata
        .iter()
        .chain(&f.idp_certs)
        .filter(|p| p.as_os_str() == "-");
    if stdin_reads.count() > 1 {
        return Err(Failure {
            code: exit::USAGE,
            message: "only one of --metadata and --idp-cert can read standard input ('-')".into(),
        });
    }
    let mut group_roles = std::collections::BTreeMap::new();
    for g in &f.group_roles {
        let Some((group, roles)) = g
            .rsplit_once('=')
            .filter(|(g, r)| !g.is_empty() && !r.is_empty())
        else {
            return Err(Failure {
                code: exit::USAGE,
                message: format!("--group-role '{g}': expected GROUP=ROLE[,ROLE...]"),
            });
        };
        let roles: Vec<String> = roles.split(',').map(|r| r.trim().to_string()).collect();
        if roles.iter().any(String::is_empty) {
            return Err(Failure {
                code: exit::USAGE,
                message: format!("--group-role '{g}': an empty role name"),
            });
        }
        if group_roles.insert(group.to_string(), roles).is_some() {
            return Err(Failure {
                code: exit::USAGE,
                message: format!(
                    "--group-role: group '{group}' is given twice; list all its roles once, as {group}=ROLE,ROLE"
                ),
            });
        }
    }
    Ok(tessera_api::PutSsoConfig {
        idp_metadata_xml: f
            .metadata
            .as_ref()
            .map(|p| read(p, "metadata file"))
            .transpose()?,
        idp_metadata_url: f.metadata_url.clone(),
        idp_entity_id: f.idp_entity_id.clone(),
        idp_sso_url: f.idp_sso_url.clone(),
        idp_sso_binding: f.idp_sso_binding.as_deref().map(binding),
        idp_slo_url: f.idp_slo_url.clone(),
        idp_slo_binding: f.idp_slo_binding.as_deref().map(binding),
        idp_certificates: f
            .idp_certs
            .iter()
            .map(|p| read(p, "certificate file"))
            .collect::<Result<_, _>>()?,
        name_id_format: f.name_id_format.clone(),
        attribute_email: f.attribute_email.clone(),
        attribute_display_name: f.attribute_display_name.clone(),
        attribute_groups: f.attribute_groups.clone(),
        group_roles,
        jit_provisioning: f.jit,
        allow_sha1: f.allow_sha1,
        allow_rsa_1024: f.allow_rsa_1024,
        clock_skew_seconds: f.clock_skew,
        allow_idp_initiated: f.allow_idp_initiated,
        break_glass_user_ids: f.break_glass.clone(),
    })
}

/// The SAML configuration for people: certificates by subject and validity, not PEM.
fn print_sso(v: &Value) {
    if let Some(o) = v.as_object() {
        for (k, val) in o {
            if k == "idp_certificates" || k == "idp_certificate_details" || k == "group_roles" {
                continue;
            }
            println!("{:<28} {}", shown(k), s(val));
        }
    }
    for (group, roles) in v["group_roles"].as_object().into_iter().flatten() {
        println!("{:<28} {} -> {}", "group_roles", shown(group), s(roles));
    }
    for c in v["idp_certificate_details"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!(
            "{:<28} {} ({}), valid {} to {}",
            "idp_certificate",
            s(&c["subject"]),
            s(&c["key"]),
            s(&c["not_before"]),
            s(&c["not_after"])
        );
    }
}

/// The enforcement preview for people, ending with the command that acknowledges it.
fn print_refresh(v: &Value) {
    if let Some(e) = v["error"].as_str() {
        println!("the metadata could not be used: {}", shown(e));
        println!("the configuration is unchanged");
        return;
    }
    if v["changed"] != true {
        println!("the metadata is unchanged");
    }
    for (key, what) in [
        ("certificates_added", "now trusted"),
        ("certificates_removed", "no longer trusted"),
        (
            "certificates_expired",
            "EXPIRED, still published by the IdP",
        ),
    ] {
        for c in v[key].as_array().into_iter().flatten() {
            println!(
                "certificate {what}: {} ({}, valid until {})",
                s(&c["subject"]),
                s(&c["key"]),
                s(&c["not_after"])
            );
        }
    }
    for f in v["fields_changed"].as_array().into_iter().flatten() {
        println!("changed: {}", s(f));
    }
}

fn binding(b: &str) -> tessera_api::SamlBinding {
    match b {
        "post" => tessera_api::SamlBinding::Post,
        _ => tessera_api::SamlBinding::Redirect,
    }
}

fn print_encryption_keys(v: &Value) {
    for k in v["keys"].as_array().into_iter().flatten() {
        if k["current"] == true {
            println!(
                "{}  current (in every org's SP metadata), made {}, certificate valid until {}",
                s(&k["kid"]),
                s(&k["created_at"]),
                s(&k["certificate_not_after"])
            );
        } else {
            println!(
                "{}  previous, still decrypts until {}",
                s(&k["kid"]),
                s(&k["decrypts_until"])
            );
        }
    }
    if let Some(cert) = v["keys"][0]["certificate"].as_str() {
        println!("\nThe certificate to give IdPs that do not read the metadata:\n{cert}");
    }
}

fn print_impact(v: &Value) {
    println!(
        "{}
",
        s(&v["summary"])
    );
    let list = |key: &str| v[key].as_array().cloned().unwrap_or_default();
    let humans = list("humans_affected");
    println!("Humans who would lose password login ({}):", humans.len());
    if !humans.is_empty() {
        table(
            &[
                "id",
                "username",
                "email",
                "last password login",
                "provisioned by",
            ],
            humans
                .iter()
                .map(|h| {
                    vec![
                        s(&h["id"]),
                        s(&h["username"]),
                        s(&h["email"]),
                        s(&h["last_password_login_at"]),
                        s(&h["provisioned_by"]),
                    ]
                })
                .collect(),
        );
    }
    let clients = list("password_grant_clients");
    println!(
        "\nClients whose password grants for humans would be refused ({}):",
        clients.len()
    );
    if !clients.is_empty() {
        table(
            &["client_id", "name", "grant enabled", "last password grant"],
            clients
                .iter()
                .map(|c| {
                    vec![
                        s(&c["client_id"]),
                        s(&c["name"]),
                        s(&c["password_grant_enabled"]),
                        s(&c["last_password_grant_at"]),
                    ]
                })
                .collect(),
        );
    }
    let exempt = list("break_glass_users");
    println!("\nBreak-glass users, exempt ({}):", exempt.len());
    for u in &exempt {
        println!("  {} ({})", s(&u["username"]), s(&u["id"]));
    }
    for p in list("provisioning") {
        println!(
            "\nSCIM client {} manages {} active human(s); it turned off {} (enforcement changes none of this):",
            s(&p["client_id"]),
            s(&p["active"]),
            s(&p["deprovisioned_total"])
        );
        for d in p["deprovisioned"].as_array().cloned().unwrap_or_default() {
            println!(
                "  {} ({}) {} {}",
                s(&d["username"]),
                s(&d["id"]),
                if d["deleted"] == json!(true) {
                    "deleted"
                } else {
                    "deactivated"
                },
                s(&d["at"])
            );
        }
    }
    println!(
        "\nUnaffected: {} client_credentials clients, {} service accounts.",
        s(&v["client_credentials_clients_unaffected"]),
        s(&v["service_accounts_unaffected"])
    );
    if v["enforced"] == json!(true) {
        println!("Enforcement is already on.");
    } else {
        println!(
            "\nTo switch enforcement on: tessera admin sso enforce --preview-id {}",
            s(&v["preview_id"])
        );
    }
}

#[derive(Args, Debug, Default)]
pub struct ClientFields {
    #[arg(long)]
    name: Option<String>,
    /// A grant type the client may use (repeat for several)
    #[arg(long = "grant")]
    grants: Vec<String>,
    /// A scope the client may have (repeat for several)
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// A CIDR the client may call from (repeat for several)
    #[arg(long = "ip")]
    ips: Vec<String>,
    /// The service account the client runs as
    #[arg(long)]
    service_account: Option<String>,
    /// Access-token lifetime, seconds
    #[arg(long)]
    ttl: Option<i64>,
    /// A redirect URI for the authorization code flow (repeat for several; exact match)
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// How the client authenticates at the token endpoint: client_secret_basic,
    /// client_secret_post, private_key_jwt, or none for a public client (repeat for several)
    #[arg(long = "auth-method")]
    auth_methods: Vec<String>,
    /// A file holding the client's public keys as a JWK Set, for private_key_jwt
    #[arg(long, conflicts_with = "jwks_uri")]
    jwks_file: Option<PathBuf>,
    /// Or the https URL where the client publishes its JWK Set, for private_key_jwt
    #[arg(long)]
    jwks_uri: Option<String>,
    /// Require PKCE on authorization requests (default true; always true for public clients)
    #[arg(long)]
    pkce_required: Option<bool>,
    /// Refresh token family lifetime, seconds
    #[arg(long)]
    refresh_ttl: Option<i64>,
    /// Refresh token idle lifetime, seconds
    #[arg(long)]
    refresh_idle_ttl: Option<i64>,
}

#[derive(Subcommand, Debug)]
pub enum ClientsCmd {
    List,
    Show {
        client_id: String,
    },
    /// Create a client; prints its secret once
    Create {
        /// Choose the client id (default: generated)
        #[arg(long)]
        client_id: Option<String>,
        #[command(flatten)]
        fields: ClientFields,
    },
    /// Change the fields given
    Update {
        client_id: String,
        #[command(flatten)]
        fields: ClientFields,
    },
    Enable {
        client_id: String,
    },
    Disable {
        client_id: String,
    },
    Delete {
        client_id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum SecretsCmd {
    /// The client's secrets with their last use
    List { client_id: String },
    /// A new secret (shown once); the old one keeps working for --grace seconds
    Rotate {
        client_id: String,
        #[arg(long, default_value_t = 3600)]
        grace: i64,
    },
    /// End a secret now
    Revoke {
        client_id: String,
        secret_id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ScopesCmd {
    List,
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// The newest events, oldest first; --follow keeps printing new ones
    Tail {
        #[arg(long)]
        client_id: Option<String>,
        #[arg(long)]
        subject: Option<String>,
        #[arg(long)]
        outcome: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        follow: bool,
    },
    /// Every check of one decision, the failing one marked
    Explain { request_id: String },
}

#[derive(Args, Debug)]
pub struct DiagnoseArgs {
    /// Dry-run an authorization request instead: the URL the application sends people to
    #[arg(long, conflicts_with_all = ["client_id", "client_secret", "grant_type", "scope", "source_ip", "auth_method"])]
    authorize_url: Option<String>,
    /// With --authorize-url: decide as if this user had a live session
    #[arg(long, requires = "authorize_url")]
    as_user: Option<String>,
    /// With --as-user: how that session began (saml or password)
    #[arg(long, requires = "as_user")]
    session_method: Option<String>,
    /// The client id the caller sends
    #[arg(long, required_unless_present = "authorize_url")]
    client_id: Option<String>,
    /// The secret the caller uses (optional: without it the secret check is skipped)
    #[arg(long)]
    client_secret: Option<String>,
    #[arg(long)]
    grant_type: Option<String>,
    #[arg(long)]
    scope: Option<String>,
    /// The caller's address
    #[arg(long)]
    source_ip: Option<String>,
    /// client_secret_basic or client_secret_post
    #[arg(long)]
    auth_method: Option<String>,
}

/// A failure that maps to an exit code.
pub struct Failure {
    pub code: i32,
    pub message: String,
}

/// The admin API client, with its cached token.
struct Api {
    http: reqwest::Client,
    base: String,
    client_id: String,
    client_secret: String,
    token: Option<String>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The token cache file, one per (URL, client id, secret): a changed secret never reuses
/// a token obtained with the old one.
fn cache_path(base: &str, client_id: &str, secret: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let key = tessera_core::secret::hash_client_secret(&format!("{base}\n{client_id}\n{secret}"));
    let name: String = key[..8].iter().map(|b| format!("{b:02x}")).collect();
    Some(dir.join("tessera").join(format!("admin-token-{name}.json")))
}

impl Api {
    fn base_url(&self) -> &str {
        &self.base
    }

    fn new(args: &AdminArgs) -> Result<Self, Failure> {
        if args.client_id.is_empty() || args.client_secret.is_empty() {
            return Err(Failure {
                code: exit::USAGE,
                message: "set TESSERA_CLIENT_ID and TESSERA_CLIENT_SECRET (or --admin-client-id/--admin-client-secret) to an admin client's credentials, e.g. those printed by `tessera serve` on first start".into(),
            });
        }
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| Failure {
                    code: exit::USAGE,
                    message: e.to_string(),
                })?,
            base: args.url.trim_end_matches('/').to_string(),
            client_id: args.client_id.clone(),
            client_secret: args.client_secret.clone(),
            token: None,
        })
    }

    async fn token(&mut self, fresh: bool) -> Result<String, Failure> {
        if let Some(t) = &self.token
            && !fresh
        {
            return Ok(t.clone());
        }
        let cache = cache_path(&self.base, &self.client_id, &self.client_secret);
        if !fresh
            && let Some(p) = &cache
            && let Ok(text) = std::fs::read_to_string(p)
            && let Ok(v) = serde_json::from_str::<Value>(&text)
            && v["expires_at"].as_i64().is_some_and(|e| e - 60 > now())
            && let Some(t) = v["access_token"].as_str()
        {
            self.token = Some(t.to_string());
            return Ok(t.to_string());
        }
        let form = |s: &str| -> String { form_urlencoded::byte_serialize(s.as_bytes()).collect() };
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            form(&self.client_id),
            form(&self.client_secret)
        ));
        let res = self
            .http
            .post(format!("{}/oauth/token", self.base))
            .header("authorization", format!("Basic {basic}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await
            .map_err(|e| Failure {
                code: exit::UNAVAILABLE,
                message: format!("cannot reach {}: {e}", self.base),
            })?;
        let status = res.status().as_u16();
        let v: Value = res.json().await.unwrap_or(Value::Null);
        let Some(t) = v["access_token"].as_str() else {
            return Err(Failure {
                code: if status >= 500 {
                    exit::UNAVAILABLE
                } else {
                    exit::AUTH
                },
                message: format!(
                    "the admin client could not get a token ({}): {}{}",
                    shown(
                        v["reason"]
                            .as_str()
                            .or(v["error"].as_str())
                            .unwrap_or("no OAuth error")
                    ),
                    opt(&v["error_description"], str::to_string),
                    opt(&v["request_id"], |r| format!(" [request_id {r}]"))
                ),
            });
        };
        if let Some(p) = &cache {
            let doc = json!({"access_token": t, "expires_at": now() + v["expires_in"].as_i64().unwrap_or(0)});
            let _ = write_private(p, &doc.to_string());
        }
        self.token = Some(t.to_string());
        Ok(t.to_string())
    }

    /// Calls the admin API; refreshes the token once if the server refuses it.
    async fn call(
        &mut self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        for attempt in 0..2 {
            let token = self.token(attempt > 0).await?;
            let mut req = self
                .http
                .request(method.clone(), format!("{}/api/v2{path}", self.base))
                .bearer_auth(&token);
            if let Some(b) = &body {
                req = req.json(b);
            }
            let res = req.send().await.map_err(|e| Failure {
                code: exit::UNAVAILABLE,
                message: format!("cannot reach {}: {e}", self.base),
            })?;
            let status = res.status().as_u16();
            let text = res.text().await.unwrap_or_default();
            let v: Value = if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            };
            if status == 401 && attempt == 0 {
                continue;
            }
            if (200..300).contains(&status) {
                return Ok(v);
            }
            let code = match status {
                401 | 403 => exit::AUTH,
                404 => exit::NOT_FOUND,
                409 => exit::CONFLICT,
                s if s >= 500 => exit::UNAVAILABLE,
                _ => exit::REFUSED,
            };
            let hint = match status {
                401 => {
                    "\nhint: the admin client's token was refused; check TESSERA_CLIENT_ID/SECRET and that the client is enabled"
                }
                403 => "\nhint: the client needs the tessera:admin scope",
                422 => "\nhint: fix the named field and try again",
                _ => "",
            };
            return Err(Failure {
                code,
                message: format!(
                    "{} ({}){}{}{hint}",
                    shown(v["message"].as_str().unwrap_or(&v.to_string())),
                    shown(v["error"].as_str().unwrap_or("error")),
                    opt(&v["field"], |f| format!(", field '{f}'")),
                    opt(&v["request_id"], |r| format!(" [request_id {r}]")),
                ),
            });
        }
        unreachable!("the loop returns on its second attempt")
    }

    async fn get(&mut self, path: &str) -> Result<Value, Failure> {
        self.call(reqwest::Method::GET, path, None).await
    }
    async fn post(&mut self, path: &str, body: Value) -> Result<Value, Failure> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
    async fn put(&mut self, path: &str, body: Value) -> Result<Value, Failure> {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }
    async fn patch(&mut self, path: &str, body: Value) -> Result<Value, Failure> {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }
    async fn delete(&mut self, path: &str) -> Result<Value, Failure> {
        self.call(reqwest::Method::DELETE, path, None).await
    }
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(text.as_bytes())?;
    std::fs::rename(tmp, path)
}

/// A value from the server for people: stored text is printed through [`shown`], so a
/// name holding ESC, CR or LF can neither send terminal sequences nor forge lines.
fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::String(s) => shown(s).into_owned(),
        Value::Array(a) => a.iter().map(s).collect::<Vec<_>>().join(","),
        other => shown(&other.to_string()).into_owned(),
    }
}

/// An optional string from the server, escaped for a terminal, through `f`.
fn opt(v: &Value, f: impl Fn(&str) -> String) -> String {
    v.as_str().map(|t| f(&shown(t))).unwrap_or_default()
}

/// The request ids `audit tail --follow` has shown, the most recent few thousand.
#[derive(Default)]
struct Seen {
    set: std::collections::HashSet<String>,
    order: std::collections::VecDeque<String>,
}

impl Seen {
    fn insert(&mut self, id: String) {
        if self.set.insert(id.clone()) {
            self.order.push_back(id);
            if self.order.len() > 5_000
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }
}

/// Prints rows as an aligned table.
fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut w: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for r in rows {
        line(r);
    }
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

fn show_kv(v: &Value) {
    if let Some(o) = v.as_object() {
        for (k, val) in o {
            if k == "secrets" || k == "trace" {
                continue;
            }
            println!("{:<28} {}", shown(k), s(val));
        }
    }
}

/// A request body from one of the API's wire types, so the CLI sends exactly the contract.
fn body<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).expect("wire types serialise")
}

/// The JWK Set a `--jwks-file` names, read and parsed (the server checks its keys).
fn jwks_file(f: &ClientFields) -> Result<Option<Value>, Failure> {
    let Some(path) = &f.jwks_file else {
        return Ok(None);
    };
    let usage = |message: String| Failure {
        code: exit::USAGE,
        message,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read the JWK Set {}: {e}", path.display())))?;
    serde_json::from_str(&text).map(Some).map_err(|e| {
        usage(format!(
            "{} is not JSON ({e}); a JWK Set looks like {{\"keys\": [...]}}",
            path.display()
        ))
    })
}

fn create_client_body(
    client_id: &Option<String>,
    f: &ClientFields,
) -> Result<tessera_api::CreateClient, Failure> {
    Ok(tessera_api::CreateClient {
        client_id: client_id.clone(),
        name: f
            .name
            .clone()
            .or_else(|| client_id.clone())
            .unwrap_or_else(|| "client".into()),
        grant_types: Some(if f.grants.is_empty() {
            vec!["client_credentials".to_string()]
        } else {
            f.grants.clone()
        }),
        scopes: f.scopes.clone(),
        ip_allowlist: f.ips.clone(),
        service_account_id: f.service_account.clone(),
        redirect_uris: f.redirect_uris.clone(),
        token_endpoint_auth_methods: (!f.auth_methods.is_empty()).then(|| f.auth_methods.clone()),
        access_token_ttl: f.ttl,
        pkce_required: f.pkce_required,
        refresh_token_ttl: f.refresh_ttl,
        refresh_token_idle_ttl: f.refresh_idle_ttl,
        jwks: jwks_file(f)?,
        jwks_uri: f.jwks_uri.clone(),
        post_logout_redirect_uris: vec![],
    })
}

fn patch_client_body(f: &ClientFields) -> Result<tessera_api::PatchClient, Failure> {
    let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    Ok(tessera_api::PatchClient {
        name: f.name.clone(),
        grant_types: list(&f.grants),
        scopes: list(&f.scopes),
        ip_allowlist: list(&f.ips),
        service_account_id: f.service_account.clone().map(Some),
        access_token_ttl: f.ttl,
        redirect_uris: list(&f.redirect_uris),
        token_endpoint_auth_methods: list(&f.auth_methods),
        pkce_required: f.pkce_required,
        refresh_token_ttl: f.refresh_ttl,
        refresh_token_idle_ttl: f.refresh_idle_ttl,
        jwks: jwks_file(f)?,
        jwks_uri: f.jwks_uri.clone().map(Some),
        ..Default::default()
    })
}

fn print_trace(e: &Value) {
    println!(
        "{} {} {} — {}{}",
        s(&e["time"]),
        s(&e["kind"]),
        s(&e["request_id"]),
        s(&e["outcome"]),
        opt(&e["reason"], |r| format!(" ({r})"))
    );
    println!(
        "client {}  subject {}  from {}{}",
        s(&e["client_id"]),
        s(&e["subject"]),
        s(&e["source_ip"]),
        opt(&e["secret_hint"], |h| format!("  secret …{h}"))
    );
    if let Some(d) = e["description"].as_str() {
        println!("{}", shown(d));
    }
    println!();
    for (i, step) in e["trace"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let mark = match step["verdict"].as_str() {
            Some("fail") => "✗ FAIL",
            Some("skip") => "– skip",
            _ => "✓ pass",
        };
        println!(
            "{:>2}. {mark}  {:<20} {}{}",
            i + 1,
            s(&step["check"]),
            s(&step["detail"]),
            opt(&step["reason"], |r| format!("   [{r}]"))
        );
    }
    if let Some(r) = e["reason"].as_str() {
        let r = shown(r);
        println!("\nreason '{r}': see docs/errors.md#{r} (also served at /docs/errors#{r})");
    }
    if let Some(c) = e.get("change").filter(|c| !c.is_null()) {
        println!("change: {}", s(c));
    }
}

fn audit_query(
    client_id: &Option<String>,
    subject: &Option<String>,
    outcome: &Option<String>,
    reason: &Option<String>,
    limit: u32,
) -> String {
    let mut q = vec![format!("limit={limit}")];
    for (k, v) in [
        ("client_id", client_id),
        ("subject", subject),
        ("outcome", outcome),
        ("reason", reason),
    ] {
        if let Some(v) = v {
            q.push(format!(
                "{k}={}",
                form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
            ));
        }
    }
    q.join("&")
}

fn audit_line(e: &Value) {
    println!(
        "{}  {:<8} {:<8} {:<26} {:<24} {:<15} {}",
        s(&e["time"]),
        s(&e["kind"]),
        s(&e["outcome"]),
        s(&e["reason"]),
        s(&e["client_id"]),
        s(&e["source_ip"]),
        s(&e["request_id"])
    );
}

/// Runs `tessera admin`; returns the exit code.
pub async fn run(args: AdminArgs) -> anyhow::Result<i32> {
    match execute(&args).await {
        Ok(()) => Ok(0),
        Err(f) => {
            eprintln!("error: {}", f.message);
            Ok(f.code)
        }
    }
}

async fn execute(args: &AdminArgs) -> Result<(), Failure> {
    let mut api = Api::new(args)?;
    let json_out = args.json;
    let out = |v: &Value| println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    match &args.command {
        AdminCommand::Users(cmd) => {
            let v = match cmd {
                UsersCmd::List => {
                    let v = api.get("/users").await?;
                    if !json_out {
                        table(
                            &["id", "type", "username", "state", "roles", "changed by"],
                            items(&v)
                                .iter()
                                .map(|u| {
                                    let by = if u["disabled_by"].is_null() {
                                        &u["locked_by"]
                                    } else {
                                        &u["disabled_by"]
                                    };
                                    vec![
                                        s(&u["id"]),
                                        s(&u["type"]),
                                        s(&u["username"]),
                                        s(&u["state"]),
                                        s(&u["roles"]),
                                        s(&by["description"]),
                                    ]
                                })
                                .collect(),
                        );
                        return Ok(());
                    }
                    v
                }
                UsersCmd::Show { id } => api.get(&format!("/users/{id}")).await?,
                UsersCmd::Grants { id } => {
                    let v = api.get(&format!("/users/{id}/grants")).await?;
                    if !json_out {
                        table(
                            &["grant", "client", "scopes", "login", "ends", "state"],
                            items(&v)
                                .iter()
                                .map(|g| {
                                    let state = if g["active"].as_bool() == Some(true) {
                                        "active".to_string()
                                    } else if g["revoked_at"].is_null() {
                                        "ended".to_string()
                                    } else {
                                        format!(
                                            "revoked {} ({})",
                                            s(&g["revoked_at"]),
                                            s(&g["revoked_reason"])
                                        )
                                    };
                                    vec![
                                        s(&g["id"]),
                                        s(&g["client_id"]),
                                        s(&g["scopes"]),
                                        s(&g["auth_time"]),
                                        s(&g["expires_at"]),
                                        state,
                                    ]
                                })
                                .collect(),
                        );
                        return Ok(());
                    }
                    v
                }
                UsersCmd::RevokeGrant { id, grant_id } => {
                    api.delete(&format!("/users/{id}/grants/{grant_id}"))
                        .await?
                }
                UsersCmd::Logout { id } => api.delete(&format!("/users/{id}/sessions")).await?,
                UsersCmd::Create {
                    user_type,
                    username,
                    email,
                    display_name,
                    roles,
                } => {
                    let b = tessera_api::CreateUser {
                        user_type: user_type.clone(),
                        username: username.clone(),
                        email: email.clone(),
                        display_name: display_name.clone(),
                        password: None,
                        roles: roles.clone(),
                    };
                    api.post("/users", body(&b)).await?
                }
                UsersCmd::Enable { id } | UsersCmd::Disable { id } | UsersCmd::Unlock { id } => {
                    let patch = tessera_api::PatchUser {
                        enabled: match cmd {
                            UsersCmd::Enable { .. } => Some(true),
                            UsersCmd::Disable { .. } => Some(false),
                            _ => None,
                        },
                        state: matches!(cmd, UsersCmd::Unlock { .. }).then(|| "active".to_string()),
                        ..Default::default()
                    };
                    api.patch(&format!("/users/{id}"), body(&patch)).await?
                }
            };
            if json_out { out(&v) } else { show_kv(&v) }
        }
        AdminCommand::Clients(cmd) => {
            let v = match cmd {
                ClientsCmd::List => {
                    let v = api.get("/oauth/clients").await?;
                    if !json_out {
                        table(
                            &[
                                "client_id",
                                "name",
                                "enabled",
                                "grants",
                                "scopes",
                                "ip allow-list",
                                "service account",
                            ],
                            items(&v)
                                .iter()
                                .map(|c| {
                                    vec![
                                        s(&c["client_id"]),
                                        s(&c["name"]),
                                        s(&c["enabled"]),
                                        s(&c["grant_types"]),
                                        s(&c["scopes"]),
                                        s(&c["ip_allowlist"]),
                                        s(&c["service_account_id"]),
                                    ]
                                })
                                .collect(),
                        );
                        return Ok(());
                    }
                    v
                }
                ClientsCmd::Show { client_id } => {
                    api.get(&format!("/oauth/clients/{client_id}")).await?
                }
                ClientsCmd::Create { client_id, fields } => {
                    let b = create_client_body(client_id, fields)?;
                    let v = api.post("/oauth/clients", body(&b)).await?;
                    if !json_out {
                        show_kv(&v);
                        if v["client_secret"].is_string() {
                            eprintln!(
                                "\nThe client_secret above is shown only this once: store it now."
                            );
                        } else {
                            eprintln!(
                                "\nThis client has no secret: it authenticates with {}.",
                                s(&v["token_endpoint_auth_methods"])
                            );
                        }
                        return Ok(());
                    }
                    v
                }
                ClientsCmd::Update { client_id, fields } => {
                    api.patch(
                        &format!("/oauth/clients/{client_id}"),
                        body(&patch_client_body(fields)?),
                    )
                    .await?
                }
                ClientsCmd::Enable { client_id } | ClientsCmd::Disable { client_id } => {
                    let patch = tessera_api::PatchClient {
                        enabled: Some(matches!(cmd, ClientsCmd::Enable { .. })),
                        ..Default::default()
                    };
                    api.patch(&format!("/oauth/clients/{client_id}"), body(&patch))
                        .await?
                }
                ClientsCmd::Delete { client_id } => {
                    api.delete(&format!("/oauth/clients/{client_id}")).await?;
                    json!({"deleted": client_id})
                }
            };
            if json_out { out(&v) } else { show_kv(&v) }
        }
        AdminCommand::Secrets(cmd) => match cmd {
            SecretsCmd::List { client_id } => {
                let v = api
                    .get(&format!("/oauth/clients/{client_id}/secrets"))
                    .await?;
                if json_out {
                    out(&v);
                } else {
                    table(
                        &[
                            "id",
                            "hint",
                            "active",
                            "created",
                            "expires",
                            "last used",
                            "from",
                        ],
                        items(&v)
                            .iter()
                            .map(|x| {
                                vec![
                                    s(&x["id"]),
                                    format!("…{}", s(&x["hint"])),
                                    s(&x["active"]),
                                    s(&x["created_at"]),
                                    s(&x["expires_at"]),
                                    s(&x["last_used_at"]),
                                    s(&x["last_used_from"]),
                                ]
                            })
                            .collect(),
                    );
                }
            }
            SecretsCmd::Rotate { client_id, grace } => {
                let v = api
                    .post(
                        &format!("/oauth/clients/{client_id}/secrets"),
                        body(&tessera_api::RotateSecret {
                            grace_seconds: Some(*grace),
                        }),
                    )
                    .await?;
                if json_out {
                    out(&v);
                } else {
                    println!(
                        "new secret {} (…{}):\n{}",
                        s(&v["id"]),
                        s(&v["hint"]),
                        s(&v["client_secret"])
                    );
                    for p in v["previous"].as_array().cloned().unwrap_or_default() {
                        println!(
                            "previous secret {} (…{}) now expires at {}",
                            s(&p["id"]),
                            s(&p["hint"]),
                            s(&p["expires_at"])
                        );
                    }
                    eprintln!("\nThe new secret is shown only this once: store it now.");
                }
            }
            SecretsCmd::Revoke {
                client_id,
                secret_id,
            } => {
                api.delete(&format!("/oauth/clients/{client_id}/secrets/{secret_id}"))
                    .await?;
                if json_out {
                    out(&json!({"revoked": secret_id}))
                } else {
                    println!("revoked {secret_id}")
                }
            }
        },
        AdminCommand::Scopes(cmd) => match cmd {
            ScopesCmd::List => {
                let v = api.get("/scopes").await?;
                if json_out {
                    out(&v);
                } else {
                    table(
                        &["name", "description", "kind"],
                        items(&v)
                            .iter()
                            .map(|x| {
                                let kind = if x["builtin"] == true {
                                    "built in"
                                } else {
                                    "org"
                                };
                                vec![s(&x["name"]), s(&x["description"]), kind.to_string()]
                            })
                            .collect(),
                    );
                }
            }
            ScopesCmd::Create { name, description } => {
                let v = api
                    .post(
                        "/scopes",
                        body(&tessera_api::CreateScope {
                            name: name.clone(),
                            description: description.clone(),
                        }),
                    )
                    .await?;
                if json_out {
                    out(&v)
                } else {
                    println!("created scope {}", s(&v["name"]))
                }
            }
        },
        AdminCommand::Audit(cmd) => match cmd {
            AuditCmd::Explain { request_id } => {
                let v = api.get(&format!("/audit/events/{request_id}")).await?;
                if json_out { out(&v) } else { print_trace(&v) }
            }
            AuditCmd::Tail {
                client_id,
                subject,
                outcome,
                reason,
                limit,
                follow,
            } => {
                let q = audit_query(client_id, subject, outcome, reason, *limit);
                let v = api.get(&format!("/audit/events?{q}")).await?;
                let mut events: Vec<Value> = v["events"].as_array().cloned().unwrap_or_default();
                events.reverse();
                let mut seen = Seen::default();
                for e in &events {
                    seen.insert(s(&e["request_id"]));
                    if json_out {
                        println!("{e}")
                    } else {
                        audit_line(e)
                    }
                }
                if *follow {
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        // Page back from the newest event until one already shown.
                        let mut fresh: Vec<Value> = vec![];
                        let mut before: Option<String> = None;
                        'pages: loop {
                            let mut q = audit_query(client_id, subject, outcome, reason, 200);
                            if let Some(b) = &before {
                                q.push_str(&format!("&before={b}"));
                            }
                            let page = api.get(&format!("/audit/events?{q}")).await?;
                            let page = page["events"].as_array().cloned().unwrap_or_default();
                            let full = page.len() == 200;
                            for e in page {
                                if seen.contains(&s(&e["request_id"])) {
                                    break 'pages;
                                }
                                fresh.push(e);
                            }
                            if !full || fresh.len() >= 10_000 {
                                break;
                            }
                            before = fresh.last().map(|e| s(&e["request_id"]));
                        }
                        fresh.reverse();
                        for e in &fresh {
                            seen.insert(s(&e["request_id"]));
                            if json_out {
                                println!("{e}")
                            } else {
                                audit_line(e)
                            }
                        }
                    }
                }
            }
        },
        AdminCommand::Scim(cmd) => scim::run(&mut api, cmd, json_out).await?,
        AdminCommand::Sso(cmd) => {
            let v = match cmd {
                SsoCmd::Show => api.get("/sso/saml").await?,
                SsoCmd::Set(fields) => {
                    let new = put_sso_body(fields)?;
                    if !fields.replace {
                        let dropped = dropped_sso_settings(&api.get("/sso/saml").await?, &new);
                        if !dropped.is_empty() {
                            return Err(Failure {
                                code: exit::USAGE,
                                message: format!(
                                    "`sso set` replaces the whole configuration, and these settings are set now but not given: {}\nhint: give them again (`tessera admin sso show` lists them), or pass --replace to drop them",
                                    dropped.join("; ")
                                ),
                            });
                        }
                    }
                    api.put("/sso/saml", body(&new)).await?
                }
                SsoCmd::Impact => {
                    let v = api.get("/sso/saml/enforcement-impact").await?;
                    if json_out {
                        out(&v)
                    } else {
                        print_impact(&v)
                    }
                    return Ok(());
                }
                SsoCmd::Enforce { preview_id, force } => {
                    let patch = tessera_api::PatchSsoConfig {
                        enforced: true,
                        preview_id: preview_id.clone(),
                        force: *force,
                    };
                    api.patch("/sso/saml", body(&patch))
                        .await
                        .map_err(|mut f| {
                            if f.code == exit::CONFLICT {
                                f.message.push_str(
                                    "\nhint: `tessera admin sso impact` shows the current impact and its preview id",
                                );
                            }
                            f
                        })?
                }
                SsoCmd::Unenforce => {
                    let patch = tessera_api::PatchSsoConfig::default();
                    api.patch("/sso/saml", body(&patch)).await?
                }
                SsoCmd::RefreshMetadata => {
                    let v = api.post("/sso/saml/metadata/refresh", json!({})).await?;
                    if json_out {
                        out(&v)
                    } else {
                        print_refresh(&v)
                    }
                    return Ok(());
                }
                SsoCmd::EncryptionKeys | SsoCmd::RotateEncryptionKey { .. } => {
                    let v = match cmd {
                        SsoCmd::RotateEncryptionKey { overlap_days } => {
                            let b = tessera_api::RotateSamlEncryptionKey {
                                overlap_days: Some(*overlap_days),
                            };
                            api.post("/saml/encryption-keys/rotate", body(&b)).await?
                        }
                        _ => api.get("/saml/encryption-keys").await?,
                    };
                    if json_out {
                        out(&v)
                    } else {
                        print_encryption_keys(&v)
                    }
                    return Ok(());
                }
            };
            if json_out { out(&v) } else { print_sso(&v) }
        }
        AdminCommand::Diagnose(d) => {
            if let Some(url) = &d.authorize_url {
                let v = api
                    .post(
                        "/oauth/diagnose/authorize",
                        body(&tessera_api::DiagnoseAuthorizeRequest {
                            url: url.clone(),
                            user_id: d.as_user.clone(),
                            session_method: d.session_method.clone(),
                        }),
                    )
                    .await?;
                if json_out {
                    out(&v);
                } else {
                    let what = match v["outcome"].as_str().unwrap_or("") {
                        "code" => format!("a code for {}", s(&v["redirect_uri"])),
                        "login" => format!(
                            "the person logs in first ({})",
                            if v["login"] == "sso" {
                                "through the org's IdP"
                            } else {
                                "on the password page"
                            }
                        ),
                        "error_redirect" => format!(
                            "back to {} with error={}",
                            s(&v["redirect_uri"]),
                            s(&v["error"])
                        ),
                        _ => "an error page (the link cannot be trusted)".to_string(),
                    };
                    println!(
                        "dry run of the authorization request: {what}{}",
                        opt(&v["reason"], |r| format!(" ({r})"))
                    );
                    if let Some(d) = v["error_description"].as_str() {
                        println!("{}", shown(d));
                    }
                    println!();
                    print_trace(
                        &json!({"trace": v["trace"], "time": "", "kind": "diagnose", "request_id": v["request_id"], "outcome": v["outcome"]}),
                    );
                }
                return Ok(());
            }
            let v = api
                .post(
                    "/oauth/diagnose",
                    body(&tessera_api::DiagnoseRequest {
                        client_id: d.client_id.clone().unwrap_or_default(),
                        client_secret: d.client_secret.clone(),
                        grant_type: d
                            .grant_type
                            .clone()
                            .unwrap_or_else(|| "client_credentials".into()),
                        scope: d.scope.clone(),
                        source_ip: d.source_ip.clone(),
                        auth_method: d.auth_method.clone(),
                    }),
                )
                .await?;
            if json_out {
                out(&v);
            } else {
                println!(
                    "dry run: {}{}",
                    s(&v["outcome"]),
                    opt(&v["reason"], |r| format!(" ({r})"))
                );
                if let Some(d) = v["error_description"].as_str() {
                    println!("{}", shown(d));
                }
                println!();
                print_trace(
                    &json!({"trace": v["trace"], "time": "", "kind": "diagnose", "request_id": v["request_id"], "outcome": v["outcome"]}),
                );
            }
        }
        AdminCommand::RotateSigningKey { alg } => {
            let body = match alg {
                Some(alg) => json!({ "alg": alg }),
                None => json!({}),
            };
            let v = api.post("/signing-keys/rotate", body).await?;
            if json_out {
                out(&v)
            } else {
                println!(
                    "new {} signing key {}; the previous one stays published for {} s",
                    s(&v["alg"]),
                    s(&v["kid"]),
                    s(&v["previous_key_published_for_seconds"])
                )
            }
        }
    }
    Ok(())
}
