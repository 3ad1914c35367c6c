//! What to do after a push ([`RetryAction`], from the status or the transport error) and how
//! long to wait before the next try ([`Backoff`]): the decision is kept apart from the timing.
//!
//! The rule, from the remote-write 1.0 spec:
//! - 2xx: success (200 with an empty body and 204 alike; the body is ignored);
//! - 5xx and 429: retry the same batch, honouring `Retry-After` (seconds) on 429 and 503;
//! - a connection error or a timeout: retry;
//! - anything else (400, 401, 404, 413, a 3xx the client did not follow, ...): drop the batch;
//!   the receiver will never accept it, so retrying would block every later sample.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

/// The outcome of one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryAction {
    /// Accepted: commit the batch.
    Success,
    /// Not accepted, try again; `after` is the receiver's `Retry-After`, when it sent one.
    Retry { after: Option<Duration> },
    /// Rejected for good: drop the batch, count it as failed, never send it again.
    Drop,
}

/// How the wait grows: `base = min(max, min · 2^attempt)`, then jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jitter {
    /// Uniform in `[0, base]`.
    Full,
    /// Uniform in `[base / 2, base]`: never much shorter than the exponential step.
    Equal,
}

/// Exponential backoff with jitter and a cap.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    jitter: Jitter,
    attempt: u32,
    rng: XorShift,
}

/// xorshift64*: enough to spread retries of several agents apart, no crate needed.
#[derive(Debug)]
struct XorShift(u64);

// === impl RetryAction ===

impl RetryAction {
    /// The action for an HTTP answer.
    pub fn from_status(status: StatusCode, headers: &HeaderMap) -> RetryAction {
        if status.is_success() {
            return RetryAction::Success;
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            let honoured = status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::SERVICE_UNAVAILABLE;
            let after = if honoured { retry_after(headers) } else { None };
            return RetryAction::Retry { after };
        }
        RetryAction::Drop
    }

    /// The action for a request that got no answer (connect error, timeout, reset...).
    pub fn from_transport_error() -> RetryAction {
        RetryAction::Retry { after: None }
    }
}

/// `Retry-After` in its delay-seconds form; the HTTP-date form is ignored (backoff applies).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    text.parse::<u64>().ok().map(Duration::from_secs)
}

// === impl Backoff ===

impl Backoff {
    /// `min` is the first step, `max` the cap (a `min` above `max` is lowered to it).
    pub fn new(min: Duration, max: Duration, jitter: Jitter) -> Backoff {
        Backoff {
            min: min.min(max),
            max,
            jitter,
            attempt: 0,
            rng: XorShift::from_clock(),
        }
    }

    /// The wait before the next try; each call doubles the step, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.base();
        self.attempt = self.attempt.saturating_add(1);
        let nanos = u64::try_from(base.as_nanos()).unwrap_or(u64::MAX);
        let (low, span) = match self.jitter {
            Jitter::Full => (0, nanos),
            Jitter::Equal => (nanos / 2, nanos - nanos / 2),
        };
        let extra = match span.checked_add(1) {
            Some(n) => self.rng.next() % n,
            None => self.rng.next(),
        };
        Duration::from_nanos(low + extra)
    }

    /// The wait the receiver asked for, capped; it also counts as a step.
    pub fn delay_for(&mut self, after: Option<Duration>) -> Duration {
        match after {
            Some(after) => {
                self.attempt = self.attempt.saturating_add(1);
                after.min(self.max)
            }
            None => self.next_delay(),
        }
    }

    /// Back to the first step (after a batch got an answer that ends the retries).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    fn base(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }
}

// === impl XorShift ===

impl XorShift {
    fn from_clock() -> XorShift {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SALT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let salt = SALT.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        let seed = (nanos ^ salt ^ u64::from(std::process::id())).max(1);
        XorShift(seed)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn action(code: u16, retry_after: Option<&str>) -> RetryAction {
        let mut headers = HeaderMap::new();
        if let Some(v) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        }
        RetryAction::from_status(StatusCode::from_u16(code).unwrap(), &headers)
    }

    const RETRY: RetryAction = RetryAction::Retry { after: None };

    #[test]
    fn success_is_any_2xx() {
        for code in [200, 201, 202, 204] {
            assert_eq!(action(code, None), RetryAction::Success, "{code}");
        }
    }

    #[test]
    fn retries_5xx_and_429_only() {
        for code in [500, 501, 502, 503, 504, 599, 429] {
            assert_eq!(action(code, None), RETRY, "{code}");
        }
        for code in [400, 401, 403, 404, 408, 409, 413, 415, 422, 301, 304, 100] {
            assert_eq!(action(code, None), RetryAction::Drop, "{code}");
        }
        assert_eq!(RetryAction::from_transport_error(), RETRY);
    }

    #[test]
    fn honours_retry_after_seconds_on_429_and_503() {
        let after = |s| RetryAction::Retry {
            after: Some(Duration::from_secs(s)),
        };
        assert_eq!(action(429, Some("7")), after(7));
        assert_eq!(action(503, Some(" 2 ")), after(2));
        assert_eq!(action(500, Some("7")), RETRY);
        assert_eq!(action(502, Some("7")), RETRY);
        assert_eq!(action(429, Some("Wed, 21 Oct 2015 07:28:00 GMT")), RETRY);
        assert_eq!(action(429, Some("-1")), RETRY);
        assert_eq!(action(400, Some("1")), RetryAction::Drop);
    }

    #[test]
    fn equal_jitter_stays_within_half_to_full_step_and_is_capped() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(60));
        let mut b = Backoff::new(min, max, Jitter::Equal);
        for attempt in 0..40u32 {
            let step = min.saturating_mul(1u32 << attempt.min(31)).min(max);
            let d = b.next_delay();
            assert!(
                d >= step / 2 && d <= step,
                "attempt {attempt}: {d:?} vs {step:?}"
            );
        }
        b.reset();
        let d = b.next_delay();
        assert!(d >= min / 2 && d <= min, "after reset: {d:?}");
    }

    #[test]
    fn full_jitter_never_exceeds_the_step() {
        let mut b = Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(80),
            Jitter::Full,
        );
        let steps = [10, 20, 40, 80, 80, 80];
        for ms in steps {
            assert!(b.next_delay() <= Duration::from_millis(ms));
        }
    }

    #[test]
    fn retry_after_is_capped_at_the_maximum() {
        let mut b = Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(60),
            Jitter::Equal,
        );
        let asked = Some(Duration::from_secs(3600));
        assert_eq!(b.delay_for(asked), Duration::from_secs(60));
        let asked = Some(Duration::from_secs(3));
        assert_eq!(b.delay_for(asked), Duration::from_secs(3));
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let mut b = Backoff::new(
            Duration::from_secs(60),
            Duration::from_secs(60),
            Jitter::Full,
        );
        let delays: std::collections::HashSet<_> = (0..20).map(|_| b.next_delay()).collect();
        assert!(delays.len() > 10);
    }

    #[test]
    fn a_minimum_above_the_maximum_gives_equal_jitter_delays_of_the_maximum() {
        let mut b = Backoff::new(
            Duration::from_secs(5),
            Duration::from_secs(1),
            Jitter::Equal,
        );
        for _ in 0..5 {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(500) && d <= Duration::from_secs(1),
                "{d:?}"
            );
        }
    }
}
