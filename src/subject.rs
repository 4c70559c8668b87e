//! NATS-style subject patterns: dot-separated tokens, `*` matches one token, `>` the rest.
//!
//! Used for bus subscriptions and for routes that select demo or NATS channels.

/// True when `subject` matches `pattern`.
///
/// ```
/// use wsgate::subject::matches;
/// assert!(matches("trade.*", "trade.BTCUSDT"));
/// assert!(matches("md.>", "md.btcusdt.trade"));
/// assert!(!matches("trade.*", "trade.BTCUSDT.x"));
/// ```
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for token in pattern.split('.') {
        match token {
            ">" => return subject_tokens.next().is_some(),
            "*" => {
                if subject_tokens.next().is_none() {
                    return false;
                }
            }
            literal => {
                if subject_tokens.next() != Some(literal) {
                    return false;
                }
            }
        }
    }
    subject_tokens.next().is_none()
}

/// True when `pattern` has a wildcard token (`*` or `>`), i.e. matches more than itself.
///
/// ```
/// use wsgate::subject::is_pattern;
/// assert!(is_pattern("trade.*") && is_pattern("md.>"));
/// assert!(!is_pattern("trades") && !is_pattern("a*b"));
/// ```
pub fn is_pattern(pattern: &str) -> bool {
    pattern.split('.').any(|token| token == "*" || token == ">")
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn literal_wildcard_and_tail() {
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.c"));
        assert!(!matches("a.b", "a.b.c"));
        assert!(!matches("a.b.c", "a.b"));
        assert!(matches("a.*", "a.x"));
        assert!(!matches("a.*", "a"));
        assert!(matches("*.x", "q.x"));
        assert!(matches(">", "a"));
        assert!(matches("a.>", "a.b.c"));
        assert!(!matches("a.>", "a"));
    }
}
