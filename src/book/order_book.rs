//! One symbol's order book, kept from Binance `depthUpdate` events the way a Binance client keeps
//! its own (`docs/binance-protocol.md` §4.1), and the snapshots it answers.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Levels a book keeps per side at most: twice the deepest snapshot Binance serves. Past it the
/// levels farthest from the touch are dropped, so an upstream whose deltas create ever more
/// levels cannot grow a book without bound.
pub const MAX_LEVELS: usize = 10_000;

/// The deepest snapshot a client may ask for (Binance's largest `limit`).
pub const MAX_LIMIT: usize = 5000;

/// A diff-depth event's content: the update ids it covers and the absolute quantity of every
/// level it changed (`"0"` removes the level).
#[derive(Debug, Deserialize)]
pub struct DepthUpdate<'a> {
    /// The event type; `depthUpdate` for a diff-depth event.
    #[serde(rename = "e", borrow)]
    pub kind: Cow<'a, str>,
    /// First update id in the event.
    #[serde(rename = "U")]
    pub first: u64,
    /// Final update id in the event.
    #[serde(rename = "u")]
    pub last: u64,
    /// Changed bid levels, `[price, quantity]`.
    #[serde(rename = "b", borrow)]
    pub bids: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Changed ask levels, `[price, quantity]`.
    #[serde(rename = "a", borrow)]
    pub asks: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> DepthUpdate<'a> {
    /// The diff-depth event in `payload`, if it is one (`"e":"depthUpdate"`).
    pub fn parse(payload: &'a [u8]) -> Option<Self> {
        serde_json::from_slice::<DepthUpdate<'a>>(payload)
            .ok()
            .filter(|update| update.kind == "depthUpdate")
    }
}

/// What [`OrderBook::apply`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The event continued the book: the book is now at its final update id.
    Continued,
    /// Every update id of the event was already in the book (`u <= book id`): ignored.
    Old,
    /// The event starts past the next update id (`U > book id + 1`), or cannot be read: the
    /// book stays where it was and is incomplete until an event continues it.
    Gap,
}

/// One side's levels by price, with the price and quantity as the events wrote them.
type Side = BTreeMap<Decimal, (Box<str>, Box<str>)>;

/// An order book at an update id. It starts empty at update id 0, so it is complete from the
/// first event of a book that started empty (`U = 1`); any other start is a gap.
#[derive(Debug, Default)]
pub struct OrderBook {
    last_update_id: u64,
    bids: Side,
    asks: Side,
    /// False after a gap, until an event continues the book again.
    complete: bool,
}

/// A book's best levels at one update id, in Binance's REST shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The update id the levels reflect.
    #[serde(rename = "lastUpdateId")]
    pub last_update_id: u64,
    /// Bids, best (highest) first: `[price, quantity]`.
    pub bids: Vec<(String, String)>,
    /// Asks, best (lowest) first: `[price, quantity]`.
    pub asks: Vec<(String, String)>,
}

impl Snapshot {
    /// The same snapshot with at most `limit` levels per side.
    pub fn truncated(mut self, limit: usize) -> Self {
        self.bids.truncate(limit);
        self.asks.truncate(limit);
        self
    }
}

/// A decimal price or quantity as an event writes it: digits with an optional fraction, not
/// negative.
fn decimal(text: &str) -> Option<Decimal> {
    let valid = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && text.bytes().filter(|b| *b == b'.').count() <= 1
        && text.bytes().any(|b| b.is_ascii_digit());
    valid.then(|| Decimal::from_str(text).ok()).flatten()
}

/// The levels of one side of an event, read; `None` if any price or quantity is not a decimal.
type Changes<'e> = Vec<(Decimal, &'e str, Option<&'e str>)>;

fn read_side<'e>(levels: &'e [(Cow<'_, str>, Cow<'_, str>)]) -> Option<Changes<'e>> {
    levels
        .iter()
        .map(|(price, qty)| {
            let key = decimal(price)?;
            let qty_value = decimal(qty)?;
            Some((key, &**price, (!qty_value.is_zero()).then_some(&**qty)))
        })
        .collect()
}

impl OrderBook {
    /// An empty book at update id 0.
    pub fn new() -> Self {
        OrderBook {
            complete: true,
            ..Default::default()
        }
    }

    /// The update id the book is at.
    pub fn last_update_id(&self) -> u64 {
        self.last_update_id
    }

    /// False after a gap, until an event continues the book again.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Applies `update` as Binance's procedure does: an event that covers the next update id
    /// (`U <= id + 1 <= u`) sets each level it names to its quantity (removing those at zero)
    /// and moves the book to `u`; one wholly in the past is ignored; one that starts later is a
    /// gap. Because quantities are absolute, an event that overlaps what the book already has
    /// (the 1000 ms series over the 100 ms one) leaves it exact.
    pub fn apply(&mut self, update: &DepthUpdate<'_>) -> Applied {
        if update.last <= self.last_update_id {
            return Applied::Old;
        }
        let next = self.last_update_id + 1;
        if update.first > next || update.first > update.last {
            self.complete = false;
            return Applied::Gap;
        }
        let (Some(bids), Some(asks)) = (read_side(&update.bids), read_side(&update.asks)) else {
            self.complete = false;
            return Applied::Gap;
        };
        Self::change(&mut self.bids, bids);
        Self::change(&mut self.asks, asks);
        // The worst levels go first: the lowest bids, the highest asks.
        while self.bids.len() > MAX_LEVELS {
            self.bids.pop_first();
        }
        while self.asks.len() > MAX_LEVELS {
            self.asks.pop_last();
        }
        self.last_update_id = update.last;
        self.complete = true;
        Applied::Continued
    }

    fn change(side: &mut Side, changes: Changes<'_>) {
        for (key, price, qty) in changes {
            match qty {
                Some(qty) => {
                    side.insert(key, (price.into(), qty.into()));
                }
                None => {
                    side.remove(&key);
                }
            }
        }
    }

    /// The best `limit` levels of each side at the book's update id; `None` while the book is
    /// incomplete.
    pub fn snapshot(&self, limit: usize) -> Option<Snapshot> {
        if !self.complete {
            return None;
        }
        let level = |(_, (price, qty)): (&Decimal, &(Box<str>, Box<str>))| {
            (price.to_string(), qty.to_string())
        };
        Some(Snapshot {
            last_update_id: self.last_update_id,
            bids: self.bids.iter().rev().take(limit).map(level).collect(),
            asks: self.asks.iter().take(limit).map(level).collect(),
        })
    }

    /// Levels held per side (bids, asks).
    pub fn depth(&self) -> (usize, usize) {
        (self.bids.len(), self.asks.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(first: u64, last: u64, bids: &[(&str, &str)], asks: &[(&str, &str)]) -> String {
        serde_json::json!({
            "e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": first, "u": last,
            "b": bids, "a": asks,
        })
        .to_string()
    }

    fn apply(book: &mut OrderBook, text: &str) -> Applied {
        book.apply(&DepthUpdate::parse(text.as_bytes()).expect("a depth update"))
    }

    fn levels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(p, q)| (p.to_string(), q.to_string()))
            .collect()
    }

    #[test]
    fn continued_events_set_absolute_quantities_and_zero_removes() {
        let mut book = OrderBook::new();
        let first = update(1, 3, &[("100.0", "1"), ("99.5", "2")], &[("101", "3")]);
        assert_eq!(apply(&mut book, &first), Applied::Continued);
        let second = update(4, 5, &[("100.00", "0"), ("99.5", "7")], &[("102", "1")]);
        assert_eq!(apply(&mut book, &second), Applied::Continued);
        let snapshot = book.snapshot(100).unwrap();
        assert_eq!(snapshot.last_update_id, 5);
        // "100.00" removed the level written "100.0": prices compare as numbers.
        assert_eq!(snapshot.bids, levels(&[("99.5", "7")]));
        assert_eq!(snapshot.asks, levels(&[("101", "3"), ("102", "1")]));
    }

    #[test]
    fn events_already_in_the_book_are_ignored_and_overlaps_apply() {
        let mut book = OrderBook::new();
        apply(&mut book, &update(1, 10, &[("5", "1")], &[]));
        assert_eq!(
            apply(&mut book, &update(3, 10, &[("5", "9")], &[])),
            Applied::Old
        );
        assert_eq!(book.snapshot(5).unwrap().bids, levels(&[("5", "1")]));
        // The 1000 ms series: starts before the book's id, ends after it.
        assert_eq!(
            apply(&mut book, &update(2, 12, &[("5", "4"), ("6", "1")], &[])),
            Applied::Continued
        );
        let snapshot = book.snapshot(5).unwrap();
        assert_eq!(snapshot.last_update_id, 12);
        assert_eq!(snapshot.bids, levels(&[("6", "1"), ("5", "4")]));
    }

    #[test]
    fn a_gap_makes_the_book_unavailable_until_an_event_continues_it() {
        let mut book = OrderBook::new();
        apply(&mut book, &update(1, 2, &[("5", "1")], &[]));
        assert_eq!(
            apply(&mut book, &update(4, 6, &[("5", "2")], &[])),
            Applied::Gap
        );
        assert_eq!(book.snapshot(10), None);
        assert_eq!(book.last_update_id(), 2, "a gap applies nothing");
        // An event covering 3 (the id after the book's) brings it back.
        assert_eq!(
            apply(&mut book, &update(3, 7, &[("5", "3")], &[])),
            Applied::Continued
        );
        let snapshot = book.snapshot(10).unwrap();
        assert_eq!(
            (snapshot.last_update_id, snapshot.bids),
            (7, levels(&[("5", "3")]))
        );
    }

    #[test]
    fn a_book_that_does_not_start_at_update_id_1_is_a_gap() {
        let mut book = OrderBook::new();
        assert_eq!(
            apply(&mut book, &update(50, 60, &[("5", "1")], &[])),
            Applied::Gap
        );
        assert!(book.snapshot(1).is_none());
    }

    #[test]
    fn unreadable_levels_are_a_gap() {
        let mut book = OrderBook::new();
        apply(&mut book, &update(1, 1, &[("5", "1")], &[]));
        for bad in ["-1", "1e5", "", "abc", "1.2.3"] {
            let mut copy = OrderBook::new();
            apply(&mut copy, &update(1, 1, &[("5", "1")], &[]));
            assert_eq!(
                apply(&mut copy, &update(2, 2, &[("6", bad)], &[])),
                Applied::Gap,
                "{bad:?}"
            );
        }
        assert!(DepthUpdate::parse(br#"{"e":"trade","U":1,"u":1,"b":[],"a":[]}"#).is_none());
        assert!(DepthUpdate::parse(br#"{"lastUpdateId":1,"bids":[],"asks":[]}"#).is_none());
    }

    #[test]
    fn snapshot_orders_bids_descending_asks_ascending_and_applies_the_limit() {
        let mut book = OrderBook::new();
        let bids = [("9.9", "1"), ("10.01", "1"), ("10", "1"), ("2", "1")];
        let asks = [("11", "1"), ("10.5", "1"), ("100", "1"), ("10.25", "1")];
        apply(&mut book, &update(1, 8, &bids, &asks));
        let snapshot = book.snapshot(3).unwrap();
        assert_eq!(
            snapshot.bids,
            levels(&[("10.01", "1"), ("10", "1"), ("9.9", "1")])
        );
        assert_eq!(
            snapshot.asks,
            levels(&[("10.25", "1"), ("10.5", "1"), ("11", "1")])
        );
        assert_eq!(book.snapshot(100).unwrap().bids.len(), 4);
        assert_eq!(book.snapshot(100).unwrap().truncated(1).asks.len(), 1);
    }

    #[test]
    fn a_side_keeps_at_most_max_levels_dropping_the_worst() {
        let mut book = OrderBook::new();
        let prices: Vec<String> = (1..=MAX_LEVELS + 5).map(|p| p.to_string()).collect();
        let bids: Vec<(&str, &str)> = prices.iter().map(|p| (p.as_str(), "1")).collect();
        apply(&mut book, &update(1, 1, &bids, &bids));
        assert_eq!(book.depth(), (MAX_LEVELS, MAX_LEVELS));
        let snapshot = book.snapshot(MAX_LEVELS).unwrap();
        // The lowest bids and the highest asks went.
        assert_eq!(snapshot.bids.last().unwrap().0, "6");
        assert_eq!(snapshot.asks.last().unwrap().0, MAX_LEVELS.to_string());
    }
}
