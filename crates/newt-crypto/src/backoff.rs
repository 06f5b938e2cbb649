//! Backoff for peers that failed inside a 200 response (`failures`,
//! missing keys): 15 s doubling to 15 min (CLM-02, TRK-11). HTTP-level
//! retries are the driver's and are separate.

use crate::time::Timestamp;

const FIRST_MS: u64 = 15_000;
const MAX_MS: u64 = 15 * 60_000;

/// When to try again after `failures` consecutive failures.
pub(crate) fn retry_at(now: Timestamp, failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(16);
    let wait = FIRST_MS.saturating_mul(1 << doublings).min(MAX_MS);
    now.plus_ms(wait).0
}

/// Whether a backoff deadline has passed.
pub(crate) fn ready(retry_at_ms: Option<u64>, now: Timestamp) -> bool {
    retry_at_ms.is_none_or(|at| now.0 >= at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_15s_to_15min() {
        let now = Timestamp(0);
        assert_eq!(retry_at(now, 1), 15_000);
        assert_eq!(retry_at(now, 2), 30_000);
        assert_eq!(retry_at(now, 3), 60_000);
        assert_eq!(retry_at(now, 10), 900_000);
        assert_eq!(retry_at(now, 1000), 900_000);
        assert!(ready(None, now));
        assert!(!ready(Some(1), now));
        assert!(ready(Some(0), now));
    }
}
