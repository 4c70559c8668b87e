//! Binance USD-M futures market streams on the futures path (`/futures/ws`, `/futures/stream`,
//! `/futures/public/ws`, `/futures/market/ws`), fed by the demo market's perpetuals:
//! `<symbol>@markPrice` every 3 s and `@markPrice@1s` every second, `<symbol>@forceOrder` and
//! `!forceOrder@arr` with Binance's payloads; the streams stay off the spot path and spot streams
//! off the futures path; ccxt's `binanceusdm` works against it unmodified but for its URL.

mod common;

use std::time::Duration;

use serde_json::{json, Value};

use common::{during, keys, request, Gateway};

fn decimal(value: &Value) -> f64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a decimal string: {value}"));
    assert_eq!(text.split('.').nth(1).map(str::len), Some(8), "{value}");
    text.parse().unwrap()
}

/// Eight hours in ms: funding times are multiples of it.
const FUNDING_PERIOD_MS: u64 = 8 * 3600 * 1000;

fn assert_mark_price(update: &Value) {
    assert_eq!(
        keys(update),
        ["e", "E", "s", "p", "ap", "P", "i", "r", "T"],
        "{update}"
    );
    assert_eq!(
        (&update["e"], &update["s"]),
        (&json!("markPriceUpdate"), &json!("BTCUSDT"))
    );
    let time = update["E"].as_u64().unwrap();
    assert_eq!(time % 1000, 0, "on a whole second: {update}");
    let (mark, index) = (decimal(&update["p"]), decimal(&update["i"]));
    assert!((mark - index).abs() / index < 0.005, "{update}");
    assert!(
        (decimal(&update["ap"]) - mark).abs() / mark < 0.005,
        "{update}"
    );
    assert!(
        (decimal(&update["P"]) - index).abs() / index < 0.05,
        "{update}"
    );
    assert!(decimal(&update["r"]).abs() <= 0.00375, "{update}");
    let funding = update["T"].as_u64().unwrap();
    assert_eq!(funding % FUNDING_PERIOD_MS, 0, "{update}");
    assert!(
        funding > time && funding <= time + FUNDING_PERIOD_MS,
        "{update}"
    );
}

#[tokio::test]
async fn mark_price_every_three_seconds_and_every_second_on_at_1s() {
    let gateway = Gateway::start(&[]);
    let mut client = gateway
        .connect("/futures/stream?streams=btcusdt@markPrice/btcusdt@markPrice@1s")
        .await;
    let got = during(&mut client, Duration::from_millis(7_500)).await;
    let times = |stream: &str| -> Vec<u64> {
        got.iter()
            .filter(|m| m["stream"] == stream)
            .map(|m| {
                assert_mark_price(&m["data"]);
                m["data"]["E"].as_u64().unwrap()
            })
            .collect()
    };
    let every_second = times("btcusdt@markPrice@1s");
    let every_three = times("btcusdt@markPrice");
    assert_eq!(
        got.len(),
        every_second.len() + every_three.len(),
        "streams named as clients name them: {got:?}"
    );
    assert!(every_second.len() >= 6, "{every_second:?}");
    assert!(
        every_second.windows(2).all(|w| w[1] - w[0] == 1000),
        "{every_second:?}"
    );
    assert!((2..=3).contains(&every_three.len()), "{every_three:?}");
    assert!(every_three.iter().all(|t| t % 3000 == 0), "{every_three:?}");
    assert!(
        every_three.windows(2).all(|w| w[1] - w[0] == 3000),
        "{every_three:?}"
    );
    // The 3-second updates are the same updates as the 1-second stream's at those seconds.
    for time in &every_three {
        assert!(
            every_second.contains(time) || *time < every_second[0],
            "{time}"
        );
    }
}

#[tokio::test]
async fn force_orders_per_symbol_and_for_every_symbol() {
    let mut config = common::shipped_config();
    config["datasource"][0]["properties"]["liquidations_per_min"] = json!(300);
    let gateway = Gateway::start_with(config, &[]);
    let mut one = gateway
        .connect("/futures/market/ws/btcusdt@forceOrder")
        .await;
    let mut all = gateway.connect("/futures/ws/!forceOrder@arr").await;
    let window = Duration::from_secs(6);
    let (one_seen, all_seen) = tokio::join!(during(&mut one, window), during(&mut all, window));
    assert!(!one_seen.is_empty(), "no BTCUSDT liquidation in {window:?}");
    let mut symbols = std::collections::BTreeSet::new();
    for (event, only_btc) in one_seen
        .iter()
        .map(|e| (e, true))
        .chain(all_seen.iter().map(|e| (e, false)))
    {
        assert_eq!(keys(event), ["e", "E", "o"], "{event}");
        assert_eq!(event["e"], "forceOrder");
        let order = &event["o"];
        assert_eq!(
            keys(order),
            ["s", "S", "o", "f", "q", "p", "ap", "X", "l", "z", "T"],
            "{order}"
        );
        assert_eq!(
            (&order["o"], &order["f"], &order["X"]),
            (&json!("LIMIT"), &json!("IOC"), &json!("FILLED"))
        );
        assert!(
            matches!(order["S"].as_str(), Some("BUY" | "SELL")),
            "{order}"
        );
        assert_eq!(order["q"], order["l"]);
        assert_eq!(order["q"], order["z"]);
        assert!(decimal(&order["q"]) > 0.0);
        let (price, average) = (decimal(&order["p"]), decimal(&order["ap"]));
        // The order filled at or better than its limit.
        match order["S"].as_str() {
            Some("SELL") => assert!(average >= price, "{order}"),
            _ => assert!(average <= price, "{order}"),
        }
        assert_eq!(order["T"], event["E"]);
        if only_btc {
            assert_eq!(order["s"], "BTCUSDT");
        }
        symbols.insert(order["s"].as_str().unwrap().to_string());
    }
    assert!(all_seen.len() > one_seen.len(), "{all_seen:?}");
    assert!(
        symbols.len() >= 3,
        "all symbols on !forceOrder@arr: {symbols:?}"
    );
}

#[tokio::test]
async fn futures_streams_stay_on_the_futures_path_and_spot_streams_off_it() {
    let gateway = Gateway::start(&[]);
    let mut futures = gateway.connect("/futures/public/ws/0").await;
    let reply = request(
        &mut futures,
        json!({"method": "SUBSCRIBE", "params": ["btcusdt@trade", "btcusdt@markPrice@1s"], "id": 1}),
    )
    .await;
    assert_eq!(reply, json!({"result": null, "id": 1}));
    let listed = request(
        &mut futures,
        json!({"method": "LIST_SUBSCRIPTIONS", "id": 2}),
    )
    .await;
    assert_eq!(
        listed["result"],
        json!(["btcusdt@trade", "btcusdt@markPrice@1s"])
    );
    let got = during(&mut futures, Duration::from_millis(2_500)).await;
    let trades: Vec<&Value> = got.iter().filter(|m| m["e"] == "trade").collect();
    assert!(!trades.is_empty() && got.iter().any(|m| m["e"] == "markPriceUpdate"));
    for trade in trades {
        // USD-M's trade: `X` and no `M`.
        assert_eq!(
            keys(trade),
            ["e", "E", "T", "s", "t", "p", "q", "X", "m"],
            "{trade}"
        );
        assert_eq!(trade["X"], "MARKET");
    }
    // A namespaced name is no stream on either path; spot has no mark price and the futures
    // path no book ticker.
    let mut spot = gateway.connect("/ws").await;
    for (on_futures, name) in [
        (false, "futures:btcusdt@markPrice"),
        (true, "futures:btcusdt@markPrice"),
        (false, "hashkey:btcusdt@trade"),
        (false, "btcusdt@markPrice@1s"),
        (true, "btcusdt@bookTicker"),
    ] {
        let client = if on_futures { &mut futures } else { &mut spot };
        let subscribe = json!({"method": "SUBSCRIBE", "params": [name], "id": 3});
        let reply = request(client, subscribe).await;
        assert_eq!(
            reply["error"]["msg"], "Invalid request: invalid stream",
            "{name}"
        );
    }
}

/// ccxt.pro's `binanceusdm`, unmodified but for its linear stream URL, watches trades and the
/// mark price of the BTCUSDT perpetual.
#[test]
fn ccxt_binanceusdm_watches_trades_and_the_mark_price() {
    let gateway = Gateway::start(&[]);
    let lines = common::scripts::run_to_end(
        "dialect_clients.py",
        &["binanceusdm", &format!("ws://{}", gateway.addr), "3"],
        Duration::from_secs(90),
    );
    let trades: Vec<&Value> = lines.iter().filter_map(|l| l.get("trade")).collect();
    let marks: Vec<&Value> = lines.iter().filter_map(|l| l.get("mark")).collect();
    assert!(trades.len() >= 3, "{lines:?}");
    for trade in &trades {
        assert_eq!(trade["symbol"], "BTC/USDT:USDT", "{trade}");
        assert!(trade["price"].as_f64().unwrap() > 0.0, "{trade}");
    }
    // ccxt 4.5.90 has watch_mark_price: the script watched it.
    assert_eq!(marks.len(), 3, "{lines:?}");
    for mark in &marks {
        assert_eq!(mark["symbol"], "BTC/USDT:USDT", "{mark}");
        assert_eq!(mark["timestamp"].as_u64().unwrap() % 1000, 0, "{mark}");
        let (price, index) = (
            mark["markPrice"].as_f64().unwrap(),
            mark["indexPrice"].as_f64().unwrap(),
        );
        assert!((price - index).abs() / index < 0.005, "{mark}");
    }
    assert_eq!(lines.last(), Some(&json!({"done": true})));
}
