//! Unit tests of the `nats` datasource: property validation and the reconnect backoff.

use super::*;
use crate::config::DatasourceKind;
use serde_json::json;
use serde_json::Value;

use super::run::backoff;
use crate::source::Consumption;

fn datasource(properties: Value) -> Datasource {
    crate::source::properties::datasource(DatasourceKind::Nats, "nats-md", properties)
}

fn refused(properties: Value, field: &str) {
    match NatsSource::from_datasource(&datasource(properties.clone()), &Consumption::default()) {
        Err(SourceError::Config { name, message }) => {
            assert_eq!(name, "nats-md");
            assert!(
                message.starts_with(field),
                "error for {properties} should name `{field}`: {message}"
            );
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(source) => panic!("{properties} accepted: {source:?}"),
    }
}

fn good() -> Value {
    json!({"servers": "nats://127.0.0.1:4222", "subjects": ["trade.>"]})
}

fn with(key: &str, value: Value) -> Value {
    let mut properties = good();
    properties[key] = value;
    properties
}

#[test]
fn defaults() {
    let source = NatsSource::from_datasource(&datasource(good()), &Consumption::default()).unwrap();
    assert_eq!(source.name, "nats-md");
    assert_eq!(source.servers.len(), 1);
    assert_eq!(source.subjects, vec!["trade.>"]);
    assert_eq!(source.queue_group, "wsgate");
    assert_eq!(source.jetstream, None);
    assert_eq!(source.max_reconnect_attempts, None);
    assert_eq!(source.reconnect_time_wait, Duration::from_millis(1000));
    assert_eq!(source.credentials, Credentials::None);
    assert_eq!(source.backpressure(), Backpressure::Wait);
}

#[test]
fn full_jetstream_config() {
    let properties = json!({
        "servers": ["nats://a:4222", "nats://b:4223"],
        "subjects": ["trade.*", "book.BTCUSDT"],
        "queue_group": "md",
        "jetstream": {"stream": "MD", "durable": "gw", "deliver": "new", "ack_wait_ms": 500},
        "max_reconnect_attempts": 5,
        "reconnect_time_wait_ms": 200,
        "user": "u",
        "password": "p"
    });
    let source =
        NatsSource::from_datasource(&datasource(properties), &Consumption::default()).unwrap();
    assert_eq!(source.servers.len(), 2);
    assert_eq!(source.queue_group, "md");
    assert_eq!(
        source.jetstream,
        Some(JetStreamSettings {
            stream: "MD".into(),
            durable: "gw".into(),
            deliver: Deliver::New,
            ack_wait: Duration::from_millis(500),
        })
    );
    assert_eq!(source.max_reconnect_attempts, Some(5));
    assert_eq!(source.reconnect_time_wait, Duration::from_millis(200));
    assert_eq!(
        source.credentials,
        Credentials::UserPassword("u".into(), "p".into())
    );
    let js = json!({"jetstream": {"stream": "MD"}, "token": "t"});
    let mut properties = good();
    properties["jetstream"] = js["jetstream"].clone();
    properties["token"] = js["token"].clone();
    let source =
        NatsSource::from_datasource(&datasource(properties), &Consumption::default()).unwrap();
    let settings = source.jetstream.clone().unwrap();
    assert_eq!(settings.durable, "wsgate");
    assert_eq!(settings.deliver, Deliver::All);
    assert_eq!(settings.ack_wait, Duration::from_secs(30));
    assert_eq!(source.credentials, Credentials::Token("t".into()));
}

#[test]
fn the_seed_designs_reconnect_properties_are_accepted() {
    let mut properties = good();
    properties["max_reconnect_attempts"] = json!(10);
    properties["reconnect_time_wait"] = json!(2);
    let source = NatsSource::from_datasource(&datasource(properties), &Consumption::default());
    let source = source.unwrap();
    assert_eq!(source.max_reconnect_attempts, Some(10));
    assert_eq!(source.reconnect_time_wait, Duration::from_secs(2));
    let half = with("reconnect_time_wait", json!(0.5));
    let source = NatsSource::from_datasource(&datasource(half), &Consumption::default());
    assert_eq!(
        source.unwrap().reconnect_time_wait,
        Duration::from_millis(500)
    );
    refused(
        with("reconnect_time_wait", json!(0)),
        "properties.reconnect_time_wait",
    );
    refused(
        with("reconnect_time_wait", json!("2s")),
        "properties.reconnect_time_wait",
    );
    let mut both = with("reconnect_time_wait", json!(2));
    both["reconnect_time_wait_ms"] = json!(2000);
    refused(both, "properties.reconnect_time_wait");
}

#[test]
fn subjects_default_to_the_routes_upstream() {
    let properties = json!({"servers": "nats://127.0.0.1:4222"});
    let read_by = |upstream: &[&str]| Consumption {
        upstream: upstream.iter().map(|s| s.to_string()).collect(),
        ..Consumption::default()
    };
    let source = NatsSource::from_datasource(
        &datasource(properties.clone()),
        &read_by(&["trade.*", "book.>"]),
    );
    assert_eq!(source.unwrap().subjects, ["trade.*", "book.>"]);
    let bad = NatsSource::from_datasource(&datasource(properties.clone()), &read_by(&["a..b"]));
    assert!(bad.is_err(), "an upstream that is no subject");
    let unread = Consumption {
        unread: true,
        ..Consumption::default()
    };
    let idle = NatsSource::from_datasource(&datasource(properties), &unread).unwrap();
    assert!(
        idle.subjects.is_empty(),
        "no route reads it: nothing to consume"
    );
}

#[test]
fn missing_servers() {
    refused(json!({"subjects": ["a"]}), "properties.servers");
    refused(with("servers", json!([])), "properties.servers");
}

#[test]
fn bad_server_urls() {
    refused(
        with("servers", json!("127.0.0.1:4222")),
        "properties.servers",
    );
    refused(
        with("servers", json!("http://h:4222")),
        "properties.servers",
    );
    refused(with("servers", json!("nats://:4222")), "properties.servers");
    refused(
        with("servers", json!("nats://h:notaport")),
        "properties.servers",
    );
    refused(
        with("servers", json!(["nats://ok:4222", "nats://h:99999"])),
        "properties.servers[1]",
    );
    refused(with("servers", json!(7)), "properties.servers");
}

#[test]
fn bad_subjects() {
    refused(json!({"servers": "nats://h:1"}), "properties.subjects");
    refused(with("subjects", json!([])), "properties.subjects");
    refused(with("subjects", json!("trade.>")), "properties.subjects");
    refused(with("subjects", json!(["a", ""])), "properties.subjects[1]");
    refused(with("subjects", json!(["a.>.b"])), "properties.subjects[0]");
    refused(with("subjects", json!(["a..b"])), "properties.subjects[0]");
    refused(with("subjects", json!([3])), "properties.subjects[0]");
}

#[test]
fn bad_jetstream() {
    refused(with("jetstream", json!({})), "properties.jetstream.stream");
    refused(
        with("jetstream", json!({"durable": "d"})),
        "properties.jetstream.stream",
    );
    refused(with("jetstream", json!("MD")), "properties.jetstream");
    refused(
        with("jetstream", json!({"stream": "M.D"})),
        "properties.jetstream.stream",
    );
    refused(
        with("jetstream", json!({"stream": "MD", "deliver": "last"})),
        "properties.jetstream.deliver",
    );
    refused(
        with("jetstream", json!({"stream": "MD", "ack_wait_ms": 0})),
        "properties.jetstream.ack_wait_ms",
    );
    refused(
        with("jetstream", json!({"stream": "MD", "color": 1})),
        "properties.jetstream.color",
    );
}

#[test]
fn bad_other_properties() {
    refused(with("queue_group", json!("")), "properties.queue_group");
    refused(
        with("max_reconnect_attempts", json!(-1)),
        "properties.max_reconnect_attempts",
    );
    refused(
        with("reconnect_time_wait_ms", json!("1s")),
        "properties.reconnect_time_wait_ms",
    );
    refused(with("user", json!("u")), "properties.password");
    refused(with("password", json!("p")), "properties.user");
    let mut both = with("token", json!("t"));
    both["creds_file"] = json!("/x.creds");
    refused(both, "properties");
    refused(with("colour", json!("blue")), "properties.colour");
}

#[test]
fn credentials_in_server_urls_become_the_credentials_and_never_show() {
    let source = NatsSource::from_datasource(
        &datasource(with(
            "servers",
            json!(["nats://u:p%40ss-1@a:4222", "nats://u:p%40ss-1@b:4222"]),
        )),
        &Consumption::default(),
    )
    .unwrap();
    assert_eq!(
        source.credentials,
        Credentials::UserPassword("u".into(), "p@ss-1".into())
    );
    // The addresses handed to the client carry no credentials.
    for server in &source.servers {
        assert!(!format!("{server:?}").contains("ss-1"), "{server:?}");
    }
    assert!(!format!("{source:?}").contains("ss-1"));
    let source = NatsSource::from_datasource(
        &datasource(with("servers", json!("nats://tok-42@h:4222"))),
        &Consumption::default(),
    )
    .unwrap();
    assert_eq!(source.credentials, Credentials::Token("tok-42".into()));
    assert!(!format!("{source:?}").contains("tok-42"));

    refused(
        with("servers", json!(["nats://u:one@a:1", "nats://u:two@b:1"])),
        "properties.servers[1]",
    );
    let mut both = with("servers", json!("nats://u:pw@a:1"));
    both["token"] = json!("t");
    refused(both, "properties.servers");
    // A refused URL is named without its credentials.
    let error = NatsSource::from_datasource(
        &datasource(with("servers", json!("nats://u:hidden-9@h:0"))),
        &Consumption::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("nats://u:***@h:0") && !error.contains("hidden-9"),
        "{error}"
    );
}

#[test]
fn backoff_is_capped_and_grows() {
    let base = Duration::from_millis(100);
    assert!(backoff(base, 1) <= Duration::from_millis(125));
    assert!(backoff(base, 4) >= Duration::from_millis(600));
    assert!(backoff(base, 100) <= MAX_BACKOFF);
}
