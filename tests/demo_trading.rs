//! The demo shows the private side end to end: the shipped demo config seeds alice and bob
//! (fixed, documented credentials), and an order placed over `/ws-api/v3` is matched by the demo
//! exchange against the demo market, its `executionReport`s and `outboundAccountPosition`s
//! arriving on the user's stream through the `binance_user_data` mapper, with a periodic
//! deposit's `balanceUpdate`. Alone, the exchange answers in process; in a cluster it is the
//! NATS responder of the node running the demo market.

mod common;

use std::time::{Duration, Instant};

use common::accounts::{drain, next_within, now_ms, sign, Signer};
use common::nats::NatsServer;
use common::redis::RedisServer;
use common::{send_text, shipped_config, Client, Gateway, Seen, TEST_TOKEN};
use serde_json::{json, Value};

const ALICE: (&str, &str) = ("wsgate-demo-alice", "wsgate-demo-alice-secret");
const BOB: (&str, &str) = ("wsgate-demo-bob", "wsgate-demo-bob-secret");

/// Sends `request`; the answer with its id, and the events that came before it.
async fn call(client: &mut Client, request: Value) -> (Value, Vec<Value>) {
    let id = request["id"].clone();
    send_text(client, &request.to_string()).await;
    let mut events = Vec::new();
    loop {
        match next_within(client, Duration::from_secs(10)).await {
            Some(Seen::Json(m)) if m.get("status").is_some() && m["id"] == id => {
                return (m, events)
            }
            Some(Seen::Json(m)) => events.push(m),
            other => panic!("no answer to {id}: {other:?}"),
        }
    }
}

fn signed(id: u64, method: &str, (key, secret): (&str, &str), params: Value) -> Value {
    let mut params = params;
    params["apiKey"] = json!(key);
    params["timestamp"] = json!(now_ms());
    json!({"id": id, "method": method, "params": sign(params, Signer::Hmac(secret))})
}

async fn subscribed(gateway: &Gateway, who: (&str, &str)) -> Client {
    let mut ws = gateway.connect("/ws-api/v3").await;
    let (answer, _) = call(
        &mut ws,
        signed(1, "userDataStream.subscribe.signature", who, json!({})),
    )
    .await;
    assert_eq!(answer["status"], 200, "{answer}");
    ws
}

/// Places a market buy until the demo market has prices (right after start it may not yet).
async fn market_buy(ws: &mut Client, who: (&str, &str), quantity: &str) -> (Value, Vec<Value>) {
    let start = Instant::now();
    loop {
        let order =
            json!({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": quantity});
        let (answer, events) = call(ws, signed(2, "order.place", who, order)).await;
        if answer["status"] == 200 || start.elapsed() > Duration::from_secs(10) {
            return (answer, events);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|m| {
            let e = &m["event"];
            match e["x"].as_str() {
                Some(x) => format!("{}:{x}", e["e"].as_str().unwrap()),
                None => e["e"].as_str().unwrap().to_string(),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_user_trades_and_watches_the_fill_and_balances_arrive() {
    let gateway = Gateway::start(&[]);
    let mut alice = subscribed(&gateway, ALICE).await;
    let mut bob = subscribed(&gateway, BOB).await;

    let (placed, mut events) = market_buy(&mut alice, ALICE, "0.01").await;
    assert_eq!(placed["status"], 200, "{placed}");
    assert_eq!(placed["result"]["status"], "FILLED");
    events.extend(drain(&mut alice, Duration::from_millis(800)).await);
    assert_eq!(
        kinds(&events),
        [
            "executionReport:NEW",
            "outboundAccountPosition",
            "executionReport:TRADE",
            "outboundAccountPosition"
        ]
    );
    assert!(events.iter().all(|m| m["subscriptionId"] == 0));
    let fill = &events[2]["event"];
    assert_eq!(fill["i"], placed["result"]["orderId"]);
    assert_eq!(fill["z"], "0.01000000");
    let btc = events[3]["event"]["B"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["a"] == "BTC")
        .cloned();
    assert_eq!(btc.unwrap()["f"], "1.01000000");

    // A limit order far below the market rests, then is canceled.
    let resting = json!({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "1000"});
    let (answer, _) = call(&mut alice, signed(3, "order.place", ALICE, resting)).await;
    assert_eq!(answer["result"]["status"], "NEW", "{answer}");
    let order_id = answer["result"]["orderId"].clone();
    let (open, _) = call(
        &mut alice,
        signed(4, "openOrders.status", ALICE, json!({"symbol": "BTCUSDT"})),
    )
    .await;
    assert_eq!(open["result"].as_array().unwrap().len(), 1, "{open}");
    let (canceled, _) = call(
        &mut alice,
        signed(
            5,
            "order.cancel",
            ALICE,
            json!({"symbol": "BTCUSDT", "orderId": order_id}),
        ),
    )
    .await;
    assert_eq!(canceled["result"]["status"], "CANCELED", "{canceled}");
    let (account, _) = call(&mut alice, signed(6, "account.status", ALICE, json!({}))).await;
    let usdt = account["result"]["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["asset"] == "USDT")
        .cloned()
        .unwrap();
    assert_eq!(usdt["locked"], "0.00000000", "{account}");
    let (refused, _) = market_buy(&mut bob, BOB, "1000").await;
    assert_eq!(refused["error"]["code"], -2010, "{refused}");

    // Bob saw none of alice's events; both get the periodic deposit.
    let mut bob_saw = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    while !bob_saw
        .iter()
        .any(|m: &Value| m["event"]["e"] == "balanceUpdate")
    {
        assert!(Instant::now() < deadline, "no deposit: {bob_saw:?}");
        if let Some(Seen::Json(m)) = next_within(&mut bob, Duration::from_secs(1)).await {
            bob_saw.push(m);
        }
    }
    assert!(
        bob_saw.iter().all(|m| m["event"]["e"] != "executionReport"),
        "{bob_saw:?}"
    );
    let deposit = bob_saw
        .iter()
        .find(|m| m["event"]["e"] == "balanceUpdate")
        .unwrap();
    assert_eq!(deposit["event"]["a"], "USDT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_the_demo_exchange_answers_over_nats() {
    let redis = RedisServer::new();
    let nats = NatsServer::new();
    let node = |id: &str| {
        let extra = ["--admin-token", TEST_TOKEN];
        Gateway::cluster_node_with(&shipped_config(), &redis.url(), &nats.url(), id, &extra)
    };
    let (a, b) = (node("a"), node("b"));
    let mut watching = subscribed(&a, ALICE).await;
    let mut trading = b.connect("/ws-api/v3").await;
    let (placed, _) = market_buy(&mut trading, ALICE, "0.02").await;
    assert_eq!(placed["status"], 200, "{placed}");
    assert_eq!(placed["result"]["executedQty"], "0.02000000");
    let events = drain(&mut watching, Duration::from_secs(1)).await;
    let fills: Vec<&Value> = events
        .iter()
        .filter(|m| m["event"]["x"] == "TRADE")
        .collect();
    assert_eq!(fills.len(), 1, "{events:?}");
    assert_eq!(fills[0]["event"]["i"], placed["result"]["orderId"]);
}
