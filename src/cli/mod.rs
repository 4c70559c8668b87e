//! The operator commands of the `wsgate` binary: `config ...`, `mapper ...` and `key ...` talk to
//! a node's admin API; `mapper test` runs a module locally.

mod client;
mod keys;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use base64::Engine as _;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

pub use client::AdminClient;
pub use keys::{key, KeyCommand};

use crate::mapper::{sample, MapperEngine, MapperInstance, MapperLimits};
use crate::metrics::Metrics;

/// Where the admin API is and how to authenticate.
#[derive(Args, Debug, Clone)]
pub struct AdminArgs {
    /// Base URL of a node's admin listener.
    #[arg(
        long,
        env = "WSGATE_ADMIN_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub admin_url: String,
    /// CA certificate(s) (PEM) that an https:// admin URL is checked against, for a node whose
    /// admin certificate a private CA issued (default: the public web roots).
    #[arg(long, env = "WSGATE_ADMIN_CA")]
    pub admin_ca: Option<std::path::PathBuf>,
    /// Bearer token of the admin API.
    #[arg(long, env = "WSGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Name recorded in the audit log.
    #[arg(long, env = "WSGATE_OPERATOR", default_value = "operator")]
    pub operator: String,
}

/// `wsgate config ...`
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the current config (JSON) and its version.
    Get,
    /// Validate and apply a config file.
    Apply {
        /// The config (JSON).
        file: PathBuf,
        /// Refuse unless the store still holds this version.
        #[arg(long)]
        replaces: Option<u64>,
    },
    /// Show what applying a config file would change, without applying it.
    Diff {
        /// The config (JSON).
        file: PathBuf,
    },
    /// Print the audit log, newest first.
    History {
        /// How many entries.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Restore an earlier config version (as a new version).
    Rollback {
        /// The version to restore.
        version: u64,
    },
}

/// `wsgate mapper ...`
#[derive(Subcommand, Debug)]
pub enum MapperCommand {
    /// Validate and store a new version of a mapper.
    Push {
        /// Mapper name.
        name: String,
        /// The component (`.wasm`).
        file: PathBuf,
        /// Sample events the module must map without error (JSON: one event or an array).
        #[arg(long)]
        sample: PathBuf,
        /// Promote the new version at once.
        #[arg(long)]
        promote: bool,
        /// Notes kept with the version.
        #[arg(long, default_value = "")]
        notes: String,
        /// Manifest (JSON: capabilities, timeout_ms, memory_bytes).
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// `init` params for the smoke call, as KEY=VALUE.
        #[arg(long = "param", value_parser = parse_param)]
        params: Vec<(String, String)>,
    },
    /// List mappers with their promoted version.
    List,
    /// Show one mapper's versions.
    Show {
        /// Mapper name.
        name: String,
    },
    /// Point a mapper's name at a version.
    Promote {
        /// Mapper name.
        name: String,
        /// Version to promote.
        version: u32,
    },
    /// Move a mapper back to the version before the promoted one, or to `--to`.
    Rollback {
        /// Mapper name.
        name: String,
        /// The version to go back to.
        #[arg(long)]
        to: Option<u32>,
    },
    /// Run a module locally on sample events and print its outputs (no node needed).
    Test {
        /// The component (`.wasm`).
        file: PathBuf,
        /// Sample events (JSON: one event or an array).
        #[arg(long)]
        input: PathBuf,
        /// `init` params, as KEY=VALUE.
        #[arg(long = "param", value_parser = parse_param)]
        params: Vec<(String, String)>,
    },
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{text}`: expected KEY=VALUE"))
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    serde_json::from_slice(&read(path)?).with_context(|| format!("{} is not JSON", path.display()))
}

/// A config file: the config itself, or what `config get` prints (`{"version": N, "config":
/// {...}}`), whose version then guards the apply (refused if the store moved on since).
fn read_config(path: &Path) -> anyhow::Result<(Value, Option<u64>)> {
    let value = read_json(path)?;
    match value.as_object() {
        Some(got) if got.len() == 2 && got.contains_key("config") => {
            let version = got.get("version").and_then(Value::as_u64);
            Ok((got["config"].clone(), version))
        }
        _ => Ok((value, None)),
    }
}

fn print(value: &Value) {
    use std::io::Write;
    let text = serde_json::to_string_pretty(value).expect("serializable");
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = writeln!(std::io::stdout(), "{text}");
}

/// Runs a `config` command against the admin API.
pub fn config(admin: &AdminArgs, command: ConfigCommand) -> anyhow::Result<()> {
    let client = AdminClient::new(admin)?;
    match command {
        ConfigCommand::Get => print(&client.get("/api/v1/config")?),
        ConfigCommand::Apply { file, replaces } => {
            let (config, got_at) = read_config(&file)?;
            let body = json!({"config": config, "replaces": replaces.or(got_at)});
            let applied = client.send("PUT", "/api/v1/config", &body)?;
            if applied["diff"]["entries"]
                .as_array()
                .is_some_and(|e| e.is_empty())
                && applied["diff"]["vars_changed"] == false
            {
                println!(
                    "no change: the store already holds this config (version {})",
                    applied["version"]
                );
            } else {
                println!("applied as version {}", applied["version"]);
                print_diff(&applied["diff"]);
            }
            warn_unless_running(&applied);
        }
        ConfigCommand::Diff { file } => {
            let body = json!({"config": read_config(&file)?.0});
            let diff = client.send("POST", "/api/v1/config/diff", &body)?;
            println!("against version {}:", diff["from_version"]);
            print_diff(&diff["diff"]);
        }
        ConfigCommand::History { limit } => {
            let entries = client.get(&format!("/api/v1/config/history?limit={limit}"))?;
            for entry in entries.as_array().into_iter().flatten() {
                println!(
                    "#{:<5} {}  {:<20} {:<16} {:<24} {} -> {}",
                    entry["seq"],
                    format_time(entry["at_ms"].as_u64().unwrap_or(0)),
                    entry["who"].as_str().unwrap_or(""),
                    entry["action"].as_str().unwrap_or(""),
                    entry["subject"].as_str().unwrap_or(""),
                    entry["before_version"],
                    entry["after_version"],
                );
            }
        }
        ConfigCommand::Rollback { version } => {
            let applied = client.send(
                "POST",
                "/api/v1/config/rollback",
                &json!({"version": version}),
            )?;
            println!(
                "restored version {version} as version {}",
                applied["version"]
            );
            print_diff(&applied["diff"]);
            warn_unless_running(&applied);
        }
    }
    Ok(())
}

/// Tells the operator when the node that took the change does not run it (yet).
fn warn_unless_running(applied: &Value) {
    if applied["running_here"] == false {
        eprintln!(
            "warning: stored, but this node does not run it: {}",
            applied["node_error"].as_str().unwrap_or("unknown reason")
        );
    }
}

fn print_diff(diff: &Value) {
    if diff["vars_changed"] == true {
        println!("  ~ vars");
    }
    for entry in diff["entries"].as_array().into_iter().flatten() {
        let sign = match entry["change"].as_str() {
            Some("added") => "+",
            Some("removed") => "-",
            _ => "~",
        };
        println!(
            "  {sign} {} {} (v{} -> v{})",
            entry["kind"].as_str().unwrap_or(""),
            entry["key"].as_str().unwrap_or(""),
            entry["from_version"],
            entry["to_version"]
        );
        for field in entry["fields"].as_array().into_iter().flatten() {
            println!("      {}", field_line(field));
        }
    }
}

/// One changed field of a diff: `properties.password: secret changed`, or the (redacted)
/// values before and after.
fn field_line(field: &Value) -> String {
    let path = field["path"].as_str().unwrap_or("");
    let change = field["change"].as_str().unwrap_or("changed");
    if field["secret"] == true {
        return format!("{path}: secret {change}");
    }
    let show = |value: &Value| match value {
        Value::Null => "(none)".to_string(),
        other => other.to_string(),
    };
    match change {
        "added" => format!("{path}: added {}", show(&field["after"])),
        "removed" => format!("{path}: removed (was {})", show(&field["before"])),
        _ => format!(
            "{path}: {} -> {}",
            show(&field["before"]),
            show(&field["after"])
        ),
    }
}

fn format_time(ms: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Runs a `mapper` command: against the admin API, or locally for `test`.
pub fn mapper(admin: &AdminArgs, command: MapperCommand) -> anyhow::Result<()> {
    let client = AdminClient::new(admin)?;
    match command {
        MapperCommand::Push {
            name,
            file,
            sample,
            promote,
            notes,
            manifest,
            params,
        } => {
            let module = read(&file)?;
            let sample = read_json(&sample)?;
            let manifest = match manifest {
                Some(path) => read_json(&path)?,
                None => json!({}),
            };
            let params: BTreeMap<String, String> = params.into_iter().collect();
            let body = json!({
                "module_base64": base64::engine::general_purpose::STANDARD.encode(&module),
                "sample": sample,
                "params": params,
                "notes": notes,
                "manifest": manifest,
                "promote": promote,
            });
            let pushed = client.send("POST", &format!("/api/v1/mappers/{name}"), &body)?;
            println!(
                "pushed {name}@{} (sha256 {}, {} bytes); promoted: {name}@{}",
                pushed["version"]["version"],
                pushed["version"]["hash"].as_str().unwrap_or(""),
                pushed["version"]["size"],
                pushed["promoted"]
            );
        }
        MapperCommand::List => {
            let list = client.get("/api/v1/mappers")?;
            println!("{:<28} {:>8} {:>8}  sha256", "NAME", "PROMOTED", "VERSIONS");
            for m in list.as_array().into_iter().flatten() {
                println!(
                    "{:<28} {:>8} {:>8}  {}",
                    m["name"].as_str().unwrap_or(""),
                    m["promoted"],
                    m["versions"],
                    m["hash"].as_str().unwrap_or("")
                );
            }
        }
        MapperCommand::Show { name } => print(&client.get(&format!("/api/v1/mappers/{name}"))?),
        MapperCommand::Promote { name, version } => {
            let path = format!("/api/v1/mappers/{name}/promote");
            let meta = client.send("POST", &path, &json!({"version": version}))?;
            println!("{name} now resolves to {name}@{}", meta["promoted"]);
        }
        MapperCommand::Rollback { name, to } => {
            let path = format!("/api/v1/mappers/{name}/rollback");
            let meta = client.send("POST", &path, &json!({"version": to}))?;
            println!("{name} rolled back to {name}@{}", meta["promoted"]);
        }
        MapperCommand::Test {
            file,
            input,
            params,
        } => test_locally(&file, &input, params)?,
    }
    Ok(())
}

fn test_locally(file: &Path, input: &Path, params: Vec<(String, String)>) -> anyhow::Result<()> {
    let module = read(file)?;
    let text = String::from_utf8(read(input)?).context("the input is not UTF-8")?;
    let events = sample::parse_samples(&text).map_err(|e| anyhow!(e))?;
    let engine = MapperEngine::new(MapperLimits::default(), 4)?;
    let compiled = engine
        .compile(&module)
        .map_err(|e| anyhow!("{}: {e}", file.display()))?;
    let mut instance = MapperInstance::new(
        Arc::clone(&engine),
        compiled,
        "test",
        params,
        Arc::new(Metrics::new()),
    );
    let outcomes = instance.map_batch(&events);
    let results: Vec<Value> = outcomes.iter().map(sample::outcome_json).collect();
    print(&Value::Array(results));
    let failed = outcomes
        .iter()
        .filter(|o| matches!(o, crate::mapper::EventOutcome::Failed(_)))
        .count();
    if failed > 0 {
        bail!("{failed} of {} events failed", outcomes.len());
    }
    Ok(())
}
