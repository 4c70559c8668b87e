//! Configuration and determinism.

use serde_json::json;

use super::super::{DemoMarket, MarketConfig, Stamp};
use super::util::{config, props, run, START};

#[test]
fn same_seed_same_events_regardless_of_call_pattern() {
    let p = props(json!({}));
    let (_, a) = run(p.clone(), START, 3);
    let mut m = DemoMarket::new(config(p.clone()), START);
    let mut b = Vec::new();
    m.advance(START + 1_234_567, &mut b);
    m.advance(START + 3_000_000, &mut b);
    assert_eq!(
        a, b,
        "schedule stamps do not depend on when advance is called"
    );
    let (_, c) = run(props(json!({"seed": 8})), START, 3);
    assert_ne!(a, c);
    let wall = props(json!({"stamp": "wall"}));
    assert_eq!(run(wall.clone(), START, 2).1, run(wall, START, 2).1);
}

#[test]
fn config_defaults_and_errors_name_the_property() {
    let d = MarketConfig::from_properties(&serde_json::Map::new()).unwrap();
    assert_eq!(d.symbols().len(), 5);
    assert_eq!(
        (
            d.trades_per_sec(),
            d.book_updates_per_sec(),
            d.depth_levels()
        ),
        (20.0, 50.0, 100)
    );
    assert_eq!(d.kline_intervals().len(), 16);
    assert_eq!(d.stamp(), Stamp::Wall);
    assert_eq!((d.perpetuals(), d.liquidations_per_min()), (true, 2.0));
    let cases = [
        (
            json!({"trades_per_sec": -1}),
            "properties.trades_per_sec: must be a non-negative number",
        ),
        (
            json!({"trades_per_sec": "5"}),
            "properties.trades_per_sec: must be a non-negative number",
        ),
        (
            json!({"book_updates_per_sec": null}),
            "properties.book_updates_per_sec: must be a non-negative number",
        ),
        (
            json!({"liquidations_per_min": -0.5}),
            "properties.liquidations_per_min: must be a non-negative number",
        ),
        (
            json!({"liquidations_per_min": "2"}),
            "properties.liquidations_per_min: must be a non-negative number",
        ),
        (
            json!({"liquidations_per_min": 2_000_000}),
            "properties.liquidations_per_min: must be at most 1000000",
        ),
        (
            json!({"perpetuals": "yes"}),
            "properties.perpetuals: must be true or false",
        ),
        (
            json!({"perpetuals": 1}),
            "properties.perpetuals: must be true or false",
        ),
        (
            json!({"perpetual": false}),
            "properties.perpetual: unknown property",
        ),
        (
            json!({"depth_levels": 0}),
            "properties.depth_levels: must be an integer from 1 to 5000",
        ),
        (
            json!({"depth_levels": 2.5}),
            "properties.depth_levels: must be an integer from 1 to 5000",
        ),
        (json!({"seed": -3}), "properties.seed: "),
        (json!({"stamp": "now"}), "properties.stamp: "),
        (
            json!({"kline_intervals": ["1m", "2m"]}),
            "properties.kline_intervals[1]: ",
        ),
        (
            json!({"kline_intervals": ["1m", "1m"]}),
            "properties.kline_intervals[1]: duplicate interval",
        ),
        (json!({"symbols": []}), "properties.symbols: "),
        (
            json!({"symbols": [{"symbol": "btc", "price": "1", "tick": "0.01", "lot": "1"}]}),
            "properties.symbols[0].symbol: ",
        ),
        (
            json!({"symbols": [{"symbol": "BTC", "price": 67000, "tick": "0.01", "lot": "1"}]}),
            "properties.symbols[0].price: must be a decimal string",
        ),
        (
            json!({"symbols": [{"symbol": "BTC", "price": "67000.001", "tick": "0.01", "lot": "1"}]}),
            "properties.symbols[0].price: must be a multiple of tick",
        ),
        (
            json!({"symbols": [{"symbol": "BTC", "price": "5.00", "tick": "0.01", "lot": "1"}]}),
            "properties.symbols[0].price: must be at least 1000 ticks",
        ),
        (
            json!({"symbols": [{"symbol": "BTC", "price": "67000", "tick": "0.01", "lot": "0.000000001"}]}),
            "properties.symbols[0].lot: ",
        ),
        (
            json!({"symbols": [{"symbol": "BTC", "price": "67000", "tick": "0.01"}]}),
            "properties.symbols[0].lot: ",
        ),
        (
            json!({"symbols": [{"symbol": "A", "price": "670", "tick": "0.01", "lot": "1"}, {"symbol": "A", "price": "670", "tick": "0.01", "lot": "1"}]}),
            "properties.symbols[1].symbol: duplicate symbol",
        ),
        (
            json!({"symbols": [{"symbol": "A", "price": "670", "tick": "0.01", "lot": "1", "x": 1}]}),
            "properties.symbols[0].x: unknown property",
        ),
        (
            json!({"trade_per_sec": 5}),
            "properties.trade_per_sec: unknown property",
        ),
    ];
    for (props, want) in cases {
        let err = MarketConfig::from_properties(props.as_object().unwrap()).unwrap_err();
        assert!(
            err.to_string().starts_with(want),
            "{props}: got {err:?}, want {want}"
        );
    }
    let ok = config(
        json!({"trades_per_sec": 0.5, "seed": 0, "stamp": "schedule", "kline_intervals": []}),
    );
    assert_eq!((ok.trades_per_sec(), ok.seed()), (0.5, 0));
    let perp = config(json!({"perpetuals": false, "liquidations_per_min": 0.25}));
    assert_eq!(
        (perp.perpetuals(), perp.liquidations_per_min()),
        (false, 0.25)
    );
}
