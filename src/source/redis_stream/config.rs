//! Parsing and validation of the `redis_stream` datasource's properties.

use redis::Client;
use serde_json::Value as Json;

use crate::config::Datasource;
use crate::source::SourceError;

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

fn config_error(name: &str, property: &str, message: impl std::fmt::Display) -> SourceError {
    SourceError::Config {
        name: name.to_string(),
        message: format!("properties.{property}: {message}"),
    }
}

impl RedisStreamConfig {
    /// Parses and validates a datasource's properties.
    pub fn from_datasource(datasource: &Datasource) -> Result<Self, SourceError> {
        let name = datasource.name.as_str();
        let props = &datasource.properties;
        if let Some(key) = props.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(config_error(name, key, "unknown property"));
        }
        let url = match props.get("url") {
            None => return Err(config_error(name, "url", "required")),
            Some(Json::String(url)) => url.clone(),
            Some(_) => return Err(config_error(name, "url", "must be a string")),
        };
        if !(url.starts_with("redis://") || url.starts_with("redis+unix://")) {
            return Err(config_error(
                name,
                "url",
                format!("`{url}` must start with redis:// or redis+unix://"),
            ));
        }
        if let Err(e) = Client::open(url.as_str()) {
            return Err(config_error(name, "url", format!("`{url}`: {e}")));
        }
        let streams = match props.get("streams") {
            None => {
                return Err(config_error(
                    name,
                    "streams",
                    "required (the stream keys to read)",
                ))
            }
            Some(Json::Array(items)) if !items.is_empty() => {
                let mut streams = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(key) if !key.is_empty() => {
                            if streams.iter().any(|s| s == key) {
                                return Err(config_error(
                                    name,
                                    &format!("streams[{i}]"),
                                    format!("`{key}` is listed twice"),
                                ));
                            }
                            streams.push(key.to_string());
                        }
                        _ => {
                            return Err(config_error(
                                name,
                                &format!("streams[{i}]"),
                                "must be a non-empty string",
                            ))
                        }
                    }
                }
                streams
            }
            Some(_) => {
                return Err(config_error(
                    name,
                    "streams",
                    "must be a non-empty array of stream keys",
                ))
            }
        };
        let text = |property: &str, default: String| -> Result<String, SourceError> {
            match props.get(property) {
                None => Ok(default),
                Some(Json::String(s)) if !s.is_empty() && !s.chars().any(char::is_whitespace) => {
                    Ok(s.clone())
                }
                Some(_) => Err(config_error(
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
                _ => Err(config_error(
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
            Some(_) => return Err(config_error(name, "start", "must be \"0\" or \"$\"")),
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
