//! Config changes: per-entry versions, diffs, validation against the mapper registry, apply and
//! rollback through a [`ConfigStore`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::ControlError;
use crate::config::store::{ConfigStore, MapperMeta};
use crate::config::{self, GatewayConfig, MapperRef, Snapshot};
use crate::source::{self, Consumers, Consumption};

/// The kind of a config entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A `datasource[]` entry, keyed by name.
    Datasource,
    /// A `topics[]` entry, keyed by its topic (template).
    Topic,
    /// A `routes[]` entry, keyed by id.
    Route,
}

/// How one entry differs between two configs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryChange {
    /// Entry kind.
    pub kind: EntryKind,
    /// Its key (datasource name, topic, route id).
    pub key: String,
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    /// Stored version before (0 when added).
    pub from_version: u64,
    /// Version after (0 when removed).
    pub to_version: u64,
}

/// Every entry that differs, plus whether the shared `vars` changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConfigDiff {
    /// Changed entries, by kind then key.
    pub entries: Vec<EntryChange>,
    /// True when the top-level `vars` differ.
    pub vars_changed: bool,
}

impl ConfigDiff {
    /// True when the two configs are the same.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && !self.vars_changed
    }
}

/// One entry's identity, its version and its content without the version.
struct Entry {
    kind: EntryKind,
    key: String,
    version: u64,
    content: serde_json::Value,
}

fn entries(config: &GatewayConfig) -> BTreeMap<(EntryKind, String), Entry> {
    fn content<T: Serialize>(entry: &T) -> serde_json::Value {
        let mut value = serde_json::to_value(entry).expect("config entries serialize");
        if let Some(object) = value.as_object_mut() {
            object.remove("version");
        }
        value
    }
    let datasources = config.datasource.iter().map(|d| Entry {
        kind: EntryKind::Datasource,
        key: d.name.clone(),
        version: d.version,
        content: content(d),
    });
    let topics = config.topics.iter().map(|t| Entry {
        kind: EntryKind::Topic,
        key: t.topic.clone(),
        version: t.version,
        content: content(t),
    });
    let routes = config.routes.iter().map(|r| Entry {
        kind: EntryKind::Route,
        key: r.id.clone(),
        version: r.version,
        content: content(r),
    });
    datasources
        .chain(topics)
        .chain(routes)
        .map(|e| ((e.kind, e.key.clone()), e))
        .collect()
}

/// What differs from `old` to `new`, ignoring entry versions.
pub fn diff(old: &GatewayConfig, new: &GatewayConfig) -> ConfigDiff {
    let before = entries(old);
    let after = entries(new);
    let mut changes = Vec::new();
    for (id, entry) in &after {
        match before.get(id) {
            None => changes.push(EntryChange {
                kind: entry.kind,
                key: entry.key.clone(),
                change: "added",
                from_version: 0,
                to_version: entry.version,
            }),
            Some(old) if old.content != entry.content => changes.push(EntryChange {
                kind: entry.kind,
                key: entry.key.clone(),
                change: "changed",
                from_version: old.version,
                to_version: entry.version,
            }),
            Some(_) => {}
        }
    }
    for (id, entry) in &before {
        if !after.contains_key(id) {
            changes.push(EntryChange {
                kind: entry.kind,
                key: entry.key.clone(),
                change: "removed",
                from_version: entry.version,
                to_version: 0,
            });
        }
    }
    changes.sort_by(|a, b| (a.kind, &a.key).cmp(&(b.kind, &b.key)));
    ConfigDiff {
        entries: changes,
        vars_changed: old.vars != new.vars,
    }
}

/// Assigns entry versions for storing `new` over `stored`: an unchanged entry keeps its stored
/// version, a new entry gets 1, and a changed entry must name the version it replaces (its
/// stored version) and gets that plus one. A changed entry naming any other version was
/// written from a stale read and is refused.
pub fn assign_versions(
    stored: &GatewayConfig,
    mut new: GatewayConfig,
) -> Result<GatewayConfig, ControlError> {
    let before = entries(stored);
    let next = |kind: EntryKind, key: &str, at: String, version: &mut u64, now: Entry| {
        match before.get(&(kind, key.to_string())) {
            None => *version = 1,
            Some(old) if old.content == now.content => *version = old.version,
            Some(old) if old.version == *version => *version = old.version + 1,
            Some(old) => {
                return Err(ControlError::Invalid(config::ConfigError {
                    field: format!("{at}.version"),
                    message: format!(
                        "stale: this change replaces version {} but the store holds version {}; \
                         fetch the current config and apply the change again",
                        version, old.version
                    ),
                }))
            }
        }
        Ok(())
    };
    let now = entries(&new);
    let take = |kind: EntryKind, key: &str| {
        let e = &now[&(kind, key.to_string())];
        Entry {
            kind,
            key: e.key.clone(),
            version: e.version,
            content: e.content.clone(),
        }
    };
    for (i, d) in new.datasource.iter_mut().enumerate() {
        let entry = take(EntryKind::Datasource, &d.name);
        next(
            EntryKind::Datasource,
            &d.name,
            format!("datasource[{i}]"),
            &mut d.version,
            entry,
        )?;
    }
    for (i, t) in new.topics.iter_mut().enumerate() {
        let entry = take(EntryKind::Topic, &t.topic);
        next(
            EntryKind::Topic,
            &t.topic,
            format!("topics[{i}]"),
            &mut t.version,
            entry,
        )?;
    }
    for (i, r) in new.routes.iter_mut().enumerate() {
        let entry = take(EntryKind::Route, &r.id);
        next(
            EntryKind::Route,
            &r.id,
            format!("routes[{i}]"),
            &mut r.version,
            entry,
        )?;
    }
    Ok(new)
}

/// Every check a config must pass before it is stored: the schema and references of
/// [`config::validate`], mapper references against `mappers`, and each datasource's own
/// properties.
pub fn check(
    config: GatewayConfig,
    mappers: &BTreeMap<String, MapperMeta>,
) -> Result<Snapshot, ControlError> {
    let exists = |r: &MapperRef| resolve(mappers, r).is_some();
    let snapshot = config::validate(config, &exists).map_err(ControlError::Invalid)?;
    for (i, datasource) in snapshot.config.datasource.iter().enumerate() {
        let consumption = Consumption::of(&snapshot.config, &datasource.name, Consumers::Many);
        source::build(datasource, &consumption).map_err(|e| {
            ControlError::Invalid(config::ConfigError {
                field: format!("datasource[{i}].properties"),
                message: e.to_string(),
            })
        })?;
    }
    Ok(snapshot)
}

/// The version a mapper reference names: pinned, or the promoted one.
pub fn resolve<'a>(
    mappers: &'a BTreeMap<String, MapperMeta>,
    reference: &MapperRef,
) -> Option<&'a crate::config::store::MapperVersionMeta> {
    let meta = mappers.get(&reference.name)?;
    meta.version(reference.version.unwrap_or(meta.promoted))
}

/// What an apply did.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// The new config version (the current one when nothing changed).
    pub version: u64,
    /// What changed.
    pub diff: ConfigDiff,
}

/// Validates `new` and stores it over version `replaces` (`None`: whatever is current).
/// Nothing is stored when validation fails, when an entry is stale, or when nothing changed.
pub async fn apply(
    store: &dyn ConfigStore,
    replaces: Option<u64>,
    new: GatewayConfig,
    who: &str,
    action: &str,
) -> Result<Applied, ControlError> {
    let current = store.current().await?;
    let replaces = replaces.unwrap_or(current.version);
    if replaces != current.version {
        return Err(ControlError::Store(
            crate::config::store::StoreError::Stale {
                expected: replaces,
                actual: current.version,
            },
        ));
    }
    let new = assign_versions(&current.config, new)?;
    let mappers = store.mappers().await?;
    let snapshot = check(new, &mappers)?;
    let diff = diff(&current.config, &snapshot.config);
    if diff.is_empty() {
        return Ok(Applied {
            version: current.version,
            diff,
        });
    }
    let version = store.apply(replaces, snapshot.config, who, action).await?;
    Ok(Applied { version, diff })
}

/// Restores config version `version` as a new version (audited as `config.rollback`).
pub async fn rollback(
    store: &dyn ConfigStore,
    version: u64,
    who: &str,
) -> Result<Applied, ControlError> {
    let Some(old) = store.config_version(version).await? else {
        return Err(ControlError::NotFound(format!("config version {version}")));
    };
    let current = store.current().await?;
    let mappers = store.mappers().await?;
    // The restored content is stored exactly as it was, entry versions included.
    let snapshot = check(old.config, &mappers)?;
    let diff = diff(&current.config, &snapshot.config);
    let version = store
        .apply(current.version, snapshot.config, who, "config.rollback")
        .await?;
    Ok(Applied { version, diff })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> GatewayConfig {
        serde_json::from_value(json).unwrap()
    }

    fn sample(route_version: u64, upstream: &str) -> GatewayConfig {
        config(serde_json::json!({
            "datasource": [{"version": 1, "type": "demo", "name": "demo"}],
            "topics": [{"version": 1, "topic": "btcusdt@trade"}],
            "routes": [{"id": "trades", "version": route_version, "data_source": "demo",
                        "upstream": [upstream],
                        "mappings": [{"mapper": "m", "fanout_topic": "t", "ws_topic": "btcusdt@trade"}]}]
        }))
    }

    #[test]
    fn diff_names_changed_entries_only() {
        let d = diff(&sample(1, "a"), &sample(1, "b"));
        assert_eq!(d.entries.len(), 1);
        assert_eq!(d.entries[0].kind, EntryKind::Route);
        assert_eq!(d.entries[0].change, "changed");
        assert!(diff(&sample(1, "a"), &sample(7, "a")).is_empty());
    }

    #[test]
    fn changed_entries_get_the_next_version_and_stale_ones_are_refused() {
        let stored = sample(3, "a");
        let next = assign_versions(&stored, sample(3, "b")).unwrap();
        assert_eq!(next.routes[0].version, 4);
        let same = assign_versions(&stored, sample(9, "a")).unwrap();
        assert_eq!(same.routes[0].version, 3);
        let err = assign_versions(&stored, sample(2, "b")).unwrap_err();
        assert!(err.to_string().contains("routes[0].version"), "{err}");
    }
}
