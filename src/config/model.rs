//! The dynamic configuration's data model: datasources, topics and routes.
//!
//! The JSON shape follows the seed design (§5.2) with two additions: each route names the
//! `upstream` channels it reads, and topic names may be templates (`{symbol}@trade`) expanded over
//! `vars`, so one entry serves every symbol.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The whole dynamic configuration of a gateway cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Values for template placeholders shared by every topic, e.g. `"symbol": ["btcusdt"]`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, Vec<String>>,
    /// Upstream connections (demo market, Kafka, NATS, Redis Streams).
    #[serde(default)]
    pub datasource: Vec<Datasource>,
    /// Streams clients may subscribe to.
    #[serde(default)]
    pub topics: Vec<TopicConfig>,
    /// What each datasource's events become: mapper, fanout topic and client stream.
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// One upstream connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datasource {
    /// Version of this entry; an update names the version it replaces.
    pub version: u64,
    /// Kind of upstream.
    #[serde(rename = "type")]
    pub kind: DatasourceKind,
    /// Unique name, referenced by routes.
    pub name: String,
    /// Kind-specific settings (for Kafka, librdkafka properties).
    #[serde(default)]
    pub properties: Map<String, Value>,
    /// The regions that may own it, preferred first (`docs/multi-region.md`); empty: any
    /// region, in name order. Only nodes started with `--region` read it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
}

/// The kinds of upstream wsgate consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasourceKind {
    /// The built-in synthetic market (`docs/demo-market.md`).
    Demo,
    /// Apache Kafka (or a Kafka-protocol broker).
    Kafka,
    /// NATS core or JetStream.
    Nats,
    /// Redis Streams.
    RedisStream,
}

impl DatasourceKind {
    /// The name used in the config (`"demo"`, `"redis_stream"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DatasourceKind::Demo => "demo",
            DatasourceKind::Kafka => "kafka",
            DatasourceKind::Nats => "nats",
            DatasourceKind::RedisStream => "redis_stream",
        }
    }
}

/// A client-visible stream, or a template of streams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// Version of this entry.
    pub version: u64,
    /// Stream name, or a template such as `{symbol}@kline_{interval}`.
    pub topic: String,
    /// Placeholder values for this topic only; they override the top-level `vars`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, Vec<String>>,
    /// Outbound messages per second per connection (token refill rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u32>,
    /// Outbound burst per connection (token bucket capacity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// What happens to a message a connection cannot take now (over `rate`, or its outbox
    /// full); unset: the stream kind's default ([`Overflow::default_for`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow: Option<Overflow>,
    /// Who may subscribe.
    #[serde(default)]
    pub auth: Auth,
}

/// What a stream does with a message a connection cannot take now: over its topic's `rate`,
/// or with its outbox full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Merge it with the connection's waiting diff-depth event of the stream into one event
    /// spanning both (`U` of the first, `u` of the last, last write wins per price level).
    Coalesce,
    /// Keep only the newest waiting message of the stream.
    Latest,
    /// Drop it (counted).
    Drop,
    /// Close the connection as a slow consumer (4100 band); it reconnects and resumes.
    Close,
}

/// A stream name's namespace and the name within it. Streams of client dialects other than
/// Binance Spot are named `<namespace>:<name>` (`hashkey:btcusdt@trade`,
/// `futures:!forceOrder@arr`): a lower-case word and a colon before the first `@`. Binance Spot
/// names have no namespace (a colon after the `@`, as in `btcusdt@kline_1m@+08:00`, is not
/// one).
pub fn split_namespace(stream: &str) -> (Option<&str>, &str) {
    let head = stream.split('@').next().unwrap_or(stream);
    match head.split_once(':') {
        Some((namespace, _))
            if !namespace.is_empty()
                && namespace
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) =>
        {
            (Some(namespace), &stream[namespace.len() + 1..])
        }
        _ => (None, stream),
    }
}

/// A stream's name within its namespace (see [`split_namespace`]): what its clients call it.
pub fn strip_namespace(stream: &str) -> &str {
    split_namespace(stream).1
}

/// The kind of a stream by its name, one of a fixed set (a metric label): `trade`, `aggTrade`,
/// `depth` (diff depth at any speed), `partialDepth` (`depth5|10|20`), `bookTicker`, `kline`,
/// `miniTicker`, `ticker` (also `ticker_<window>`), `avgPrice`, `markPrice`, `forceOrder`,
/// `user` (private streams), `other`. All-market streams (`!ticker@arr`) are of their kind, as
/// are the streams of every namespace (`futures:btcusdt@markPrice` is `markPrice`), HashKey's
/// topics by what they carry: its `depth` is a full snapshot of the top levels each push, so
/// `partialDepth`, and `realtimes` is the 24-hour `ticker`.
pub fn stream_kind(stream: &str) -> &'static str {
    let (namespace, stream) = split_namespace(stream);
    let kind = binance_stream_kind(stream);
    match (namespace, kind) {
        (Some("hashkey"), "depth") => "partialDepth",
        (Some("hashkey"), "other") if stream.ends_with("@realtimes") => "ticker",
        _ => kind,
    }
}

/// [`stream_kind`] of a Binance stream name.
fn binance_stream_kind(stream: &str) -> &'static str {
    if stream == "userData" {
        return "user";
    }
    let kind = match stream.split_once('@') {
        Some((symbol, rest)) if symbol.starts_with('!') => symbol
            .trim_start_matches('!')
            .split('@')
            .next()
            .unwrap_or(rest),
        Some((_, rest)) => rest.split('@').next().unwrap_or(""),
        None => "",
    };
    match kind {
        "trade" => "trade",
        "aggTrade" => "aggTrade",
        "depth" => "depth",
        "bookTicker" => "bookTicker",
        "miniTicker" => "miniTicker",
        "avgPrice" => "avgPrice",
        "markPrice" => "markPrice",
        "forceOrder" => "forceOrder",
        _ if kind.starts_with("kline_") => "kline",
        _ if kind == "ticker" || kind.starts_with("ticker_") => "ticker",
        _ if kind
            .strip_prefix("depth")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            "partialDepth"
        }
        _ => "other",
    }
}

impl Overflow {
    /// The default of a stream by its name's kind: diff depth (`<s>@depth`, `<s>@depth@100ms`)
    /// coalesces; latest-value streams (partial depth, bookTicker, tickers, klines, average and
    /// mark prices) keep the latest; everything else (trades, user data, unknown kinds) closes,
    /// since its events must never be lost silently.
    pub fn default_for(stream: &str) -> Overflow {
        match stream_kind(stream) {
            "depth" => Overflow::Coalesce,
            _ if stream.ends_with("@arr") => Overflow::Latest,
            "partialDepth" | "kline" | "ticker" | "bookTicker" | "miniTicker" | "avgPrice"
            | "markPrice" => Overflow::Latest,
            _ => Overflow::Close,
        }
    }

    /// The name used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::Coalesce => "coalesce",
            Overflow::Latest => "latest",
            Overflow::Drop => "drop",
            Overflow::Close => "close",
        }
    }
}

/// Access class of a topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Auth {
    /// Anyone may subscribe.
    #[default]
    Public,
    /// Only the owner of a listen key / API key, and only their own events.
    Private,
}

/// Which upstream channels a datasource's events come from, and what they become.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Unique id.
    pub id: String,
    /// Version of this entry.
    pub version: u64,
    /// The peer that consumes this route's upstream in a cluster (set by the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    /// Name of the datasource this route reads.
    pub data_source: String,
    /// Upstream channels: Kafka topics, NATS subjects (`*`, `>` wildcards), Redis stream keys,
    /// demo channels (NATS-style patterns).
    pub upstream: Vec<String>,
    /// Mappers applied to every event of the route.
    pub mappings: Vec<Mapping>,
}

/// One mapper applied to a route's events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// `name` (the promoted version) or `name@N` (pinned).
    pub mapper: String,
    /// Bus subject the outputs are published to; a template filled from the output's vars.
    pub fanout_topic: String,
    /// Client stream name; a template filled from the output's vars.
    pub ws_topic: String,
    /// Passed to the mapper's `init`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
}

impl GatewayConfig {
    /// Parses a config from JSON text. Unknown fields are refused.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The datasource with this name.
    pub fn datasource(&self, name: &str) -> Option<&Datasource> {
        self.datasource.iter().find(|d| d.name == name)
    }
}
