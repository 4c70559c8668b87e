//! The Grafana dashboard (`deploy/grafana/wsgate.json`) and the Prometheus alerts
//! (`deploy/prometheus/alerts.yml`) select only what a node exports: a cluster node is driven
//! until its lazily labelled series exist, then every `wsgate_*` metric the two files name, every
//! label they match on and every exact label value they match is looked up in its `/metrics`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::nats::NatsServer;
use common::redis::RedisServer;
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// The files checked, relative to the crate root.
const FILES: [&str; 2] = ["deploy/grafana/wsgate.json", "deploy/prometheus/alerts.yml"];

/// Labels Prometheus attaches when it scrapes; the node does not export them.
const SCRAPE_LABELS: [&str; 2] = ["job", "instance"];

/// A label matcher a file writes after a metric name: the label, and the value when it is
/// matched exactly (`=` and no template or dashboard variable in it).
type Matcher = (String, Option<String>);

/// What a file selects: metric name → the matchers written after it.
type Uses = BTreeMap<String, BTreeSet<Matcher>>;

/// What a scrape holds: metric family → label → values.
type Exported = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// Every `wsgate_*` name in `text`, with the label matchers of the `{...}` right after it.
fn scan(text: &str, uses: &mut Uses) {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    for (at, _) in text.match_indices("wsgate_") {
        if text[..at].chars().next_back().is_some_and(is_name) {
            continue;
        }
        let rest = &text[at..];
        let end = rest.find(|c: char| !is_name(c)).unwrap_or(rest.len());
        let matchers = uses.entry(rest[..end].to_string()).or_default();
        if let Some(inside) = rest[end..].strip_prefix('{') {
            matchers.extend(parse_matchers(inside));
        }
    }
}

/// The matchers of `label op "value", ...}` up to the closing brace.
fn parse_matchers(mut text: &str) -> Vec<Matcher> {
    let mut matchers = Vec::new();
    loop {
        text = text.trim_start_matches([' ', ',', '\n']);
        if text.starts_with('}') {
            return matchers;
        }
        let Some(op_at) = text.find(['=', '!']) else {
            return matchers;
        };
        let label = text[..op_at].trim().to_string();
        let op_len = if text[op_at..].starts_with('=') && !text[op_at..].starts_with("=~") {
            1
        } else {
            2
        };
        let exact = op_len == 1;
        let Some(value) = text[op_at + op_len..].trim_start().strip_prefix('"') else {
            return matchers;
        };
        let close = value.find('"').unwrap_or(value.len());
        let literal = &value[..close];
        let exact = (exact && !literal.contains(['$', '{'])).then(|| literal.to_string());
        matchers.push((label, exact));
        text = &value[(close + 1).min(value.len())..];
    }
}

/// Every string of a JSON document (the dashboard's queries, titles and descriptions).
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// The texts of `file` that each hold one expression with its context: every string of the
/// dashboard (queries, titles, descriptions), each rule of the alerts.
fn texts_of(file: &str) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut texts = Vec::new();
    if file.ends_with(".json") {
        strings(
            &serde_json::from_str(&text).expect("valid JSON"),
            &mut texts,
        );
    } else {
        texts.extend(text.split("- alert:").map(str::to_string));
    }
    texts
}

/// The labels `text` groups or matches by (`by (...)`, `on (...)`, ...).
fn grouping_labels(text: &str) -> BTreeSet<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut labels = BTreeSet::new();
    for keyword in [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ] {
        for (at, _) in text.match_indices(keyword) {
            if text[..at].chars().next_back().is_some_and(is_ident) {
                continue;
            }
            let rest = text[at + keyword.len()..].trim_start_matches(' ');
            let Some((list, _)) = rest.strip_prefix('(').and_then(|r| r.split_once(')')) else {
                continue;
            };
            let names: Vec<&str> = list.split(',').map(str::trim).collect();
            if names
                .iter()
                .all(|n| !n.is_empty() && n.chars().all(is_ident))
            {
                labels.extend(names.iter().map(|n| n.to_string()));
            }
        }
    }
    labels
}

/// The histograms of a Prometheus text exposition.
fn histograms(body: &str) -> BTreeSet<&str> {
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" histogram"))
        .collect()
}

/// The families, labels and values of a Prometheus text exposition; a histogram's `_bucket`,
/// `_sum` and `_count` samples count for the histogram itself.
fn exported(body: &str, histograms: &BTreeSet<&str>) -> Exported {
    let mut families = Exported::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = families
            .entry(family(&line[..name_end], histograms))
            .or_default();
        if let Some(inside) = line[name_end..].strip_prefix('{') {
            for (label, value) in parse_matchers(inside) {
                labels.entry(label).or_default().extend(value);
            }
        }
    }
    families
}

/// The family a sample or a selected name belongs to.
fn family(name: &str, histograms: &BTreeSet<&str>) -> String {
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|suffix| name.strip_suffix(suffix))
        .find(|base| histograms.contains(base))
        .unwrap_or(name)
        .to_string()
}

/// What `texts` of `file` select or group by that `exported` lacks, one line each.
fn missing(
    file: &str,
    texts: &[String],
    exported: &Exported,
    histograms: &BTreeSet<&str>,
) -> Vec<String> {
    let mut missing = Vec::new();
    for text in texts {
        let mut uses = Uses::new();
        scan(text, &mut uses);
        let families: Vec<_> = uses
            .keys()
            .filter_map(|name| exported.get(&family(name, histograms)))
            .collect();
        for label in grouping_labels(text) {
            let known = SCRAPE_LABELS.contains(&label.as_str())
                || families.iter().any(|labels| labels.contains_key(&label));
            if !uses.is_empty() && !known {
                let names: Vec<_> = uses.keys().collect();
                missing.push(format!("{file}: no label `{label}` on any of {names:?}"));
            }
        }
        for (name, matchers) in uses {
            let Some(labels) = exported.get(&family(&name, histograms)) else {
                missing.push(format!("{file}: {name} is not exported"));
                continue;
            };
            for (label, value) in matchers {
                if SCRAPE_LABELS.contains(&label.as_str()) {
                    continue;
                }
                match (labels.get(&label), value) {
                    (None, _) => missing.push(format!("{file}: {name} has no label `{label}`")),
                    (Some(values), Some(value)) if !values.contains(&value) => {
                        missing.push(format!("{file}: {name} has no {label}=\"{value}\" series"))
                    }
                    _ => {}
                }
            }
        }
    }
    missing.sort();
    missing.dedup();
    missing
}

#[test]
fn the_scanner_finds_names_labels_and_exact_values() {
    let mut uses = Uses::new();
    scan(
        "sum(rate(wsgate_a_total{job=\"$job\", code=\"4100\", k=~\"x|y\"}[5m])) \
         / xwsgate_b wsgate_c_bucket{m=\"{{ $labels.m }}\"}",
        &mut uses,
    );
    let a: BTreeSet<Matcher> = [
        ("code".into(), Some("4100".into())),
        ("job".into(), None),
        ("k".into(), None),
    ]
    .into();
    assert_eq!(uses["wsgate_a_total"], a);
    assert_eq!(uses["wsgate_c_bucket"], [("m".into(), None)].into());
    assert_eq!(uses.len(), 2, "{uses:?}");
    let grouped = grouping_labels("sum by (kind, le) (x) and on(instance) y, grouped by (a b)");
    assert_eq!(grouped, ["instance", "kind", "le"].map(String::from).into());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_the_alerts_use_is_exported() {
    let redis = RedisServer::new();
    let nats = NatsServer::new();
    let extra = ["--admin-token", TEST_TOKEN];
    let node =
        Gateway::cluster_node_with(&shipped_config(), &redis.url(), &nats.url(), "n1", &extra);
    wait_for("the demo datasource consumed", || {
        node.metric("wsgate_source_up{") == 1.0
    });

    // Trades and depth delivered: delivery latency by kind and datasource, mapper series.
    let mut reader = node
        .connect("/stream?streams=btcusdt@trade/btcusdt@depth@100ms")
        .await;
    collect_stream(&mut reader, "btcusdt@trade", 2, WAIT).await;
    collect_stream(&mut reader, "btcusdt@depth@100ms", 2, WAIT).await;

    // A config change (a reload), limiting aggTrade to one a second per connection, closing
    // whoever gets more: a close with 4100, counted as a slow consumer closed.
    let stored = node.cli(&["config", "get"]);
    assert!(stored.ok, "{stored:?}");
    let mut config: Value = serde_json::from_str(&stored.stdout).unwrap();
    let topic = config["config"]["topics"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|t| t["topic"] == "{symbol}@aggTrade")
        .expect("the shipped config declares {symbol}@aggTrade");
    topic["rate"] = json!(1);
    topic["burst"] = json!(1);
    topic["overflow"] = json!("close");
    node.apply_config(&config["config"]);
    let mut limited = node.connect("/ws/btcusdt@aggTrade").await;
    assert_eq!(expect_close(&mut limited, WAIT).await.0, 4100);

    // A refused connection (URL too long).
    let long = format!("/ws/{}", "a".repeat(9000));
    assert_eq!(try_upgrade(node.addr, None, &long, "").1, 414);

    let (status, body) = node.http_get("/metrics").expect("metrics");
    assert_eq!(status, 200);
    // The deliveries above were observed under their kind and the datasource that feeds them.
    for kind in ["trade", "depth"] {
        let series =
            format!("wsgate_delivery_latency_seconds_count{{datasource=\"demo\",kind=\"{kind}\"}}");
        assert!(metric_value(&body, &series) >= 2.0, "{series} in\n{body}");
    }
    let histograms = histograms(&body);
    let exported = exported(&body, &histograms);
    let mut problems = Vec::new();
    for file in FILES {
        let texts = texts_of(file);
        let mut uses = Uses::new();
        texts.iter().for_each(|t| scan(t, &mut uses));
        assert!(uses.len() >= 10, "{file}: only {uses:?}");
        problems.extend(missing(file, &texts, &exported, &histograms));
    }
    assert!(
        problems.is_empty(),
        "selected but not exported:\n{}\n\nexported: {:?}",
        problems.join("\n"),
        exported.keys().collect::<Vec<_>>()
    );
}
