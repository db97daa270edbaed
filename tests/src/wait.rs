//! Polling for a condition with a deadline (never a bare sleep).

use std::{future::Future, time::Duration};

/// Polls `check` every 100 ms until it returns `Some`, or panics with `what` after `timeout`.
///
/// # Panics
/// On timeout.
pub async fn until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
