//! The bodies of the fuzz targets in `fuzz/` (`docs/fuzzing.md`), kept in the library so the
//! fuzzer and the regression test (`tests/fuzz_regressions.rs`, which replays the committed
//! corpus in `cargo test`) run the very same code.
//!
//! Each target takes arbitrary bytes, must never panic, and asserts what the code under test
//! promises on every input: a frame never exceeds the configured size, a reply is always JSON,
//! an accepted config stays valid after it is stored and read back, an output is published only
//! on a declared stream, and so on.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::auth::listen_keys::looks_like_listen_key;
use crate::bus;
use crate::config::{
    is_stream_name, is_subject, validate, Auth, GatewayConfig, MapperRef, Snapshot, Template,
    MAX_STREAM_NAME,
};
use crate::mapper::bindings::{MapError, Output};
use crate::mapper::{check_outputs, EventOutcome, MapperLimits};
use crate::route::{Misplaced, OutputTargets, Sequences};
use crate::util::MAX_ERROR_TEXT;
use crate::ws::dialect::binance::envelope::Format;
use crate::ws::dialect::binance::{control, looks_like_stream, url};
use crate::ws::dialect::binance_api::request;
use crate::ws::dialect::hashkey;
use crate::ws::frame::{self, ClientFrame, FrameError, FrameReader};

/// A target's body: takes any bytes, panics only on a bug.
pub type Target = fn(&[u8]);

/// Every target: its name (the folder of its corpus) and its body.
pub const TARGETS: &[(&str, Target)] = &[
    ("frame_reader", frame_reader),
    ("control_message", control_message),
    ("connect_url", connect_url),
    ("config_validate", config_validate),
    ("mapper_output", mapper_output),
];

/// Message size limits the frame target picks from (its first input byte).
const FRAME_LIMITS: [usize; 10] = [0, 1, 2, 125, 126, 127, 1024, 65_535, 65_536, 1 << 20];

/// The WebSocket frame reader. The first byte picks the message size limit, the second how the
/// rest is cut into reads; the rest is what the client sends. The messages read must be the
/// same whether the bytes arrive at once or in pieces, and each must respect the limits.
pub fn frame_reader(data: &[u8]) {
    let [limit, chunk, stream @ ..] = data else {
        return;
    };
    let max_message = FRAME_LIMITS[*limit as usize % FRAME_LIMITS.len()];
    let whole = read_frames(max_message, stream, stream.len().max(1));
    let pieces = read_frames(max_message, stream, *chunk as usize % 32 + 1);
    assert_eq!(whole, pieces, "the same bytes read in pieces");
}

/// Every message `bytes` hold when they arrive `chunk` bytes at a time, and the error that ended
/// the connection, if any.
fn read_frames(
    max_message: usize,
    bytes: &[u8],
    chunk: usize,
) -> (Vec<ClientFrame>, Option<FrameError>) {
    let mut reader = FrameReader::new(max_message);
    let mut frames = Vec::new();
    let mut fed = 0;
    for piece in bytes.chunks(chunk) {
        reader.feed(piece);
        fed += piece.len();
        loop {
            match reader.next_frame() {
                Ok(Some(message)) => {
                    check_message(&message, max_message);
                    frames.push(message);
                }
                Ok(None) => break,
                Err(error) => {
                    assert!((1000..=4999).contains(&error.close_code()), "{error:?}");
                    return (frames, Some(error));
                }
            }
        }
        assert!(reader.buffered() <= fed);
        // Buffers grow with the bytes that arrived, never with a length a header declares.
        assert!(
            reader.held_bytes() <= 4 * fed + 64,
            "{} bytes held after {fed} arrived",
            reader.held_bytes()
        );
        reader.release_idle_buffers();
    }
    (frames, None)
}

fn check_message(message: &ClientFrame, max_message: usize) {
    match message {
        ClientFrame::Text(text) => {
            assert!(text.len() <= max_message);
            assert!(std::str::from_utf8(text).is_ok());
        }
        ClientFrame::Binary(data) => assert!(data.len() <= max_message),
        ClientFrame::Ping(payload) | ClientFrame::Pong(payload) => assert!(payload.len() <= 125),
        ClientFrame::Close(None) => {}
        ClientFrame::Close(Some((code, reason))) => {
            assert!(frame::is_valid_close_code(*code), "close code {code}");
            assert!(reason.len() <= 123);
            // The server's answer to it is a valid control frame too.
            assert!(frame::close(*code, reason).len() <= 2 + 125);
        }
    }
}

/// The control messages of the dialects: a market-stream connection's `SUBSCRIBE`…, a
/// WebSocket API request, and a HashKey `sub`/`cancel` or JSON ping. Every answer is JSON and
/// echoes the id as JSON.
pub fn control_message(data: &[u8]) {
    // The session hands dialects only text that is UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    market_stream_request(text);
    api_request(text);
    for version in [hashkey::Version::V1, hashkey::Version::V2] {
        hashkey_request(text, version);
    }
}

fn hashkey_request(text: &str, version: hashkey::Version) {
    use hashkey::request::{self, Message};
    match request::parse(text, version) {
        Ok(Message::Request(parsed)) => {
            assert!(!parsed.streams.is_empty());
            for stream in &parsed.streams {
                // Every name it asks the hub for is a HashKey stream name.
                assert!(crate::config::is_stream_name(stream), "{stream}");
                assert_eq!(crate::config::split_namespace(stream).0, Some("hashkey"));
            }
            if let Some(reply) = parsed.success() {
                assert_eq!(json(&reply)["code"], "0");
            }
            assert_eq!(json(&parsed.refused().reply())["code"], "-100011");
        }
        Ok(Message::Ping(_) | Message::Pong) => {}
        Err(refused) => {
            let reply = json(&refused.reply());
            assert_eq!(reply["code"], "-100011");
            // A v1 error never carries a topic: its clients would take it for a push.
            assert!(version == hashkey::Version::V2 || reply.get("topic").is_none());
        }
    }
}

fn market_stream_request(text: &str) {
    match control::parse(text) {
        Ok((request, id)) => {
            let id_value: Value = serde_json::from_str(id.get()).expect("the id is JSON");
            assert!(
                matches!(id_value, Value::Null | Value::Number(_) | Value::String(_)),
                "{id_value}"
            );
            let reply = json(&control::result_json("null", &id));
            assert_eq!(reply["id"], id_value);
            if let control::Request::Subscribe(streams) | control::Request::Unsubscribe(streams) =
                &request
            {
                // Whatever the names, the list reply that may echo them is JSON.
                json(&serde_json::to_string(streams).expect("strings serialize"));
            }
        }
        Err(error) => {
            assert!((0..=3).contains(&error.code), "{error:?}");
            assert!(!error.closes_connection() || error.id.is_none());
            let reply = json(&control::error_json(&error));
            assert_eq!(reply["error"]["code"], error.code);
            // No request is echoed back at length.
            let msg = reply["error"]["msg"].as_str().expect("a text");
            assert!(
                msg.len() <= MAX_ERROR_TEXT,
                "{} bytes of error text",
                msg.len()
            );
            if let Some(id) = &error.id {
                assert_eq!(reply["id"], json(id));
            }
        }
    }
}

fn api_request(text: &str) {
    match request::parse(text) {
        Ok(parsed) => {
            json(&parsed.id);
            assert!(json(parsed.params.get()).is_object());
            // The signature covers every param but `signature` itself.
            let signed = parsed.fields.keys().filter(|k| *k != "signature").count();
            assert_eq!(parsed.signed_payload().is_empty(), signed == 0);
            if let Some(encoded) = parsed.encoded_payload() {
                assert!(encoded.is_ascii());
            }
        }
        Err(request::Malformed::Invalid { id, .. }) => {
            json(&id);
        }
        Err(request::Malformed::BadId) => {}
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Connect URLs (`path?query`) and the names in them: what the URL parser accepts is shaped as
/// the session expects, and each name check agrees with the others.
pub fn connect_url(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (path, query) = match text.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (&*text, None),
    };
    if let Ok(target) = url::parse_target(path, query) {
        assert!(target.listen_keys.iter().all(|k| looks_like_listen_key(k)));
        assert!(target.streams.iter().all(|s| !s.is_empty()));
        if !target.combined {
            assert!(target.streams.iter().all(|s| looks_like_stream(s)));
        }
    }
    for name in text.split(['/', '?', '&', '=', ',', '"']) {
        check_name(name);
        let decoded = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
        check_name(&decoded);
    }
}

fn check_name(name: &str) {
    if looks_like_stream(name) {
        assert!(is_stream_name(name));
        assert!(!looks_like_listen_key(name), "{name}");
    }
    if is_stream_name(name) {
        assert!(name.len() <= MAX_STREAM_NAME && name.is_ascii());
    }
    if looks_like_listen_key(name) {
        assert!(name.len() == 64 && name.is_ascii());
    }
    if let Ok(mapper) = MapperRef::parse(name) {
        assert_eq!(MapperRef::parse(&mapper.to_string()), Ok(mapper));
    }
    if let Ok(template) = Template::parse(name) {
        assert_eq!(Template::parse(&template.to_string()), Ok(template));
    }
    if is_subject(name) {
        for user in [name, "alice", "a b"] {
            if bus::is_user_id(user) {
                assert!(is_subject(&bus::user_subject(name, user)), "{name} {user}");
            }
        }
    }
}

/// Most stream names one topic may expand to: `validate` refuses a topic over this before it
/// builds any name (`config::template::MAX_NAMES`).
pub const MAX_TOPIC_NAMES: u64 = 100_000;

/// Most stream names the config target lets a config's topics build in all, so each execution
/// stays short (topics over [`MAX_TOPIC_NAMES`] build none and are let through).
pub const MAX_EXPANDED_NAMES: u64 = 100_000;

/// The config validator, on a config parsed from JSON text. An accepted config's streams are
/// valid names of declared topics, no topic of it expands to more than [`MAX_TOPIC_NAMES`], and
/// it stays valid (the same streams) once stored as JSON and read back, as the config store
/// does.
pub fn config_validate(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = GatewayConfig::from_json(text) else {
        return;
    };
    let counts: Vec<u64> = topic_names(&config).collect();
    let built = counts
        .iter()
        .filter(|&&n| n <= MAX_TOPIC_NAMES)
        .sum::<u64>();
    if built > MAX_EXPANDED_NAMES {
        return;
    }
    let mapper_exists = |mapper: &MapperRef| mapper.name != "missing";
    let Ok(snapshot) = validate(config, &mapper_exists) else {
        return;
    };
    assert!(counts.iter().all(|&n| n <= MAX_TOPIC_NAMES), "{counts:?}");
    for (name, spec) in snapshot.streams.iter() {
        assert!(is_stream_name(name), "{name}");
        assert!(spec.topic_index < snapshot.config.topics.len());
    }
    let stored = serde_json::to_string(&snapshot.config).expect("a config serializes");
    let reread = GatewayConfig::from_json(&stored).expect("a stored config parses");
    let again = validate(reread, &mapper_exists).expect("a stored config stays valid");
    assert!(snapshot.streams.keys().eq(again.streams.keys()));
}

/// How many names each topic of `config` expands to (saturating): the product of its distinct
/// placeholders' value counts (a placeholder takes one value per name however often it
/// appears); 0 for a template that does not parse.
fn topic_names(config: &GatewayConfig) -> impl Iterator<Item = u64> + '_ {
    config.topics.iter().map(|topic| {
        let Ok(template) = Template::parse(&topic.topic) else {
            return 0;
        };
        let mut vars: Vec<&str> = template.vars().collect();
        vars.sort_unstable();
        vars.dedup();
        vars.iter()
            .map(|var| {
                let values = topic.vars.get(*var).or_else(|| config.vars.get(*var));
                values.map_or(0, |v| v.len() as u64)
            })
            .fold(1u64, u64::saturating_mul)
    })
}

/// The limits the mapper output target checks outputs against (small, so the fuzzer reaches
/// them).
const OUTPUT_LIMITS: (usize, usize) = (8, 512);

/// The repository's default config (`config/gateway.json`), validated: the streams and
/// mappings the mapper output target publishes to.
fn gateway_config() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let config = GatewayConfig::from_json(include_str!("../config/gateway.json"))
            .expect("config/gateway.json parses");
        validate(config, &|_| true).expect("config/gateway.json is valid")
    })
}

/// The check a WASM mapper's outputs pass before they are published, over the mappings and
/// streams of `config/gateway.json`. The input is what the mappers answer, one event per
/// paragraph (blank-line separated), one output per line: `k=v,k=v|user|payload`, where an
/// empty user field means none and a user field starting with `=` is the rest of it; a paragraph
/// starting with `!` is a mapper error. An output published goes to a declared stream of its
/// mapping's auth, a private one to a valid user's subject, numbered consecutively per mapping.
pub fn mapper_output(data: &[u8]) {
    let snapshot = gateway_config();
    let text = String::from_utf8_lossy(data);
    let limits = MapperLimits {
        max_outputs_per_event: OUTPUT_LIMITS.0,
        max_output_bytes: OUTPUT_LIMITS.1,
        ..MapperLimits::default()
    };
    let mappings: Vec<_> = snapshot
        .config
        .routes
        .iter()
        .flat_map(|route| &route.mappings)
        .collect();
    let mut targets: Vec<OutputTargets> = mappings
        .iter()
        .map(|mapping| OutputTargets::new(mapping).expect("valid templates"))
        .collect();
    let sequences = Sequences::new();
    let mut numbered: Vec<HashMap<Arc<str>, u64>> = vec![HashMap::new(); targets.len()];
    for event in text.split("\n\n") {
        let answer = match event.strip_prefix('!') {
            Some(why) => Err(MapError::InvalidInput(why.to_string())),
            None => Ok(event.lines().map(parse_output).collect::<Vec<_>>()),
        };
        let outputs = match check_outputs(answer, &limits) {
            EventOutcome::Mapped(outputs) => outputs,
            EventOutcome::Failed(_) => continue,
        };
        assert!(outputs.len() <= limits.max_outputs_per_event);
        for output in &outputs {
            assert!(output.payload.len() <= limits.max_output_bytes);
            // One JSON value, though perhaps not one serde_json's `Value` holds (`1e400` is
            // JSON, a number out of f64's range).
            json_syntax(&output.payload);
        }
        for ((mapping, targets), numbered) in mappings.iter().zip(&mut targets).zip(&mut numbered) {
            for output in &outputs {
                match targets.place(output, &snapshot.streams, &sequences) {
                    Ok(placed) => {
                        check_placed(snapshot, &mapping.fanout_topic, output, &placed);
                        check_frames(&placed.stream, &output.payload);
                        let next = numbered.entry(Arc::clone(&placed.stream)).or_insert(1);
                        assert_eq!(placed.seq, *next, "consecutive on {}", placed.stream);
                        *next += 1;
                    }
                    Err(Misplaced::BadOutput(_)) => {}
                    Err(Misplaced::NoUserId) => {
                        assert!(!output.user_id.as_deref().is_some_and(bus::is_user_id));
                    }
                    Err(Misplaced::Published) => unreachable!("no stream was taken over"),
                }
            }
        }
    }
}

fn check_placed(
    snapshot: &Snapshot,
    fanout_topic: &str,
    output: &Output,
    placed: &crate::route::Placed,
) {
    let spec = snapshot
        .streams
        .get(&placed.stream)
        .expect("published on a declared stream");
    match spec.auth {
        Auth::Public => assert!(placed.user_id.is_none()),
        Auth::Private => {
            let user = placed
                .user_id
                .as_deref()
                .expect("a private output has a user");
            assert!(bus::is_user_id(user));
            assert_eq!(output.user_id.as_deref(), Some(user));
            assert!(is_subject(&placed.subject), "{}", placed.subject);
        }
    }
    // The subject is the mapping's fanout topic (plus the user's token on a private stream).
    let fanout = Template::parse(fanout_topic).expect("valid template");
    if fanout.is_literal() {
        assert!(placed.subject.starts_with(fanout_topic));
    }
}

/// A published output reaches Binance clients as a text frame of JSON in each of their formats
/// (raw or combined, milliseconds or microseconds).
fn check_frames(stream: &str, payload: &str) {
    for (combined, micros) in [(false, false), (true, false), (false, true), (true, true)] {
        let frame =
            Format::of(combined, micros).encode(stream, payload.as_bytes(), 1_767_000_000_123_456);
        let header = match frame[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        assert_eq!(frame[0], 0x81, "a final text frame");
        let text = std::str::from_utf8(&frame[header..]).expect("a text frame is UTF-8");
        json_syntax(text);
    }
}

/// Asserts `text` is one JSON value (syntax only).
fn json_syntax(text: &str) {
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        panic!("not JSON ({e}): {text}");
    }
}

/// One output line: `k=v,k=v|user|payload`.
fn parse_output(line: &str) -> Output {
    let mut fields = line.splitn(3, '|');
    let vars = fields.next().unwrap_or_default();
    let user = fields.next().unwrap_or_default();
    let payload = fields.next().unwrap_or_default();
    Output {
        topic_vars: vars
            .split(',')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        user_id: match user {
            "" => None,
            user => Some(user.strip_prefix('=').unwrap_or(user).to_string()),
        },
        payload: payload.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_takes_empty_and_odd_input() {
        for (_, target) in TARGETS {
            target(b"");
            target(b"\xff\xfe\x00");
            target(b"{}");
        }
    }

    #[test]
    fn topic_name_counts_follow_distinct_placeholders() {
        let config = GatewayConfig::from_json(
            r#"{"vars":{"a":["0","1","2","3","4","5","6","7","8","9"],"b":["x","y"]},
                "topics":[{"version":1,"topic":"{a}{a}{a}{a}{a}{a}{a}{a}{a}"},
                          {"version":1,"topic":"{a}{b}{a}","vars":{"b":["z"]}},
                          {"version":1,"topic":"{a}{c}"}]}"#,
        )
        .unwrap();
        assert_eq!(topic_names(&config).collect::<Vec<_>>(), [10, 10, 0]);
    }

    #[test]
    fn mapper_output_lines_parse() {
        let output = parse_output("symbol=btcusdt,x=|=|{\"e\":1}|x");
        assert_eq!(
            output.topic_vars,
            [
                ("symbol".to_string(), "btcusdt".to_string()),
                ("x".to_string(), String::new())
            ]
        );
        assert_eq!(output.user_id.as_deref(), Some(""));
        assert_eq!(output.payload, "{\"e\":1}|x");
    }
}
