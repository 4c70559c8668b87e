//! `ticker` → HashKey `realtimes`, the rolling 24-hour ticker: `t`, `s`, `sn`, `c`, `h`, `l`, `o`,
//! `v`, `qv`, `m` (the change as a ratio, not a percentage) and `e`. Topic vars: `symbol`.

use crate::decimal::trim_zeros;
use crate::events::{Ticker, TickerType};
use crate::hashkey::Realtimes;
use crate::output::{symbol_var, Output};
use crate::parse::parse_event;
use crate::MapError;

/// Maps a `ticker` payload to one `realtimes` payload; other events map to nothing.
pub fn map(payload: &[u8]) -> Result<Vec<Output>, MapError> {
    let Some(event) = parse_event::<Ticker<'_>>(payload, TickerType::TYPE)? else {
        return Ok(Vec::new());
    };
    let change = ratio_of_percent(event.price_change_percent).ok_or_else(|| {
        MapError::invalid_input(format!(
            "price_change_percent is not a decimal: {:?}",
            event.price_change_percent
        ))
    })?;
    let ticker = Realtimes {
        time: super::ms(event.ts_us),
        symbol: event.symbol,
        symbol_name: event.symbol,
        close: trim_zeros(event.last),
        high: trim_zeros(event.high),
        low: trim_zeros(event.low),
        open: trim_zeros(event.open),
        volume: trim_zeros(event.volume),
        quote_volume: trim_zeros(event.quote_volume),
        change: &change,
        exchange: 301,
    };
    Ok(vec![Output::json(
        vec![symbol_var(event.symbol)],
        &ticker,
        320,
    )?])
}

/// A percentage as a ratio, exactly (the decimal point moved two places left, trailing zeros
/// trimmed): `"1.362"` is `"0.01362"`, `"-25"` is `"-0.25"`; `None` when `percent` is not a plain
/// decimal.
pub fn ratio_of_percent(percent: &str) -> Option<String> {
    let (sign, digits) = match percent.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", percent),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !plain(int) || !plain(frac) {
        return None;
    }
    let int = format!("{int:0>3}");
    let (whole, moved) = int.split_at(int.len() - 2);
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    let ratio = format!("{whole}.{moved}{frac}");
    let ratio = trim_zeros(&ratio);
    Some(if ratio == "0" {
        ratio.to_string()
    } else {
        format!("{sign}{ratio}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percentage_becomes_a_ratio_exactly() {
        for (percent, ratio) in [
            ("1.362", "0.01362"),
            ("-24.72", "-0.2472"),
            ("100", "1"),
            ("1234.5", "12.345"),
            ("0", "0"),
            ("-0.000", "0"),
            ("5", "0.05"),
        ] {
            assert_eq!(
                ratio_of_percent(percent).as_deref(),
                Some(ratio),
                "{percent}"
            );
        }
        for bad in ["", "-", "1.2.3", "abc", "1e5", ".5"] {
            assert_eq!(ratio_of_percent(bad), None, "{bad}");
        }
    }
}
