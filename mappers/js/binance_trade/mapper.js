// wsgate mapper component in JavaScript: demo `match` events to Binance `trade` payloads, one per
// fill.
//
// The same mapping as the Rust `binance_trade` mapper (mappers/demo_events/src/map/trade.rs),
// output for output: the same payload text (field order, decimal strings passed through as they
// came), the same topic vars, an empty list for an event of another type and `invalid-input` for
// an event the Rust mapper rejects. `tests/polyglot.rs` checks this against golden files.
//
// Build: `make mappers-js` (ComponentizeJS, world `event-mapper` of `wit/mapper.wit`).
//
// How the WIT maps to JavaScript (ComponentizeJS): the exported interface `mapper` is the
// exported object `mapper` with camelCase methods (`map-batch` is `mapBatch`); records are plain
// objects with camelCase fields (`topic-vars` is `topicVars`), `list<u8>` is a Uint8Array,
// tuples are arrays, `option` is a value or `undefined`; `result` inside a list is
// `{tag: 'ok', val}` or `{tag: 'err', val}`, a variant `{tag: 'invalid-input', val}`; the
// top-level `result<_, map-error>` of `init` is a return or a thrown error; the imported
// `host.log` is a function from the module `wsgate:mapper/host@0.1.0`, its enum a string.
//
// Parsing follows serde_json's rules exactly (the Rust mapper's parser), in two steps:
//
// - a fast path with JSON.parse for the payloads the demo market writes (compact JSON without
//   escapes, duplicate keys or integers above 2^53): it only answers when its answer is certain,
//   and defers every other payload;
// - `exact`, a small byte-level JSON reader that keeps what JSON.parse loses (whether a string had
//   escapes, the literal text of a number, duplicate keys, invalid UTF-8 in strings serde skips)
//   and applies serde's rules to it.

import { log } from 'wsgate:mapper/host@0.1.0';

const U64_MAX = 18446744073709551615n;

/** An event the Rust mapper rejects: becomes `map-error.invalid-input`. */
class Invalid extends Error {}

/** The exported `wsgate:mapper/mapper` interface. */
export const mapper = {
  init(params) {
    // Takes no parameters: logs a warning for each one and ignores it.
    for (const [name] of params) {
      log('warn', `ignoring unknown param \`${name}\``);
    }
  },

  mapBatch(events) {
    const results = new Array(events.length);
    for (let i = 0; i < events.length; i++) {
      try {
        results[i] = { tag: 'ok', val: mapPayload(events[i].payload) };
      } catch (error) {
        const tag = error instanceof Invalid ? 'invalid-input' : 'internal';
        results[i] = { tag: 'err', val: { tag, val: String(error.message ?? error) } };
      }
    }
    return results;
  },
};

/**
 * The outputs of one event payload (Uint8Array); throws `Invalid` for a malformed `match`.
 * Exported for tests under Node (the component exports only `mapper`).
 */
export function mapPayload(payload) {
  return fast(payload) ?? exact(payload);
}

/**
 * One `trade` output per fill of `fills` (`[tradeId, price, qty]` triples).
 *
 * `tsUs` and the ids are the canonical decimal texts of u64 values, and `symbol`, the prices and
 * quantities strings that had no escapes in the payload, so they hold no `"`, `\` or control
 * character and go into the JSON text as they are (serde_json writes them the same).
 */
function tradeOutputs(symbol, tsUs, takerSide, fills) {
  const time = tsUs.length > 3 ? tsUs.slice(0, -3) : '0'; // microseconds to whole milliseconds
  const head = `{"e":"trade","E":${time},"s":"${symbol}","t":`;
  const tail = `,"T":${time},"m":${takerSide === 'SELL'},"M":true}`;
  const topicVars = [['symbol', asciiLowercase(symbol)]];
  return fills.map(([tradeId, price, qty]) => ({
    topicVars,
    userId: undefined,
    payload: `${head}${tradeId},"p":"${price}","q":"${qty}"${tail}`,
  }));
}

/** Rust's `str::to_ascii_lowercase`: only A-Z change (`toLowerCase` also changes `É`). */
function asciiLowercase(text) {
  if (!NON_ASCII.test(text)) return text.toLowerCase();
  return text.replace(/[A-Z]+/g, (upper) => upper.toLowerCase());
}

const NON_ASCII = /[^\x00-\x7f]/;

// --- Fast path: JSON.parse, for the payloads the demo market writes ------------------------------

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** A u64 that JSON.parse read exactly: an integer literal (see `fast`) below 2^53. */
function isU64(value) {
  return Number.isSafeInteger(value) && value >= 0;
}

/**
 * The outputs when JSON.parse's view of `payload` is certainly serde's, else undefined.
 *
 * That is when the payload is compact JSON as the demo market (serde_json) writes it, which
 * JSON.stringify gives back unchanged, without backslashes: that rules out escapes, duplicate
 * keys, and numbers other than integer literals JSON.parse read exactly (`1.0`, `1e3`, `-0` and
 * big integers come back different), all of which JSON.parse reads differently from serde.
 */
function fast(payload) {
  // Escapes (JSON.stringify writes some back the same), a BOM (TextDecoder would drop it) and
  // invalid UTF-8 go the exact way.
  if (payload.indexOf(0x5c) >= 0 || payload[0] === 0xef) return undefined;
  let text;
  let event;
  try {
    text = utf8.decode(payload);
    event = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (
    typeof event !== 'object' ||
    event === null ||
    Array.isArray(event) ||
    JSON.stringify(event) !== text
  ) {
    return undefined;
  }
  const kind = event.type;
  if (kind !== 'match') {
    // Another event type: ignored, unless `type` is missing or not a string.
    return typeof kind === 'string' ? [] : undefined;
  }
  const { symbol, ts_us: tsUs, taker_order_id: takerOrderId, taker_side: takerSide, fills } = event;
  if (
    typeof symbol !== 'string' ||
    !isU64(tsUs) ||
    !isU64(takerOrderId) ||
    (takerSide !== 'BUY' && takerSide !== 'SELL') ||
    !Array.isArray(fills)
  ) {
    return undefined;
  }
  const trades = new Array(fills.length);
  for (let i = 0; i < fills.length; i++) {
    const fill = fills[i];
    if (typeof fill !== 'object' || fill === null || Array.isArray(fill)) return undefined;
    const { trade_id: tradeId, price, qty } = fill;
    if (
      !isU64(tradeId) ||
      !isU64(fill.agg_id) ||
      !isU64(fill.maker_order_id) ||
      typeof price !== 'string' ||
      typeof qty !== 'string'
    ) {
      return undefined;
    }
    trades[i] = [String(tradeId), price, qty];
  }
  return tradeOutputs(symbol, String(tsUs), takerSide, trades);
}

// --- Exact path: serde_json's rules --------------------------------------------------------------

/** A JSON string as read from the payload: where its raw bytes are and whether it had escapes. */
class Str {
  constructor(bytes, start, end, escaped) {
    this.bytes = bytes;
    this.start = start;
    this.end = end;
    this.escaped = escaped;
  }

  /** The value as serde's `&str`: only without escapes, and valid UTF-8; else undefined. */
  borrowed() {
    if (this.escaped) return undefined;
    return decodeUtf8(this.bytes, this.start, this.end);
  }

  /**
   * The value as serde's `String`/enum tag: escapes decoded, no lone surrogate, valid UTF-8;
   * else undefined.
   */
  owned() {
    if (!this.escaped) return this.borrowed();
    const { bytes, end } = this;
    const parts = [];
    let start = this.start;
    for (;;) {
      const at = bytes.indexOf(0x5c, start);
      const segment = decodeUtf8(bytes, start, at < 0 || at >= end ? end : at);
      if (segment === undefined) return undefined;
      parts.push(segment);
      if (at < 0 || at >= end) return parts.join('');
      const code = bytes[at + 1];
      if (code !== 0x75) {
        parts.push(SIMPLE_ESCAPES.get(code));
        start = at + 2;
        continue;
      }
      let unit = hex4(bytes, at + 2);
      start = at + 6;
      if (unit >= 0xdc00 && unit <= 0xdfff) return undefined; // lone trailing surrogate
      if (unit >= 0xd800 && unit <= 0xdbff) {
        if (start + 6 > end || bytes[start] !== 0x5c || bytes[start + 1] !== 0x75) {
          return undefined; // lone leading surrogate
        }
        const low = hex4(bytes, start + 2);
        if (low < 0xdc00 || low > 0xdfff) return undefined;
        unit = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
        start += 6;
      }
      parts.push(String.fromCodePoint(unit));
    }
  }
}

function decodeUtf8(bytes, start, end) {
  try {
    return utf8.decode(bytes.subarray(start, end));
  } catch {
    return undefined;
  }
}

function hex4(bytes, at) {
  return parseInt(String.fromCharCode(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]), 16);
}

const SIMPLE_ESCAPES = new Map([
  [0x22, '"'],
  [0x5c, '\\'],
  [0x2f, '/'],
  [0x62, '\b'],
  [0x66, '\f'],
  [0x6e, '\n'],
  [0x72, '\r'],
  [0x74, '\t'],
]);

/** A JSON number: its literal text. */
class Num {
  constructor(text) {
    this.text = text;
  }
}

/** A JSON object: its `[key, value]` pairs in order, duplicates kept. */
class Obj {
  constructor() {
    this.pairs = [];
  }
}

const WS = /[ \t\n\r]*/y;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const STRING_STOP = /["\\\x00-\x1f]/g;
const HEX4 = /[0-9A-Fa-f]{4}/y;
const U64_TEXT = /^(?:0|[1-9][0-9]{0,19})$/;

/** `bytes` as a string of one char per byte, for the regular expressions of the reader. */
function binary(bytes) {
  let text = '';
  for (let i = 0; i < bytes.length; i += 8192) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
  }
  return text;
}

/** Reads one payload. */
class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.text = binary(bytes);
  }

  ws(i) {
    WS.lastIndex = i;
    WS.test(this.text);
    return WS.lastIndex;
  }

  /**
   * Reads the payload as one JSON value the way serde_json accepts it (any depth: serde skips
   * unused values without a depth limit). Throws `Invalid` with what is wrong.
   */
  parse() {
    const { text } = this;
    const n = text.length;
    const stack = [];
    const keys = [];
    let i = 0;
    for (;;) {
      // A value starts at i.
      let value;
      i = this.ws(i);
      if (i >= n) throw new Invalid('EOF while parsing a value');
      const c = text.charCodeAt(i);
      if (c === 0x7b) {
        i = this.ws(i + 1);
        if (text.charCodeAt(i) === 0x7d) {
          value = new Obj();
          i += 1;
        } else {
          stack.push(new Obj());
          let key;
          [key, i] = this.key(i);
          keys.push(key);
          continue;
        }
      } else if (c === 0x5b) {
        i = this.ws(i + 1);
        if (text.charCodeAt(i) === 0x5d) {
          value = [];
          i += 1;
        } else {
          stack.push([]);
          keys.push(undefined);
          continue;
        }
      } else if (c === 0x22) {
        [value, i] = this.string(i + 1);
      } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
        NUMBER.lastIndex = i;
        const match = NUMBER.exec(text);
        if (match === null) throw new Invalid(`invalid number at byte ${i}`);
        value = new Num(match[0]);
        i = NUMBER.lastIndex;
      } else if (text.startsWith('true', i)) {
        value = true;
        i += 4;
      } else if (text.startsWith('false', i)) {
        value = false;
        i += 5;
      } else if (text.startsWith('null', i)) {
        value = null;
        i += 4;
      } else {
        throw new Invalid(`expected value at byte ${i}`);
      }
      // A value ended at i: add it to its container, closing the containers it completes.
      for (;;) {
        if (stack.length === 0) {
          if (this.ws(i) !== n) throw new Invalid('trailing characters');
          return value;
        }
        const top = stack[stack.length - 1];
        let close;
        if (Array.isArray(top)) {
          top.push(value);
          close = 0x5d;
        } else {
          top.pairs.push([keys[keys.length - 1], value]);
          close = 0x7d;
        }
        i = this.ws(i);
        if (i >= n) throw new Invalid('EOF while parsing a list or an object');
        if (text.charCodeAt(i) === 0x2c) {
          i = this.ws(i + 1);
          if (close === 0x7d) [keys[keys.length - 1], i] = this.key(i);
          break;
        }
        if (text.charCodeAt(i) !== close) {
          throw new Invalid(`expected \`,\` or \`${String.fromCharCode(close)}\` at byte ${i}`);
        }
        i += 1;
        value = stack.pop();
        keys.pop();
      }
    }
  }

  /** An object key at i and the `:` after it; returns the key and where its value starts. */
  key(i) {
    if (this.text.charCodeAt(i) !== 0x22) throw new Invalid(`expected a key at byte ${i}`);
    let key;
    [key, i] = this.string(i + 1);
    i = this.ws(i);
    if (this.text.charCodeAt(i) !== 0x3a) throw new Invalid(`expected \`:\` at byte ${i}`);
    return [key, i + 1];
  }

  /**
   * The string whose opening quote is just before i, and the index after its closing quote. Like
   * serde when it skips a string: escapes must be well formed, control characters are errors,
   * and UTF-8 is not checked (that is `Str.borrowed`/`owned`).
   */
  string(i) {
    const { text } = this;
    const start = i;
    let escaped = false;
    for (;;) {
      STRING_STOP.lastIndex = i;
      const stop = STRING_STOP.exec(text);
      if (stop === null) throw new Invalid('EOF while parsing a string');
      i = stop.index;
      const c = text.charCodeAt(i);
      if (c === 0x22) return [new Str(this.bytes, start, i, escaped), i + 1];
      if (c !== 0x5c) throw new Invalid('control character in a string');
      escaped = true;
      const code = text.charCodeAt(i + 1);
      HEX4.lastIndex = i + 2;
      if (SIMPLE_ESCAPES.has(code)) {
        i += 2;
      } else if (code === 0x75 && HEX4.test(text)) {
        i += 6;
      } else {
        throw new Invalid(`invalid escape at byte ${i}`);
      }
    }
  }
}

const MATCH_FIELDS = ['type', 'symbol', 'ts_us', 'taker_order_id', 'taker_side', 'fills'];
const FILL_FIELDS = ['trade_id', 'agg_id', 'price', 'qty', 'maker_order_id'];

/**
 * serde_json's verdict, as in `demo_events::parse::parse_event`: the `match` event if `payload`
 * parses as one, else nothing if it parses as `{"type": <another type>}`, else invalid input.
 */
function exact(payload) {
  let event;
  try {
    event = new Reader(payload).parse();
  } catch (error) {
    if (error instanceof Invalid) throw new Invalid(`invalid \`match\` event: ${error.message}`);
    throw error;
  }
  try {
    return readMatch(event);
  } catch (error) {
    if (!(error instanceof Invalid)) throw error;
    const kind = head(event);
    if (kind !== undefined && kind !== 'match') return [];
    throw new Invalid(`invalid \`match\` event: ${error.message}`);
  }
}

/** The `type` of `event` as serde reads `struct Head { type: Cow<str> }`, or undefined. */
function head(event) {
  let values;
  if (Array.isArray(event)) {
    values = event; // serde also reads a struct from an array of its fields
  } else if (event instanceof Obj) {
    values = [];
    for (const [key, value] of event.pairs) {
      const name = key.owned();
      if (name === undefined) return undefined;
      if (name === 'type') values.push(value);
    }
  } else {
    return undefined;
  }
  if (values.length !== 1 || !(values[0] instanceof Str)) return undefined;
  return values[0].owned();
}

/** The outputs of `event` read as serde reads `demo_events::events::Match`. */
function readMatch(event) {
  const fields = structFields(event, MATCH_FIELDS, 'event');
  if (tag(fields.get('type'), 'type') !== 'match') throw new Invalid('`type` is not `match`');
  const symbol = borrowedStr(fields.get('symbol'), 'symbol');
  const tsUs = u64Text(fields.get('ts_us'), 'ts_us');
  u64Text(fields.get('taker_order_id'), 'taker_order_id');
  const takerSide = tag(fields.get('taker_side'), 'taker_side');
  if (takerSide !== 'BUY' && takerSide !== 'SELL') {
    throw new Invalid(`unknown variant \`${takerSide}\`, expected \`BUY\` or \`SELL\``);
  }
  const fills = fields.get('fills');
  if (!Array.isArray(fills)) throw new Invalid('`fills` is not a list');
  const trades = fills.map((value, index) => {
    const fill = structFields(value, FILL_FIELDS, `fills[${index}]`);
    u64Text(fill.get('agg_id'), 'agg_id');
    u64Text(fill.get('maker_order_id'), 'maker_order_id');
    return [
      u64Text(fill.get('trade_id'), 'trade_id'),
      borrowedStr(fill.get('price'), 'price'),
      borrowedStr(fill.get('qty'), 'qty'),
    ];
  });
  return tradeOutputs(symbol, tsUs, takerSide, trades);
}

/**
 * The fields `names` of a struct, as serde's derive reads them: from an object whose keys are
 * valid strings, each known field once, unknown fields skipped; or from an array of exactly the
 * fields, in order.
 */
function structFields(value, names, what) {
  const fields = new Map();
  if (Array.isArray(value)) {
    if (value.length !== names.length) {
      throw new Invalid(`${what}: invalid length ${value.length}, expected ${names.length} fields`);
    }
    names.forEach((name, index) => fields.set(name, value[index]));
    return fields;
  }
  if (!(value instanceof Obj)) throw new Invalid(`${what}: expected an object`);
  for (const [key, field] of value.pairs) {
    const name = key.owned();
    if (name === undefined) throw new Invalid(`${what}: invalid key`);
    if (names.includes(name)) {
      if (fields.has(name)) throw new Invalid(`${what}: duplicate field \`${name}\``);
      fields.set(name, field);
    }
  }
  for (const name of names) {
    if (!fields.has(name)) throw new Invalid(`${what}: missing field \`${name}\``);
  }
  return fields;
}

/** The variant name of a unit enum, as serde reads it: `"NAME"` or `{"NAME": null}`. */
function tag(value, name) {
  if (value instanceof Obj && value.pairs.length === 1 && value.pairs[0][1] === null) {
    value = value.pairs[0][0];
  }
  const text = value instanceof Str ? value.owned() : undefined;
  if (text === undefined) throw new Invalid(`\`${name}\` is not a string`);
  return text;
}

/**
 * The canonical text of a u64 field: serde reads only a plain non-negative integer literal as
 * u64 (`1.0`, `1e3`, `-0` and anything above 2^64-1 are floats to it).
 */
function u64Text(value, name) {
  if (value instanceof Num && U64_TEXT.test(value.text) && BigInt(value.text) <= U64_MAX) {
    return value.text;
  }
  throw new Invalid(`\`${name}\` is not a u64`);
}

/** A `&str` field: serde borrows it from the payload, so it must have no escapes. */
function borrowedStr(value, name) {
  const text = value instanceof Str ? value.borrowed() : undefined;
  if (text === undefined) throw new Invalid(`\`${name}\` is not a string without escapes`);
  return text;
}
