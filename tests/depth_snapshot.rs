//! `GET /api/v3/depth` on the client listener, answered from the gateway's own order book in the
//! update-id space of the diff-depth streams: Binance's shape and errors, and a client that
//! follows Binance's local order book procedure (`docs/binance-protocol.md` §4.1) with the
//! gateway's snapshot holds the gateway's book, alone and in a cluster.

mod common;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use common::nats::NatsServer;
use common::redis::RedisServer;
use common::{http_get, next_json, wait_for, Client, Gateway};
use rust_decimal::Decimal;
use serde_json::Value;

/// `GET path` on the gateway's client listener: status and parsed body.
fn rest(gateway: &Gateway, path: &str) -> (u16, Value) {
    let (status, body) = http_get(gateway.addr, path).expect("the client listener answers");
    let body = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, body)
}

/// The BTCUSDT snapshot with `limit` levels, once the gateway's book is complete.
fn snapshot(gateway: &Gateway, limit: usize) -> Value {
    let path = format!("/api/v3/depth?symbol=BTCUSDT&limit={limit}");
    let start = Instant::now();
    loop {
        let (status, body) = rest(gateway, &path);
        if status == 200 {
            return body;
        }
        // Before the first delta has been published, the book is not there yet.
        assert_eq!(
            (status, &body["code"]),
            (503, &Value::from(-1001)),
            "{body}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no snapshot in time: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn price(text: &Value) -> Decimal {
    Decimal::from_str(text.as_str().expect("a decimal string")).expect("a decimal")
}

/// `[["price","qty"],..]` as pairs of strings.
fn pairs(levels: &Value) -> Vec<(String, String)> {
    levels
        .as_array()
        .expect("an array of levels")
        .iter()
        .map(|level| {
            let level = level.as_array().expect("a level is [price, qty]");
            assert_eq!(level.len(), 2, "{level:?}");
            let text = |v: &Value| v.as_str().expect("a string").to_string();
            (text(&level[0]), text(&level[1]))
        })
        .collect()
}

/// A client's book, kept as Binance tells clients to (§4.1), strictly: after the snapshot every
/// event must start right after the previous one (python-binance's rule).
#[derive(Debug, Default)]
struct LocalBook {
    id: u64,
    bids: BTreeMap<Decimal, (String, String)>,
    asks: BTreeMap<Decimal, (String, String)>,
    /// Whether an event has been applied since the snapshot.
    continued: bool,
}

impl LocalBook {
    fn from_snapshot(snapshot: &Value) -> Self {
        let mut book = LocalBook {
            id: snapshot["lastUpdateId"].as_u64().expect("lastUpdateId"),
            ..Default::default()
        };
        for (price, qty) in pairs(&snapshot["bids"]) {
            book.bids
                .insert(Decimal::from_str(&price).unwrap(), (price, qty));
        }
        for (price, qty) in pairs(&snapshot["asks"]) {
            book.asks
                .insert(Decimal::from_str(&price).unwrap(), (price, qty));
        }
        book
    }

    /// Applies a `depthUpdate`; panics on a gap.
    fn apply(&mut self, event: &Value) {
        assert_eq!(event["e"], "depthUpdate", "{event}");
        let (first, last) = (event["U"].as_u64().unwrap(), event["u"].as_u64().unwrap());
        if last <= self.id {
            return;
        }
        if self.continued {
            assert_eq!(
                first,
                self.id + 1,
                "a gap after update id {}: {event}",
                self.id
            );
        } else {
            assert!(
                first <= self.id + 1,
                "the first event after the snapshot at {} leaves a gap: {event}",
                self.id
            );
        }
        for (side, levels) in [(&mut self.bids, &event["b"]), (&mut self.asks, &event["a"])] {
            for (price, qty) in pairs(levels) {
                let key = Decimal::from_str(&price).unwrap();
                if Decimal::from_str(&qty).unwrap().is_zero() {
                    side.remove(&key);
                } else {
                    side.insert(key, (price, qty));
                }
            }
        }
        self.id = last;
        self.continued = true;
    }

    fn bids(&self) -> Vec<(String, String)> {
        self.bids.values().rev().cloned().collect()
    }

    fn asks(&self) -> Vec<(String, String)> {
        self.asks.values().cloned().collect()
    }
}

/// The next `depthUpdate` on `client` (combined format, one stream).
async fn next_update(client: &mut Client) -> Value {
    loop {
        let message = next_json(client, Duration::from_secs(10)).await;
        if message["data"]["e"] == "depthUpdate" {
            return message["data"].clone();
        }
    }
}

/// Follows Binance's procedure on `client` (subscribed to BTCUSDT's diff depth) with the
/// snapshots `rest_node` serves, then `rounds` times takes a fresh snapshot and reads events
/// until the client's book reaches its update id: the two must be equal there. Returns the
/// update ids compared.
async fn follow_and_compare(client: &mut Client, rest_node: &Gateway, rounds: usize) -> Vec<u64> {
    // 1. Buffer events, note the first one's U.
    let mut buffered = vec![next_update(client).await];
    let first_u = buffered[0]["U"].as_u64().unwrap();
    // 2. A snapshot no older than the first buffered event.
    let mut initial = snapshot(rest_node, 5000);
    while initial["lastUpdateId"].as_u64().unwrap() + 1 < first_u {
        initial = snapshot(rest_node, 5000);
    }
    // 3-4. Drop what the snapshot has, apply the rest.
    let mut book = LocalBook::from_snapshot(&initial);
    let target = book.id;
    while buffered.last().unwrap()["u"].as_u64().unwrap() <= target {
        buffered.push(next_update(client).await);
    }
    for event in &buffered {
        book.apply(event);
    }
    let mut compared = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    while compared.len() < rounds {
        assert!(
            Instant::now() < deadline,
            "compared only {compared:?} in time"
        );
        tokio::time::sleep(Duration::from_millis(350)).await;
        let fresh = snapshot(rest_node, 5000);
        let id = fresh["lastUpdateId"].as_u64().unwrap();
        assert!(
            id >= book.id,
            "the gateway's snapshot ({id}) is behind an event the client has ({})",
            book.id
        );
        while book.id < id {
            book.apply(&next_update(client).await);
        }
        // Every snapshot id is the `u` of some 100 ms event, so the client lands on it.
        assert_eq!(
            book.id, id,
            "the client's events skip the snapshot's update id"
        );
        assert_eq!(book.bids(), pairs(&fresh["bids"]), "bids at update id {id}");
        assert_eq!(book.asks(), pairs(&fresh["asks"]), "asks at update id {id}");
        compared.push(id);
    }
    compared
}

#[test]
fn depth_snapshot_has_binances_shape_and_limits() {
    let gateway = Gateway::start(&[]);
    let full = snapshot(&gateway, 5000);
    let keys: Vec<&String> = full.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["lastUpdateId", "bids", "asks"], "{full}");
    assert!(full["lastUpdateId"].as_u64().unwrap() > 0);
    let (bids, asks) = (pairs(&full["bids"]), pairs(&full["asks"]));
    assert!(bids.len() > 5 && asks.len() > 5, "{full}");
    let bid_prices: Vec<Decimal> = full["bids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| price(&l[0]))
        .collect();
    let ask_prices: Vec<Decimal> = full["asks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| price(&l[0]))
        .collect();
    assert!(
        bid_prices.windows(2).all(|w| w[0] > w[1]),
        "bids best first"
    );
    assert!(
        ask_prices.windows(2).all(|w| w[0] < w[1]),
        "asks best first"
    );
    assert!(bid_prices[0] < ask_prices[0], "the book is not crossed");
    assert!(bids
        .iter()
        .chain(&asks)
        .all(|(_, qty)| !Decimal::from_str(qty).unwrap().is_zero()));

    let five = snapshot(&gateway, 5);
    assert_eq!(pairs(&five["bids"]).len(), 5);
    assert_eq!(pairs(&five["asks"]).len(), 5);
    // No limit: 100 a side (the demo book keeps 100 levels a side, give or take a trade).
    let (status, default) = rest(&gateway, "/api/v3/depth?symbol=BTCUSDT");
    assert_eq!(status, 200);
    let sides = (pairs(&default["bids"]).len(), pairs(&default["asks"]).len());
    assert!(
        sides.0 <= 100 && sides.1 <= 100 && sides.0 > 50,
        "{sides:?}"
    );
    // Past 5000, the largest snapshot, as Binance does.
    let (status, _) = rest(&gateway, "/api/v3/depth?symbol=BTCUSDT&limit=100000");
    assert_eq!(status, 200);
    assert!(gateway.metric("wsgate_depth_snapshots_total{result=\"ok\"}") >= 4.0);
}

#[test]
fn depth_snapshot_errors_are_binances() {
    let gateway = Gateway::start(&[]);
    let cases = [
        ("/api/v3/depth?symbol=NOSUCHUSDT", -1121, "Invalid symbol."),
        (
            "/api/v3/depth",
            -1102,
            "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
        ),
        (
            "/api/v3/depth?limit=10",
            -1102,
            "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
        ),
        (
            "/api/v3/depth?symbol=btcusdt",
            -1100,
            "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'.",
        ),
        (
            "/api/v3/depth?symbol=BTCUSDT&limit=ten",
            -1100,
            "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'.",
        ),
        (
            "/api/v3/depth?symbol=BTCUSDT&limit=0",
            -1130,
            "Data sent for parameter 'limit' is not valid.",
        ),
    ];
    for (path, code, msg) in cases {
        let (status, body) = rest(&gateway, path);
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["code"], code, "{path}: {body}");
        assert_eq!(body["msg"], msg, "{path}");
    }
    assert_eq!(
        gateway.metric("wsgate_depth_snapshots_total{result=\"unknown_symbol\"}"),
        1.0
    );
}

#[test]
fn a_served_symbol_without_a_book_is_unavailable() {
    // The depth streams are declared, but no route publishes them.
    let mut config = common::shipped_config();
    config["routes"]
        .as_array_mut()
        .unwrap()
        .retain(|route| route["id"] != "demo-book");
    let gateway = Gateway::start_with(config, &[]);
    let (status, body) = rest(&gateway, "/api/v3/depth?symbol=BTCUSDT");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], -1001);
    assert_eq!(
        gateway.metric("wsgate_depth_snapshots_total{result=\"unavailable\"}"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_following_binances_procedure_holds_the_gateways_book() {
    let gateway = Gateway::start(&[]);
    let mut client = gateway.connect("/stream?streams=btcusdt@depth@100ms").await;
    let compared = follow_and_compare(&mut client, &gateway, 6).await;
    // Over two seconds at least: the 1000 ms series has fed the gateway's book too.
    assert!(
        compared.windows(2).all(|w| w[0] <= w[1]),
        "update ids go forward: {compared:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_1000ms_series_shares_the_update_id_space() {
    let gateway = Gateway::start(&[]);
    let mut client = gateway.connect("/stream?streams=btcusdt@depth").await;
    let mut buffered = vec![next_update(&mut client).await];
    let first_u = buffered[0]["U"].as_u64().unwrap();
    let mut initial = snapshot(&gateway, 5000);
    while initial["lastUpdateId"].as_u64().unwrap() + 1 < first_u {
        initial = snapshot(&gateway, 5000);
    }
    let mut book = LocalBook::from_snapshot(&initial);
    while buffered.last().unwrap()["u"].as_u64().unwrap() <= book.id {
        buffered.push(next_update(&mut client).await);
    }
    for event in &buffered {
        book.apply(event);
    }
    // Events arrive once a second; the snapshot moves every 100 ms. Right after an event the
    // two are at the same update id (the event's `u` is the last change of its second) until
    // the next change: poll for those moments.
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            if events.send(next_update(&mut client).await).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut met = Vec::new();
    while met.len() < 2 {
        assert!(Instant::now() < deadline, "the ids met only at {met:?}");
        while let Ok(event) = received.try_recv() {
            book.apply(&event);
        }
        let fresh = snapshot(&gateway, 5000);
        let id = fresh["lastUpdateId"].as_u64().unwrap();
        if id == book.id && !met.contains(&id) {
            assert_eq!(book.bids(), pairs(&fresh["bids"]), "bids at update id {id}");
            assert_eq!(book.asks(), pairs(&fresh["asks"]), "asks at update id {id}");
            met.push(id);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_a_node_without_the_book_asks_the_node_that_keeps_it() {
    let redis = RedisServer::new();
    let nats = NatsServer::new();
    let config = common::shipped_config();
    let token = ["--admin-token", common::TEST_TOKEN];
    let a = Gateway::cluster_node_with(&config, &redis.url(), &nats.url(), "a", &token);
    let b = Gateway::cluster_node_with(&config, &redis.url(), &nats.url(), "b", &token);
    // Whether a node consumes the demo source now (and so keeps its books), and how many
    // books it ever started.
    let owns = |node: &Gateway| node.metric("wsgate_source_up{datasource=\"demo\"}") == 1.0;
    let books_started = |node: &Gateway| node.log().matches("keeping the order book").count();
    // The first node owns the source alone until the second joins and takes its share.
    wait_for("the cluster of two", || {
        [&a, &b]
            .iter()
            .any(|n| n.log().contains(r#"peers=["a", "b"]"#))
    });
    // The node the store assigns the demo source to, once it consumes it and the other has
    // let it go (right after the second node joins, the first may still run it).
    let assigned = || -> Option<String> {
        let out = a.cli(&["config", "get"]);
        let stored: Value = serde_json::from_str(&out.stdout).ok()?;
        let routes = stored["config"]["routes"].as_array()?;
        let demo = routes.iter().find(|r| r["data_source"] == "demo")?;
        demo["peer_id"].as_str().map(str::to_string)
    };
    wait_for("the assigned node the demo source's one owner", || {
        assigned().is_some_and(|id| owns(&a) == (id == "a") && owns(&b) == (id == "b"))
    });
    let (owner, other) = if owns(&a) { (a, b) } else { (b, a) };
    let started = books_started(&other);
    let mut client = other.connect("/stream?streams=btcusdt@depth@100ms").await;
    let compared = follow_and_compare(&mut client, &other, 3).await;
    assert_eq!(compared.len(), 3);
    assert!(
        !owns(&other) && books_started(&other) == started,
        "the node answered from the owner's book"
    );

    // The owner goes: the other node takes the demo source over, and with it the books.
    drop(owner);
    drop(client);
    let start = Instant::now();
    loop {
        let (status, body) = rest(&other, "/api/v3/depth?symbol=BTCUSDT&limit=5");
        if status == 200 && owns(&other) {
            break;
        }
        // Meanwhile: the old answer or unavailable, never anything else.
        assert!(status == 200 || body["code"] == -1001, "{status} {body}");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the books did not move: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut client = other.connect("/stream?streams=btcusdt@depth@100ms").await;
    follow_and_compare(&mut client, &other, 2).await;
}

/// Runs `tests/clients/depth_clients.py <client>` against `gateway` for `rounds` comparisons;
/// its output lines, parsed. Fails if the script does.
fn run_depth_client(client: &str, gateway: &Gateway, rounds: usize) -> Vec<Value> {
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/depth_clients.py");
    let mut child = std::process::Command::new(common::python())
        .arg(script)
        .args([
            client,
            &format!("http://{}", gateway.addr),
            &format!("ws://{}", gateway.addr),
            &rounds.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting the client script");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("{client}: the client script did not finish");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    let lines: Vec<Value> = out
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    assert!(status.success(), "{client} failed ({status}): {out}");
    lines
}

/// The update ids at which `client` held the gateway's book.
fn compared(lines: &[Value]) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| l["compared"].as_u64())
        .collect()
}

#[test]
fn ccxt_watch_order_book_holds_the_gateways_book() {
    let gateway = Gateway::start(&[]);
    let lines = run_depth_client("ccxt", &gateway, 4);
    assert_eq!(compared(&lines).len(), 4, "{lines:?}");
    assert_eq!(lines.last().unwrap()["done"], true);
}

#[test]
fn python_binance_depth_cache_holds_the_gateways_book() {
    let gateway = Gateway::start(&[]);
    let lines = run_depth_client("python-binance", &gateway, 4);
    assert_eq!(compared(&lines).len(), 4, "{lines:?}");
    assert_eq!(lines.last().unwrap()["done"], true);
}
