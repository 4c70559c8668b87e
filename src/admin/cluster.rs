//! The operator API's live view: every node's card (`GET /api/v1/cluster`) and this node's
//! metrics as JSON (`GET /api/v1/metrics`), what the dashboard polls.
//!
//! Each node publishes its own [`NodeCard`] every heartbeat through a [`NodeDirectory`] (the
//! cluster's Redis, or the node itself when embedded), so any node answers for all of them
//! without asking the others.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use prometheus::proto::{MetricFamily, MetricType};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::metrics::Metrics;

/// What one node says about itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeCard {
    /// The node's id.
    pub node_id: String,
    /// `starting`, `ready` or `draining`.
    pub state: String,
    /// The datasources assigned to the node (consumed, or waiting for their lease).
    pub owned: Vec<String>,
    /// Config version the node runs.
    pub config_version: u64,
    /// Store revision the node runs.
    pub revision: u64,
    /// Open client connections.
    pub connections: i64,
    /// Frames written to clients since the node started.
    pub messages_out_total: u64,
    /// Messages the node's hub received since it started.
    pub messages_in_total: u64,
    /// When the node read these numbers, ms since the epoch.
    pub at_ms: u64,
}

/// Where nodes publish their cards and the API reads them.
pub trait NodeDirectory: Send + Sync + 'static {
    /// Publishes `card` as its node's latest.
    fn publish(&self, card: NodeCard) -> BoxFuture<'_, anyhow::Result<()>>;
    /// Every card published within `fresh` of now (a node that stopped publishing is gone).
    fn list(&self, fresh: Duration) -> BoxFuture<'_, anyhow::Result<Vec<NodeCard>>>;
    /// Removes `node_id`'s card (the node stopped).
    fn withdraw(&self, node_id: &str) -> BoxFuture<'_, ()>;
}

/// An embedded node's directory: its own card only.
#[derive(Default)]
pub struct LocalDirectory {
    card: parking_lot::Mutex<Option<NodeCard>>,
}

impl NodeDirectory for LocalDirectory {
    fn publish(&self, card: NodeCard) -> BoxFuture<'_, anyhow::Result<()>> {
        *self.card.lock() = Some(card);
        Box::pin(async { Ok(()) })
    }

    fn list(&self, _fresh: Duration) -> BoxFuture<'_, anyhow::Result<Vec<NodeCard>>> {
        let cards = self.card.lock().iter().cloned().collect();
        Box::pin(async move { Ok(cards) })
    }

    fn withdraw(&self, _node_id: &str) -> BoxFuture<'_, ()> {
        *self.card.lock() = None;
        Box::pin(async {})
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The `GET /api/v1/cluster` answer: `cards` sorted by node id, this node's marked `self`.
pub fn cluster_view(node_id: &str, mut cards: Vec<NodeCard>) -> Value {
    cards.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    let nodes: Vec<Value> = cards
        .into_iter()
        .map(|card| {
            let own = card.node_id == node_id;
            let mut value = serde_json::to_value(card).unwrap_or(Value::Null);
            value["self"] = Value::Bool(own);
            value
        })
        .collect();
    json!({"node_id": node_id, "nodes": nodes})
}

/// The `GET /api/v1/metrics` answer: every metric family of `metrics`, histograms with their
/// cumulative buckets (upper bound, count; `+Inf` is `count`).
pub fn metrics_view(node_id: &str, metrics: &Arc<Metrics>) -> Value {
    let families: Vec<Value> = metrics.registry.gather().iter().map(family).collect();
    json!({"node_id": node_id, "at_ms": now_ms(), "families": families})
}

fn family(family: &MetricFamily) -> Value {
    let kind = family.get_field_type();
    let metrics: Vec<Value> = family
        .get_metric()
        .iter()
        .map(|metric| {
            let labels: BTreeMap<&str, &str> = metric
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            match kind {
                MetricType::COUNTER => {
                    json!({"labels": labels, "value": metric.get_counter().value()})
                }
                MetricType::GAUGE => {
                    json!({"labels": labels, "value": metric.get_gauge().value()})
                }
                MetricType::HISTOGRAM => {
                    let h = metric.get_histogram();
                    let buckets: Vec<(f64, u64)> = h
                        .get_bucket()
                        .iter()
                        .map(|b| (b.upper_bound(), b.cumulative_count()))
                        .collect();
                    json!({"labels": labels, "count": h.get_sample_count(),
                           "sum": h.get_sample_sum(), "buckets": buckets})
                }
                _ => json!({"labels": labels}),
            }
        })
        .collect();
    let kind = match kind {
        MetricType::COUNTER => "counter",
        MetricType::GAUGE => "gauge",
        MetricType::HISTOGRAM => "histogram",
        _ => "untyped",
    };
    json!({"name": family.name(), "type": kind, "help": family.help(), "metrics": metrics})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_view_has_counters_gauges_and_cumulative_buckets() {
        let metrics = Arc::new(Metrics::new());
        metrics.connections.set(7);
        let latency = metrics
            .delivery_latency
            .with_label_values(&["trade", "demo"]);
        latency.observe(0.000_01);
        latency.observe(10.0);
        let view = metrics_view("n1", &metrics);
        let find = |name: &str| {
            view["families"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        let connections = find("wsgate_connections");
        assert_eq!(connections["type"], "gauge");
        assert_eq!(connections["metrics"][0]["value"], 7.0);
        let latency = find("wsgate_delivery_latency_seconds");
        assert_eq!(latency["type"], "histogram");
        let series = &latency["metrics"][0];
        assert_eq!(
            series["labels"],
            json!({"kind": "trade", "datasource": "demo"})
        );
        assert_eq!(series["count"], 2);
        let buckets = series["buckets"].as_array().unwrap();
        assert_eq!(buckets[0], json!([0.000_05, 1]));
        assert_eq!(
            buckets.last().unwrap()[1],
            1,
            "10 s is past the last bound (6.6 s)"
        );
    }

    #[test]
    fn cluster_view_sorts_the_cards_and_marks_this_node() {
        let card = |id: &str| NodeCard {
            node_id: id.to_string(),
            ..NodeCard::default()
        };
        let view = cluster_view("b", vec![card("c"), card("b"), card("a")]);
        let ids: Vec<&str> = view["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["node_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(view["nodes"][1]["self"], true);
        assert_eq!(view["nodes"][0]["self"], false);
    }
}
