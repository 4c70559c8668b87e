//! `wsgate key ...`: API keys through a node's admin API.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{json, Value};

use super::{AdminArgs, AdminClient};

/// `wsgate key ...`
#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Create a key for a user. An HMAC key's secret is printed this once: store it now.
    Create {
        /// The user the key acts for.
        #[arg(long)]
        user: String,
        /// What it may do: user-stream, trade (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        permissions: Vec<String>,
        /// The client's Ed25519 public key (PEM file); without it the key is HMAC.
        #[arg(long)]
        ed25519_public_key: Option<PathBuf>,
        /// An address or network the key may be used from (repeat for more); default anywhere.
        #[arg(long = "ip")]
        ip_allow: Vec<String>,
    },
    /// List every key (never a secret).
    List,
    /// Disable a key for good.
    Revoke {
        /// The API key (keys made before alphanumeric tokens may start with `-`).
        #[arg(allow_hyphen_values = true)]
        key: String,
    },
}

/// Runs a `key` command against the admin API.
pub fn key(admin: &AdminArgs, command: KeyCommand) -> anyhow::Result<()> {
    let client = AdminClient::new(admin)?;
    match command {
        KeyCommand::Create {
            user,
            permissions,
            ed25519_public_key,
            ip_allow,
        } => {
            let public_key = ed25519_public_key
                .map(|path| {
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))
                })
                .transpose()?;
            let body = json!({
                "user_id": user,
                "permissions": permissions,
                "ed25519_public_key": public_key,
                "ip_allow": ip_allow,
            });
            let created = client.send("POST", "/api/v1/keys", &body)?;
            println!("api key: {}", text(&created["key"]));
            if let Some(secret) = created["secret"].as_str() {
                println!("secret:  {secret}");
                eprintln!("the secret is shown this once: store it now");
            }
            println!("{}", describe(&created));
        }
        KeyCommand::List => {
            let listed = client.get("/api/v1/keys")?;
            for key in listed["keys"].as_array().into_iter().flatten() {
                println!("{}  {}", text(&key["key"]), describe(key));
            }
        }
        KeyCommand::Revoke { key } => {
            let revoked = client.send("POST", &format!("/api/v1/keys/{key}/revoke"), &json!({}))?;
            println!("revoked {}: {}", text(&revoked["key"]), describe(&revoked));
        }
    }
    Ok(())
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

/// One line about a key: user, kind, permissions, addresses, state.
fn describe(key: &Value) -> String {
    let list = |value: &Value| -> String {
        let items: Vec<&str> = value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        items.join(",")
    };
    let ip = list(&key["ip_allow"]);
    format!(
        "user={} type={} permissions={} ip={} {}",
        text(&key["user_id"]),
        text(&key["kind"]["type"]),
        list(&key["permissions"]),
        if ip.is_empty() { "any" } else { &ip },
        if key["disabled"] == true {
            "revoked"
        } else {
            "active"
        }
    )
}
