//! `binance_force_order`: `liquidation` → `forceOrder`.

mod common;

use common::{edited, invalid_input, map_ok, payloads, vars, LIQUIDATION};
use demo_events::map::force_order::map;

#[test]
fn maps_a_liquidation() {
    let outputs = map_ok(map, LIQUIDATION);
    assert_eq!(
        payloads(&outputs),
        [
            r#"{"e":"forceOrder","E":1767000000500,"o":{"s":"BTCUSDT","S":"SELL","o":"LIMIT","f":"IOC","q":"0.01200000","p":"66950.00000000","ap":"66955.10000000","X":"FILLED","l":"0.01200000","z":"0.01200000","T":1767000000500}}"#
        ]
    );
    assert_eq!(vars(&outputs[0]), [("symbol", "btcusdt")]);
    assert_eq!(outputs[0].user_id, None);
}

#[test]
fn keeps_the_side() {
    let buy = edited(LIQUIDATION, |e| {
        e.insert("side".into(), "BUY".into());
    });
    let outputs = map_ok(map, &buy);
    assert!(
        outputs[0].payload.contains(r#""S":"BUY","#),
        "{}",
        outputs[0].payload
    );
}

#[test]
fn bad_or_missing_fields_are_invalid() {
    let bad = edited(LIQUIDATION, |e| {
        e.insert("side".into(), "SHORT".into());
    });
    let message = invalid_input(map, &bad);
    assert!(message.contains("SHORT"), "{message}");
    for field in ["side", "price", "qty", "avg_price"] {
        let payload = edited(LIQUIDATION, |e| {
            e.remove(field);
        });
        let message = invalid_input(map, &payload);
        assert!(
            message.contains(&format!("missing field `{field}`")),
            "{message}"
        );
    }
}
