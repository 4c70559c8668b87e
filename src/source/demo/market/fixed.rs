//! Fixed-point decimals (1e-8 units) and the small JSON writer used for every payload.

/// 1e8: one unit of a decimal in 1e-8 units.
pub(super) const SCALE: i64 = 100_000_000;

/// Parses an unsigned decimal string with at most 8 decimals (`"67000.01"`) into 1e-8 units.
pub(super) fn parse_decimal(s: &str) -> Option<i64> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if int.is_empty() || frac.len() > 8 || (s.contains('.') && frac.is_empty()) {
        return None;
    }
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) || int.len() > 11 {
        return None;
    }
    let mut v: i64 = int.parse().ok()?;
    v = v.checked_mul(SCALE)?;
    let mut f: i64 = 0;
    for i in 0..8 {
        f = f * 10 + frac.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
    }
    v.checked_add(f)
}

/// Appends the decimal digits of `v`.
#[inline]
pub(super) fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// Appends the decimal digits of `v`.
pub(super) fn push_u128(buf: &mut Vec<u8>, v: u128) {
    match u64::try_from(v) {
        Ok(small) => push_u64(buf, small),
        Err(_) => {
            // Split into a high part and the low 19 digits, zero-padded.
            const TEN19: u128 = 10_000_000_000_000_000_000;
            push_u128(buf, v / TEN19);
            let mut low = (v % TEN19) as u64;
            let mut tmp = [b'0'; 19];
            for slot in tmp.iter_mut().rev() {
                *slot = b'0' + (low % 10) as u8;
                low /= 10;
            }
            buf.extend_from_slice(&tmp);
        }
    }
}

/// Appends a JSON integer.
#[inline]
pub(super) fn push_int(buf: &mut Vec<u8>, v: i64) {
    if v < 0 {
        buf.push(b'-');
    }
    push_u64(buf, v.unsigned_abs());
}

/// Appends a quoted decimal with exactly 8 decimals, e.g. `"67000.01000000"`.
#[inline]
pub(super) fn push_dec8(buf: &mut Vec<u8>, units: i128) {
    buf.push(b'"');
    if units < 0 {
        buf.push(b'-');
    }
    let a = units.unsigned_abs();
    let (int, mut frac) = match u64::try_from(a) {
        Ok(a) => (u128::from(a / SCALE as u64), (a % SCALE as u64) as u32),
        Err(_) => (a / SCALE as u128, (a % SCALE as u128) as u32),
    };
    push_u128(buf, int);
    let mut tmp = [b'0'; 9];
    tmp[0] = b'.';
    for slot in tmp[1..].iter_mut().rev() {
        *slot = b'0' + (frac % 10) as u8;
        frac /= 10;
    }
    buf.extend_from_slice(&tmp);
    buf.push(b'"');
}

/// Appends a quoted decimal with exactly 3 decimals from a value in thousandths.
pub(super) fn push_dec3(buf: &mut Vec<u8>, thousandths: i128) {
    buf.push(b'"');
    if thousandths < 0 {
        buf.push(b'-');
    }
    let a = thousandths.unsigned_abs();
    push_u128(buf, a / 1000);
    let f = (a % 1000) as u32;
    buf.extend_from_slice(&[
        b'.',
        b'0' + (f / 100) as u8,
        b'0' + (f / 10 % 10) as u8,
        b'0' + (f % 10) as u8,
    ]);
    buf.push(b'"');
}

/// Appends `,"key":` (or `"key":` when `first`) — keys are plain ASCII, never escaped.
#[inline]
pub(super) fn key(buf: &mut Vec<u8>, k: &str) {
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(k.as_bytes());
    buf.extend_from_slice(b"\":");
}

/// Starts an event object: `{"type":"<ty>","symbol":"<sym>","ts_us":<ts>`.
pub(super) fn begin(buf: &mut Vec<u8>, ty: &str, symbol: &str, ts_us: i64) {
    buf.clear();
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(ty.as_bytes());
    buf.extend_from_slice(b"\",\"symbol\":\"");
    buf.extend_from_slice(symbol.as_bytes());
    buf.extend_from_slice(b"\",\"ts_us\":");
    push_int(buf, ts_us);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec8(u: i128) -> String {
        let mut b = Vec::new();
        push_dec8(&mut b, u);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn decimals_parse_and_format() {
        assert_eq!(parse_decimal("67000.01"), Some(6_700_001_000_000));
        assert_eq!(parse_decimal("0.00000001"), Some(1));
        assert_eq!(parse_decimal("5"), Some(500_000_000));
        for bad in ["", ".5", "5.", "-1", "1e3", "0.000000001", "1.2.3", " 1"] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
        assert_eq!(dec8(6_700_001_000_000), "\"67000.01000000\"");
        assert_eq!(dec8(0), "\"0.00000000\"");
        assert_eq!(dec8(-150_000_000), "\"-1.50000000\"");
        let big: i128 = 123_456_789_012_345_678_901_234_567_890;
        assert_eq!(dec8(big), "\"1234567890123456789012.34567890\"");
        assert_eq!(
            dec8(-big - 10_000_000_000_000_000_000 * 100_000_000),
            "\"-1244567890123456789012.34567890\""
        );
        let mut b = Vec::new();
        push_dec3(&mut b, -1362);
        assert_eq!(b, b"\"-1.362\"");
    }
}
