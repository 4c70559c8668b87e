//! What in a config is secret, and how it is shown. Secrets are stored as given (the nodes use
//! them) and redacted on the way out: admin API answers, diffs, audit entries, errors and logs.
//!
//! Secret are, in `datasource[].properties` and `routes[].mappings[].params` (at any depth):
//! - the value of every key named like a credential ([`is_secret_name`]): `password`,
//!   `sasl.password`, `ssl.key.password`, `token`, `api_key`, `clientSecret`, ...;
//! - in every string, the userinfo of a URL and its query parameters named like credentials:
//!   `redis://user:pw@host` shows as `redis://user:***@host`, `nats://tok@host` as
//!   `nats://***@host`, `...?password=pw` as `...?password=***`.
//!
//! The same URL rule applies to any text ([`redact_text`]): error messages and log lines that may
//! carry a URL. A [`Scrubber`] also knows the literal secret values of a config and removes them
//! from texts that could echo them (a broker's or a parser's error).
//!
//! A config read back from the API carries [`PLACEHOLDER`] where a secret was: applying it keeps
//! the stored secret at that place ([`restore`]), so `config get`, edit, `config apply` does not
//! replace a broker password with `***`.

use std::borrow::Cow;
use std::ops::Range;

use serde_json::{Map, Value};

use super::{ConfigError, GatewayConfig};

/// What a redacted secret shows instead of its value.
pub const PLACEHOLDER: &str = "***";

/// Literal secrets shorter than this are not searched for in free text (they would garble it);
/// they are still redacted where the config holds them.
const MIN_SCRUB_LEN: usize = 4;

/// Last words of a secret property's name.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "pwd",
    "passphrase",
    "secret",
    "secrets",
    "token",
    "credential",
    "credentials",
    "creds",
    "apikey",
    "privatekey",
    "secretkey",
    "accesskey",
    "auth",
];

/// Last two words of a secret property's name.
const SECRET_PAIRS: &[(&str, &str)] = &[
    ("api", "key"),
    ("private", "key"),
    ("secret", "key"),
    ("access", "key"),
    ("signing", "key"),
    ("encryption", "key"),
    ("master", "key"),
    ("session", "key"),
    // librdkafka's `ssl.key.pem`: the private key itself.
    ("key", "pem"),
    ("jaas", "config"),
];

/// The words of a property name: split at anything but letters and digits and at camelCase
/// humps, lowercased (`sasl.password` → `sasl`, `password`; `apiKey` → `api`, `key`).
fn words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut after_lower = false;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            after_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && after_lower && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        word.push(c.to_ascii_lowercase());
        after_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// True when a property named `name` holds a credential: its last word is one of `password`,
/// `passwd`, `pass`, `pwd`, `passphrase`, `secret(s)`, `token`, `credential(s)`, `creds`,
/// `apikey`, `privatekey`, `secretkey`, `accesskey`, `auth`, or its last two are `api key`,
/// `private key`, `secret key`, `access key`, `signing key`, `encryption key`, `master key`,
/// `session key`, `key pem`, `jaas config`. Only the end of the name counts: `max_tokens`,
/// `token_bucket_size`, `password_min_length` and `creds_file` (a path) are not secret.
pub fn is_secret_name(name: &str) -> bool {
    let words = words(name);
    let Some(last) = words.last() else {
        return false;
    };
    if SECRET_WORDS.contains(&last.as_str()) {
        return true;
    }
    match words.len().checked_sub(2).map(|i| &words[i]) {
        Some(before) => SECRET_PAIRS.iter().any(|(a, b)| before == a && last == b),
        None => false,
    }
}

/// Where a URL in `text` ends: at white space, a quote or an angle bracket.
fn url_end(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>')
}

/// The byte ranges of `text` that are secret: each URL's password (or its whole userinfo when
/// it has no `:`, a token) and the values of its query parameters named like credentials.
/// Sorted and disjoint; empty ranges are left out.
fn secret_spans(text: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let start = from + found + 3;
        let mut end = text[start..]
            .find(url_end)
            .map_or(text.len(), |e| start + e);
        // Another URL in the same word (`nats://a@h1,nats://b@h2`) starts where its scheme does.
        if let Some(next) = text[start..end].find("://") {
            let scheme = text[start..start + next]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
                .map_or(0, |p| p + 1);
            end = start + scheme;
        }
        let token = &text[start..end];
        let query = token.find(['?', '#']).unwrap_or(token.len());
        if let Some(at) = token[..query].rfind('@') {
            let secret = match token[..at].find(':') {
                Some(colon) => start + colon + 1..start + at,
                None => start..start + at,
            };
            if !secret.is_empty() {
                spans.push(secret);
            }
        }
        if token[query..].starts_with('?') {
            let first = start + query + 1;
            let last = token[query + 1..].find('#').map_or(end, |h| first + h);
            let mut pos = first;
            for pair in text[first..last].split('&') {
                if let Some(eq) = pair.find('=') {
                    if is_secret_name(&pair[..eq]) && eq + 1 < pair.len() {
                        spans.push(pos + eq + 1..pos + pair.len());
                    }
                }
                pos += pair.len() + 1;
            }
        }
        from = end.max(start);
    }
    spans
}

/// `text` with the credentials of every URL in it replaced by [`PLACEHOLDER`]:
/// `redis://user:pw@host` → `redis://user:***@host`, `nats://token@host` → `nats://***@host`,
/// `...?password=pw` → `...?password=***`. For error messages and log lines that may carry a
/// URL; borrowed when there is nothing to hide.
pub fn redact_text(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let spans = secret_spans(text);
    if spans.iter().all(|s| &text[s.clone()] == PLACEHOLDER) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for span in spans {
        out.push_str(&text[pos..span.start]);
        out.push_str(PLACEHOLDER);
        pos = span.end;
    }
    out.push_str(&text[pos..]);
    Cow::Owned(out)
}

/// True when `text` holds a URL whose credentials are the placeholder redaction left.
fn has_url_placeholder(text: &str) -> bool {
    secret_spans(text)
        .into_iter()
        .any(|s| &text[s] == PLACEHOLDER)
}

/// The value a secret-named key shows: the placeholder, except for nothing to hide (`null`,
/// booleans, the empty string).
fn redacted_secret(value: &Value) -> Value {
    match value {
        Value::Null | Value::Bool(_) => value.clone(),
        Value::String(s) if s.is_empty() => value.clone(),
        _ => Value::String(PLACEHOLDER.to_string()),
    }
}

/// Redacts a tree of properties in place: values of keys named like credentials, and URL
/// credentials in every string.
pub fn redact_tree(value: &mut Value) {
    match value {
        Value::Object(map) => redact_map(map),
        Value::Array(items) => items.iter_mut().for_each(redact_tree),
        Value::String(text) => {
            if let Cow::Owned(redacted) = redact_text(text) {
                *text = redacted;
            }
        }
        _ => {}
    }
}

fn redact_map(map: &mut Map<String, Value>) {
    for (key, value) in map.iter_mut() {
        if is_secret_name(key) {
            *value = redacted_secret(value);
        } else {
            redact_tree(value);
        }
    }
}

/// The places of a config (in its JSON form) that may hold secrets: each datasource's
/// `properties` and each mapping's `params`.
fn secret_zones(config: &mut Value) -> Vec<&mut Value> {
    let mut zones = Vec::new();
    let Some(object) = config.as_object_mut() else {
        return zones;
    };
    for (field, value) in object.iter_mut() {
        let Some(items) = value.as_array_mut() else {
            continue;
        };
        match field.as_str() {
            "datasource" => zones.extend(items.iter_mut().filter_map(|d| d.get_mut("properties"))),
            "routes" => {
                for route in items {
                    let Some(mappings) = route.get_mut("mappings").and_then(Value::as_array_mut)
                    else {
                        continue;
                    };
                    zones.extend(mappings.iter_mut().filter_map(|m| m.get_mut("params")));
                }
            }
            _ => {}
        }
    }
    zones
}

/// Redacts a config in its JSON form (a serialized [`GatewayConfig`], an audit entry's
/// `before`/`after`); anything else is left as it is.
pub fn redact_config_json(config: &mut Value) {
    for zone in secret_zones(config) {
        redact_tree(zone);
    }
}

/// A copy of `config` with its secrets redacted, for showing.
pub fn redact_config(config: &GatewayConfig) -> GatewayConfig {
    let mut shown = config.clone();
    for datasource in &mut shown.datasource {
        redact_map(&mut datasource.properties);
    }
    for mapping in shown.routes.iter_mut().flat_map(|r| r.mappings.iter_mut()) {
        for (key, value) in mapping.params.iter_mut() {
            if is_secret_name(key) {
                if !value.is_empty() {
                    *value = PLACEHOLDER.to_string();
                }
            } else if let Cow::Owned(redacted) = redact_text(value) {
                *value = redacted;
            }
        }
    }
    shown
}

/// The literal secret values of a config, to remove from texts that may echo them.
#[derive(Debug, Clone, Default)]
pub struct Scrubber {
    /// Longest first, so that a secret containing another is replaced whole.
    literals: Vec<String>,
}

impl Scrubber {
    /// The secrets of `config`.
    pub fn of_config(config: &GatewayConfig) -> Self {
        Self::of_config_json(&serde_json::to_value(config).unwrap_or(Value::Null))
    }

    /// The secrets of a config in its JSON form (possibly one that does not parse as a config).
    pub fn of_config_json(config: &Value) -> Self {
        let mut config = config.clone();
        let mut scrubber = Scrubber::default();
        for zone in secret_zones(&mut config) {
            scrubber.collect(zone, false);
        }
        scrubber.sort();
        scrubber
    }

    /// The secrets in a tree of properties.
    pub fn of_tree(tree: &Value) -> Self {
        let mut scrubber = Scrubber::default();
        scrubber.collect(tree, false);
        scrubber.sort();
        scrubber
    }

    /// Adds the secrets `other` knows.
    pub fn extend(&mut self, other: Scrubber) {
        self.literals.extend(other.literals);
        self.sort();
    }

    fn sort(&mut self) {
        self.literals
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        self.literals.dedup();
    }

    fn add(&mut self, literal: &str) {
        if literal.len() >= MIN_SCRUB_LEN && literal != PLACEHOLDER {
            self.literals.push(literal.to_string());
            // A URL's credentials may appear decoded elsewhere (`p%40ss` is `p@ss` to a client).
            if let Ok(decoded) = percent_encoding::percent_decode_str(literal).decode_utf8() {
                if decoded != literal && decoded.len() >= MIN_SCRUB_LEN {
                    self.literals.push(decoded.into_owned());
                }
            }
        }
    }

    fn collect(&mut self, value: &Value, secret: bool) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    self.collect(value, secret || is_secret_name(key));
                }
            }
            Value::Array(items) => items.iter().for_each(|v| self.collect(v, secret)),
            Value::String(text) => {
                if secret {
                    self.add(text);
                }
                for span in secret_spans(text) {
                    self.add(&text[span]);
                }
            }
            Value::Number(n) if secret => self.add(&n.to_string()),
            _ => {}
        }
    }

    /// `text` without any of the known secrets, nor URL credentials.
    pub fn scrub(&self, text: &str) -> String {
        let mut text = Cow::Borrowed(text);
        for literal in &self.literals {
            if text.contains(literal.as_str()) {
                text = Cow::Owned(text.replace(literal.as_str(), PLACEHOLDER));
            }
        }
        redact_text(&text).into_owned()
    }

    /// Scrubs every string in `value`, in place.
    pub fn scrub_json(&self, value: &mut Value) {
        match value {
            Value::String(text) => *text = self.scrub(text),
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_json(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.scrub_json(v)),
            _ => {}
        }
    }
}

/// Puts the stored secrets back where `incoming` carries the placeholders that redaction left,
/// so that a config read from the API can be edited and applied again. A placeholder is
/// replaced by the value stored at the same place (datasource by name, route by id, mapping by
/// position, then property path) when that value shows as the placeholder does; a placeholder
/// with no such stored value (a new or renamed datasource, a changed URL) is refused, naming
/// the field: the secret itself must be given there.
pub fn restore(incoming: &mut GatewayConfig, stored: &GatewayConfig) -> Result<(), ConfigError> {
    for (i, datasource) in incoming.datasource.iter_mut().enumerate() {
        let before = stored.datasource(&datasource.name).map(|d| &d.properties);
        for (key, value) in datasource.properties.iter_mut() {
            restore_value(
                value,
                before.and_then(|p| p.get(key)),
                is_secret_name(key),
                &format!("datasource[{i}].properties.{key}"),
            )?;
        }
    }
    for (i, route) in incoming.routes.iter_mut().enumerate() {
        let before = stored.routes.iter().find(|r| r.id == route.id);
        for (j, mapping) in route.mappings.iter_mut().enumerate() {
            let params = before.and_then(|r| r.mappings.get(j)).map(|m| &m.params);
            for (key, value) in mapping.params.iter_mut() {
                let mut json = Value::String(std::mem::take(value));
                let old = params.and_then(|p| p.get(key)).cloned().map(Value::String);
                let result = restore_value(
                    &mut json,
                    old.as_ref(),
                    is_secret_name(key),
                    &format!("routes[{i}].mappings[{j}].params.{key}"),
                );
                if let Value::String(text) = json {
                    *value = text;
                }
                result?;
            }
        }
    }
    Ok(())
}

fn restore_value(
    value: &mut Value,
    stored: Option<&Value>,
    secret: bool,
    field: &str,
) -> Result<(), ConfigError> {
    let refused = || ConfigError {
        field: field.to_string(),
        message: format!(
            "holds `{PLACEHOLDER}`, a redacted secret, but the stored config has no secret here \
             to keep (a new or renamed entry, or another URL); give the secret itself"
        ),
    };
    if secret && value.as_str() == Some(PLACEHOLDER) {
        return match stored {
            Some(old) if redacted_secret(old) == *value => {
                *value = old.clone();
                Ok(())
            }
            _ => Err(refused()),
        };
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                let old = stored.and_then(|s| s.get(key));
                restore_value(child, old, is_secret_name(key), &format!("{field}.{key}"))?;
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                let old = stored.and_then(|s| s.get(i));
                restore_value(child, old, false, &format!("{field}[{i}]"))?;
            }
        }
        Value::String(text) if has_url_placeholder(text) => match stored {
            Some(Value::String(old)) if redact_text(old) == text.as_str() => {
                *text = old.clone();
            }
            _ => return Err(refused()),
        },
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_like_credentials_are_secret_and_others_are_not() {
        for name in [
            "password",
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "ssl.key.pem",
            "sasl.oauthbearer.client.secret",
            "sasl.jaas.config",
            "token",
            "access_token",
            "auth",
            "basic_auth",
            "api_key",
            "apikey",
            "apiKey",
            "APIKey",
            "private_key",
            "privateKey",
            "clientSecret",
            "secret_access_key",
            "SSLKeyPassword",
            "passwd",
            "pass",
            "credentials",
        ] {
            assert!(is_secret_name(name), "{name} should be secret");
        }
        for name in [
            "max_tokens",
            "tokens_per_sec",
            "token_bucket_size",
            "password_min_length",
            "creds_file",
            "ssl.key.location",
            "user",
            "sasl.username",
            "servers",
            "bootstrap.servers",
            "passive",
            "bypass",
            "key",
            "group.id",
            "queue_group",
            "auth_mode",
            "",
        ] {
            assert!(!is_secret_name(name), "{name} should not be secret");
        }
    }

    #[test]
    fn url_credentials_are_redacted_in_any_text() {
        let cases = [
            (
                "redis://user:pw@host:6379/0",
                "redis://user:***@host:6379/0",
            ),
            ("redis://:pw@host", "redis://:***@host"),
            ("nats://s3cret@127.0.0.1:4222", "nats://***@127.0.0.1:4222"),
            (
                "error: `nats://u:p%40ss@h:1` is invalid",
                "error: `nats://u:***@h:1` is invalid",
            ),
            (
                "nats://a@h1:1,nats://u:b@h2:2 down",
                "nats://***@h1:1,nats://u:***@h2:2 down",
            ),
            ("redis://u:p@ss@host", "redis://u:***@host"),
            (
                "https://host/x?user=a&password=pw&x=1#f",
                "https://host/x?user=a&password=***&x=1#f",
            ),
            ("[\"nats://u:pw@h\"]", "[\"nats://u:***@h\"]"),
            ("redis://host:6379", "redis://host:6379"),
            (
                "redis+unix:///tmp/redis.sock",
                "redis+unix:///tmp/redis.sock",
            ),
            ("no url here", "no url here"),
        ];
        for (text, shown) in cases {
            assert_eq!(redact_text(text), shown, "{text}");
            // Redacting twice changes nothing more.
            assert_eq!(redact_text(shown), shown, "{shown}");
        }
        assert!(matches!(redact_text("redis://h:1"), Cow::Borrowed(_)));
    }

    fn config(json: Value) -> GatewayConfig {
        serde_json::from_value(json).unwrap()
    }

    fn sample(password: &str, url: &str) -> GatewayConfig {
        config(json!({
            "datasource": [
                {"version": 1, "type": "nats", "name": "md", "properties": {
                    "servers": [url], "user": "wsgate", "password": password,
                    "max_tokens": 7, "jetstream": {"stream": "MD"}}},
                {"version": 1, "type": "redis_stream", "name": "rs",
                 "properties": {"url": "redis://default:redispw1@127.0.0.1:6379"}}
            ],
            "topics": [{"version": 1, "topic": "t", "auth": "public"}],
            "routes": [{"id": "r", "version": 1, "data_source": "md", "upstream": ["a"],
                        "mappings": [{"mapper": "m", "fanout_topic": "f", "ws_topic": "t",
                                      "params": {"api_key": "paramsecret", "mode": "x"}}]}]
        }))
    }

    #[test]
    fn a_config_shows_placeholders_and_keeps_the_rest() {
        let stored = sample("natspw123", "nats://tok123@h:4222");
        let shown = redact_config(&stored);
        let json = serde_json::to_value(&shown).unwrap();
        let props = &json["datasource"][0]["properties"];
        assert_eq!(props["password"], "***");
        assert_eq!(props["user"], "wsgate");
        assert_eq!(props["max_tokens"], 7);
        assert_eq!(props["servers"][0], "nats://***@h:4222");
        assert_eq!(
            json["datasource"][1]["properties"]["url"],
            "redis://default:***@127.0.0.1:6379"
        );
        assert_eq!(json["routes"][0]["mappings"][0]["params"]["api_key"], "***");
        assert_eq!(json["routes"][0]["mappings"][0]["params"]["mode"], "x");
        // The topic's `auth` is not a property: it stays.
        assert_eq!(json["topics"][0]["auth"], "public");
        let text = json.to_string();
        for secret in ["natspw123", "tok123", "redispw1", "paramsecret"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        // The JSON form redacts the same way.
        let mut raw = serde_json::to_value(&stored).unwrap();
        redact_config_json(&mut raw);
        assert_eq!(raw, json);
    }

    #[test]
    fn placeholders_keep_the_stored_secrets_on_apply() {
        let stored = sample("natspw123", "nats://tok123@h:4222");
        let mut edited = redact_config(&stored);
        edited.datasource[0]
            .properties
            .insert("queue_group".into(), json!("other"));
        restore(&mut edited, &stored).unwrap();
        assert_eq!(edited.datasource[0].properties["password"], "natspw123");
        assert_eq!(
            edited.datasource[0].properties["servers"][0],
            "nats://tok123@h:4222"
        );
        assert_eq!(
            edited.datasource[1].properties["url"],
            "redis://default:redispw1@127.0.0.1:6379"
        );
        assert_eq!(
            edited.routes[0].mappings[0].params["api_key"],
            "paramsecret"
        );
        assert_eq!(edited.datasource[0].properties["queue_group"], "other");

        // A new value is taken as given.
        let mut changed = redact_config(&stored);
        changed.datasource[0]
            .properties
            .insert("password".into(), json!("newpw456"));
        restore(&mut changed, &stored).unwrap();
        assert_eq!(changed.datasource[0].properties["password"], "newpw456");

        // A placeholder where nothing is stored is refused, naming the field.
        let mut renamed = redact_config(&stored);
        renamed.datasource[0].name = "other".into();
        let err = restore(&mut renamed, &stored).unwrap_err();
        assert!(
            err.field.starts_with("datasource[0].properties."),
            "{}",
            err.field
        );
        // A URL whose host changed cannot take the old credentials.
        let mut moved = redact_config(&stored);
        moved.datasource[1]
            .properties
            .insert("url".into(), json!("redis://default:***@elsewhere:6379"));
        let err = restore(&mut moved, &stored).unwrap_err();
        assert_eq!(err.field, "datasource[1].properties.url");
    }

    #[test]
    fn a_scrubber_removes_literal_secrets_from_text() {
        let stored = sample("natspw123", "nats://tok123@h:4222");
        let scrubber = Scrubber::of_config(&stored);
        let text = "auth failed for natspw123 with tok123 and redispw1 and paramsecret, max 7";
        let scrubbed = scrubber.scrub(text);
        assert_eq!(
            scrubbed,
            "auth failed for *** with *** and *** and ***, max 7"
        );
        // Short secrets are not searched for in text.
        let short = Scrubber::of_tree(&json!({"password": "abc"}));
        assert_eq!(short.scrub("abcdef"), "abcdef");
    }
}
