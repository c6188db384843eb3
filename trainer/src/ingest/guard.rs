//! Protections of the signal endpoint beyond authentication: a per-source rate limit (so one
//! address cannot flood the store or the plan) and a replay guard (a captured signed batch
//! cannot be sent again within its timestamp window).

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

/// Signatures seen within the timestamp window.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<String, u64>>,
}

impl ReplayGuard {
    /// Records a verified signature; false when it was seen before. Entries older than the
    /// window are forgotten: `verify` rejects their timestamps anyway.
    pub fn first_sight(&self, signature: &str, timestamp: u64, now: u64, window_secs: u64) -> bool {
        let Ok(mut seen) = self.seen.lock() else { return false };
        if seen.len() > 1_000 {
            seen.retain(|_, at| at.abs_diff(now) <= window_secs);
        }
        seen.insert(signature.trim().to_ascii_lowercase(), timestamp).is_none()
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

    #[test]
    fn a_signature_is_accepted_once() {
        let guard = ReplayGuard::default();
        assert!(guard.first_sight("ABCD", 100, 100, 300));
        assert!(!guard.first_sight("abcd", 100, 150, 300));
        assert!(guard.first_sight("abce", 100, 150, 300));
    }
}
