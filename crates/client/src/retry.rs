//! When a request is worth sending again, and how long to wait before.
//!
//! Publishing is idempotent (the server stores an id once and answers
//! `duplicate: true` for the same id again), so a batch whose answer was
//! lost may be sent again as it was: nothing is stored twice.

use crate::ClientError;
use std::time::Duration;

/// How often and how patiently a request is tried again after a transient
/// failure: the server unreachable, a cut connection, or an answer of 429,
/// 502, 503 or 504. Errors that another try cannot fix (a 4xx for bad input,
/// a refused token) are returned at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Tries after the first one; 0 never tries again.
    pub retries: u32,
    /// The wait before the first retry; it doubles up to `max_backoff`.
    pub backoff: Duration,
    /// The longest wait between two tries.
    pub max_backoff: Duration,
}

impl Default for Retry {
    /// Five retries, 100 ms doubling up to 5 s (about 8 s in all).
    fn default() -> Self {
        Retry {
            retries: 5,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl Retry {
    /// Never tries again.
    pub const NEVER: Retry = Retry {
        retries: 0,
        backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
    };

    /// The wait before retry number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }

    /// Runs `f` until it succeeds, fails for good, or the retries are spent.
    pub(crate) async fn run<T, F, Fut>(&self, mut f: F) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let mut attempt = 0;
        loop {
            match f().await {
                Err(e) if attempt < self.retries && e.is_transient() => {
                    attempt += 1;
                    tokio::time::sleep(self.delay(attempt)).await;
                }
                other => return other,
            }
        }
    }
}

impl ClientError {
    /// Whether the same request may succeed later: the server could not be
    /// reached or answered 429, 502, 503 (storage busy, shutting down) or 504.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Http(e) => !e.is_builder() && !e.is_decode() && !e.is_redirect(),
            ClientError::Api { status, .. } | ClientError::Unexpected { status, .. } => {
                matches!(status, 429 | 502 | 503 | 504)
            }
            ClientError::Batch(e) => e.is_transient(),
            ClientError::BadUrl(_)
            | ClientError::BadCertificate
            | ClientError::BadIdentity(_)
            | ClientError::Closed => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_up_to_the_ceiling() {
        let r = Retry::default();
        let waits: Vec<u64> = (1..=8).map(|a| r.delay(a).as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(r.delay(200), Duration::from_secs(5), "no overflow");
    }

    #[test]
    fn only_what_another_try_can_fix_is_transient() {
        let api = |status| ClientError::Api {
            status,
            body: crate::ApiErrorBody {
                code: "x".into(),
                message: "x".into(),
                details: vec![],
            },
        };
        assert!(api(503).is_transient());
        assert!(api(429).is_transient());
        assert!(!api(400).is_transient());
        assert!(!api(401).is_transient());
        assert!(
            !api(500).is_transient(),
            "a server bug is not retried blindly"
        );
        assert!(!ClientError::BadUrl("x".into()).is_transient());
    }

    #[tokio::test]
    async fn a_transient_failure_is_tried_again_and_a_lasting_one_is_not() {
        let r = Retry {
            retries: 3,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
        };
        let mut calls = 0;
        let out: Result<u32, _> = r
            .run(|| {
                calls += 1;
                let n = calls;
                async move {
                    if n < 3 {
                        Err(ClientError::Unexpected {
                            status: 503,
                            text: String::new(),
                        })
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert_eq!(out.expect("test value"), 3);
        let mut calls = 0;
        let out: Result<u32, _> = r
            .run(|| {
                calls += 1;
                async {
                    Err(ClientError::Unexpected {
                        status: 400,
                        text: String::new(),
                    })
                }
            })
            .await;
        assert!(out.is_err());
        assert_eq!(calls, 1, "a 400 is not sent again");
    }
}
