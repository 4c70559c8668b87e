//! Three nodes behind a real HAProxy running the shipped `deploy/haproxy.cfg`: clients connect
//! through it and spread over the nodes; a drained node closes its clients with 1001 and they
//! reconnect through HAProxy to the others.

mod common;

use std::time::Duration;

use common::haproxy::HaProxy;
use common::{next_seen, Client, Gateway, Seen};

const PATH: &str = "/stream?streams=btcusdt@trade";
const CLIENTS: usize = 30;

/// The next trade, skipping anything else.
async fn next_trade(client: &mut Client) {
    loop {
        match next_seen(client, Duration::from_secs(20)).await {
            Seen::Json(value) if value["stream"] == "btcusdt@trade" => return,
            Seen::Json(_) => continue,
            other => panic!("expected a trade, got {other:?}"),
        }
    }
}

/// Reads until the connection closes (its close code) or `limit` passes with it open (None).
async fn close_within(mut client: Client, limit: Duration) -> Option<u16> {
    let closed = async {
        loop {
            match next_seen(&mut client, Duration::from_secs(60)).await {
                Seen::Json(_) => continue,
                Seen::Close(code, _) => return code,
                Seen::Ended => return 1006,
            }
        }
    };
    tokio::time::timeout(limit, closed).await.ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drained_node_hands_its_clients_to_the_others_through_haproxy() {
    let mut nodes: Vec<Gateway> = (0..3).map(|_| Gateway::start(&[])).collect();
    let proxy = HaProxy::start(&nodes);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = proxy.connect(PATH).await;
        next_trade(&mut client).await;
        clients.push(client);
    }
    let per_node: Vec<f64> = nodes
        .iter()
        .map(|n| n.metric("wsgate_connections "))
        .collect();
    assert_eq!(per_node.iter().sum::<f64>(), CLIENTS as f64, "{per_node:?}");
    assert!(per_node.iter().all(|&n| n >= 5.0), "spread: {per_node:?}");

    // Drain node 0: its clients are closed with 1001, the others keep streaming.
    let drained = per_node[0] as usize;
    nodes[0].signal("TERM");
    let watchers: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(close_within(c, Duration::from_secs(5))))
        .collect();
    let mut closes = Vec::new();
    for watcher in watchers {
        closes.push(watcher.await.unwrap());
    }
    let closed: Vec<u16> = closes.iter().flatten().copied().collect();
    assert_eq!(closed.len(), drained, "closes: {closes:?}");
    assert!(closed.iter().all(|&c| c == 1001), "close codes: {closed:?}");

    // They reconnect at once through HAProxy, which sends them to the other nodes.
    let mut reconnected = Vec::new();
    for _ in 0..drained {
        let mut client = proxy.connect(PATH).await;
        next_trade(&mut client).await;
        reconnected.push(client);
    }
    assert!(nodes[0].wait_exit(Duration::from_secs(10)).is_some());
    // The clients that were never closed were dropped by the watchers: only the reconnected
    // ones remain, all on the two live nodes.
    common::wait_for("the reconnected clients on the live nodes", || {
        nodes[1].metric("wsgate_connections ") + nodes[2].metric("wsgate_connections ")
            == drained as f64
    });
    drop(reconnected);
}
