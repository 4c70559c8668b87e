//! The incoming-message budget: at most N client messages in any window of one second.
//!
//! Binance allows 5 messages per second per connection and disconnects the sixth. A sliding
//! window over the last N arrival times enforces exactly that ("a 6th message within one second"),
//! which a token bucket (a 6th message 0.2 s after five quick ones passes) does not. Arrivals are
//! kept as milliseconds since the connection started, 4 bytes each.

/// Most messages a window can hold.
pub const MAX_BURST: usize = 16;

/// Arrival times of the last messages, in a ring.
#[derive(Debug, Clone)]
pub struct MessageRate {
    window_ms: u32,
    limit: u8,
    filled: u8,
    next: u8,
    arrivals_ms: [u32; MAX_BURST],
}

impl MessageRate {
    /// Allows `limit` messages (1 to [`MAX_BURST`]) in any window of `window_ms`.
    pub fn new(limit: usize, window_ms: u32) -> Self {
        MessageRate {
            window_ms,
            limit: limit.clamp(1, MAX_BURST) as u8,
            filled: 0,
            next: 0,
            arrivals_ms: [0; MAX_BURST],
        }
    }

    /// Records a message arriving `now_ms` after the connection started; false if it exceeds
    /// the budget.
    pub fn admit(&mut self, now_ms: u32) -> bool {
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
