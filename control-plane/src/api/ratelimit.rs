//! Per-token request rate limits: a token bucket (GCRA, the `governor` crate) per token id.
//!
//! Only tokens that verified are keyed, so the number of buckets is bounded by the token file;
//! requests without a valid token are refused by authentication before they reach a bucket.
//! The limiter holds no I/O and no locks across awaits.

use std::{num::NonZeroU32, time::Duration};

use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock as _, DefaultClock},
};

/// Rate limits of the API's tokens.
pub struct RateLimits {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("enabled", &self.limiter.is_some())
            .finish_non_exhaustive()
    }
}

impl RateLimits {
    /// `per_second` requests a second per token, bursts up to `burst`; 0 for either turns limits
    /// off.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_second)
            .zip(NonZeroU32::new(burst))
            .map(|(rate, burst)| RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)));
        Self {
            limiter,
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from the token's bucket.
    ///
    /// # Errors
    /// When the bucket is empty: how long until the next request would be allowed.
    pub fn check(&self, token_id: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&token_id.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_refusal_with_a_wait_per_token() {
        let limits = RateLimits::new(1, 3);
        for _ in 0..3 {
            assert_eq!(limits.check("a"), Ok(()));
        }
        let wait = limits.check("a").expect_err("bucket empty");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert_eq!(
            limits.check("b"),
            Ok(()),
            "another token has its own bucket"
        );
        let off = RateLimits::new(0, 0);
        assert!((0..1000).all(|_| off.check("a").is_ok()));
    }
}
