//! Parsing and validation of the `redis_stream` datasource's properties.

use redis::Client;
use serde_json::Value as Json;

use crate::config::secrets::redact_text;
use crate::config::Datasource;
use crate::source::properties::{name_list, property_error, NameList};
use crate::source::{Consumption, SourceError};

const KNOWN: [&str; 8] = [
    "url",
    "streams",
    "group",
    "consumer",
    "block_ms",
    "batch",
    "claim_idle_ms",
    "start",
];

/// Validated `redis_stream` properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStreamConfig {
    /// Server URL.
    pub url: String,
    /// Stream keys read.
    pub streams: Vec<String>,
    /// Consumer group.
    pub group: String,
    /// This consumer's name in the group.
    pub consumer: String,
    /// How long one read blocks, in ms.
    pub block_ms: u64,
    /// Entries per read.
    pub batch: u64,
    /// Idle time after which other consumers' pending entries are claimed (0: never).
    pub claim_idle_ms: u64,
    /// Start id of a newly created group: `0` or `$`.
    pub start: String,
}

impl RedisStreamConfig {
    /// Parses and validates a datasource's properties for `consumption`.
    pub fn from_datasource(
        datasource: &Datasource,
        consumption: &Consumption,
    ) -> Result<Self, SourceError> {
        let name = datasource.name.as_str();
        let props = &datasource.properties;
        if let Some(key) = props.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(property_error(name, key, "unknown property"));
        }
        let url = match props.get("url") {
            None => return Err(property_error(name, "url", "required")),
            Some(Json::String(url)) => url.clone(),
            Some(_) => return Err(property_error(name, "url", "must be a string")),
        };
        // The URL may carry a password: errors show it redacted.
        let shown = redact_text(&url);
        if !(url.starts_with("redis://") || url.starts_with("redis+unix://")) {
            return Err(property_error(
                name,
                "url",
                format!("`{shown}` must start with redis:// or redis+unix://"),
            ));
        }
        if let Err(e) = Client::open(url.as_str()) {
            return Err(property_error(
                name,
                "url",
                format!("`{shown}`: {}", redact_text(&e.to_string())),
            ));
        }
        let streams = name_list(
            name,
            props,
            &NameList {
                property: "streams",
                holds: "the stream keys to read",
                of: "stream keys",
                valid: |key| !key.is_empty(),
                each_must_be: "must be a non-empty string",
            },
            consumption,
        )?;
        let text = |property: &str, default: String| -> Result<String, SourceError> {
            match props.get(property) {
                None => Ok(default),
                Some(Json::String(s)) if !s.is_empty() && !s.chars().any(char::is_whitespace) => {
                    Ok(s.clone())
                }
                Some(_) => Err(property_error(
                    name,
                    property,
                    "must be a non-empty string without spaces",
                )),
            }
        };
        let integer = |property: &str, default: u64, min: u64, max: u64| match props.get(property) {
            None => Ok(default),
            Some(v) => match v.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(property_error(
                    name,
                    property,
                    format!("must be an integer from {min} to {max}"),
                )),
            },
        };
        let group = text("group", "wsgate".to_string())?;
        let consumer = text("consumer", "wsgate".to_string())?;
        let block_ms = integer("block_ms", 1000, 1, 60_000)?;
        let batch = integer("batch", 500, 1, 100_000)?;
        let claim_idle_ms = integer("claim_idle_ms", 30_000, 0, 86_400_000)?;
        let start = match props.get("start") {
            None => "0".to_string(),
            Some(Json::String(s)) if s == "0" || s == "$" => s.clone(),
            Some(_) => return Err(property_error(name, "start", "must be \"0\" or \"$\"")),
        };
        Ok(RedisStreamConfig {
            url,
            streams,
            group,
            consumer,
            block_ms,
            batch,
            claim_idle_ms,
            start,
        })
    }
}
