//! What to do after a push ([`RetryAction`], from the status or the transport error) and how
//! long to wait before the next try ([`Backoff`]): the decision is kept apart from the timing.
//!
//! The rule: the remote-write 1.0 spec (5xx and 429 retried, other 4xx not), plus what the
//! receivers this agent pushes to actually answer:
//! - 2xx: success (200 with an empty body and 204 alike; the body is ignored);
//! - 5xx: retry the same batch, honouring `Retry-After` (seconds) on 503;
//! - 429 and 499: back-pressure, retry the same batch with the same backoff, honouring
//!   `Retry-After`. Nightingale's `pushgw` answers `/prometheus/v1/write` with its
//!   `OverLimitStatusCode`, 499 unless configured, body `write queue full, metric count over
//!   limit: N`, while its write queues are full (ccfos/nightingale
//!   `pushgw/router/router_remotewrite.go`, default set in `pushgw/pconf/conf.go`); its
//!   `/proxy/v1/write` answers 429 when too many requests are in flight
//!   (`pushgw/router/router_proxy_remotewrite.go`). Nothing else sends 499 to a client (nginx
//!   only logs it for a client that went away), so no 499 means "drop";
//! - 408: retry. The receiver gave up waiting for the request, which says nothing about the
//!   samples; it is the server-side twin of a client timeout, which is retried too. vmagent
//!   retries every status but 400 and 409 (VictoriaMetrics/VictoriaMetrics
//!   `app/vmagent/remotewrite/client.go`); Prometheus retries only 5xx and, with
//!   `retry_on_http_429`, 429 (prometheus/prometheus `storage/remote/client.go`);
//! - 413: [`RetryAction::Split`]: the batch is too large, not wrong (n9e's proxy route answers
//!   413 above its body limit, `router_proxy_remotewrite.go`). The sender resends it in halves;
//!   a single series still too large is dropped as below. Prometheus drops on 413, vmagent
//!   retries the same block for ever: both lose or stall where a smaller request would do;
//! - a connection error or a timeout: retry;
//! - anything else (400, 401, 403, 404, 409, 415, 422, a 3xx the client did not follow, ...):
//!   drop the batch; the receiver will never accept it, so retrying would block every later
//!   sample.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

/// The outcome of one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RetryAction {
    /// Accepted: commit the batch.
    Success,
    /// Not accepted, try again; `after` is the receiver's `Retry-After`, when it sent one;
    /// `backpressure` when the receiver said it is overloaded (429, 499) rather than failing.
    Retry {
        after: Option<Duration>,
        backpressure: bool,
    },
    /// Too large (413): resend the batch in smaller parts; drop it when it is one series.
    Split,
    /// Rejected for good: drop the batch, count it as failed, never send it again.
    Drop,
}

/// How the wait grows: `base = min(max, min · 2^attempt)`, then jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Jitter {
    /// Uniform in `[0, base]`.
    #[cfg(test)]
    Full,
    /// Uniform in `[base / 2, base]`: never much shorter than the exponential step.
    Equal,
}

/// Exponential backoff with jitter and a cap.
#[derive(Debug)]
pub(crate) struct Backoff {
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
    pub(crate) fn from_status(status: StatusCode, headers: &HeaderMap) -> RetryAction {
        let retry = |after, backpressure| RetryAction::Retry {
            after,
            backpressure,
        };
        match status.as_u16() {
            200..=299 => RetryAction::Success,
            429 | 499 => retry(retry_after(headers), true),
            503 => retry(retry_after(headers), false),
            408 | 500..=599 => retry(None, false),
            413 => RetryAction::Split,
            _ => RetryAction::Drop,
        }
    }

    /// The action for a request that got no answer (connect error, timeout, reset...).
    pub(crate) fn from_transport_error() -> RetryAction {
        RetryAction::Retry {
            after: None,
            backpressure: false,
        }
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
    pub(crate) fn new(min: Duration, max: Duration, jitter: Jitter) -> Backoff {
        Backoff {
            min: min.min(max),
            max,
            jitter,
            attempt: 0,
            rng: XorShift::from_clock(),
        }
    }

    /// The wait before the next try; each call doubles the step, up to the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.base();
        self.attempt = self.attempt.saturating_add(1);
        let nanos = u64::try_from(base.as_nanos()).unwrap_or(u64::MAX);
        let (low, span) = match self.jitter {
            #[cfg(test)]
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
    pub(crate) fn delay_for(&mut self, after: Option<Duration>) -> Duration {
        match after {
            Some(after) => {
                self.attempt = self.attempt.saturating_add(1);
                after.min(self.max)
            }
            None => self.next_delay(),
        }
    }

    /// Back to the first step (after a batch got an answer that ends the retries).
    pub(crate) fn reset(&mut self) {
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

    const RETRY: RetryAction = RetryAction::Retry {
        after: None,
        backpressure: false,
    };
    const PUSHBACK: RetryAction = RetryAction::Retry {
        after: None,
        backpressure: true,
    };

    fn after(secs: u64, backpressure: bool) -> RetryAction {
        RetryAction::Retry {
            after: Some(Duration::from_secs(secs)),
            backpressure,
        }
    }

    #[test]
    fn success_is_any_2xx() {
        for code in [200, 201, 202, 204] {
            assert_eq!(action(code, None), RetryAction::Success, "{code}");
        }
    }

    #[test]
    fn retries_5xx_408_and_the_transport_errors() {
        for code in [500, 501, 502, 503, 504, 599, 408] {
            assert_eq!(action(code, None), RETRY, "{code}");
        }
        assert_eq!(RetryAction::from_transport_error(), RETRY);
    }

    #[test]
    fn n9e_499_and_429_are_backpressure_and_retried() {
        assert_eq!(action(499, None), PUSHBACK);
        assert_eq!(action(429, None), PUSHBACK);
    }

    #[test]
    fn a_413_splits_the_batch() {
        assert_eq!(action(413, None), RetryAction::Split);
        assert_eq!(action(413, Some("5")), RetryAction::Split);
    }

    #[test]
    fn drops_every_other_status() {
        let others = [400, 401, 403, 404, 409, 410, 415, 422, 498, 301, 304, 100];
        for code in others {
            assert_eq!(action(code, None), RetryAction::Drop, "{code}");
        }
    }

    #[test]
    fn honours_retry_after_seconds_on_429_499_and_503() {
        assert_eq!(action(429, Some("7")), after(7, true));
        assert_eq!(action(499, Some("3")), after(3, true));
        assert_eq!(action(503, Some(" 2 ")), after(2, false));
        assert_eq!(action(500, Some("7")), RETRY);
        assert_eq!(action(502, Some("7")), RETRY);
        assert_eq!(action(408, Some("7")), RETRY);
        assert_eq!(action(429, Some("Wed, 21 Oct 2015 07:28:00 GMT")), PUSHBACK);
        assert_eq!(action(499, Some("-1")), PUSHBACK);
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
