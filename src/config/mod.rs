//! Dynamic configuration: the data model, templates, validation and the stores that hold it.
//!
//! Every other module reads config; this module depends on none of them.

mod model;
pub mod secrets;
pub mod store;
mod template;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub use model::{
    split_namespace, stream_kind, strip_namespace, Auth, Datasource, DatasourceKind, GatewayConfig,
    Mapping, Overflow, Route, TopicConfig,
};
pub use template::{Template, TemplateError};
pub use validate::{
    is_region_name, is_stream_name, is_subject, validate, ConfigError, MAX_STREAM_NAME,
};

/// A validated config, with its topic templates expanded into concrete stream names.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The config as stored.
    pub config: GatewayConfig,
    /// Every stream clients may subscribe to.
    pub streams: Arc<BTreeMap<Arc<str>, StreamSpec>>,
}

/// What the config says about one concrete stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSpec {
    /// Index of the topic entry that declares the stream.
    pub topic_index: usize,
    /// Who may subscribe.
    pub auth: Auth,
    /// Outbound messages per second per connection.
    pub rate: Option<u32>,
    /// Outbound burst per connection.
    pub burst: Option<u32>,
    /// What happens to a message a connection cannot take now.
    pub overflow: Overflow,
}

/// A mapping's reference to a mapper: `name` (the promoted version) or `name@N` (pinned).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MapperRef {
    /// Mapper name.
    pub name: String,
    /// Pinned version, if any.
    pub version: Option<u32>,
}

impl MapperRef {
    /// Parses `name` or `name@N`; names are `[A-Za-z0-9_-]{1,64}`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, version) = match text.split_once('@') {
            Some((name, v)) => {
                let version = v.parse::<u32>().ok().filter(|v| *v > 0).ok_or_else(|| {
                    format!("`{text}`: version after `@` must be a positive integer")
                })?;
                (name, Some(version))
            }
            None => (text, None),
        };
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(format!(
                "`{text}`: mapper names are 1-64 letters, digits, `_` or `-`"
            ));
        }
        Ok(MapperRef {
            name: name.to_string(),
            version,
        })
    }
}

impl fmt::Display for MapperRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(v) => write!(f, "{}@{v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapper_refs_parse() {
        assert_eq!(
            MapperRef::parse("trade_v1").unwrap(),
            MapperRef {
                name: "trade_v1".into(),
                version: None
            }
        );
        assert_eq!(MapperRef::parse("depth@3").unwrap().version, Some(3));
        assert!(MapperRef::parse("depth@0").is_err());
        assert!(MapperRef::parse("depth@x").is_err());
        assert!(MapperRef::parse("").is_err());
        assert!(MapperRef::parse("a b").is_err());
    }

    #[test]
    fn shipped_gateway_config_parses() {
        let text = include_str!("../../config/gateway.json");
        let config = GatewayConfig::from_json(text).expect("config/gateway.json parses");
        let snapshot = validate(config, &|_| true).expect("config/gateway.json validates");
        assert!(snapshot.streams.contains_key("btcusdt@trade"));
        assert!(snapshot.streams.contains_key("xrpusdt@depth20@100ms"));
    }
}
