//! Demo `match` events for broker tests, and checks of what a client and the gateway saw.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::{collect_stream, next_seen, Client, Gateway};

/// How long a check waits.
const WAIT: Duration = Duration::from_secs(30);

/// The demo `match` event of BTCUSDT trade `id` (one fill): `binance_trade` maps it to a
/// `btcusdt@trade` message whose `t` is `id`.
pub fn match_event(id: u64) -> String {
    json!({
        "type": "match", "symbol": "BTCUSDT", "ts_us": 1_767_000_000_000_000u64 + id,
        "taker_order_id": 90_000 + id, "taker_side": "BUY",
        "fills": [{"trade_id": id, "agg_id": id, "price": "1.00000000", "qty": "1.00000000",
                   "maker_order_id": 80_000 + id}]
    })
    .to_string()
}

/// One `redis_stream` datasource reading key `trades` of the Redis at `url`, mapped by
/// `binance_trade` to `btcusdt@trade` (fanout `md.btcusdt.trade`); a cluster assigns its owner.
pub fn redis_stream_config(url: &str) -> serde_json::Value {
    json!({
        "vars": {},
        "datasource": [{"version": 1, "type": "redis_stream", "name": "trades",
                        "properties": {"url": url, "streams": ["trades"], "block_ms": 100}}],
        "topics": [{"version": 1, "topic": "{symbol}@trade", "vars": {"symbol": ["btcusdt"]},
                    "auth": "public"}],
        "routes": [{"id": "trades", "version": 1, "data_source": "trades", "upstream": ["trades"],
                    "mappings": [{"mapper": "binance_trade", "fanout_topic": "md.{symbol}.trade",
                                  "ws_topic": "{symbol}@trade"}]}]
    })
}

/// Appends the `match` events of trades `ids` to stream `trades` of the Redis at `url`.
pub async fn produce(url: &str, ids: std::ops::RangeInclusive<u64>) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.cmd("XADD")
            .arg("trades")
            .arg("*")
            .arg("payload")
            .arg(match_event(id))
            .ignore();
    }
    pipe.query_async::<()>(&mut conn).await.unwrap();
}

/// Waits until the gateway has received exactly `expected` upstream events (failing on more).
pub fn wait_events(gateway: &Gateway, expected: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let events = gateway.metric("wsgate_source_events_total");
        if events == expected {
            return;
        }
        assert!(
            events < expected,
            "{events} events received, expected {expected}"
        );
        assert!(
            Instant::now() < deadline,
            "{events} of {expected} events in time:\n{}",
            gateway.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Receives `btcusdt@trade` trades `ids` on `client`, in order, then nothing more for half a
/// second (no duplicate).
pub async fn expect_trades(client: &mut Client, ids: std::ops::RangeInclusive<u64>) {
    let expected: Vec<u64> = ids.collect();
    let got = collect_stream(client, "btcusdt@trade", expected.len(), WAIT).await;
    let seen: Vec<u64> = got.iter().map(|t| t["t"].as_u64().unwrap()).collect();
    assert_eq!(seen, expected, "trade ids out of order or missing");
    for t in &got {
        assert_eq!(t["e"], "trade");
        assert_eq!(t["s"], "BTCUSDT");
    }
    expect_silence(client).await;
}

/// Nothing more arrives for half a second.
pub async fn expect_silence(client: &mut Client) {
    match tokio::time::timeout(
        Duration::from_millis(500),
        next_seen(client, Duration::from_secs(5)),
    )
    .await
    {
        Err(_) => {}
        Ok(seen) => panic!("unexpected message: {seen:?}"),
    }
}

/// The index of the node consuming [`redis_stream_config`]'s datasource, once one does.
pub fn trades_owner(nodes: &[Gateway]) -> usize {
    let mut owner = None;
    super::wait_for("the datasource consumed", || {
        owner = nodes
            .iter()
            .position(|n| n.metric("wsgate_source_up{datasource=\"trades\"}") == 1.0);
        owner.is_some()
    });
    owner.unwrap()
}

/// What a resuming client (`resume=true`) sees on `btcusdt@trade`.
#[derive(Debug, Clone, PartialEq)]
pub enum Got {
    /// A trade: its sequence number and trade id.
    Trade { seq: u64, t: u64 },
    /// A resync notice: events from `from` on were not kept; `next` follows.
    Resync { from: u64, next: u64 },
}

/// The next event or notice of `btcusdt@trade` within `limit`; `None` when the connection
/// ends (or nothing comes in time).
pub async fn next_got(client: &mut Client, limit: Duration) -> Option<Got> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let message = tokio::time::timeout_at(deadline, client.next())
            .await
            .ok()??;
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        };
        let value: Value = serde_json::from_str(&text).expect("gateway sent JSON");
        if value["stream"] != "btcusdt@trade" {
            continue;
        }
        if let Some(resync) = value.get("resync") {
            return Some(Got::Resync {
                from: resync["from"].as_u64().unwrap(),
                next: resync["next"].as_u64().unwrap(),
            });
        }
        let seq = value["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("no seq: {value}"));
        let t = value["data"]["t"].as_u64().unwrap();
        return Some(Got::Trade { seq, t });
    }
}
