//! `tessera admin scim`: set up an IdP's provisioning (a service account, a client holding
//! `tessera:scim`, a long-lived token), manage the tokens, and see what provisioning did.

use clap::Subcommand;
use serde_json::{Value, json};

use super::{Api, Failure, items, s, table};

#[derive(Subcommand, Debug)]
pub enum ScimCmd {
    /// Set up provisioning for an IdP: a service account, a client holding tessera:scim
    /// and a long-lived token, printed with the SCIM base URL to give the IdP
    Setup {
        /// The IdP ("okta", "entra"): names the service account and the client
        #[arg(long)]
        name: String,
        /// Days until the token expires
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// No long-lived token: the IdP fetches access tokens with the client's secret
        /// (Okta's OAuth 2.0 mode)
        #[arg(long)]
        no_token: bool,
    },
    /// The long-lived SCIM tokens, with their last use
    Tokens,
    /// A new long-lived token for an existing provisioning client
    Token {
        #[arg(long)]
        client_id: String,
        #[arg(long, default_value_t = 365)]
        days: i64,
        #[arg(long)]
        description: Option<String>,
    },
    /// Revoke a long-lived token at once
    Revoke { id: String },
    /// Recent provisioning activity: who SCIM created, changed, disabled, and what it refused
    Activity {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

/// `name` as a username part: lower-case letters, digits and `-`.
fn slug(name: &str) -> String {
    let s: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.trim_matches('-').to_string()
}

pub(super) async fn run(api: &mut Api, cmd: &ScimCmd, json_out: bool) -> Result<(), Failure> {
    let out = |v: &Value| println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    match cmd {
        ScimCmd::Setup {
            name,
            days,
            no_token,
        } => {
            let username = format!("svc-scim-{}", slug(name));
            eprintln!("creating service account {username}…");
            let sa = api
                .post("/users", json!({"type": "service", "username": username}))
                .await?;
            eprintln!("creating the provisioning client…");
            let client = api
                .post(
                    "/oauth/clients",
                    json!({
                        "name": format!("{name} provisioning (SCIM)"),
                        "grant_types": ["client_credentials"],
                        "scopes": [tessera_api::SCIM_SCOPE],
                        "service_account_id": sa["id"],
                        "access_token_ttl": 86400,
                    }),
                )
                .await?;
            let token = if *no_token {
                Value::Null
            } else {
                eprintln!("making a long-lived token ({days} days)…");
                api.post(
                    "/scim/tokens",
                    json!({"client_id": client["client_id"], "expires_in_days": days,
                           "description": format!("{name} provisioning")}),
                )
                .await?
            };
            if json_out {
                out(&json!({"service_account": sa, "client": client, "token": token}));
                return Ok(());
            }
            let base = match token["scim_base_url"].as_str() {
                Some(b) => s(&json!(b)),
                None => format!("{}/scim/v2/{}", api.base_url(), s(&client["org"])),
            };
            println!("SCIM provisioning for {name} is set up.\n");
            println!("  SCIM base URL    {base}");
            if token.is_null() {
                println!("  client_id        {}", s(&client["client_id"]));
                println!("  client_secret    {}", s(&client["client_secret"]));
                println!("  token URL        {}/oauth/token", api.base_url());
                println!("  scope            {}", tessera_api::SCIM_SCOPE);
            } else {
                println!("  bearer token     {}", s(&token["token"]));
                println!("  expires          {}", s(&token["expires_at"]));
                println!("  token id         {}", s(&token["id"]));
            }
            println!(
                "  acts as          client {} (service account {username})",
                s(&client["client_id"])
            );
            eprintln!(
                "\nThe {} above is shown only this once: paste it into the IdP now.",
                if token.is_null() {
                    "client_secret"
                } else {
                    "bearer token"
                }
            );
            eprintln!(
                "Okta: Provisioning > Integration: base URL above, unique identifier userName, authentication \"HTTP Header\" with the token.\nEntra ID: Provisioning > Admin credentials: Tenant URL = base URL, Secret Token = the token.\nSee docs/scim.md."
            );
            Ok(())
        }
        ScimCmd::Tokens => {
            let v = api.get("/scim/tokens").await?;
            if json_out {
                out(&v);
                return Ok(());
            }
            table(
                &[
                    "id",
                    "client",
                    "hint",
                    "state",
                    "expires",
                    "last used",
                    "for",
                ],
                items(&v)
                    .iter()
                    .map(|t| {
                        let state = if !t["revoked_at"].is_null() {
                            format!("revoked {}", s(&t["revoked_at"]))
                        } else if t["active"] == true {
                            "active".into()
                        } else {
                            "expired".into()
                        };
                        vec![
                            s(&t["id"]),
                            s(&t["client_id"]),
                            format!("…{}", s(&t["hint"])),
                            state,
                            s(&t["expires_at"]),
                            s(&t["last_used_at"]),
                            s(&t["description"]),
                        ]
                    })
                    .collect(),
            );
            Ok(())
        }
        ScimCmd::Token {
            client_id,
            days,
            description,
        } => {
            let v = api
                .post(
                    "/scim/tokens",
                    json!({"client_id": client_id, "expires_in_days": days, "description": description}),
                )
                .await?;
            if json_out {
                out(&v);
            } else {
                println!("  SCIM base URL    {}", s(&v["scim_base_url"]));
                println!("  bearer token     {}", s(&v["token"]));
                println!("  expires          {}", s(&v["expires_at"]));
                println!("  token id         {}", s(&v["id"]));
                eprintln!("\nThe token is shown only this once: store it now.");
            }
            Ok(())
        }
        ScimCmd::Revoke { id } => {
            api.delete(&format!("/scim/tokens/{id}")).await?;
            if json_out {
                out(&json!({"revoked": id}));
            } else {
                println!("revoked SCIM token {id}: the IdP using it is refused from now on");
            }
            Ok(())
        }
        ScimCmd::Activity { limit } => {
            let v = api
                .get(&format!("/audit/events?kind=scim&limit={limit}"))
                .await?;
            if json_out {
                out(&v);
                return Ok(());
            }
            let events = v["events"].as_array().cloned().unwrap_or_default();
            if events.is_empty() {
                println!("no provisioning yet: `tessera admin scim setup --name <idp>` starts it");
                return Ok(());
            }
            table(
                &["time", "client", "operation", "outcome", "subject", "what"],
                events
                    .iter()
                    .map(|e| {
                        let what = if e["outcome"] == "ok" {
                            e["trace"]
                                .as_array()
                                .and_then(|t| t.last())
                                .map(|step| s(&step["detail"]))
                                .unwrap_or_default()
                        } else {
                            format!("{}: {}", s(&e["reason"]), s(&e["description"]))
                        };
                        vec![
                            s(&e["time"]),
                            s(&e["client_id"]),
                            s(&e["change"]["op"]),
                            s(&e["outcome"]),
                            s(&e["subject"]),
                            what,
                        ]
                    })
                    .collect(),
            );
            Ok(())
        }
    }
}
