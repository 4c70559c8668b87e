//! Klines and ticker.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::super::candles::days_from_civil;
use super::super::KlineInterval;
use super::util::{self, of_type, parse, props, run, START};
use super::SYMBOLS;

#[test]
fn klines_align_to_the_calendar_and_close_once() {
    // 2026-01-31T23:59:50Z: day, week (Monday 2026-01-26), month all roll at 2026-02-01 00:00.
    let start = (days_from_civil(2026, 1, 31) * 86_400 + 86_390) * 1_000_000 + 250_000;
    let (_, events) = run(
        props(json!({"kline_intervals": KlineInterval::ALL.map(|i| i.name())})),
        start,
        16,
    );
    let feb = days_from_civil(2026, 2, 1) * 86_400_000;
    for (sym, ..) in SYMBOLS {
        let klines = of_type(&events, sym, "kline");
        let mut closed: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
        let mut last_trade = None;
        for k in &klines {
            let iv = k.str("interval").to_owned();
            let (open, close) = (k.int("open_time_ms"), k.int("close_time_ms"));
            let interval = KlineInterval::parse(&iv).unwrap();
            assert_eq!(interval.open_of(open), open, "{iv} open aligned");
            assert_eq!(interval.next_open(open), close + 1, "{iv} close");
            let ts_ms = k.int("ts_us") / 1000;
            assert_eq!(k.int("ts_us") % 1_000_000, 0, "published on whole seconds");
            assert!(open < ts_ms && ts_ms <= close + 1);
            if k.bool("closed") {
                assert_eq!(ts_ms, close + 1, "{iv} closes at its end");
                closed.entry(iv.clone()).or_default().push((open, close));
            } else {
                assert_ne!(iv, "1s", "1s candles are only published closed");
                assert_eq!(ts_ms % 2000, 0, "{iv} updates every 2 s");
            }
            let (first, last, n) = (
                k.int("first_trade_id"),
                k.int("last_trade_id"),
                k.int("trades"),
            );
            if n == 0 {
                assert_eq!((first, last), (-1, -1));
                assert_eq!(k.dec("open"), k.dec("close"));
            } else {
                assert_eq!(last - first + 1, n, "{iv} trade count");
                assert!(k.dec("low") <= k.dec("open").min(k.dec("close")));
                assert!(k.dec("high") >= k.dec("open").max(k.dec("close")));
            }
            if iv == "1s" && n > 0 {
                if let Some(prev) = last_trade {
                    assert_eq!(first, prev + 1, "1s candles partition the trades");
                }
                last_trade = Some(last);
            }
        }
        for (iv, list) in &closed {
            let set: BTreeSet<_> = list.iter().collect();
            assert_eq!(set.len(), list.len(), "{iv} closed once per interval");
            assert!(
                list.windows(2).all(|w| w[1].0 == w[0].1 + 1),
                "{iv} contiguous"
            );
        }
        assert_eq!(closed["1s"].len(), 16);
        for iv in [
            "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "1M",
        ] {
            assert_eq!(
                closed[iv],
                [(KlineInterval::parse(iv).unwrap().open_of(feb - 1), feb - 1)],
                "{iv}"
            );
        }
        assert_eq!(closed.get("1w"), None, "the week ends on Monday");
        assert_eq!(closed.get("3d"), None, "3d candles are epoch-aligned");
        let w = klines.iter().find(|k| k.str("interval") == "1w").unwrap();
        assert_eq!(
            w.int("open_time_ms"),
            days_from_civil(2026, 1, 26) * 86_400_000
        );
    }
}

#[test]
fn ticker_counts_and_ids_are_consistent() {
    let (_, events) = run(props(json!({})), START, 4);
    for (sym, ..) in SYMBOLS {
        let mut last_trade = None;
        let mut tickers = 0;
        for e in events.iter().filter(|e| e.symbol == sym) {
            let j = parse(e);
            match j.str("type") {
                "match" => last_trade = Some(j.arr("fills").last().unwrap().int("trade_id")),
                "ticker" => {
                    tickers += 1;
                    let (first, last) = (j.int("first_trade_id"), j.int("last_trade_id"));
                    assert_eq!(j.int("trade_count"), last - first + 1);
                    assert_eq!(first, 1, "invented history starts at trade 1");
                    if let Some(t) = last_trade {
                        assert_eq!(last, t);
                    }
                    assert_eq!(j.int("close_time_ms") - j.int("open_time_ms"), 86_400_000);
                    assert_eq!(j.dec("price_change"), j.dec("last") - j.dec("open"));
                    assert!(j.dec("low") <= j.dec("last") && j.dec("last") <= j.dec("high"));
                    let w = j.dec("weighted_avg_price");
                    assert!(j.dec("low") <= w && w <= j.dec("high"));
                    assert!(
                        util::dec_wide(j.str("volume")) > 0
                            && util::dec_wide(j.str("quote_volume")) > 0
                    );
                    let pct: f64 = j.str("price_change_percent").parse().unwrap();
                    let expect = j.dec("price_change") as f64 * 100.0 / j.dec("open") as f64;
                    assert!((pct - expect).abs() <= 0.0005 + 1e-9, "{pct} vs {expect}");
                }
                _ => {}
            }
        }
        assert_eq!(tickers, 4);
    }
}

#[test]
fn disabled_trading_keeps_a_quiet_but_valid_market() {
    let (m, events) = run(
        props(json!({"trades_per_sec": 0, "kline_intervals": ["1m"]})),
        START,
        3,
    );
    assert!(of_type(&events, "BTCUSDT", "match").is_empty());
    let t = of_type(&events, "BTCUSDT", "ticker");
    assert_eq!(t.len(), 3);
    assert_eq!(
        (
            t[0].int("first_trade_id"),
            t[0].int("last_trade_id"),
            t[0].int("trade_count")
        ),
        (-1, -1, 0)
    );
    assert!(!of_type(&events, "BTCUSDT", "book_delta").is_empty());
    m.book_of(0);
}
