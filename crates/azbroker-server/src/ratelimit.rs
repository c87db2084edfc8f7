//! The optional per-uid rate limit on token requests (off unless configured): a token bucket per
//! local user. Over the limit a request gets 429 with an integer `Retry-After` (PROTOCOLS.md
//! §3.4). Only requests that passed their dialect's checks count, so discovery probes never do.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio::time::Instant;

/// Requests per second per uid, with bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

/// The key for connections whose owner is unknown (policy normally refuses them first).
const UNKNOWN: u32 = u32::MAX;
/// Beyond this many buckets, full (idle) ones are dropped.
const MAX_BUCKETS: usize = 4096;

pub(crate) struct RateLimiter {
    /// As configured (a reload with the same value keeps the buckets).
    configured: RateLimit,
    limit: RateLimit,
    buckets: Mutex<HashMap<u32, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        let configured = limit;
        let limit = RateLimit { per_second: limit.per_second.max(0.001), burst: limit.burst.max(1) };
        Self { configured, limit, buckets: Mutex::default() }
    }

    /// The limit as configured.
    pub(crate) fn configured(&self) -> RateLimit {
        self.configured
    }

    /// Takes one request from `uid`'s bucket, or says in how many whole seconds one is free.
    pub(crate) fn check(&self, uid: Option<u32>) -> Result<(), u64> {
        let now = Instant::now();
        let (rate, burst) = (self.limit.per_second, f64::from(self.limit.burst));
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS {
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = buckets.entry(uid.unwrap_or(UNKNOWN)).or_insert(Bucket { tokens: burst, at: now });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err((((1.0 - b.tokens) / rate).ceil() as u64).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn bursts_then_refills_per_uid() {
        let l = RateLimiter::new(RateLimit { per_second: 0.5, burst: 3 });
        for _ in 0..3 {
            assert_eq!(l.check(Some(1000)), Ok(()));
        }
        assert_eq!(l.check(Some(1000)), Err(2), "one token takes 2 s at 0.5/s");
        assert_eq!(l.check(Some(1001)), Ok(()), "another user has its own bucket");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(l.check(Some(1000)), Ok(()));
        assert!(l.check(Some(1000)).is_err());
    }
}
