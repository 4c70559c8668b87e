//! The incoming-message budget: at most N client messages in any window of one second.
//!
//! Binance allows 5 messages per second per connection and disconnects the sixth. A sliding
//! window over the last N arrival times enforces exactly that ("a 6th message within one second"),
//! which a token bucket (a 6th message 0.2 s after five quick ones passes) does not. Arrivals are
//! kept as milliseconds since the connection started, 4 bytes each.
//!
//! Budgets above [`MAX_BURST`] (the WebSocket API's pipelined requests) are counted per fixed
//! window instead, so a connection never keeps more than [`MAX_BURST`] arrival times.

/// Most messages a sliding window can hold.
pub const MAX_BURST: usize = 16;

/// A connection's message budget.
#[derive(Debug, Clone)]
pub enum MessageRate {
    /// Exactly `limit` messages in any window (small budgets).
    Sliding(Sliding),
    /// `limit` messages per window, counted from the window's first message (large budgets).
    Counted {
        /// Window length.
        window_ms: u32,
        /// Messages allowed per window.
        limit: u32,
        /// When the current window began.
        start_ms: u32,
        /// Messages in it so far.
        count: u32,
    },
}

/// Arrival times of the last messages, in a ring.
#[derive(Debug, Clone)]
pub struct Sliding {
    window_ms: u32,
    limit: u8,
    filled: u8,
    next: u8,
    arrivals_ms: [u32; MAX_BURST],
}

impl MessageRate {
    /// Allows `limit` messages (at least 1) in any window of `window_ms`.
    pub fn new(limit: usize, window_ms: u32) -> Self {
        if limit > MAX_BURST {
            return MessageRate::Counted {
                window_ms,
                limit: u32::try_from(limit).unwrap_or(u32::MAX),
                start_ms: 0,
                count: 0,
            };
        }
        MessageRate::Sliding(Sliding {
            window_ms,
            limit: limit.max(1) as u8,
            filled: 0,
            next: 0,
            arrivals_ms: [0; MAX_BURST],
        })
    }

    /// Records a message arriving `now_ms` after the connection started; false if it exceeds
    /// the budget.
    pub fn admit(&mut self, now_ms: u32) -> bool {
        match self {
            MessageRate::Sliding(sliding) => sliding.admit(now_ms),
            MessageRate::Counted {
                window_ms,
                limit,
                start_ms,
                count,
            } => {
                if *count == 0 || now_ms.saturating_sub(*start_ms) >= *window_ms {
                    *start_ms = now_ms;
                    *count = 0;
                }
                *count += 1;
                *count <= *limit
            }
        }
    }
}

impl Sliding {
    fn admit(&mut self, now_ms: u32) -> bool {
        let slot = usize::from(self.next);
        // Once the ring is full, the slot to overwrite holds the arrival `limit` messages ago.
        if self.filled == self.limit
            && now_ms.saturating_sub(self.arrivals_ms[slot]) < self.window_ms
        {
            return false;
        }
        self.arrivals_ms[slot] = now_ms;
        self.next = (self.next + 1) % self.limit;
        self.filled = (self.filled + 1).min(self.limit);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_budgets_are_counted_per_window() {
        let mut rate = MessageRate::new(200, 1000);
        for i in 0..200 {
            assert!(rate.admit(10 + i));
        }
        assert!(!rate.admit(900));
        assert!(rate.admit(1010), "a new window");
    }

    #[test]
    fn sixth_message_within_a_second_is_refused() {
        let mut rate = MessageRate::new(5, 1000);
        for i in 0..5 {
            assert!(rate.admit(i * 150));
        }
        assert!(!rate.admit(900));
    }

    #[test]
    fn steady_five_per_second_is_fine() {
        let mut rate = MessageRate::new(5, 1000);
        for i in 0..50 {
            assert!(rate.admit(i * 200), "message {i}");
        }
    }

    #[test]
    fn window_slides() {
        let mut rate = MessageRate::new(5, 1000);
        for _ in 0..5 {
            assert!(rate.admit(0));
        }
        assert!(!rate.admit(999));
        assert!(rate.admit(1000));
    }
}
