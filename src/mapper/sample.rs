//! Sample events in JSON, as mapper authors write them: the input of `wsgate mapper test`, the
//! smoke call a push must pass, and golden tests.
//!
//! A sample file holds one event object or an array of them:
//!
//! ```json
//! [{"source": "demo", "kind": "demo", "channel": "trade.btcusdt", "key": "btcusdt",
//!   "headers": {"content-type": "application/json"}, "timestamp_us": 1700000000000000,
//!   "position": "42", "payload": {"type": "trade", "symbol": "BTCUSDT"}}]
//! ```
//!
//! `payload` is sent as the bytes of its JSON text, or, when it is a JSON string, as the bytes of
//! that string (for non-JSON payloads). Every field but `payload` is optional.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::bindings::{Event, Header, Output, SourceKind};
use super::EventOutcome;

/// One sample event.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleEvent {
    #[serde(default = "default_source")]
    source: String,
    #[serde(default)]
    kind: SampleKind,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    headers: indexmap::IndexMap<String, String>,
    #[serde(default)]
    timestamp_us: i64,
    #[serde(default)]
    position: String,
    payload: Value,
}

fn default_source() -> String {
    "sample".to_string()
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SampleKind {
    #[default]
    Demo,
    Kafka,
    Nats,
    RedisStream,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<SampleEvent>),
    One(Box<SampleEvent>),
}

/// Parses a sample file: one event or an array of events.
pub fn parse_samples(text: &str) -> Result<Vec<Event>, String> {
    let samples = match serde_json::from_str::<OneOrMany>(text) {
        Ok(OneOrMany::Many(events)) => events,
        Ok(OneOrMany::One(event)) => vec![*event],
        Err(e) => return Err(format!("sample events: {e}")),
    };
    if samples.is_empty() {
        return Err("sample events: the file holds no event".to_string());
    }
    Ok(samples.into_iter().map(SampleEvent::into_event).collect())
}

impl SampleEvent {
    fn into_event(self) -> Event {
        let payload = match self.payload {
            Value::String(text) => text.into_bytes(),
            other => other.to_string().into_bytes(),
        };
        Event {
            source: self.source,
            kind: match self.kind {
                SampleKind::Demo => SourceKind::Demo,
                SampleKind::Kafka => SourceKind::Kafka,
                SampleKind::Nats => SourceKind::Nats,
                SampleKind::RedisStream => SourceKind::RedisStream,
            },
            channel: self.channel,
            key: self.key.map(String::into_bytes),
            headers: self
                .headers
                .into_iter()
                .map(|(key, value)| Header {
                    key,
                    value: value.into_bytes(),
                })
                .collect(),
            payload,
            timestamp_us: self.timestamp_us,
            position: self.position,
        }
    }
}

/// One event's result as JSON: `{"outputs": [{"topic_vars", "user_id", "payload"}]}` with each
/// payload parsed, or `{"error": "..."}`.
pub fn outcome_json(outcome: &EventOutcome) -> Value {
    match outcome {
        EventOutcome::Mapped(outputs) => {
            let outputs: Vec<Value> = outputs.iter().map(output_json).collect();
            serde_json::json!({ "outputs": outputs })
        }
        EventOutcome::Failed(failure) => {
            serde_json::json!({ "error": format!("{}: {failure:?}", failure.kind()) })
        }
    }
}

#[derive(Serialize)]
struct OutputJson<'a> {
    topic_vars: indexmap::IndexMap<&'a str, &'a str>,
    user_id: Option<&'a str>,
    payload: Value,
}

fn output_json(output: &Output) -> Value {
    let payload = serde_json::from_str(&output.payload)
        .unwrap_or_else(|_| Value::String(output.payload.clone()));
    serde_json::to_value(OutputJson {
        topic_vars: output
            .topic_vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
        user_id: output.user_id.as_deref(),
        payload,
    })
    .expect("serializable")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_or_many() {
        let one = parse_samples(r#"{"payload": {"a": 1}, "key": "k"}"#).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].payload, br#"{"a":1}"#);
        assert_eq!(one[0].key.as_deref(), Some(&b"k"[..]));
        let many =
            parse_samples(r#"[{"payload": "raw"}, {"payload": 1, "kind": "kafka"}]"#).unwrap();
        assert_eq!(many[0].payload, b"raw");
        assert!(matches!(many[1].kind, SourceKind::Kafka));
    }

    #[test]
    fn bad_samples_say_why() {
        assert!(parse_samples("[]").unwrap_err().contains("no event"));
        assert!(parse_samples(r#"{"key": "k"}"#).is_err());
        assert!(parse_samples("nope").is_err());
    }
}
