//! Flow control per subscriber: a stream's outbound rate limit, and what happens to a message a
//! connection cannot take now (over the limit, or with its outbox full), by the stream's
//! [`Overflow`] policy.
//!
//! Connections that keep up never reach this module's slow path: an unlimited stream costs one
//! branch per push. Coalescing works on the mapped payloads the deliveries already carry, never
//! re-running a mapper, and builds a new delivery only for the connection that needs it.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use governor::clock::MonotonicClock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::Delivery;
pub use crate::config::Overflow;

/// How a stream's messages flow to each of its subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// Messages per second and burst per subscriber; `None`: unlimited.
    pub limit: Option<Quota>,
    /// What happens to a message a subscriber cannot take now.
    pub overflow: Overflow,
}

impl Flow {
    /// No limit; a full outbox closes the connection.
    pub const UNLIMITED: Flow = Flow {
        limit: None,
        overflow: Overflow::Close,
    };

    /// A flow of `rate` messages per second with bursts of `burst` (each unset: no limit;
    /// `burst` unset: `rate`), with `overflow` as its policy.
    pub fn new(rate: Option<u32>, burst: Option<u32>, overflow: Overflow) -> Flow {
        let limit = rate.and_then(NonZeroU32::new).map(|rate| {
            let burst = burst.and_then(NonZeroU32::new).unwrap_or(rate);
            Quota::per_second(rate).allow_burst(burst)
        });
        Flow { limit, overflow }
    }
}

/// One subscriber's token bucket for one stream.
pub type Bucket = RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<Instant>>;

/// A new, full bucket for `quota`.
pub fn bucket(quota: Quota) -> Bucket {
    RateLimiter::direct_with_clock(quota, MonotonicClock)
}

/// Takes a token from `bucket`; when there is none, the instant the next one is due.
pub fn take_token(bucket: &Bucket) -> Result<(), Instant> {
    use governor::clock::Clock;
    bucket
        .check()
        .map_err(|not_until| not_until.earliest_possible().max(MonotonicClock.now()))
}

/// One diff-depth event (Binance `depthUpdate`), as much of it as a merge needs.
#[derive(Deserialize)]
struct DepthUpdate<'a> {
    #[serde(rename = "e", borrow)]
    event: &'a str,
    #[serde(rename = "E")]
    event_time: i64,
    #[serde(rename = "T", default)]
    transaction_time: Option<i64>,
    #[serde(rename = "s", borrow)]
    symbol: &'a str,
    #[serde(rename = "U")]
    first: u64,
    #[serde(rename = "u")]
    last: u64,
    #[serde(rename = "pu", default)]
    previous: Option<u64>,
    #[serde(rename = "b", borrow)]
    bids: Vec<(&'a RawValue, &'a RawValue)>,
    #[serde(rename = "a", borrow)]
    asks: Vec<(&'a RawValue, &'a RawValue)>,
}

/// The merged event, in Binance's field order.
#[derive(Serialize)]
struct Merged<'a> {
    e: &'a str,
    #[serde(rename = "E")]
    event_time: i64,
    #[serde(rename = "T", skip_serializing_if = "Option::is_none")]
    transaction_time: Option<i64>,
    s: &'a str,
    #[serde(rename = "U")]
    first: u64,
    u: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pu: Option<u64>,
    b: Vec<(&'a RawValue, &'a RawValue)>,
    a: Vec<(&'a RawValue, &'a RawValue)>,
}

/// Merges two consecutive diff-depth events of one stream into one that spans both: `U` (and
/// `pu`) of the first, `u`, `E` and `T` of the second, every price level either touched with
/// the second's quantity winning (zero quantities kept: they remove the level). `None` when
/// either is not a `depthUpdate`, or the second does not continue the first.
pub fn merge_depth(first: &[u8], second: &[u8]) -> Option<Bytes> {
    let a: DepthUpdate = serde_json::from_slice(first).ok()?;
    let b: DepthUpdate = serde_json::from_slice(second).ok()?;
    if a.event != "depthUpdate" || b.event != "depthUpdate" || a.symbol != b.symbol {
        return None;
    }
    // Consecutive: the second starts right after the first (futures: its `pu` is the first's
    // `u`). Anything else would hide a gap the client must see.
    let continues = match b.previous {
        Some(previous) => previous == a.last,
        None => b.first == a.last + 1,
    };
    if !continues {
        return None;
    }
    let merged = Merged {
        e: b.event,
        event_time: b.event_time,
        transaction_time: b.transaction_time,
        s: b.symbol,
        first: a.first,
        u: b.last,
        pu: a.previous,
        b: merge_levels(a.bids, b.bids),
        a: merge_levels(a.asks, b.asks),
    };
    serde_json::to_vec(&merged).ok().map(Bytes::from)
}

/// The levels of `older` and `newer`, each price once with its last quantity, in the order the
/// prices first appeared.
fn merge_levels<'a>(
    older: Vec<(&'a RawValue, &'a RawValue)>,
    newer: Vec<(&'a RawValue, &'a RawValue)>,
) -> Vec<(&'a RawValue, &'a RawValue)> {
    let mut merged = older;
    let mut at: HashMap<&str, usize> = merged
        .iter()
        .enumerate()
        .map(|(i, (price, _))| (price.get(), i))
        .collect();
    for (price, qty) in newer {
        match at.get(price.get()) {
            Some(&i) => merged[i].1 = qty,
            None => {
                at.insert(price.get(), merged.len());
                merged.push((price, qty));
            }
        }
    }
    merged
}

/// A delivery standing for `older` and `newer` of one stream, for the one connection that
/// could not take them apart: its payload is `payload`, its sequence and event time the
/// newer's, its publish time the older's (so latency counts from the first of them).
pub fn combined(older: &Delivery, newer: &Delivery, payload: Bytes) -> Arc<Delivery> {
    Arc::new(
        Delivery::new(
            Arc::clone(&newer.stream),
            newer.seq,
            newer.event_time_us,
            older.published_us,
            payload,
            newer.variant_slots(),
        )
        .with_latency(newer.latency().cloned()),
    )
}

/// `names` without limits, closing on overflow (tests).
#[cfg(test)]
pub(crate) fn unlimited<'a>(
    names: impl IntoIterator<Item = &'a Arc<str>>,
) -> impl Iterator<Item = (&'a Arc<str>, Flow, &'a str)> {
    names
        .into_iter()
        .map(|name| (name, Flow::UNLIMITED, "test"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(first: u64, last: u64, bids: &str, asks: &str) -> Vec<u8> {
        format!(
            r#"{{"e":"depthUpdate","E":{last},"s":"BTCUSDT","U":{first},"u":{last},"b":{bids},"a":{asks}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn merging_keeps_the_first_u_the_last_u_and_the_last_quantity_per_price() {
        let a = depth(
            10,
            12,
            r#"[["100.00","1.0"],["99.00","2.0"]]"#,
            r#"[["101.00","1.0"]]"#,
        );
        let b = depth(
            13,
            15,
            r#"[["99.00","0.00000000"],["98.00","3.0"]]"#,
            r#"[]"#,
        );
        let merged = merge_depth(&a, &b).unwrap();
        assert_eq!(
            std::str::from_utf8(&merged).unwrap(),
            r#"{"e":"depthUpdate","E":15,"s":"BTCUSDT","U":10,"u":15,"b":[["100.00","1.0"],["99.00","0.00000000"],["98.00","3.0"]],"a":[["101.00","1.0"]]}"#
        );
    }

    #[test]
    fn only_consecutive_depth_updates_merge() {
        let a = depth(10, 12, "[]", "[]");
        assert!(
            merge_depth(&a, &depth(14, 15, "[]", "[]")).is_none(),
            "a gap"
        );
        assert!(
            merge_depth(&a, &depth(12, 15, "[]", "[]")).is_none(),
            "an overlap"
        );
        assert!(merge_depth(&a, br#"{"e":"trade","E":1}"#).is_none());
        assert!(merge_depth(br#"{"u":1}"#, &a).is_none());
        let futures = |first: u64, last: u64, previous: u64| {
            format!(
                r#"{{"e":"depthUpdate","E":1,"T":1,"s":"BTCUSDT","U":{first},"u":{last},"pu":{previous},"b":[],"a":[]}}"#
            )
        };
        let merged = merge_depth(
            futures(10, 12, 9).as_bytes(),
            futures(20, 25, 12).as_bytes(),
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&merged).unwrap(),
            r#"{"e":"depthUpdate","E":1,"T":1,"s":"BTCUSDT","U":10,"u":25,"pu":9,"b":[],"a":[]}"#
        );
        assert!(merge_depth(
            futures(10, 12, 9).as_bytes(),
            futures(20, 25, 13).as_bytes()
        )
        .is_none());
    }

    #[test]
    fn flow_limits_only_with_a_rate() {
        assert_eq!(Flow::new(None, Some(5), Overflow::Latest).limit, None);
        let limited = Flow::new(Some(10), Some(20), Overflow::Latest);
        let bucket = bucket(limited.limit.unwrap());
        let granted = (0..100).filter(|_| take_token(&bucket).is_ok()).count();
        assert_eq!(granted, 20, "a full bucket grants its burst at once");
        let due = take_token(&bucket).unwrap_err();
        assert!(due > Instant::now(), "the next token is in the future");
    }
}
