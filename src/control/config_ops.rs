//! Config changes: per-entry versions, diffs, validation against the mapper registry, apply and
//! rollback through a [`ConfigStore`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::ControlError;
use crate::config::store::{ConfigStore, MapperMeta};
use crate::config::{self, secrets, GatewayConfig, MapperRef, Snapshot};
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
    /// What changed inside a changed entry, field by field; secrets never show their values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
}

/// One field that differs inside a changed entry, e.g. `properties.password`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// Path inside the entry: `properties.servers[0]`, `mappings[1].params.token`.
    pub path: String,
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    /// True when only a secret changed: neither value is shown.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    /// The value before, redacted (absent when added, or for a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    /// The value after, redacted (absent when removed, or for a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
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

/// What differs from `old` to `new`, ignoring entry versions. A changed entry lists its
/// changed fields with their values redacted ([`secrets`]); a field where only a secret
/// changed says so without either value.
pub fn diff(old: &GatewayConfig, new: &GatewayConfig) -> ConfigDiff {
    let before = entries(old);
    let after = entries(new);
    let shown_before = entries(&secrets::redact_config(old));
    let shown_after = entries(&secrets::redact_config(new));
    let mut changes = Vec::new();
    for (id, entry) in &after {
        match before.get(id) {
            None => changes.push(EntryChange {
                kind: entry.kind,
                key: entry.key.clone(),
                change: "added",
                from_version: 0,
                to_version: entry.version,
                fields: Vec::new(),
            }),
            Some(old) if old.content != entry.content => {
                let mut fields = Vec::new();
                field_changes(
                    String::new(),
                    Some(&old.content),
                    Some(&entry.content),
                    shown_before.get(id).map(|e| &e.content),
                    shown_after.get(id).map(|e| &e.content),
                    &mut fields,
                );
                changes.push(EntryChange {
                    kind: entry.kind,
                    key: entry.key.clone(),
                    change: "changed",
                    from_version: old.version,
                    to_version: entry.version,
                    fields,
                })
            }
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
                fields: Vec::new(),
            });
        }
    }
    changes.sort_by(|a, b| (a.kind, &a.key).cmp(&(b.kind, &b.key)));
    ConfigDiff {
        entries: changes,
        vars_changed: old.vars != new.vars,
    }
}

/// The fields that differ between `old` and `new` under `path`, compared on the real values and
/// shown with the redacted ones (`shown_*`, the same shape but for secrets).
fn field_changes(
    path: String,
    old: Option<&serde_json::Value>,
    new: Option<&serde_json::Value>,
    shown_old: Option<&serde_json::Value>,
    shown_new: Option<&serde_json::Value>,
    out: &mut Vec<FieldChange>,
) {
    use serde_json::Value;
    if old == new {
        return;
    }
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                field_changes(
                    join(key),
                    a.get(key),
                    b.get(key),
                    shown_old.and_then(|s| s.get(key)),
                    shown_new.and_then(|s| s.get(key)),
                    out,
                );
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) if a.len() == b.len() => {
            for i in 0..a.len() {
                field_changes(
                    format!("{path}[{i}]"),
                    a.get(i),
                    b.get(i),
                    shown_old.and_then(|s| s.get(i)),
                    shown_new.and_then(|s| s.get(i)),
                    out,
                );
            }
        }
        _ => {
            let change = match (old, new) {
                (None, _) => "added",
                (_, None) => "removed",
                _ => "changed",
            };
            // What differs is hidden by redaction: a secret, or a URL's credentials.
            let secret = shown_old == shown_new;
            out.push(FieldChange {
                path,
                change,
                secret,
                before: (!secret).then(|| shown_old.cloned()).flatten(),
                after: (!secret).then(|| shown_new.cloned()).flatten(),
            });
        }
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

/// `new` ready to be checked and stored over `stored`: the stored secrets put back where `new`
/// carries the placeholders of a redacted read ([`secrets::restore`]), then entry versions
/// assigned ([`assign_versions`]).
pub fn prepare(
    stored: &GatewayConfig,
    mut new: GatewayConfig,
) -> Result<GatewayConfig, ControlError> {
    secrets::restore(&mut new, stored).map_err(ControlError::Invalid)?;
    assign_versions(stored, new)
}

/// What applying `new` would change against the current config, without storing anything:
/// the current version and the diff. Fails as [`apply`] would.
pub async fn preview(
    store: &dyn ConfigStore,
    new: GatewayConfig,
) -> Result<(u64, ConfigDiff), ControlError> {
    let current = store.current().await?;
    let mappers = store.mappers().await?;
    let new = prepare(&current.config, new)?;
    let snapshot = check(new, &mappers)?;
    Ok((current.version, diff(&current.config, &snapshot.config)))
}

/// What an apply did.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// The new config version (the current one when nothing changed).
    pub version: u64,
    /// What changed.
    pub diff: ConfigDiff,
}

/// Validates `new` and stores it over version `replaces` (`None`: whatever is current). A
/// placeholder of a redacted secret in `new` keeps the stored secret ([`prepare`]). Nothing is
/// stored when validation fails, when an entry is stale, or when nothing changed.
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
    let new = prepare(&current.config, new)?;
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

    fn nats(password: &str, servers: &str) -> GatewayConfig {
        config(serde_json::json!({
            "datasource": [{"version": 1, "type": "nats", "name": "md", "properties": {
                "servers": [servers], "user": "u", "password": password, "queue_group": "q"}}],
        }))
    }

    #[test]
    fn diff_says_a_secret_changed_without_showing_it() {
        let old = nats("oldpw-1234", "nats://h1:4222");
        let new = nats("newpw-5678", "nats://tok-9999@h2:4222");
        let d = diff(&old, &new);
        assert_eq!(d.entries.len(), 1);
        let fields = &d.entries[0].fields;
        let password = fields
            .iter()
            .find(|f| f.path == "properties.password")
            .unwrap();
        assert!(password.secret && password.before.is_none() && password.after.is_none());
        let server = fields
            .iter()
            .find(|f| f.path == "properties.servers[0]")
            .unwrap();
        assert!(!server.secret);
        assert_eq!(server.before, Some("nats://h1:4222".into()));
        assert_eq!(server.after, Some("nats://***@h2:4222".into()));
        let text = serde_json::to_string(&d).unwrap();
        for secret in ["oldpw-1234", "newpw-5678", "tok-9999"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        // Only a URL's credentials changed: a secret change too.
        let d = diff(
            &nats("pw-12345", "nats://a:one-1111@h:1"),
            &nats("pw-12345", "nats://a:two-2222@h:1"),
        );
        let fields = &d.entries[0].fields;
        assert_eq!(fields.len(), 1, "{fields:?}");
        assert_eq!(fields[0].path, "properties.servers[0]");
        assert!(fields[0].secret);
    }

    #[test]
    fn a_redacted_config_applies_over_the_stored_one_without_change() {
        let stored = nats("stored-pw-1", "nats://tok-2@h:1");
        let read = secrets::redact_config(&stored);
        let prepared = prepare(&stored, read).unwrap();
        assert_eq!(prepared, stored);
        assert!(diff(&stored, &prepared).is_empty());
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
