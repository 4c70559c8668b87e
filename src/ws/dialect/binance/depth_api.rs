//! Binance's order book snapshot on the client listener, `GET /api/v3/depth?symbol=&limit=`
//! (`docs/binance-protocol.md` §4.1), answered from the gateway's own books
//! ([`crate::book`]) in the update-id space of the `<symbol>@depth` and `<symbol>@depth@100ms`
//! events: `{"lastUpdateId":N,"bids":[["price","qty"],..],"asks":[..]}`, bids best (highest)
//! first, asks best (lowest) first.
//!
//! Parameters as Binance checks them: `symbol` is mandatory and upper case, like every Binance
//! REST symbol (`BTCUSDT`; lower case is refused with `-1100`, as Binance does); `limit` is
//! 1 to 5000, 100 when absent, and a larger one is cut to 5000 (Binance's documented rule). A
//! symbol without a diff-depth stream is `-1121 Invalid symbol.`; a served symbol whose book
//! cannot be reached now (none complete yet, a gap, or in a cluster no node answering for it)
//! is HTTP 503 with `-1001`.

use http::{Method, StatusCode};

use crate::api_error;
use crate::book::{Books, SnapshotError, MAX_LIMIT};
use crate::ws::dialect::{HttpAnswer, HttpRequest};

/// The endpoint's path.
pub const PATH: &str = "/api/v3/depth";

/// Levels a side when the request names no `limit`.
pub const DEFAULT_LIMIT: usize = 100;

/// Binance's pattern for a symbol parameter.
const SYMBOL_RANGE: &str = "^[A-Z0-9-_.]{1,20}$";

/// Binance's pattern for an integer parameter.
const INTEGER_RANGE: &str = "^[0-9]{1,20}$";

/// A valid snapshot request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepthRequest {
    /// The symbol as the client sent it (upper case).
    pub symbol: String,
    /// Levels a side, 1 to [`MAX_LIMIT`].
    pub limit: usize,
}

impl DepthRequest {
    /// The symbol as stream names spell it (lower case).
    pub fn stream_symbol(&self) -> String {
        self.symbol.to_ascii_lowercase()
    }
}

fn bad_request(code: i32, msg: &str) -> HttpAnswer {
    HttpAnswer::error(StatusCode::BAD_REQUEST, code, msg)
}

fn illegal_characters(name: &str, range: &str) -> HttpAnswer {
    bad_request(
        -1100,
        &format!("Illegal characters found in parameter '{name}'; legal range is '{range}'."),
    )
}

/// Reads the query of a snapshot request; the error is Binance's answer to a bad one.
pub fn parse(query: Option<&str>) -> Result<DepthRequest, HttpAnswer> {
    let (mut symbol, mut limit) = (None, None);
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*name {
            "symbol" if symbol.is_none() => symbol = Some(value.into_owned()),
            "limit" if limit.is_none() => limit = Some(value.into_owned()),
            _ => {}
        }
    }
    let Some(symbol) = symbol.filter(|s| !s.is_empty()) else {
        let (code, msg) = api_error::missing_parameter("symbol");
        return Err(bad_request(code, &msg));
    };
    let symbol_ok = symbol.len() <= 20
        && symbol
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if !symbol_ok {
        return Err(illegal_characters("symbol", SYMBOL_RANGE));
    }
    let limit = match limit.filter(|l| !l.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(text) => {
            if text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(illegal_characters("limit", INTEGER_RANGE));
            }
            // Twenty digits may not fit a u64; any such number is past the largest limit.
            let asked = text.parse::<u64>().unwrap_or(u64::MAX);
            if asked == 0 {
                return Err(bad_request(
                    -1130,
                    "Data sent for parameter 'limit' is not valid.",
                ));
            }
            asked.min(MAX_LIMIT as u64) as usize
        }
    };
    Ok(DepthRequest { symbol, limit })
}

/// Answers one request to [`PATH`] from `books`, counting its outcome.
pub async fn answer(books: &Books, request: &HttpRequest) -> HttpAnswer {
    if request.method != Method::GET {
        return HttpAnswer::error(StatusCode::METHOD_NOT_ALLOWED, -1, "Method not allowed");
    }
    let depth = match parse(request.query.as_deref()) {
        Ok(depth) => depth,
        Err(answer) => return answer,
    };
    let result = books.snapshot(&depth.stream_symbol(), depth.limit).await;
    books.count(&result);
    match result {
        Ok(snapshot) => HttpAnswer::ok(serde_json::to_value(&snapshot).expect("serializes")),
        Err(SnapshotError::UnknownSymbol) => bad_request(-1121, "Invalid symbol."),
        Err(SnapshotError::Unavailable) => {
            let (code, msg) = api_error::INTERNAL;
            HttpAnswer::error(StatusCode::SERVICE_UNAVAILABLE, code, msg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(query: &str) -> (StatusCode, i64, String) {
        let answer = parse(Some(query)).expect_err(query);
        let body = answer.body;
        (
            answer.status,
            body["code"].as_i64().unwrap(),
            body["msg"].as_str().unwrap().to_string(),
        )
    }

    #[test]
    fn symbol_and_limit_are_read_with_binance_defaults() {
        let parsed = parse(Some("symbol=BTCUSDT")).unwrap();
        assert_eq!((parsed.symbol.as_str(), parsed.limit), ("BTCUSDT", 100));
        assert_eq!(parsed.stream_symbol(), "btcusdt");
        assert_eq!(parse(Some("limit=5&symbol=BTCUSDT")).unwrap().limit, 5);
        assert_eq!(
            parse(Some("symbol=BTCUSDT&limit=5000")).unwrap().limit,
            5000
        );
        assert_eq!(parse(Some("symbol=BTCUSDT&limit=")).unwrap().limit, 100);
        // Past the largest limit, Binance answers the largest.
        assert_eq!(
            parse(Some("symbol=BTCUSDT&limit=5001")).unwrap().limit,
            5000
        );
        let huge = "symbol=BTCUSDT&limit=99999999999999999999";
        assert_eq!(parse(Some(huge)).unwrap().limit, 5000);
    }

    #[test]
    fn a_missing_symbol_is_binance_1102() {
        for query in ["", "limit=5", "symbol="] {
            let (status, code, msg) = error(query);
            assert_eq!((status, code), (StatusCode::BAD_REQUEST, -1102), "{query}");
            assert_eq!(
                msg,
                "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            );
        }
        assert!(parse(None).is_err());
    }

    #[test]
    fn a_lower_case_or_odd_symbol_is_binance_1100() {
        for query in [
            "symbol=btcusdt",
            "symbol=BTC%20USDT",
            "symbol=ABCDEFGHIJKLMNOPQRSTU",
        ] {
            let (status, code, msg) = error(query);
            assert_eq!((status, code), (StatusCode::BAD_REQUEST, -1100), "{query}");
            assert_eq!(
                msg,
                "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'."
            );
        }
    }

    #[test]
    fn a_bad_limit_is_refused_as_binance_does() {
        for query in [
            "limit=abc",
            "limit=-5",
            "limit=1.5",
            "limit=123456789012345678901",
        ] {
            let (status, code, msg) = error(&format!("symbol=BTCUSDT&{query}"));
            assert_eq!((status, code), (StatusCode::BAD_REQUEST, -1100), "{query}");
            assert_eq!(
                msg,
                "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'."
            );
        }
        let (status, code, msg) = error("symbol=BTCUSDT&limit=0");
        assert_eq!((status, code), (StatusCode::BAD_REQUEST, -1130));
        assert_eq!(msg, "Data sent for parameter 'limit' is not valid.");
    }
}
