//! A config store that loses everything (a Redis restarted without persistence, or flushed as a
//! failover to an empty replica would leave it): the nodes say so, one of them writes back what
//! they run, and clients stream on without a gap or a duplicate.

mod common;

use std::time::{Duration, Instant};

use common::accounts;
use common::nats::NatsServer;
use common::redis::RedisServer;
use common::trades::{expect_trades, produce};
use common::{http_get_auth, wait_for, Gateway, Seen, TEST_TOKEN};
use serde_json::{json, Value};

const WS_PATH: &str = "/stream?streams=btcusdt@trade";

/// How long the nodes may take from an empty store to a restored one, as documented.
const RESTORE_BOUND: Duration = Duration::from_secs(5);

fn config(url: &str) -> Value {
    common::trades::redis_stream_config(url)
}

/// `GET path` on the operator API: the JSON body.
fn api(gateway: &Gateway, path: &str) -> Value {
    let (code, body) = http_get_auth(gateway.admin, path, TEST_TOKEN).expect("operator API");
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// What an operator sees of the store through `gateway`: the mapper list and the current config.
fn operator_view(gateway: &Gateway) -> (String, Value) {
    let list = gateway.cli(&["mapper", "list"]);
    (list.stdout, api(gateway, "/api/v1/config"))
}

/// Pushes `tagged_trade` as the next version of `binance_trade` through `gateway`, promoted.
fn push_tagged_trade(gateway: &Gateway) {
    let sample =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mappers/samples/trade.json");
    let tagged = common::mappers_dir().join("tagged_trade.wasm");
    let push = gateway.cli(&[
        "mapper",
        "push",
        "binance_trade",
        tagged.to_str().unwrap(),
        "--sample",
        sample.to_str().unwrap(),
        "--promote",
    ]);
    assert!(push.ok, "{push:?}");
}

/// `/readyz`: status and body.
fn readyz(gateway: &Gateway) -> (u16, String) {
    gateway.http_get("/readyz").unwrap()
}

/// How many log lines of `gateway` contain `text`.
fn log_lines(gateway: &Gateway, text: &str) -> usize {
    gateway.log().lines().filter(|l| l.contains(text)).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_restore_an_emptied_store_while_clients_stream() {
    let mut store = RedisServer::new();
    let data = RedisServer::new();
    let nats = NatsServer::new();
    let config = config(&data.url());
    let extra = ["--admin-token", TEST_TOKEN];
    let nodes: Vec<Gateway> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|id| Gateway::cluster_node_with(&config, &store.url(), &nats.url(), id, &extra))
        .collect();
    wait_for("the datasource consumed by one node", || {
        nodes
            .iter()
            .map(|n| n.metric("wsgate_source_up{"))
            .sum::<f64>()
            == 1.0
    });
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(node.connect(WS_PATH).await);
        wait_for("the node's bus subscription", || {
            node.metric("wsgate_bus_subscriptions ") == 1.0
        });
    }
    produce(&data.url(), 1..=20).await;
    for client in &mut clients {
        expect_trades(client, 1..=20).await;
    }
    // What the operator saw before, to compare with what comes back. The assignment is in place
    // (the config names the owner of every route) before the store goes.
    wait_for("the routes assigned", || {
        api(&nodes[0], "/api/v1/config")["config"]["routes"][0]["peer_id"].is_string()
    });
    let before = operator_view(&nodes[0]);

    // Redis goes away and comes back empty; clients stream on throughout.
    store.stop();
    produce(&data.url(), 21..=40).await;
    for client in &mut clients {
        expect_trades(client, 21..=40).await;
    }
    for node in &nodes {
        wait_for("the store reported unreachable", || {
            let (status, body) = readyz(node);
            status == 200
                && body.starts_with("degraded\n")
                && body.contains("store: config store unreachable")
        });
        assert_eq!(node.metric("wsgate_config_store_up "), 0.0);
    }
    store.start();
    let emptied = Instant::now();
    produce(&data.url(), 41..=60).await;
    for node in &nodes {
        wait_for("the store restored, as every node sees it", || {
            readyz(node) == (200, "ready\n".to_string())
                && node.metric("wsgate_config_store_up ") == 1.0
        });
    }
    let took = emptied.elapsed();
    println!("empty store restored on every node after {took:?}");
    for node in &nodes {
        assert_eq!(
            operator_view(node),
            before,
            "what the operator sees is back"
        );
    }
    for client in &mut clients {
        expect_trades(client, 41..=60).await;
    }
    assert!(
        took <= RESTORE_BOUND,
        "restored after {took:?}, over the {RESTORE_BOUND:?} bound"
    );

    // One node wrote it back, in one audited entry; the others checked it.
    let restored: f64 = nodes
        .iter()
        .map(|n| n.metric("wsgate_store_restores_total{result=\"restored\"}"))
        .sum();
    assert_eq!(restored, 1.0, "exactly one node restores");
    let followed = || {
        nodes
            .iter()
            .map(|n| n.metric("wsgate_store_restores_total{result=\"followed\"}"))
            .sum::<f64>()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while followed() != 2.0 {
        let logs: Vec<String> = nodes
            .iter()
            .map(|n| {
                n.log()
                    .lines()
                    .filter(|l| l.contains("config store"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect();
        assert!(
            Instant::now() < deadline,
            "the others did not check the restored store:\n{}",
            logs.join("\n---\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let history = api(&nodes[1], "/api/v1/config/history?limit=10");
    let entries = history.as_array().unwrap();
    assert_eq!(
        entries.len(),
        1,
        "the log before the loss is gone: {history}"
    );
    let entry = &entries[0];
    assert_eq!(entry["action"], "store.restore");
    assert_eq!(entry["after"]["lost"]["modules"], json!([]), "{entry}");
    assert_eq!(entry["after_version"], before.1["version"]);
    let cli_history = nodes[2].cli(&["config", "history"]);
    assert!(
        cli_history.stdout.contains("store.restore"),
        "{cli_history:?}"
    );
    for node in &nodes {
        assert_eq!(log_lines(node, "the config store is away"), 1, "said once");
    }

    // A promote after the restore reaches every node, and the owner maps with it.
    push_tagged_trade(&nodes[2]);
    let revision = api(&nodes[2], "/api/v1/status")["revision"].clone();
    let owner = nodes
        .iter()
        .find(|n| n.metric("wsgate_source_up{") == 1.0)
        .expect("an owner");
    wait_for("every node on the promoted version", || {
        nodes
            .iter()
            .all(|n| api(n, "/api/v1/status")["revision"].as_u64() >= revision.as_u64())
            && api(owner, "/api/v1/status")["routes"]["trades"][0] == "binance_trade@2"
    });
    produce(&data.url(), 61..=80).await;
    for client in &mut clients {
        let got =
            common::collect_stream(client, "btcusdt@trade", 20, Duration::from_secs(30)).await;
        let ids: Vec<u64> = got.iter().map(|t| t["t"].as_u64().unwrap()).collect();
        assert_eq!(ids, (61..=80).collect::<Vec<_>>(), "no gap, no duplicate");
        assert_eq!(
            got[19]["mapper"], "tagged_trade",
            "the promoted version maps"
        );
    }
}

/// The arguments of a node `node-a` with its store in Redis at `url` (prefix `test:`).
fn redis_store_args(url: &str) -> [&str; 8] {
    [
        "--redis",
        url,
        "--redis-prefix",
        "test:",
        "--node-id",
        "node-a",
        "--admin-token",
        TEST_TOKEN,
    ]
}

/// An embedded node with its store in Redis at `url` (prefix `test:`), streaming account events
/// from `nats`.
fn account_node(url: &str, nats: &str) -> Gateway {
    Gateway::start_with(accounts::config(nats), &redis_store_args(url))
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_says_degraded_while_the_store_is_empty_and_held_listen_keys_survive() {
    let mut store = RedisServer::new();
    let nats = NatsServer::new();
    let node = account_node(&store.url(), &nats.url());
    let key = accounts::create_key(&node, "alice", "user-stream");
    let held = accounts::listen_key(node.addr, &key.key);
    let idle = accounts::listen_key(
        node.addr,
        &accounts::create_key(&node, "bob", "user-stream").key,
    );
    let mut client = accounts::connect_from(node.addr, "127.0.0.1", &format!("/ws/{held}"))
        .await
        .unwrap();
    accounts::until_flowing(&nats.url(), "alice", &mut client).await;
    assert_eq!(readyz(&node), (200, "ready\n".to_string()));
    wait_for("the node to count the API keys", || {
        node.metric("wsgate_api_keys ") == 2.0
    });

    // Emptied while someone else holds the restore lock: the store is reported empty until the
    // lock lapses, then this node restores it.
    let redis = redis::Client::open(store.url()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::pipe()
        .atomic()
        .cmd("FLUSHALL")
        .ignore()
        .cmd("SET")
        .arg("test:restore:lock")
        .arg("another-node")
        .arg("PX")
        .arg(3000)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    wait_for("the store reported empty", || {
        let (status, body) = readyz(&node);
        status == 200
            && body
                == "degraded\nstore: config store is empty: restoring it from what the nodes run\n"
    });
    assert_eq!(node.metric("wsgate_config_store_up "), 0.0);
    wait_for("the node to restore it once the lock lapsed", || {
        readyz(&node) == (200, "ready\n".to_string())
    });
    assert_eq!(
        node.metric("wsgate_store_restores_total{result=\"restored\"}"),
        1.0
    );
    assert_eq!(node.metric("wsgate_config_store_up "), 1.0);
    // API keys live in the store only: both are lost, counted, and refused from now on.
    assert_eq!(
        node.metric("wsgate_store_restore_lost_total{kind=\"api_key\"}"),
        2.0
    );
    let (status, body) =
        accounts::user_data_stream(node.addr, "127.0.0.1", "POST", Some(&key.key), "", "");
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["msg"],
        "Invalid API-key, IP, or permissions for action."
    );

    // The listen key a connection holds is written back, and its events keep flowing; one that
    // no connection held is gone, which its owner learns from its keepalive.
    let exists = |key: String| {
        let mut conn = conn.clone();
        async move {
            let found: bool = redis::cmd("EXISTS")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap();
            found
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !exists(format!("test:listen_key:{held}")).await {
        assert!(
            Instant::now() < deadline,
            "the held listen key was not written back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!exists(format!("test:listen_key:{idle}")).await);
    accounts::publish(&nats.url(), &[(Some("alice"), accounts::balance("BTC", 7))]).await;
    match accounts::next_within(&mut client, Duration::from_secs(10)).await {
        Some(Seen::Json(event)) => assert_eq!(event["a"], "BTC", "{event}"),
        other => panic!("the held key's connection should stream on: {other:?}"),
    }
    let refused = accounts::connect_from(node.addr, "127.0.0.1", &format!("/ws/{idle}")).await;
    let Err((status, body)) = refused else {
        panic!("the unheld key is gone")
    };
    assert_eq!(
        (status, body["code"].clone()),
        (400, json!(-1125)),
        "{body}"
    );

    // Down, then back empty: said once per outage, not on every poll.
    store.stop();
    wait_for("the store reported unreachable", || {
        readyz(&node).1.contains("store: config store unreachable")
    });
    std::thread::sleep(Duration::from_secs(3));
    store.start();
    wait_for("the store restored again", || {
        readyz(&node) == (200, "ready\n".to_string())
    });
    assert_eq!(
        node.metric("wsgate_store_restores_total{result=\"restored\"}"),
        2.0
    );
    assert_eq!(
        log_lines(&node, "the config store is away"),
        2,
        "{}",
        node.log()
    );
    assert_eq!(log_lines(&node, "assignment check failed"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_went_back_in_time_gets_what_the_nodes_run() {
    let store = RedisServer::new();
    let url = store.url();
    let node = Gateway::start(&redis_store_args(&url));
    let redis = redis::Client::open(store.url()).unwrap();
    // The failover below moves every module the store holds (tens of megabytes).
    let patient =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
    let mut conn = redis
        .get_multiplexed_async_connection_with_config(&patient)
        .await
        .unwrap();
    // What a replica that stops replicating now holds.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("test:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut replica = Vec::new();
    for key in keys {
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        replica.push((key, dump));
    }

    // A change the replica never sees.
    push_tagged_trade(&node);
    let runs_v2 = || api(&node, "/api/v1/status")["routes"]["demo-trades"][0] == "binance_trade@2";
    wait_for("the node on the pushed version", runs_v2);
    let before = operator_view(&node);

    // Failover to the replica, while another node holds the restore lock for a moment.
    let mut failover = redis::pipe();
    failover.atomic().cmd("FLUSHALL").ignore();
    for (key, dump) in &replica {
        failover.cmd("RESTORE").arg(key).arg(0).arg(dump).ignore();
    }
    failover
        .cmd("SET")
        .arg("test:restore:lock")
        .arg("another-node")
        .arg("PX")
        .arg(2000)
        .ignore();
    let _: () = failover.query_async(&mut conn).await.unwrap();
    wait_for("the store reported behind", || {
        let (status, body) = readyz(&node);
        assert!(runs_v2(), "the node went back to what the replica holds");
        status == 200 && body.contains("store: config store went back to revision")
    });
    wait_for("the store restored", || {
        assert!(runs_v2(), "the node went back to what the replica holds");
        readyz(&node) == (200, "ready\n".to_string())
    });
    assert_eq!(
        operator_view(&node).0,
        before.0,
        "the pushed version is listed again"
    );
    let history = api(&node, "/api/v1/config/history?limit=1");
    assert_eq!(history[0]["action"], "store.restore", "{history}");
    assert_eq!(
        node.metric("wsgate_store_restores_total{result=\"restored\"}"),
        1.0
    );
}

#[tokio::test]
async fn an_embedded_node_counts_its_api_keys_too() {
    let node = Gateway::start(&["--admin-token", TEST_TOKEN]);
    let listed = |node: &Gateway| {
        api(node, "/api/v1/keys")["keys"]
            .as_array()
            .expect("a list of keys")
            .len() as f64
    };
    let demo = listed(&node);
    assert!(demo > 0.0, "the demo accounts' keys");
    wait_for("the demo keys counted", || {
        node.metric("wsgate_api_keys ") == demo
    });
    accounts::create_key(&node, "carol", "user-stream");
    wait_for("the new key counted", || {
        node.metric("wsgate_api_keys ") == demo + 1.0
    });
    assert_eq!(node.metric("wsgate_config_store_up "), 1.0);
}
