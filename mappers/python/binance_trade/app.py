"""wsgate mapper component in Python: demo `match` events to Binance `trade` payloads, one per fill.

The same mapping as the Rust `binance_trade` mapper (`mappers/demo_events/src/map/trade.rs`),
output for output: the same payload text (field order, decimal strings passed through as they
came), the same topic vars, an empty list for an event of another type and `invalid-input` for
an event the Rust mapper rejects. `tests/polyglot.rs` checks this against golden files.

Build: `make mappers-python` (componentize-py, world `event-mapper` of `wit/mapper.wit`).

How the WIT maps to Python (componentize-py): the exported interface `mapper` is the class
`Mapper` below; `list<event>` is a list of `Event` dataclasses whose `payload` is `bytes`;
`result<T, map-error>` inside a list is `Ok(T)` or `Err(MapError_InvalidInput(...))`; the
top-level `result<_, map-error>` of `init` is a return or a raised `Err(...)`; the imported
`host.log` is a plain function.

Parsing follows serde_json's rules exactly (the Rust mapper's parser), in two steps:

- a fast path with the standard `json` module for the payloads the demo market writes (no
  backslash escapes, integers that are plain non-negative literals, no duplicate keys): it only
  answers when its answer is certain, and defers every other payload;
- `_exact`, a small byte-level JSON reader that keeps what `json` loses (whether a string had
  escapes, the literal text of a number, duplicate keys, invalid UTF-8 in strings serde skips)
  and applies serde's rules to it.
"""

import json
import re

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import MapError_Internal, MapError_InvalidInput, Output

U64_MAX = (1 << 64) - 1


class Invalid(Exception):
    """An event the Rust mapper rejects: becomes `map-error.invalid-input`."""


class Mapper(exports.Mapper):
    """The exported `wsgate:mapper/mapper` interface."""

    def init(self, params):
        # Takes no parameters: logs a warning for each one and ignores it.
        for name, _ in params:
            host.log(host.Level.WARN, f"ignoring unknown param `{name}`")

    def map_batch(self, events):
        results = []
        for event in events:
            try:
                results.append(Ok(map_payload(event.payload)))
            except Invalid as error:
                results.append(Err(MapError_InvalidInput(str(error))))
            except Exception as error:  # a bug here, not bad input
                results.append(Err(MapError_Internal(f"{type(error).__name__}: {error}")))
        return results


def map_payload(payload):
    """The outputs of one event payload (`bytes`); raises `Invalid` for a malformed `match`."""
    outputs = _fast(payload)
    if outputs is None:
        outputs = _exact(payload)
    return outputs


def _trade_outputs(symbol, ts_us, taker_side, fills):
    """One `trade` output per fill.

    `ts_us` and the ids are the canonical decimal texts of u64 values, and `symbol`, the prices
    and quantities strings that had no escapes in the payload, so they hold no `"`, `\\` or
    control character and go into the JSON text as they are (serde_json writes them the same).
    """
    time = ts_us[:-3] if len(ts_us) > 3 else "0"  # microseconds to whole milliseconds
    head = f'{{"e":"trade","E":{time},"s":"{symbol}","t":'
    tail = f',"T":{time},"m":{"true" if taker_side == "SELL" else "false"},"M":true}}'
    topic_vars = [("symbol", _ascii_lowercase(symbol))]
    return [
        Output(
            topic_vars=topic_vars,
            user_id=None,
            payload=f'{head}{trade_id},"p":"{price}","q":"{qty}"{tail}',
        )
        for trade_id, price, qty in fills
    ]


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_lowercase(text):
    """Rust's `str::to_ascii_lowercase`: only A-Z change (`str.lower` also changes `É`)."""
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


# --- Fast path: the json module, for the payloads the demo market writes ---------------------


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
# Keys the mapping reads. Without backslashes in the text, a string followed by `:` is a key, so
# counting these finds duplicate keys (or keys inside other values, which also defer).
_KEYS = re.compile(
    r'"(?:type|symbol|ts_us|taker_order_id|taker_side|fills'
    r'|trade_id|agg_id|price|qty|maker_order_id)"[ \t\n\r]*:'
)
_TYPE_KEY = re.compile(r'"type"[ \t\n\r]*:')


def _u64(value):
    return type(value) is int and 0 <= value <= U64_MAX


def _fast(payload):
    """The outputs when the json module's view of `payload` is certainly serde's, else None."""
    # Escapes, `-0` (an int to json, a float to serde) and invalid UTF-8 go the exact way.
    if b"\\" in payload or b"-0" in payload:
        return None
    try:
        text = payload.decode()
        event = _DECODER.decode(text)
    except (ValueError, RecursionError):
        return None
    if type(event) is not dict:
        return None
    kind = event.get("type")
    if kind != "match":
        # Another event type: ignored, unless `type` is missing, not a string or duplicated.
        if type(kind) is str and len(_TYPE_KEY.findall(text)) == 1:
            return []
        return None
    symbol = event.get("symbol")
    taker_side = event.get("taker_side")
    fills = event.get("fills")
    if (
        type(symbol) is not str
        or not _u64(event.get("ts_us"))
        or not _u64(event.get("taker_order_id"))
        or type(taker_side) is not str
        or taker_side not in ("BUY", "SELL")
        or type(fills) is not list
    ):
        return None
    trades = []
    for fill in fills:
        if type(fill) is not dict:
            return None
        trade_id = fill.get("trade_id")
        price = fill.get("price")
        qty = fill.get("qty")
        if (
            not _u64(trade_id)
            or not _u64(fill.get("agg_id"))
            or not _u64(fill.get("maker_order_id"))
            or type(price) is not str
            or type(qty) is not str
        ):
            return None
        trades.append((trade_id, price, qty))
    if len(_KEYS.findall(text)) != 6 + 5 * len(fills):
        return None
    return _trade_outputs(symbol, str(event["ts_us"]), taker_side, trades)


# --- Exact path: serde_json's rules ----------------------------------------------------------


class _Str:
    """A JSON string as read from the payload: its raw bytes and whether it had escapes."""

    __slots__ = ("raw", "escaped")

    def __init__(self, raw, escaped):
        self.raw = raw
        self.escaped = escaped

    def borrowed(self):
        """The value as serde's `&str`: only without escapes, and valid UTF-8; else None."""
        if self.escaped:
            return None
        try:
            return self.raw.decode()
        except UnicodeDecodeError:
            return None

    def owned(self):
        """The value as serde's `String`/enum tag: escapes decoded, no lone surrogate, valid
        UTF-8; else None."""
        if not self.escaped:
            return self.borrowed()
        raw, parts, start = self.raw, [], 0
        try:
            while True:
                at = raw.find(b"\\", start)
                if at < 0:
                    parts.append(raw[start:].decode())
                    return "".join(parts)
                parts.append(raw[start:at].decode())
                code = raw[at + 1]
                if code != 0x75:  # not `\u`
                    parts.append(_SIMPLE_ESCAPES[code])
                    start = at + 2
                    continue
                unit = int(raw[at + 2 : at + 6], 16)
                start = at + 6
                if 0xDC00 <= unit <= 0xDFFF:
                    return None  # lone trailing surrogate
                if 0xD800 <= unit <= 0xDBFF:
                    if raw[start : start + 2] != b"\\u":
                        return None  # lone leading surrogate
                    low = int(raw[start + 2 : start + 6], 16)
                    if not 0xDC00 <= low <= 0xDFFF:
                        return None
                    unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    start += 6
                parts.append(chr(unit))
        except UnicodeDecodeError:
            return None


_SIMPLE_ESCAPES = {
    0x22: '"',
    0x5C: "\\",
    0x2F: "/",
    0x62: "\b",
    0x66: "\f",
    0x6E: "\n",
    0x72: "\r",
    0x74: "\t",
}


class _Num:
    """A JSON number: its literal text."""

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text


class _Obj:
    """A JSON object: its `(key, value)` pairs in order, duplicates kept."""

    __slots__ = ("pairs",)

    def __init__(self):
        self.pairs = []


_WS = re.compile(rb"[ \t\n\r]*")
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_STRING_STOP = re.compile(rb'["\\\x00-\x1f]')
_HEX4 = re.compile(rb"[0-9A-Fa-f]{4}")
_U64_TEXT = re.compile(r"0|[1-9][0-9]{0,19}")


def _parse(data):
    """Reads `data` as one JSON value the way serde_json accepts it (any depth: serde skips
    unused values without a depth limit). Raises `Invalid` with what is wrong."""
    n, i = len(data), 0
    stack, keys = [], []
    ws = _WS.match
    while True:
        # A value starts at i.
        i = ws(data, i).end()
        if i >= n:
            raise Invalid("EOF while parsing a value")
        c = data[i]
        if c == 0x7B:  # {
            i = ws(data, i + 1).end()
            if i < n and data[i] == 0x7D:
                value, i = _Obj(), i + 1
            else:
                stack.append(_Obj())
                key, i = _key(data, i)
                keys.append(key)
                continue
        elif c == 0x5B:  # [
            i = ws(data, i + 1).end()
            if i < n and data[i] == 0x5D:
                value, i = [], i + 1
            else:
                stack.append([])
                keys.append(None)
                continue
        elif c == 0x22:
            value, i = _string(data, i + 1)
        elif c == 0x2D or 0x30 <= c <= 0x39:
            match = _NUMBER.match(data, i)
            if match is None:
                raise Invalid(f"invalid number at byte {i}")
            value, i = _Num(match.group().decode()), match.end()
        elif data.startswith(b"true", i):
            value, i = True, i + 4
        elif data.startswith(b"false", i):
            value, i = False, i + 5
        elif data.startswith(b"null", i):
            value, i = None, i + 4
        else:
            raise Invalid(f"expected value at byte {i}")
        # A value ended at i: add it to its container, closing the containers it completes.
        while True:
            if not stack:
                if ws(data, i).end() != n:
                    raise Invalid("trailing characters")
                return value
            top = stack[-1]
            if type(top) is list:
                top.append(value)
                close = 0x5D
            else:
                top.pairs.append((keys[-1], value))
                close = 0x7D
            i = ws(data, i).end()
            if i >= n:
                raise Invalid("EOF while parsing a list or an object")
            if data[i] == 0x2C:  # ,
                i = ws(data, i + 1).end()
                if close == 0x7D:
                    keys[-1], i = _key(data, i)
                break
            if data[i] != close:
                raise Invalid(f"expected `,` or `{chr(close)}` at byte {i}")
            i += 1
            value = stack.pop()
            keys.pop()


def _key(data, i):
    """An object key at i and the `:` after it; returns the key and where its value starts."""
    if i >= len(data) or data[i] != 0x22:
        raise Invalid(f"expected a key at byte {i}")
    key, i = _string(data, i + 1)
    i = _WS.match(data, i).end()
    if i >= len(data) or data[i] != 0x3A:
        raise Invalid(f"expected `:` at byte {i}")
    return key, i + 1


def _string(data, i):
    """The string whose opening quote is just before i, and the index after its closing quote.
    Like serde when it skips a string: escapes must be well formed, control characters are
    errors, and UTF-8 is not checked (that is `_Str.borrowed`/`owned`)."""
    start, escaped = i, False
    while True:
        stop = _STRING_STOP.search(data, i)
        if stop is None:
            raise Invalid("EOF while parsing a string")
        i = stop.start()
        c = data[i]
        if c == 0x22:
            return _Str(data[start:i], escaped), i + 1
        if c != 0x5C:
            raise Invalid("control character in a string")
        escaped = True
        code = data[i + 1] if i + 1 < len(data) else None
        if code in _SIMPLE_ESCAPES:
            i += 2
        elif code == 0x75 and _HEX4.fullmatch(data, i + 2, i + 6):
            i += 6
        else:
            raise Invalid(f"invalid escape at byte {i}")


_MATCH_FIELDS = ("type", "symbol", "ts_us", "taker_order_id", "taker_side", "fills")
_FILL_FIELDS = ("trade_id", "agg_id", "price", "qty", "maker_order_id")


def _exact(payload):
    """serde_json's verdict, as in `demo_events::parse::parse_event`: the `match` event if
    `payload` parses as one, else nothing if it parses as `{"type": <another type>}`, else
    invalid input."""
    try:
        event = _parse(payload)
    except Invalid as error:
        raise Invalid(f"invalid `match` event: {error}") from None
    try:
        return _match(event)
    except Invalid as error:
        kind = _head(event)
        if kind is not None and kind != "match":
            return []
        raise Invalid(f"invalid `match` event: {error}") from None


def _head(event):
    """The `type` of `event` as serde reads `struct Head { type: Cow<str> }`, or None."""
    if type(event) is list:  # serde also reads a struct from an array of its fields
        values = event
    elif type(event) is _Obj:
        values = []
        for key, value in event.pairs:
            name = key.owned()
            if name is None:
                return None
            if name == "type":
                values.append(value)
    else:
        return None
    if len(values) != 1 or type(values[0]) is not _Str:
        return None
    return values[0].owned()


def _match(event):
    """The outputs of `event` read as serde reads `demo_events::events::Match`."""
    fields = _fields(event, _MATCH_FIELDS, "event")
    if _tag(fields["type"], "type") != "match":
        raise Invalid("`type` is not `match`")
    symbol = _str(fields["symbol"], "symbol")
    ts_us = _u64_text(fields["ts_us"], "ts_us")
    _u64_text(fields["taker_order_id"], "taker_order_id")
    taker_side = _tag(fields["taker_side"], "taker_side")
    if taker_side not in ("BUY", "SELL"):
        raise Invalid(f"unknown variant `{taker_side}`, expected `BUY` or `SELL`")
    if type(fields["fills"]) is not list:
        raise Invalid("`fills` is not a list")
    trades = []
    for index, fill in enumerate(fields["fills"]):
        fill = _fields(fill, _FILL_FIELDS, f"fills[{index}]")
        _u64_text(fill["agg_id"], "agg_id")
        _u64_text(fill["maker_order_id"], "maker_order_id")
        trades.append(
            (
                _u64_text(fill["trade_id"], "trade_id"),
                _str(fill["price"], "price"),
                _str(fill["qty"], "qty"),
            )
        )
    return _trade_outputs(symbol, ts_us, taker_side, trades)


def _fields(value, names, what):
    """The fields `names` of a struct, as serde's derive reads them: from an object whose keys
    are valid strings, each known field once, unknown fields skipped; or from an array of
    exactly the fields, in order."""
    if type(value) is list:
        if len(value) != len(names):
            raise Invalid(f"{what}: invalid length {len(value)}, expected {len(names)} fields")
        return dict(zip(names, value))
    if type(value) is not _Obj:
        raise Invalid(f"{what}: expected an object")
    fields = {}
    for key, field in value.pairs:
        name = key.owned()
        if name is None:
            raise Invalid(f"{what}: invalid key")
        if name in names:
            if name in fields:
                raise Invalid(f"{what}: duplicate field `{name}`")
            fields[name] = field
    for name in names:
        if name not in fields:
            raise Invalid(f"{what}: missing field `{name}`")
    return fields


def _tag(value, name):
    """The variant name of a unit enum, as serde reads it: `"NAME"` or `{"NAME": null}`."""
    if type(value) is _Obj and len(value.pairs) == 1 and value.pairs[0][1] is None:
        value = value.pairs[0][0]
    text = value.owned() if type(value) is _Str else None
    if text is None:
        raise Invalid(f"`{name}` is not a string")
    return text


def _u64_text(value, name):
    """The canonical text of a u64 field: serde reads only a plain non-negative integer
    literal as u64 (`1.0`, `1e3`, `-0` and anything above 2^64-1 are floats to it)."""
    if type(value) is _Num and _U64_TEXT.fullmatch(value.text) and int(value.text) <= U64_MAX:
        return value.text
    raise Invalid(f"`{name}` is not a u64")


def _str(value, name):
    """A `&str` field: serde borrows it from the payload, so it must have no escapes."""
    text = value.borrowed() if type(value) is _Str else None
    if text is None:
        raise Invalid(f"`{name}` is not a string without escapes")
    return text
