//! Validation of a [`GatewayConfig`] into a [`Snapshot`]: every check that needs no I/O.
//!
//! A rejected config stores nothing; the error names the offending field with a JSON-path-like
//! location (`routes[1].mappings[0].ws_topic`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use super::model::{GatewayConfig, Mapping, Overflow, Route, TopicConfig};
use super::template::Template;
use super::{MapperRef, Snapshot, StreamSpec};

/// A config that failed validation: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The offending field, e.g. `routes[0].data_source`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// Longest stream name accepted.
pub const MAX_STREAM_NAME: usize = 200;

/// True for names made of the characters Binance stream names use.
pub fn is_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_STREAM_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@_!.:+-".contains(&b))
}

/// True for a NATS-compatible subject: dot-separated non-empty tokens without spaces or wildcards.
pub fn is_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.split('.').all(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>')
        })
}

/// Checks `config` and expands its topics. `mapper_exists` answers whether a mapper reference
/// (`name` or `name@N`) resolves in the registry.
pub fn validate(
    config: GatewayConfig,
    mapper_exists: &dyn Fn(&MapperRef) -> bool,
) -> Result<Snapshot, ConfigError> {
    check_datasources(&config)?;
    let streams = expand_topics(&config)?;
    let topic_templates: HashMap<&str, usize> = config
        .topics
        .iter()
        .enumerate()
        .map(|(i, t)| (t.topic.as_str(), i))
        .collect();
    let mut route_ids = HashSet::new();
    for (i, route) in config.routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        if !route_ids.insert(route.id.as_str()) {
            return Err(err(
                format!("{at}.id"),
                format!("duplicate route id `{}`", route.id),
            ));
        }
        check_route(&config, route, &at, &topic_templates, mapper_exists)?;
    }
    Ok(Snapshot {
        config,
        streams: Arc::new(streams),
    })
}

fn check_datasources(config: &GatewayConfig) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    for (i, ds) in config.datasource.iter().enumerate() {
        let at = format!("datasource[{i}]");
        if ds.version == 0 {
            return Err(err(format!("{at}.version"), "must be at least 1"));
        }
        if ds.name.trim().is_empty() {
            return Err(err(format!("{at}.name"), "must not be empty"));
        }
        if !names.insert(ds.name.as_str()) {
            return Err(err(
                format!("{at}.name"),
                format!("duplicate datasource name `{}`", ds.name),
            ));
        }
        let mut regions = HashSet::new();
        for (j, region) in ds.regions.iter().enumerate() {
            if !is_region_name(region) {
                return Err(err(
                    format!("{at}.regions[{j}]"),
                    "a region name is 1 to 32 of a-z, 0-9, `-` and `_`",
                ));
            }
            if !regions.insert(region.as_str()) {
                return Err(err(
                    format!("{at}.regions[{j}]"),
                    format!("region `{region}` is listed twice"),
                ));
            }
        }
    }
    Ok(())
}

/// True for a region name: 1 to 32 of `a-z`, `0-9`, `-` and `_`.
pub fn is_region_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn expand_topics(config: &GatewayConfig) -> Result<BTreeMap<Arc<str>, StreamSpec>, ConfigError> {
    let mut streams = BTreeMap::new();
    for (i, topic) in config.topics.iter().enumerate() {
        let at = format!("topics[{i}]");
        check_topic_limits(topic, &at)?;
        let template =
            Template::parse(&topic.topic).map_err(|e| err(format!("{at}.topic"), e.to_string()))?;
        let mut values = config.vars.clone();
        values.extend(topic.vars.clone());
        let names = template
            .expand(&values)
            .map_err(|e| err(format!("{at}.topic"), e.to_string()))?;
        for name in names {
            if !is_stream_name(&name) {
                return Err(err(
                    format!("{at}.topic"),
                    format!("`{name}` is not a valid stream name"),
                ));
            }
            let spec = StreamSpec {
                topic_index: i,
                auth: topic.auth,
                rate: topic.rate,
                burst: topic.burst,
                overflow: topic
                    .overflow
                    .unwrap_or_else(|| Overflow::default_for(&name)),
            };
            if streams.insert(Arc::from(name.as_str()), spec).is_some() {
                return Err(err(
                    format!("{at}.topic"),
                    format!("stream `{name}` is declared twice"),
                ));
            }
        }
    }
    Ok(streams)
}

fn check_topic_limits(topic: &TopicConfig, at: &str) -> Result<(), ConfigError> {
    if topic.version == 0 {
        return Err(err(format!("{at}.version"), "must be at least 1"));
    }
    if topic.rate == Some(0) {
        return Err(err(format!("{at}.rate"), "must be positive"));
    }
    if topic.burst == Some(0) {
        return Err(err(format!("{at}.burst"), "must be positive"));
    }
    if let (Some(rate), Some(burst)) = (topic.rate, topic.burst) {
        if burst < rate {
            return Err(err(
                format!("{at}.burst"),
                format!("must be at least `rate` ({rate}) so one second's messages fit"),
            ));
        }
    }
    Ok(())
}

fn check_route(
    config: &GatewayConfig,
    route: &Route,
    at: &str,
    topic_templates: &HashMap<&str, usize>,
    mapper_exists: &dyn Fn(&MapperRef) -> bool,
) -> Result<(), ConfigError> {
    if route.version == 0 {
        return Err(err(format!("{at}.version"), "must be at least 1"));
    }
    if route.id.trim().is_empty() {
        return Err(err(format!("{at}.id"), "must not be empty"));
    }
    if config.datasource(&route.data_source).is_none() {
        return Err(err(
            format!("{at}.data_source"),
            format!("no datasource named `{}`", route.data_source),
        ));
    }
    if route.upstream.is_empty() {
        return Err(err(
            format!("{at}.upstream"),
            "must name at least one channel",
        ));
    }
    for (j, channel) in route.upstream.iter().enumerate() {
        if channel.trim().is_empty() {
            return Err(err(format!("{at}.upstream[{j}]"), "must not be empty"));
        }
    }
    if route.mappings.is_empty() {
        return Err(err(
            format!("{at}.mappings"),
            "must have at least one mapping",
        ));
    }
    for (j, mapping) in route.mappings.iter().enumerate() {
        check_mapping(
            mapping,
            &format!("{at}.mappings[{j}]"),
            topic_templates,
            mapper_exists,
        )?;
    }
    Ok(())
}

fn check_mapping(
    mapping: &Mapping,
    at: &str,
    topic_templates: &HashMap<&str, usize>,
    mapper_exists: &dyn Fn(&MapperRef) -> bool,
) -> Result<(), ConfigError> {
    let mapper = MapperRef::parse(&mapping.mapper)
        .map_err(|message| err(format!("{at}.mapper"), message))?;
    if !mapper_exists(&mapper) {
        return Err(err(
            format!("{at}.mapper"),
            format!("no mapper `{}` in the registry", mapping.mapper),
        ));
    }
    let ws_topic = Template::parse(&mapping.ws_topic)
        .map_err(|e| err(format!("{at}.ws_topic"), e.to_string()))?;
    if !topic_templates.contains_key(mapping.ws_topic.as_str()) {
        return Err(err(
            format!("{at}.ws_topic"),
            format!("`{}` is not declared in `topics`", mapping.ws_topic),
        ));
    }
    let fanout = Template::parse(&mapping.fanout_topic)
        .map_err(|e| err(format!("{at}.fanout_topic"), e.to_string()))?;
    let stream_vars: HashSet<&str> = ws_topic.vars().collect();
    if let Some(extra) = fanout.vars().find(|v| !stream_vars.contains(v)) {
        return Err(err(
            format!("{at}.fanout_topic"),
            format!(
                "placeholder `{{{extra}}}` does not appear in ws_topic `{}`",
                mapping.ws_topic
            ),
        ));
    }
    let sample = fanout
        .render(|_| Some("x"))
        .unwrap_or_else(|_| unreachable!("every placeholder has a value"));
    if !is_subject(&sample) {
        return Err(err(
            format!("{at}.fanout_topic"),
            format!(
                "`{}` is not a valid bus subject (dot-separated tokens, no wildcards)",
                mapping.fanout_topic
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> GatewayConfig {
        GatewayConfig::from_json(
            r#"{
              "vars": {"symbol": ["btcusdt", "ethusdt"]},
              "datasource": [{"version": 1, "type": "demo", "name": "demo"}],
              "topics": [{"version": 1, "topic": "{symbol}@trade", "rate": 20, "burst": 60}],
              "routes": [{
                "id": "trades", "version": 1, "data_source": "demo", "upstream": ["trade.*"],
                "mappings": [{"mapper": "binance_trade", "fanout_topic": "md.{symbol}.trade",
                              "ws_topic": "{symbol}@trade"}]
              }]
            }"#,
        )
        .unwrap()
    }

    fn all_mappers(_: &MapperRef) -> bool {
        true
    }

    #[test]
    fn a_topic_asking_for_a_billion_streams_is_refused_before_any_is_built() {
        // Found by the config_validate fuzz target: 119 bytes, 10 values, one placeholder nine
        // times. It expands to 10 names now (a placeholder takes one value per name); the same
        // shape with nine different placeholders is refused by count.
        let found =
            include_str!("../../fuzz/regressions/config_validate/billion-stream-names.json");
        let config = GatewayConfig::from_json(found).unwrap();
        let streams = validate(config, &all_mappers).map(|s| s.streams.len());
        assert!(!matches!(streams, Ok(n) if n > 10), "{streams:?}");

        let mut config = sample();
        let ten: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
        let mut topic = config.topics[0].clone();
        topic.topic = "{a}{b}{c}{d}{e}{f}{g}{h}{i}".into();
        for var in ["a", "b", "c", "d", "e", "f", "g", "h", "i"] {
            topic.vars.insert(var.into(), ten.clone());
        }
        config.topics.push(topic);
        let e = validate(config, &all_mappers).unwrap_err();
        assert!(
            e.to_string().contains("expands to 1000000000 stream names"),
            "{e}"
        );
    }

    #[test]
    fn valid_config_expands_streams() {
        let snapshot = validate(sample(), &all_mappers).unwrap();
        let names: Vec<&str> = snapshot.streams.keys().map(|k| &**k).collect();
        assert_eq!(names, ["btcusdt@trade", "ethusdt@trade"]);
    }

    #[test]
    fn a_datasource_names_each_region_once_and_validly() {
        let mut config = sample();
        config.datasource[0].regions = vec!["eu-1".into(), "us_2".into()];
        assert!(validate(config.clone(), &all_mappers).is_ok());
        config.datasource[0].regions = vec!["eu-1".into(), "eu-1".into()];
        let e = validate(config.clone(), &all_mappers).unwrap_err();
        assert_eq!(e.field, "datasource[0].regions[1]");
        assert!(e.message.contains("twice"), "{e:?}");
        config.datasource[0].regions = vec!["EU".into()];
        let e = validate(config, &all_mappers).unwrap_err();
        assert_eq!(e.field, "datasource[0].regions[0]");
    }

    #[test]
    fn unknown_datasource_is_named() {
        let mut config = sample();
        config.routes[0].data_source = "kafka1".into();
        let e = validate(config, &all_mappers).unwrap_err();
        assert_eq!(e.field, "routes[0].data_source");
        assert!(e.message.contains("kafka1"));
    }

    #[test]
    fn undeclared_ws_topic_is_named() {
        let mut config = sample();
        config.routes[0].mappings[0].ws_topic = "{symbol}@aggTrade".into();
        let e = validate(config, &all_mappers).unwrap_err();
        assert_eq!(e.field, "routes[0].mappings[0].ws_topic");
    }

    #[test]
    fn missing_mapper_is_named() {
        let e = validate(sample(), &|_| false).unwrap_err();
        assert_eq!(e.field, "routes[0].mappings[0].mapper");
    }

    #[test]
    fn fanout_placeholder_must_come_from_the_stream() {
        let mut config = sample();
        config.routes[0].mappings[0].fanout_topic = "md.{venue}.trade".into();
        let e = validate(config, &all_mappers).unwrap_err();
        assert_eq!(e.field, "routes[0].mappings[0].fanout_topic");
    }

    #[test]
    fn rate_limits_must_be_sane() {
        let mut config = sample();
        config.topics[0].burst = Some(5);
        let e = validate(config, &all_mappers).unwrap_err();
        assert_eq!(e.field, "topics[0].burst");
        let mut config = sample();
        config.topics[0].rate = Some(0);
        assert_eq!(
            validate(config, &all_mappers).unwrap_err().field,
            "topics[0].rate"
        );
    }

    #[test]
    fn stream_kinds_are_a_fixed_set() {
        use super::super::model::stream_kind;
        for (stream, kind) in [
            ("btcusdt@trade", "trade"),
            ("btcusdt@aggTrade", "aggTrade"),
            ("btcusdt@depth", "depth"),
            ("btcusdt@depth@100ms", "depth"),
            ("btcusdt@depth20@100ms", "partialDepth"),
            ("btcusdt@bookTicker", "bookTicker"),
            ("btcusdt@kline_1m", "kline"),
            ("btcusdt@ticker_1h", "ticker"),
            ("!ticker@arr", "ticker"),
            ("!miniTicker@arr", "miniTicker"),
            ("btcusdt@markPrice@1s", "markPrice"),
            ("futures:btcusdt@markPrice", "markPrice"),
            ("futures:!forceOrder@arr", "forceOrder"),
            ("hashkey:btcusdt@trade", "trade"),
            ("hashkey:btcusdt@depth", "partialDepth"),
            ("hashkey:btcusdt@realtimes", "ticker"),
            ("hashkey:userData", "user"),
            ("btcusdt@kline_1m@+08:00", "kline"),
            ("userData", "user"),
            ("btcusdt@whatever", "other"),
            ("plain", "other"),
        ] {
            assert_eq!(stream_kind(stream), kind, "{stream}");
        }
    }

    #[test]
    fn namespaces_are_a_word_and_a_colon_before_the_first_at() {
        use super::super::model::{split_namespace, strip_namespace};
        assert_eq!(
            split_namespace("hashkey:btcusdt@trade"),
            (Some("hashkey"), "btcusdt@trade")
        );
        assert_eq!(
            split_namespace("futures:!forceOrder@arr"),
            (Some("futures"), "!forceOrder@arr")
        );
        assert_eq!(
            split_namespace("hashkey:userData"),
            (Some("hashkey"), "userData")
        );
        for plain in [
            "btcusdt@trade",
            "btcusdt@kline_1m@+08:00",
            "!ticker@arr",
            "userData",
            ":btcusdt@trade",
            "Hashkey:btcusdt@trade",
        ] {
            assert_eq!(split_namespace(plain), (None, plain));
            assert_eq!(strip_namespace(plain), plain);
        }
    }

    #[test]
    fn overflow_defaults_by_stream_kind_and_can_be_set() {
        use super::super::model::Overflow::*;
        for (stream, expected) in [
            ("btcusdt@depth", Coalesce),
            ("btcusdt@depth@100ms", Coalesce),
            ("btcusdt@depth20@100ms", Latest),
            ("btcusdt@depth5", Latest),
            ("btcusdt@bookTicker", Latest),
            ("btcusdt@kline_1m", Latest),
            ("btcusdt@ticker", Latest),
            ("btcusdt@ticker_1h", Latest),
            ("!miniTicker@arr", Latest),
            ("btcusdt@miniTicker", Latest),
            ("btcusdt@trade", Close),
            ("btcusdt@aggTrade", Close),
            ("btcusdt@depthX", Close),
            ("userData", Close),
        ] {
            assert_eq!(Overflow::default_for(stream), expected, "{stream}");
        }
        let snapshot = validate(sample(), &all_mappers).unwrap();
        assert!(snapshot.streams.values().all(|spec| spec.overflow == Close));
        let mut config = sample();
        config.topics[0].overflow = Some(Drop);
        let snapshot = validate(config, &all_mappers).unwrap();
        assert!(snapshot.streams.values().all(|spec| spec.overflow == Drop));
        let e = GatewayConfig::from_json(
            r#"{"topics": [{"version": 1, "topic": "a@trade", "overflow": "sometimes"}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown variant `sometimes`"), "{e}");
    }

    #[test]
    fn topic_without_values_is_named() {
        let mut config = sample();
        config.topics[0].topic = "{symbol}@kline_{interval}".into();
        let e = validate(config, &all_mappers).unwrap_err();
        assert_eq!(e.field, "topics[0].topic");
        assert!(e.message.contains("interval"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = GatewayConfig::from_json(r#"{"datasources": []}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `datasources`"));
    }
}
