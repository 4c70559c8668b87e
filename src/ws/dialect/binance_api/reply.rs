//! Answers as the WebSocket API writes them: `{"id":..,"status":..,"result"|"error":..,
//! "rateLimits":[..]}`, and the frames of user-data events on the API connection.

use bytes::Bytes;
use serde_json::json;

use crate::hub::{Delivery, Wrap};
use crate::util::{clip_error_text, now_us};
use crate::ws::frame;

/// The request-weight budget of one connection, per minute (Binance's `REQUEST_WEIGHT`).
pub const WEIGHT_PER_MINUTE: u32 = 6000;

/// A connection's request weight in the current minute.
#[derive(Debug, Default)]
pub struct Weight {
    minute: i64,
    used: u32,
}

impl Weight {
    /// Counts one request at `now_ms`; false when the minute's budget is spent.
    pub fn admit(&mut self, now_ms: i64) -> bool {
        let minute = now_ms / 60_000;
        if minute != self.minute {
            self.minute = minute;
            self.used = 0;
        }
        self.used += 1;
        self.used <= WEIGHT_PER_MINUTE
    }

    /// The `rateLimits` array with the weight used so far.
    pub fn rate_limits(&self) -> serde_json::Value {
        json!([{
            "rateLimitType": "REQUEST_WEIGHT",
            "interval": "MINUTE",
            "intervalNum": 1,
            "limit": WEIGHT_PER_MINUTE,
            "count": self.used.min(WEIGHT_PER_MINUTE),
        }])
    }

    /// Milliseconds until the budget refills.
    pub fn retry_after_ms(&self, now_ms: i64) -> i64 {
        (self.minute + 1) * 60_000 - now_ms
    }
}

/// The frame of an answer: `id` is JSON text; `body` is `"result":..` or `"error":..`.
pub fn answer(id: &str, status: u16, body: (&str, &str), rate_limits: Option<&str>) -> Bytes {
    let (key, value) = body;
    let status = status.to_string();
    let mut parts: Vec<&[u8]> = vec![
        b"{\"id\":",
        id.as_bytes(),
        b",\"status\":",
        status.as_bytes(),
        b",\"",
        key.as_bytes(),
        b"\":",
        value.as_bytes(),
    ];
    if let Some(limits) = rate_limits {
        parts.extend([b",\"rateLimits\":".as_slice(), limits.as_bytes()]);
    }
    parts.push(b"}");
    frame::text(&parts)
}

/// `{"code":..,"msg":..}`, the text clipped ([`clip_error_text`]).
pub fn error_body(code: i32, msg: &str) -> String {
    json!({ "code": code, "msg": clip_error_text(msg) }).to_string()
}

/// Frames a user's event for one subscription: `{"subscriptionId":N,"event":{..}}`.
pub struct SubscriptionWrap(pub u32);

impl SubscriptionWrap {
    /// The frame of `payload` for this subscription.
    pub fn frame_of(&self, payload: &[u8]) -> Bytes {
        let id = self.0.to_string();
        frame::text(&[
            b"{\"subscriptionId\":",
            id.as_bytes(),
            b",\"event\":",
            payload,
            b"}",
        ])
    }

    /// `eventStreamTerminated` for this subscription.
    pub fn terminated(&self) -> Bytes {
        let payload = format!(
            "{{\"e\":\"eventStreamTerminated\",\"E\":{}}}",
            now_us() / 1000
        );
        self.frame_of(payload.as_bytes())
    }
}

impl Wrap for SubscriptionWrap {
    fn frame(&self, delivery: &Delivery) -> Bytes {
        self.frame_of(&delivery.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(frame: &Bytes) -> &str {
        // Short frames: a two-byte header.
        std::str::from_utf8(&frame[2..]).unwrap()
    }

    #[test]
    fn answers_are_shaped_like_binances() {
        let ok = answer("7", 200, ("result", "{}"), Some("[]"));
        assert_eq!(
            text(&ok),
            r#"{"id":7,"status":200,"result":{},"rateLimits":[]}"#
        );
        let err = answer("null", 400, ("error", &error_body(-1135, "bad")), None);
        assert_eq!(
            text(&err),
            r#"{"id":null,"status":400,"error":{"code":-1135,"msg":"bad"}}"#
        );
        let event = SubscriptionWrap(3).frame_of(b"{\"e\":\"x\"}");
        assert_eq!(text(&event), r#"{"subscriptionId":3,"event":{"e":"x"}}"#);
    }

    #[test]
    fn the_weight_refills_every_minute() {
        let mut weight = Weight::default();
        for _ in 0..WEIGHT_PER_MINUTE {
            assert!(weight.admit(60_000));
        }
        assert!(!weight.admit(60_500));
        assert_eq!(weight.retry_after_ms(60_500), 59_500);
        assert!(weight.admit(120_000));
        assert_eq!(weight.rate_limits()[0]["count"], 1);
    }
}
