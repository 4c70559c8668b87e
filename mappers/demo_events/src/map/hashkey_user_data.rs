//! `hashkey_user_data`: an account event addressed to one user,
//! `{"user_id":"alice","event":{"e":"executionReport",..}}`, whose `event` is a Binance Spot
//! user-data event, becomes that user's HashKey private events. No topic vars.
//!
//! - `executionReport` → HashKey `executionReport`; a fill (`"x": "TRADE"`) adds a `ticketInfo`
//!   after it;
//! - `outboundAccountPosition` → `outboundAccountInfo`, with the same balances;
//! - `balanceUpdate` and any other event → nothing: HashKey has no balance-delta event, and the
//!   demo exchange follows each `balanceUpdate` with an `outboundAccountPosition`.
//!
//! Decimals lose their trailing zeros; ids become strings. The average price `V` is the
//! cumulative quote quantity over the cumulative quantity, rounded half up to 8 decimals (`"0"`
//! before any fill), the remaining quantity `r` the order quantity minus the cumulative one.
//!
//! As with `binance_user_data`, an envelope without `user_id` still yields its events, with no
//! user (and `"a": null` in a `ticketInfo`): the gateway counts such an output of a private
//! stream as a mapper error and delivers it to nobody.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::decimal::{trim_zeros, Fixed8};
use crate::hashkey::{AccountBalance, AccountInfo, ExecutionReport, IdString, TicketInfo};
use crate::{MapError, Output};

/// The Binance event mapped to an `executionReport` (and a `ticketInfo` for a fill).
pub const EXECUTION_REPORT: &str = "executionReport";
/// The Binance event mapped to an `outboundAccountInfo`.
pub const ACCOUNT_POSITION: &str = "outboundAccountPosition";

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event: &'a RawValue,
}

/// Just the event type of a Binance user-data event.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "e", borrow)]
    kind: Cow<'a, str>,
}

/// The fields of a Binance `executionReport` that HashKey's carries.
#[derive(Deserialize)]
struct Report<'a> {
    #[serde(rename = "E")]
    event_time: u64,
    #[serde(rename = "s")]
    symbol: &'a str,
    #[serde(rename = "c", borrow)]
    client_order_id: Cow<'a, str>,
    #[serde(rename = "S")]
    side: &'a str,
    #[serde(rename = "o")]
    order_type: &'a str,
    #[serde(rename = "f")]
    time_in_force: &'a str,
    #[serde(rename = "q")]
    qty: &'a str,
    #[serde(rename = "p")]
    price: &'a str,
    #[serde(rename = "x")]
    execution_type: &'a str,
    #[serde(rename = "X")]
    status: &'a str,
    #[serde(rename = "i")]
    order_id: u64,
    #[serde(rename = "l")]
    last_qty: &'a str,
    #[serde(rename = "z")]
    filled_qty: &'a str,
    #[serde(rename = "L")]
    last_price: &'a str,
    #[serde(rename = "n")]
    fee: &'a str,
    #[serde(rename = "N", default, borrow)]
    fee_asset: Option<&'a str>,
    #[serde(rename = "T", default)]
    trade_time: Option<u64>,
    #[serde(rename = "t", default)]
    trade_id: Option<i64>,
    #[serde(rename = "m")]
    is_maker: bool,
    #[serde(rename = "O")]
    created_time: u64,
    #[serde(rename = "Z")]
    filled_quote_qty: &'a str,
}

/// A Binance `outboundAccountPosition`.
#[derive(Deserialize)]
struct Position<'a> {
    #[serde(rename = "E")]
    event_time: u64,
    #[serde(rename = "B", borrow)]
    balances: Vec<Balance<'a>>,
}

#[derive(Deserialize)]
struct Balance<'a> {
    #[serde(rename = "a")]
    asset: &'a str,
    #[serde(rename = "f")]
    free: &'a str,
    #[serde(rename = "l")]
    locked: &'a str,
}

/// Maps one account-event envelope to the user's HashKey private events, in order.
pub fn map(payload: &[u8]) -> Result<Vec<Output>, MapError> {
    let envelope: Envelope<'_> = serde_json::from_slice(payload)
        .map_err(|e| MapError::invalid_input(format!("not a user-data envelope: {e}")))?;
    let event = envelope.event.get();
    let head: Head<'_> = serde_json::from_str(event)
        .map_err(|e| MapError::invalid_input(format!("not a user-data event: {e}")))?;
    let user = envelope.user_id.as_deref();
    let mut outputs = match head.kind.as_ref() {
        EXECUTION_REPORT => execution_report(&parse(event, EXECUTION_REPORT)?, user)?,
        ACCOUNT_POSITION => account_info(&parse(event, ACCOUNT_POSITION)?)?,
        _ => return Ok(Vec::new()),
    };
    for output in &mut outputs {
        output.user_id = user.map(str::to_owned);
    }
    Ok(outputs)
}

/// Parses the event `text` of type `kind`.
fn parse<'a, T: Deserialize<'a>>(text: &'a str, kind: &str) -> Result<T, MapError> {
    serde_json::from_str(text)
        .map_err(|e| MapError::invalid_input(format!("invalid `{kind}` event: {e}")))
}

/// The `executionReport`, and the `ticketInfo` of a fill.
fn execution_report(report: &Report<'_>, user: Option<&str>) -> Result<Vec<Output>, MapError> {
    let invalid = |message: String| {
        MapError::invalid_input(format!("invalid `{EXECUTION_REPORT}` event: {message}"))
    };
    let qty = decimal(report.qty, "q")?;
    let filled = decimal(report.filled_qty, "z")?;
    let cost = decimal(report.filled_quote_qty, "Z")?;
    let remaining = qty.checked_sub(filled).ok_or_else(|| {
        invalid(format!(
            "filled quantity `z` {} exceeds the order quantity `q` {}",
            report.filled_qty, report.qty
        ))
    })?;
    let average = if filled == Fixed8::default() {
        "0".to_owned()
    } else {
        let average = cost
            .checked_div(filled)
            .ok_or_else(|| invalid("average price `Z` / `z` out of range".to_owned()))?;
        trimmed(average)
    };
    let remaining = trimmed(remaining);
    let client_order_id = report.client_order_id.as_ref();
    let order_id = IdString(report.order_id);
    let hashkey = ExecutionReport {
        event_type: EXECUTION_REPORT,
        event_time: report.event_time,
        symbol: report.symbol,
        client_order_id,
        side: report.side,
        order_type: report.order_type,
        time_in_force: report.time_in_force,
        qty: trim_zeros(report.qty),
        price: trim_zeros(report.price),
        status: report.status,
        order_id,
        last_qty: trim_zeros(report.last_qty),
        filled_qty: trim_zeros(report.filled_qty),
        last_price: trim_zeros(report.last_price),
        average_price: &average,
        filled_quote_qty: trim_zeros(report.filled_quote_qty),
        fee: trim_zeros(report.fee),
        fee_asset: report.fee_asset,
        is_working: true,
        is_open: matches!(report.status, "NEW" | "PARTIALLY_FILLED"),
        is_maker: report.is_maker,
        created_time: report.created_time,
        remaining_qty: &remaining,
    };
    let capacity = 384 + client_order_id.len() + report.symbol.len();
    let mut outputs = vec![Output::json(Vec::new(), &hashkey, capacity)?];
    if report.execution_type == "TRADE" {
        let (Some(time), Some(trade_id)) = (report.trade_time, report.trade_id) else {
            return Err(invalid(
                "a fill without its trade time `T` and trade id `t`".to_owned(),
            ));
        };
        let trade_id = u64::try_from(trade_id)
            .map_err(|_| invalid(format!("a fill with trade id `t` {trade_id}")))?;
        let ticket = TicketInfo {
            event_type: "ticketInfo",
            event_time: report.event_time,
            symbol: report.symbol,
            qty: trim_zeros(report.last_qty),
            time,
            price: trim_zeros(report.last_price),
            trade_id: IdString(trade_id),
            order_id,
            client_order_id,
            account_id: user,
            is_maker: report.is_maker,
            side: report.side,
        };
        let capacity = 224 + client_order_id.len() + user.map_or(0, str::len);
        outputs.push(Output::json(Vec::new(), &ticket, capacity)?);
    }
    Ok(outputs)
}

/// The `outboundAccountInfo` of an `outboundAccountPosition`.
fn account_info(position: &Position<'_>) -> Result<Vec<Output>, MapError> {
    // One event per asset: HashKey's clients (ccxt's `handle_balance`) read the first balance of
    // an `outboundAccountInfo` only.
    position
        .balances
        .iter()
        .map(|b| {
            let balance = [AccountBalance {
                asset: b.asset,
                free: trim_zeros(b.free),
                locked: trim_zeros(b.locked),
            }];
            let info = AccountInfo {
                event_type: "outboundAccountInfo",
                event_time: position.event_time,
                can_trade: true,
                can_withdraw: true,
                can_deposit: true,
                balances: &balance,
            };
            Output::json(Vec::new(), &info, 160)
        })
        .collect()
}

/// Field `name` of an `executionReport` as a [`Fixed8`].
fn decimal(text: &str, name: &str) -> Result<Fixed8, MapError> {
    text.parse().map_err(|e| {
        MapError::invalid_input(format!("invalid `{EXECUTION_REPORT}` event: `{name}`: {e}"))
    })
}

/// `value` without the trailing zeros of its fraction.
fn trimmed(value: Fixed8) -> String {
    let mut text = value.to_string();
    let len = trim_zeros(&text).len();
    text.truncate(len);
    text
}
