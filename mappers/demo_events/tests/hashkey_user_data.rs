//! `hashkey_user_data`: the demo exchange's account events (Binance user-data events addressed
//! to a user) → HashKey private events. The inputs are events the demo exchange wrote; the
//! whole session they come from is `mappers/samples/account.json`.

mod common;

use common::{invalid_input, map_ok, payloads};
use demo_events::map::hashkey_user_data::map;
use demo_events::Output;
use serde_json::Value;

/// A market buy of 0.012 BTC with client order id `my-order-1`: accepted...
const NEW_MARKET_BUY: &str = r#"{"user_id":"alice","event":{"e":"executionReport","E":1767000000128,"s":"BTCUSDT","c":"my-order-1","S":"BUY","o":"MARKET","f":"GTC","q":"0.01200000","p":"0.00000000","P":"0.00000000","F":"0.00000000","g":-1,"C":"","x":"NEW","X":"NEW","r":"NONE","i":1,"l":"0.00000000","z":"0.00000000","L":"0.00000000","n":"0","N":null,"T":1767000000128,"t":-1,"I":2,"w":true,"m":false,"M":false,"O":1767000000128,"Z":"0.00000000","Y":"0.00000000","Q":"0.00000000","W":1767000000128,"V":"NONE"}}"#;

/// ...filled at the ask...
const FILL_MARKET_BUY: &str = r#"{"user_id":"alice","event":{"e":"executionReport","E":1767000000128,"s":"BTCUSDT","c":"my-order-1","S":"BUY","o":"MARKET","f":"GTC","q":"0.01200000","p":"0.00000000","P":"0.00000000","F":"0.00000000","g":-1,"C":"","x":"TRADE","X":"FILLED","r":"NONE","i":1,"l":"0.01200000","z":"0.01200000","L":"67000.02000000","n":"0","N":"USDT","T":1767000000128,"t":1,"I":3,"w":false,"m":false,"M":true,"O":1767000000128,"Z":"804.00024000","Y":"804.00024000","Q":"0.00000000","W":1767000000128,"V":"NONE"}}"#;

/// ...and the balances it moved.
const POSITION_FILLED: &str = r#"{"user_id":"alice","event":{"e":"outboundAccountPosition","E":1767000000128,"u":1767000000128,"B":[{"a":"BTC","f":"1.01200000","l":"0.00000000"},{"a":"USDT","f":"99195.99976000","l":"0.00000000"}]}}"#;

/// A resting limit sell, filled when the market crosses its price.
const FILL_LIMIT_SELL: &str = r#"{"user_id":"alice","event":{"e":"executionReport","E":1767000002123,"s":"BTCUSDT","c":"demo-2","S":"SELL","o":"LIMIT","f":"GTC","q":"0.10000000","p":"67100.00000000","P":"0.00000000","F":"0.00000000","g":-1,"C":"","x":"TRADE","X":"FILLED","r":"NONE","i":2,"l":"0.10000000","z":"0.10000000","L":"67100.00000000","n":"0","N":"USDT","T":1767000002123,"t":2,"I":5,"w":false,"m":false,"M":true,"O":1767000001123,"Z":"6710.00000000","Y":"6710.00000000","Q":"0.00000000","W":1767000001123,"V":"NONE"}}"#;

/// A limit buy, canceled.
const CANCELED_LIMIT_BUY: &str = r#"{"user_id":"alice","event":{"e":"executionReport","E":1767000004123,"s":"BTCUSDT","c":"demo-3","S":"BUY","o":"LIMIT","f":"GTC","q":"0.50000000","p":"60000.00000000","P":"0.00000000","F":"0.00000000","g":-1,"C":"","x":"CANCELED","X":"CANCELED","r":"NONE","i":3,"l":"0.00000000","z":"0.00000000","L":"0.00000000","n":"0","N":null,"T":1767000004123,"t":-1,"I":6,"w":false,"m":false,"M":false,"O":1767000003123,"Z":"0.00000000","Y":"0.00000000","Q":"0.00000000","W":1767000003123,"V":"NONE"}}"#;

/// The periodic deposit (followed by an `outboundAccountPosition` of USDT).
const BALANCE_UPDATE: &str = r#"{"user_id":"alice","event":{"e":"balanceUpdate","E":1767000005123,"a":"USDT","d":"10.00000000","T":1767000005123}}"#;

/// A change to the fields of an event.
type EditEvent = fn(&mut serde_json::Map<String, Value>);

/// `envelope` with fields of its event changed by `edit`.
fn edited_event(envelope: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut value: Value = serde_json::from_str(envelope).unwrap();
    edit(value["event"].as_object_mut().unwrap());
    value.to_string()
}

/// Every output goes to alice, with no topic vars.
fn for_alice(outputs: &[Output]) {
    for output in outputs {
        assert_eq!(output.user_id.as_deref(), Some("alice"));
        assert!(output.topic_vars.is_empty());
    }
}

#[test]
fn an_accepted_order_is_one_execution_report() {
    let outputs = map_ok(map, NEW_MARKET_BUY);
    assert_eq!(
        payloads(&outputs),
        [
            r#"{"e":"executionReport","E":1767000000128,"s":"BTCUSDT","c":"my-order-1","S":"BUY","o":"MARKET","f":"GTC","q":"0.012","p":"0","X":"NEW","i":"1","l":"0","z":"0","L":"0","V":"0","Z":"0","n":"0","N":null,"u":true,"w":true,"m":false,"O":1767000000128,"r":"0.012"}"#
        ]
    );
    for_alice(&outputs);
}

#[test]
fn a_fill_is_an_execution_report_then_a_ticket() {
    let outputs = map_ok(map, FILL_MARKET_BUY);
    assert_eq!(
        payloads(&outputs),
        [
            r#"{"e":"executionReport","E":1767000000128,"s":"BTCUSDT","c":"my-order-1","S":"BUY","o":"MARKET","f":"GTC","q":"0.012","p":"0","X":"FILLED","i":"1","l":"0.012","z":"0.012","L":"67000.02","V":"67000.02","Z":"804.00024","n":"0","N":"USDT","u":true,"w":false,"m":false,"O":1767000000128,"r":"0"}"#,
            r#"{"e":"ticketInfo","E":1767000000128,"s":"BTCUSDT","q":"0.012","t":1767000000128,"p":"67000.02","T":"1","o":"1","c":"my-order-1","a":"alice","m":false,"S":"BUY"}"#,
        ]
    );
    for_alice(&outputs);

    let outputs = map_ok(map, FILL_LIMIT_SELL);
    assert_eq!(
        payloads(&outputs),
        [
            r#"{"e":"executionReport","E":1767000002123,"s":"BTCUSDT","c":"demo-2","S":"SELL","o":"LIMIT","f":"GTC","q":"0.1","p":"67100","X":"FILLED","i":"2","l":"0.1","z":"0.1","L":"67100","V":"67100","Z":"6710","n":"0","N":"USDT","u":true,"w":false,"m":false,"O":1767000001123,"r":"0"}"#,
            r#"{"e":"ticketInfo","E":1767000002123,"s":"BTCUSDT","q":"0.1","t":1767000002123,"p":"67100","T":"2","o":"2","c":"demo-2","a":"alice","m":false,"S":"SELL"}"#,
        ]
    );
}

#[test]
fn a_canceled_order_is_one_execution_report() {
    let outputs = map_ok(map, CANCELED_LIMIT_BUY);
    assert_eq!(
        payloads(&outputs),
        [
            r#"{"e":"executionReport","E":1767000004123,"s":"BTCUSDT","c":"demo-3","S":"BUY","o":"LIMIT","f":"GTC","q":"0.5","p":"60000","X":"CANCELED","i":"3","l":"0","z":"0","L":"0","V":"0","Z":"0","n":"0","N":null,"u":true,"w":false,"m":false,"O":1767000003123,"r":"0.5"}"#
        ]
    );
    for_alice(&outputs);
}

#[test]
fn a_partial_fill_stays_open_with_its_average_and_remainder() {
    let partial = edited_event(FILL_LIMIT_SELL, |event| {
        event.insert("q".into(), "0.30000000".into());
        event.insert("X".into(), "PARTIALLY_FILLED".into());
        event.insert("z".into(), "0.20000000".into());
        event.insert("Z".into(), "13420.10000000".into());
        event.insert("m".into(), true.into());
    });
    let outputs = map_ok(map, &partial);
    let report: Value = serde_json::from_str(&outputs[0].payload).unwrap();
    assert_eq!(report["X"], "PARTIALLY_FILLED");
    assert_eq!(report["w"], true);
    assert_eq!(report["V"], "67100.5");
    assert_eq!(report["r"], "0.1");
    assert_eq!(report["m"], true);
    assert!(outputs[1].payload.contains(r#""m":true"#));
}

#[test]
fn balances_become_one_account_info_per_asset() {
    let outputs = map_ok(map, POSITION_FILLED);
    assert_eq!(
        payloads(&outputs),
        [
            r#"{"e":"outboundAccountInfo","E":1767000000128,"T":true,"W":true,"D":true,"B":[{"a":"BTC","f":"1.012","l":"0"}]}"#,
            r#"{"e":"outboundAccountInfo","E":1767000000128,"T":true,"W":true,"D":true,"B":[{"a":"USDT","f":"99195.99976","l":"0"}]}"#
        ]
    );
    for_alice(&outputs);
}

#[test]
fn balance_updates_and_other_events_map_to_nothing() {
    assert!(map_ok(map, BALANCE_UPDATE).is_empty());
    for event in [
        r#"{"e":"listStatus","E":1}"#,
        r#"{"e":"eventStreamTerminated","E":1}"#,
        r#"{"e":"executionReport\u0020"}"#,
    ] {
        let envelope = format!(r#"{{"user_id":"alice","event":{event}}}"#);
        assert!(map_ok(map, &envelope).is_empty(), "{event}");
    }
}

#[test]
fn the_demo_session_maps_in_order() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../samples/account.json");
    let samples: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut kinds = Vec::new();
    for sample in &samples {
        for output in map_ok(map, &sample["payload"].to_string()) {
            let payload: Value = serde_json::from_str(&output.payload).unwrap();
            kinds.push(payload["e"].as_str().unwrap().to_owned());
        }
    }
    let (report, ticket, info) = ("executionReport", "ticketInfo", "outboundAccountInfo");
    assert_eq!(
        kinds,
        [
            // market buy: accepted, filled (two assets changed: one account info each)
            report, info, report, ticket, info, info,
            // limit sell: rests (one asset locked), filled
            report, info, report, ticket, info, info, report, info, report,
            info, // limit buy: rests, canceled
            info, // deposit: the balanceUpdate maps to nothing
        ]
    );
}

#[test]
fn a_missing_user_is_passed_on_and_escapes_survive() {
    let anonymous = {
        let mut value: Value = serde_json::from_str(FILL_MARKET_BUY).unwrap();
        value.as_object_mut().unwrap().remove("user_id");
        value.to_string()
    };
    let outputs = map_ok(map, &anonymous);
    assert!(outputs.iter().all(|o| o.user_id.is_none()));
    assert!(outputs[1].payload.contains(r#""a":null"#));

    let quoted = edited_event(FILL_MARKET_BUY, |event| {
        event.insert("c".into(), "my \"order\"".into());
    });
    let outputs = map_ok(map, &quoted);
    for output in &outputs {
        assert!(
            output.payload.contains(r#""c":"my \"order\"""#),
            "{}",
            output.payload
        );
    }
}

#[test]
fn malformed_input_is_invalid() {
    for payload in [
        "",
        "nope",
        "[]",
        r#"{"user_id":"alice"}"#,
        r#"{"user_id":"alice","event":{"E":1}}"#,
    ] {
        invalid_input(map, payload);
    }
    let cases: [(&str, EditEvent, &str); 5] = [
        (
            FILL_MARKET_BUY,
            |e| drop(e.remove("i")),
            "missing field `i`",
        ),
        (
            FILL_MARKET_BUY,
            |e| drop(e.insert("z".into(), "0.5".into())),
            "exceeds the order quantity",
        ),
        (
            FILL_MARKET_BUY,
            |e| drop(e.insert("Z".into(), "lots".into())),
            "`Z`",
        ),
        (
            FILL_MARKET_BUY,
            |e| drop(e.insert("t".into(), (-1).into())),
            "trade id `t` -1",
        ),
        (
            POSITION_FILLED,
            |e| drop(e.insert("B".into(), Value::Null)),
            "outboundAccountPosition",
        ),
    ];
    for (envelope, edit, expected) in cases {
        let message = invalid_input(map, &edited_event(envelope, edit));
        assert!(message.contains(expected), "{message}");
    }
    let no_trade_id = edited_event(FILL_MARKET_BUY, |e| drop(e.remove("t")));
    assert!(invalid_input(map, &no_trade_id).contains("trade id `t`"));
    let not_a_fill = edited_event(NEW_MARKET_BUY, |e| drop(e.remove("t")));
    assert_eq!(map_ok(map, &not_a_fill).len(), 1);
}
