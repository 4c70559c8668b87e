//! What a store that lost its data needs to be written back: the health a store reports, and
//! the image of the state a node runs.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{MapperMeta, Versioned};

/// Whether the config store can be used, as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreHealth {
    /// It answers and holds a config.
    Serving,
    /// It answers but holds no config: a Redis restarted without its data, or failed over to
    /// an empty replica.
    Empty,
    /// It does not answer; why.
    Unreachable(String),
}

/// The store's state as a node last loaded it: what an emptied store is restored from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreImage {
    /// The store revision it was read at.
    pub revision: u64,
    /// Config versions the node has seen, oldest first; the last is the one it runs.
    pub configs: Vec<Versioned>,
    /// The mapper registry.
    pub mappers: BTreeMap<String, MapperMeta>,
    /// Module bytes the node holds, by SHA-256 (hex).
    pub modules: BTreeMap<String, Bytes>,
}

impl StoreImage {
    /// The config version the node runs.
    pub fn current(&self) -> Option<&Versioned> {
        self.configs.last()
    }

    /// Registry versions (`name@version`) whose module the image does not hold.
    pub fn missing_modules(&self) -> Vec<String> {
        self.mappers
            .values()
            .flat_map(|meta| {
                meta.versions
                    .iter()
                    .filter(|v| !self.modules.contains_key(&v.hash))
                    .map(move |v| format!("{}@{}", meta.name, v.version))
            })
            .collect()
    }

    /// Config versions before the current one that the image does not hold.
    pub fn missing_config_versions(&self) -> u64 {
        let held = self.configs.len() as u64;
        self.current()
            .map_or(0, |current| current.version.saturating_sub(held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::store::MapperVersionMeta;
    use crate::config::GatewayConfig;

    fn version(version: u64) -> Versioned {
        let config = GatewayConfig::from_json(r#"{"datasource":[],"topics":[],"routes":[]}"#)
            .expect("an empty config");
        Versioned { version, config }
    }

    fn mapper(name: &str, hashes: &[&str]) -> MapperMeta {
        let versions = hashes
            .iter()
            .enumerate()
            .map(|(i, hash)| MapperVersionMeta {
                version: i as u32 + 1,
                hash: hash.to_string(),
                size: 1,
                uploader: "test".into(),
                uploaded_at_ms: 0,
                world: String::new(),
                notes: String::new(),
                manifest: Default::default(),
            })
            .collect();
        MapperMeta {
            name: name.into(),
            versions,
            promoted: hashes.len() as u32,
            revision: 1,
        }
    }

    #[test]
    fn an_image_says_what_it_cannot_bring_back() {
        let image = StoreImage {
            revision: 9,
            // Versions 1, 3 and 5 were never loaded by this node.
            configs: vec![version(2), version(4), version(6)],
            mappers: [
                ("a", mapper("a", &["h1", "h2", "h3"])),
                ("b", mapper("b", &["h4"])),
            ]
            .into_iter()
            .map(|(name, meta)| (name.to_string(), meta))
            .collect(),
            modules: [("h2", "x"), ("h3", "y"), ("h4", "z")]
                .into_iter()
                .map(|(hash, bytes)| (hash.to_string(), Bytes::from(bytes)))
                .collect(),
        };
        assert_eq!(image.current().map(|c| c.version), Some(6));
        assert_eq!(image.missing_config_versions(), 3);
        assert_eq!(image.missing_modules(), ["a@1"]);
        assert_eq!(StoreImage::default().missing_config_versions(), 0);
    }
}
