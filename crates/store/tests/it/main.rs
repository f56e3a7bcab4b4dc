//! The store crate's behaviour, one test binary.

mod checkpoint;
mod meta;
mod readers;
mod schema;
mod writer;

use std::time::{Duration, Instant};

/// Waits until `cond` holds, failing with `what` after a generous deadline
/// (it only bounds a failure).
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
