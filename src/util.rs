//! Small helpers shared across modules.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time in microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// At most `per_sec` log lines per second; callers count the rest in metrics.
pub struct LogLimit {
    per_sec: u32,
    window: Option<std::time::Instant>,
    lines: u32,
}

impl LogLimit {
    /// A limit of `per_sec` lines per second.
    pub fn per_sec(per_sec: u32) -> Self {
        LogLimit {
            per_sec,
            window: None,
            lines: 0,
        }
    }

    /// True when one more line may be logged now.
    pub fn allow(&mut self) -> bool {
        let now = std::time::Instant::now();
        match self.window {
            Some(start) if now.duration_since(start) < std::time::Duration::from_secs(1) => {}
            _ => {
                self.window = Some(now);
                self.lines = 0;
            }
        }
        self.lines += 1;
        self.lines <= self.per_sec
    }
}

/// The longest error text a client is sent: texts that quote client input (serde's "unknown
/// variant `…`") are cut here, so a large request cannot make a large reply.
pub const MAX_ERROR_TEXT: usize = 256;

/// `text` cut to at most [`MAX_ERROR_TEXT`] bytes (at a character boundary, marked with `…`).
pub fn clip_error_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_ERROR_TEXT {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = MAX_ERROR_TEXT - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…", &text[..end]))
}

#[cfg(test)]
mod clip_tests {
    use super::*;

    #[test]
    fn clips_long_texts_at_a_character_boundary() {
        assert_eq!(clip_error_text("short"), "short");
        let long = format!("unknown variant `{}`", "é".repeat(40_000));
        let clipped = clip_error_text(&long);
        assert!(clipped.len() <= MAX_ERROR_TEXT, "{}", clipped.len());
        assert!(clipped.starts_with("unknown variant `é") && clipped.ends_with('…'));
    }
}
