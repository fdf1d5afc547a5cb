//! Polling a condition with a deadline: tests never sleep a fixed time to wait for
//! something; they check, and fail with what they waited for once the deadline passes.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is checked.
const INTERVAL: Duration = Duration::from_millis(20);

/// What a polled condition returns: `bool` (done or not) or `Option<T>` (done with a value).
pub trait Poll {
    type Value;
    fn done(self) -> Option<Self::Value>;
}

impl Poll for bool {
    type Value = ();
    fn done(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Poll for Option<T> {
    type Value = T;
    fn done(self) -> Option<T> {
        self
    }
}

/// Checks `cond` every 20 ms until it holds (`true` or `Some`), and returns its value;
/// panics naming `what` once `limit` has passed. Blocks the thread: for sync tests.
pub fn wait_until<P: Poll>(what: &str, limit: Duration, mut cond: impl FnMut() -> P) -> P::Value {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = cond().done() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(INTERVAL);
    }
}

/// [`wait_until`] for async conditions, sleeping on the tokio timer between checks.
pub async fn wait_until_async<P, F, Fut>(what: &str, limit: Duration, mut cond: F) -> P::Value
where
    P: Poll,
    F: FnMut() -> Fut,
    Fut: Future<Output = P>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = cond().await.done() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_the_condition_holds() {
        let mut n = 0;
        let got = wait_until("the third call", Duration::from_secs(5), || {
            n += 1;
            (n == 3).then_some(n * 10)
        });
        assert_eq!(got, 30);
        let mut m = 0;
        wait_until("a bool", Duration::from_secs(5), || {
            m += 1;
            m > 1
        });
        assert_eq!(m, 2);
    }

    #[test]
    #[should_panic(expected = "timed out after 50ms waiting for never")]
    fn panics_with_what_it_waited_for() {
        wait_until("never", Duration::from_millis(50), || false);
    }

    #[tokio::test]
    async fn the_async_form_polls_a_future() {
        let mut n = 0;
        let got = wait_until_async("the second call", Duration::from_secs(5), || {
            n += 1;
            let v = n;
            async move { (v == 2).then_some("ok") }
        })
        .await;
        assert_eq!((got, n), ("ok", 2));
    }
}
