//! `max_message_rate`: a token bucket per connection. A client may send
//! `rate` PUBLISH packets per second on average, in bursts of at most
//! `rate`; the packet that finds the bucket empty ends the connection
//! (MQTT 5 DISCONNECT 0x96 "message rate too high", MQTT 3 a close).

use std::time::Instant;

#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// `None` for 0 (unlimited).
    pub fn new(rate: u32) -> Option<RateLimit> {
        (rate > 0).then(|| RateLimit {
            rate: rate as f64,
            tokens: rate as f64,
            last: Instant::now(),
        })
    }

    /// Takes one message at `now`; false if it exceeds the rate.
    pub fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_of_rate_messages_passes_and_the_next_one_does_not() {
        let mut r = RateLimit::new(5).unwrap();
        let t = r.last;
        assert!((0..5).all(|_| r.take(t)));
        assert!(!r.take(t));
        // A fifth of a second later one more is allowed.
        assert!(r.take(t + Duration::from_millis(210)));
        assert!(!r.take(t + Duration::from_millis(210)));
    }

    #[test]
    fn zero_is_unlimited() {
        assert!(RateLimit::new(0).is_none());
    }
}
