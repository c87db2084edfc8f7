//! Pure timing policy: when to refresh a token, when a cached token is still worth serving, and
//! how long to back off after an upstream failure. No clocks here — callers pass durations and a
//! jitter sample in `[-1, 1]`, which keeps the rules property-testable.

use std::time::Duration;

/// Tokens living at least this long are refreshed at half-life.
pub const LONG_LIVED: Duration = Duration::from_secs(2 * 60 * 60);
/// Every MSAL treats a token with less than this left as expired.
pub const CLIENT_EXPIRY_MARGIN: Duration = Duration::from_secs(5 * 60);
/// Relative jitter applied to refresh delays (±10 %).
pub const REFRESH_JITTER: f64 = 0.10;
/// A refresh is never scheduled sooner than this after receipt (no refresh loops).
pub const MIN_REFRESH_DELAY: Duration = Duration::from_secs(1);
/// Backoff bounds after upstream failures.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5 * 60);
/// Relative jitter applied to backoff delays (±20 %).
pub const BACKOFF_JITTER: f64 = 0.20;
/// Upper bound on an upstream `Retry-After` we honour.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(60 * 60);
/// Definitive errors (`invalid_grant`, ...) are not retried sooner than this.
pub const DEFINITIVE_MIN_BACKOFF: Duration = Duration::from_secs(30);

/// How long after receipt a token of `lifetime` should be refreshed.
///
/// Long-lived tokens (≥ 2 h) at half-life; shorter ones `min(margin, lifetime / 2)` before expiry;
/// `jitter` in `[-1, 1]` moves the point by up to ±10 %. Never earlier than [`MIN_REFRESH_DELAY`]
/// and never after expiry.
pub fn refresh_delay(lifetime: Duration, margin: Duration, jitter: f64) -> Duration {
    let base = if lifetime >= LONG_LIVED { lifetime / 2 } else { lifetime - margin.min(lifetime / 2) };
    let factor = 1.0 + REFRESH_JITTER * jitter.clamp(-1.0, 1.0);
    let jittered = base.mul_f64(factor);
    jittered.min(lifetime).max(MIN_REFRESH_DELAY)
}

/// The least time a cached token must have left to be served without first trying upstream:
/// 5 minutes where the lifetime allows it, a quarter of the lifetime for very short-lived tokens.
pub fn min_servable_remaining(lifetime: Duration) -> Duration {
    CLIENT_EXPIRY_MARGIN.min(lifetime / 4)
}

/// Delay before the next upstream attempt after `failures` consecutive failures (≥ 1).
///
/// Exponential from [`BACKOFF_BASE`] capped at [`BACKOFF_MAX`], ±20 % jitter, never shorter than
/// the upstream's `Retry-After` (itself capped at [`RETRY_AFTER_MAX`]) nor, for definitive errors,
/// than [`DEFINITIVE_MIN_BACKOFF`].
pub fn backoff_delay(
    failures: u32,
    retry_after: Option<Duration>,
    definitive: bool,
    jitter: f64,
) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let base = BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_MAX);
    let factor = 1.0 + BACKOFF_JITTER * jitter.clamp(-1.0, 1.0);
    let mut delay = base.mul_f64(factor).min(BACKOFF_MAX);
    if definitive {
        delay = delay.max(DEFINITIVE_MIN_BACKOFF);
    }
    if let Some(ra) = retry_after {
        delay = delay.max(ra.min(RETRY_AFTER_MAX));
    }
    delay
}

/// A jitter sample in `[-1, 1]`.
pub fn jitter() -> f64 {
    fastrand::f64() * 2.0 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn two_minute_tokens_refresh_about_a_minute_in() {
        let d = refresh_delay(Duration::from_secs(120), 15 * MIN, 0.0);
        assert_eq!(d, Duration::from_secs(60));
    }

    #[test]
    fn one_hour_tokens_refresh_margin_before_expiry() {
        assert_eq!(refresh_delay(60 * MIN, 15 * MIN, 0.0), 45 * MIN);
    }

    #[test]
    fn long_tokens_refresh_at_half_life() {
        assert_eq!(refresh_delay(24 * 60 * MIN, 15 * MIN, 0.0), 12 * 60 * MIN);
    }

    #[test]
    fn zero_lifetime_still_waits() {
        assert_eq!(refresh_delay(Duration::ZERO, 15 * MIN, -1.0), MIN_REFRESH_DELAY);
    }

    #[test]
    fn servable_margin() {
        assert_eq!(min_servable_remaining(60 * MIN), 5 * MIN);
        assert_eq!(min_servable_remaining(Duration::from_secs(120)), Duration::from_secs(30));
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff_delay(1, None, false, 0.0), Duration::from_secs(1));
        assert_eq!(backoff_delay(2, None, false, 0.0), Duration::from_secs(2));
        assert_eq!(backoff_delay(5, None, false, 0.0), Duration::from_secs(16));
        assert_eq!(backoff_delay(40, None, false, 0.0), BACKOFF_MAX);
        assert_eq!(backoff_delay(1, Some(Duration::from_secs(42)), false, 0.0), Duration::from_secs(42));
        assert_eq!(backoff_delay(1, None, true, 0.0), DEFINITIVE_MIN_BACKOFF);
    }

    proptest! {
        #[test]
        fn refresh_is_never_in_the_past_nor_after_expiry(
            life_s in 0u64..(7 * 24 * 3600), margin_s in 0u64..(24 * 3600), j in -1.0f64..=1.0
        ) {
            let lifetime = Duration::from_secs(life_s);
            let d = refresh_delay(lifetime, Duration::from_secs(margin_s), j);
            prop_assert!(d >= MIN_REFRESH_DELAY);
            prop_assert!(d <= lifetime.max(MIN_REFRESH_DELAY));
            // Never later than the un-jittered point plus 10 %.
            let base = if lifetime >= LONG_LIVED { lifetime / 2 }
                else { lifetime - Duration::from_secs(margin_s).min(lifetime / 2) };
            prop_assert!(d <= base.mul_f64(1.1).max(MIN_REFRESH_DELAY) + Duration::from_millis(1));
            // A refreshed token is still servable at its refresh point when it lives long enough.
            if lifetime >= Duration::from_secs(600) && margin_s >= 300 {
                prop_assert!(lifetime - d >= min_servable_remaining(lifetime));
            }
        }

        #[test]
        fn backoff_is_bounded(n in 1u32..1000, ra in proptest::option::of(0u64..100_000), j in -1.0f64..=1.0, def in any::<bool>()) {
            let d = backoff_delay(n, ra.map(Duration::from_secs), def, j);
            prop_assert!(d >= BACKOFF_BASE.mul_f64(0.8));
            prop_assert!(d <= BACKOFF_MAX.max(RETRY_AFTER_MAX));
            if let Some(ra) = ra {
                prop_assert!(d >= Duration::from_secs(ra).min(RETRY_AFTER_MAX));
            }
            if ra.is_none() {
                prop_assert!(d <= BACKOFF_MAX);
            }
        }

        #[test]
        fn backoff_is_monotone_without_jitter(n in 1u32..60) {
            prop_assert!(backoff_delay(n + 1, None, false, 0.0) >= backoff_delay(n, None, false, 0.0));
        }
    }
}
