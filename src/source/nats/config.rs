//! Parsing and validation of the `nats` datasource's properties; errors name the offending
//! property.

use std::time::Duration;

use async_nats::ServerAddr;
use serde_json::{Map, Value};

use percent_encoding::percent_decode_str;

use super::{Credentials, Deliver, JetStreamSettings, NatsSource};
use crate::config::secrets::redact_text;
use crate::source::Consumption;

/// Properties this source understands.
const KNOWN: &[&str] = &[
    "servers",
    "subjects",
    "queue_group",
    "jetstream",
    "max_reconnect_attempts",
    "reconnect_time_wait",
    "reconnect_time_wait_ms",
    "user",
    "password",
    "token",
    "creds_file",
];

pub(super) fn parse(
    properties: &Map<String, Value>,
    consumption: &Consumption,
) -> Result<NatsSource, String> {
    if let Some(unknown) = properties.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!(
            "properties.{unknown}: unknown property (known: {})",
            KNOWN.join(", ")
        ));
    }
    let (servers, url_credentials) = parse_servers(properties.get("servers"))?;
    let subjects = match properties.get("subjects") {
        None if consumption.unread => Vec::new(),
        None if !consumption.upstream.is_empty() => routes_upstream(&consumption.upstream)?,
        given => parse_subjects(given)?,
    };
    let queue_group = match properties.get("queue_group") {
        None => "wsgate".to_string(),
        Some(value) => {
            let group = non_empty_string(value, "properties.queue_group")?;
            if group.contains(|c: char| c.is_whitespace()) {
                return Err("properties.queue_group: must not contain whitespace".to_string());
            }
            group
        }
    };
    let jetstream = match properties.get("jetstream") {
        None | Some(Value::Null) => None,
        Some(value) => Some(parse_jetstream(value)?),
    };
    let max_reconnect_attempts = match properties.get("max_reconnect_attempts") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .ok_or("properties.max_reconnect_attempts: must be a non-negative integer")?
                as usize,
        ),
    };
    let reconnect_time_wait = match (
        properties.get("reconnect_time_wait_ms"),
        properties.get("reconnect_time_wait"),
    ) {
        (None, None) => Duration::from_millis(1000),
        (Some(_), Some(_)) => {
            return Err(
                "properties.reconnect_time_wait: give it in seconds or reconnect_time_wait_ms, \
                 not both"
                    .to_string(),
            )
        }
        (Some(value), None) => match value.as_u64() {
            Some(ms) if ms > 0 => Duration::from_millis(ms),
            _ => {
                return Err(
                    "properties.reconnect_time_wait_ms: must be a positive integer (ms)"
                        .to_string(),
                )
            }
        },
        (None, Some(value)) => match value.as_f64() {
            Some(seconds) if seconds > 0.0 && seconds <= 3600.0 => Duration::from_secs_f64(seconds),
            _ => {
                return Err(
                    "properties.reconnect_time_wait: must be a positive number of seconds \
                     (at most 3600)"
                        .to_string(),
                )
            }
        },
    };
    let text = |key: &str| -> Result<Option<String>, String> {
        properties
            .get(key)
            .map(|v| non_empty_string(v, &format!("properties.{key}")))
            .transpose()
    };
    let (user, password, token, creds_file) = (
        text("user")?,
        text("password")?,
        text("token")?,
        text("creds_file")?,
    );
    let credentials = match (user, password, token, creds_file) {
        (None, None, None, None) => url_credentials.unwrap_or(Credentials::None),
        _ if url_credentials.is_some() => {
            return Err(
                "properties.servers: give credentials in the servers' URLs or as \
                        user/password, token or creds_file, not both"
                    .to_string(),
            )
        }
        (Some(user), Some(password), None, None) => Credentials::UserPassword(user, password),
        (Some(_), None, _, _) => {
            return Err("properties.password: required with properties.user".to_string())
        }
        (None, Some(_), _, _) => {
            return Err("properties.user: required with properties.password".to_string())
        }
        (None, None, Some(token), None) => Credentials::Token(token),
        (None, None, None, Some(path)) => Credentials::CredsFile(path),
        _ => {
            return Err(
                "properties: give only one of user/password, token or creds_file".to_string(),
            )
        }
    };
    Ok(NatsSource {
        name: String::new(),
        servers,
        subjects,
        queue_group,
        jetstream,
        max_reconnect_attempts,
        reconnect_time_wait,
        credentials,
    })
}

fn non_empty_string(value: &Value, field: &str) -> Result<String, String> {
    match value.as_str() {
        Some(text) if !text.trim().is_empty() => Ok(text.to_string()),
        _ => Err(format!("{field}: must be a non-empty string")),
    }
}

/// The servers, and the credentials their URLs carry (`nats://user:pass@host`,
/// `nats://token@host`). async-nats ignores a URL's userinfo and would log the URL with it, so
/// the servers are kept without it and the credentials go to the connection options; every
/// URL must then carry the same ones. Errors show URLs with their credentials redacted.
fn parse_servers(value: Option<&Value>) -> Result<(Vec<ServerAddr>, Option<Credentials>), String> {
    let urls: Vec<&Value> = match value {
        None | Some(Value::Null) => {
            return Err("properties.servers: required (e.g. \"nats://127.0.0.1:4222\")".to_string())
        }
        Some(Value::Array(items)) if items.is_empty() => {
            return Err("properties.servers: must list at least one server".to_string())
        }
        Some(Value::Array(items)) => items.iter().collect(),
        Some(other) => vec![other],
    };
    let mut servers = Vec::with_capacity(urls.len());
    let mut userinfo: Option<Option<String>> = None;
    for (i, url) in urls.into_iter().enumerate() {
        let field = if value.is_some_and(Value::is_array) {
            format!("properties.servers[{i}]")
        } else {
            "properties.servers".to_string()
        };
        let url = url
            .as_str()
            .ok_or_else(|| format!("{field}: must be a string like nats://host:port"))?;
        let (bare, info) = split_userinfo(url);
        let server = parse_server(&bare)
            .map_err(|why| format!("{field}: `{}` {}", redact_text(url), redact_text(&why)))?;
        match &userinfo {
            Some(first) if *first != info => {
                return Err(format!(
                    "{field}: every server must carry the same credentials (or none)"
                ))
            }
            _ => userinfo = Some(info),
        }
        servers.push(server);
    }
    let credentials = userinfo.flatten().map(|info| {
        let decode = |text: &str| percent_decode_str(text).decode_utf8_lossy().into_owned();
        match info.split_once(':') {
            Some((user, password)) => Credentials::UserPassword(decode(user), decode(password)),
            None => Credentials::Token(decode(&info)),
        }
    });
    Ok((servers, credentials))
}

/// `url` without its userinfo, and the userinfo if it has one.
fn split_userinfo(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    let authority = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority].rfind('@') {
        Some(at) if at > 0 => (
            format!("{scheme}://{}", &rest[at + 1..]),
            Some(rest[..at].to_string()),
        ),
        Some(at) => (format!("{scheme}://{}", &rest[at + 1..]), None),
        None => (url.to_string(), None),
    }
}

fn parse_server(url: &str) -> Result<ServerAddr, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("is not a URL like nats://host:port".to_string());
    };
    if !matches!(scheme, "nats" | "tls" | "ws" | "wss") {
        return Err(format!(
            "has scheme `{scheme}`; expected nats://, tls://, ws:// or wss://"
        ));
    }
    let authority = rest.rsplit('@').next().unwrap_or(rest);
    let authority = authority.split('/').next().unwrap_or(authority);
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (host, Some(port)),
        _ => (authority, None),
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace()) {
        return Err("has no host".to_string());
    }
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("has an invalid port `{port}`"));
        }
    }
    url.parse::<ServerAddr>()
        .map_err(|e| format!("is invalid: {e}"))
}

fn parse_subjects(value: Option<&Value>) -> Result<Vec<String>, String> {
    let items = match value {
        None | Some(Value::Null) => {
            return Err("properties.subjects: required (array of subjects)".to_string())
        }
        Some(Value::Array(items)) => items,
        Some(_) => return Err("properties.subjects: must be an array of subjects".to_string()),
    };
    if items.is_empty() {
        return Err("properties.subjects: must list at least one subject".to_string());
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = format!("properties.subjects[{i}]");
            let subject = item
                .as_str()
                .ok_or_else(|| format!("{field}: must be a string"))?;
            if !valid_subject(subject) {
                return Err(format!(
                    "{field}: `{subject}` is not a valid subject (tokens separated by `.`, \
                     `*` for one token, `>` only last)"
                ));
            }
            Ok(subject.to_string())
        })
        .collect()
}

/// The routes' upstream as the subjects: each must be a valid subject.
fn routes_upstream(upstream: &[String]) -> Result<Vec<String>, String> {
    match upstream.iter().find(|subject| !valid_subject(subject)) {
        None => Ok(upstream.to_vec()),
        Some(subject) => Err(format!(
            "properties.subjects: not given, and the routes' upstream `{subject}` is not a valid \
             subject (tokens separated by `.`, `*` for one token, `>` only last)"
        )),
    }
}

fn valid_subject(subject: &str) -> bool {
    let tokens: Vec<&str> = subject.split('.').collect();
    tokens.iter().enumerate().all(|(i, token)| {
        !token.is_empty()
            && !token.contains(|c: char| c.is_whitespace())
            && (*token == ">" && i == tokens.len() - 1 || !token.contains('>'))
            && (*token == "*" || !token.contains('*'))
    })
}

fn parse_jetstream(value: &Value) -> Result<JetStreamSettings, String> {
    let Some(object) = value.as_object() else {
        return Err("properties.jetstream: must be an object with `stream`".to_string());
    };
    const FIELDS: &[&str] = &["stream", "durable", "deliver", "ack_wait_ms"];
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "properties.jetstream.{unknown}: unknown field (known: {})",
            FIELDS.join(", ")
        ));
    }
    let name_field = |key: &str, default: Option<&str>| -> Result<String, String> {
        let field = format!("properties.jetstream.{key}");
        let name = match object.get(key) {
            None if default.is_some() => return Ok(default.unwrap_or_default().to_string()),
            None => return Err(format!("{field}: required")),
            Some(value) => non_empty_string(value, &field)?,
        };
        if name.contains(['.', '*', '>', ' ', '\t', '/', '\\']) {
            return Err(format!(
                "{field}: `{name}` must not contain `.`, `*`, `>`, `/`, `\\` or spaces"
            ));
        }
        Ok(name)
    };
    let stream = name_field("stream", None)?;
    let durable = name_field("durable", Some("wsgate"))?;
    let deliver = match object.get("deliver") {
        None => Deliver::All,
        Some(value) => match value.as_str() {
            Some("all") => Deliver::All,
            Some("new") => Deliver::New,
            _ => return Err("properties.jetstream.deliver: must be \"all\" or \"new\"".to_string()),
        },
    };
    let ack_wait = match object.get("ack_wait_ms") {
        None => Duration::from_millis(30_000),
        Some(value) => match value.as_u64() {
            Some(ms) if ms > 0 => Duration::from_millis(ms),
            _ => {
                return Err(
                    "properties.jetstream.ack_wait_ms: must be a positive integer (ms)".to_string(),
                )
            }
        },
    };
    Ok(JetStreamSettings {
        stream,
        durable,
        deliver,
        ack_wait,
    })
}
