//! A per-source rate limit for the endpoints an address could flood (signals, admin actions),
//! taken before authentication. Replays of signed signal batches are refused by the store,
//! which remembers accepted signatures across restarts (`store::SignalReceipt`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Token buckets per source address.
#[derive(Debug)]
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

/// Sources tracked before idle (full) buckets are forgotten.
const MAX_SOURCES: usize = 10_000;

impl RateLimiter {
    /// A limiter allowing `per_sec` sustained and `burst` at once per key.
    pub fn new(per_sec: f64, burst: f64) -> Self {
        Self { per_sec, burst: burst.max(1.0), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `source`; `Err(seconds)` says when the next one is due.
    pub fn check(&self, source: IpAddr, now: Instant) -> Result<(), f64> {
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        if buckets.len() >= MAX_SOURCES {
            let (per_sec, burst) = (self.per_sec, self.burst);
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * per_sec < burst);
        }
        let (tokens, at) = buckets.entry(source).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - *tokens) / self.per_sec.max(f64::MIN_POSITIVE))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn buckets_refill_at_the_rate_and_sources_are_separate() {
        let limiter = RateLimiter::new(2.0, 3.0);
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(a, t0).is_ok());
        }
        let wait = limiter.check(a, t0).expect_err("the burst is spent");
        assert!((wait - 0.5).abs() < 1e-9, "{wait}");
        assert!(limiter.check(b, t0).is_ok(), "another source has its own bucket");
        assert!(limiter.check(a, t0 + Duration::from_millis(500)).is_ok());
        assert!(limiter.check(a, t0 + Duration::from_millis(500)).is_err());
    }
}
