//! [`Slot`]: one probe's cached result with single-flight refresh.
//!
//! The refresh runs in a task of its own: the request that started it only
//! waits for it, until its own deadline at most, so a request that gives up
//! (a tiny scrape timeout, a client that disconnects) neither cancels the
//! probe nor leaves a half-done result in the cache.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// A cached probe result with single-flight refresh.
pub struct Slot<T> {
    min_interval: Duration,
    state: Arc<Mutex<State<T>>>,
}

struct State<T> {
    /// The last complete result and when it completed.
    last: Option<(Instant, Arc<T>)>,
    /// Closed (the sender dropped) when the running refresh ends.
    running: Option<watch::Receiver<()>>,
}

/// Ends a refresh: stores its value, if any, and lets the next caller start
/// another. Runs on drop, so a refresh task that panics or is aborted (runtime
/// shutdown) does not leave the slot waiting forever.
struct Finish<T> {
    state: Arc<Mutex<State<T>>>,
    value: Option<T>,
}

impl<T> Drop for Finish<T> {
    fn drop(&mut self) {
        let mut st = lock(&self.state);
        if let Some(v) = self.value.take() {
            st.last = Some((Instant::now(), Arc::new(v)));
        }
        st.running = None;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T: Send + Sync + 'static> Slot<T> {
    /// An empty slot refreshed at most every `min_interval`.
    pub fn new(min_interval: Duration) -> Self {
        Self { min_interval, state: Arc::new(Mutex::new(State { last: None, running: None })) }
    }

    /// The last complete result, however old.
    pub fn latest(&self) -> Option<Arc<T>> {
        lock(&self.state).last.as_ref().map(|(_, v)| v.clone())
    }

    /// The cached value if fresh; otherwise waits, until `deadline` at most,
    /// for a refresh: the one already running, or `refresh(previous)` spawned
    /// now. The refresh runs to completion whether or not anyone still waits;
    /// its value is cached when it gives `Some` (`None`: nothing new, keep the
    /// last). A caller whose deadline comes first gets the last complete
    /// value; `None` only when there has never been one.
    pub async fn get<F, Fut>(&self, deadline: Instant, refresh: F) -> Option<Arc<T>>
    where
        F: FnOnce(Option<Arc<T>>) -> Fut,
        Fut: Future<Output = Option<T>> + Send + 'static,
    {
        let mut done = {
            let mut st = lock(&self.state);
            if let Some((at, v)) = &st.last
                && at.elapsed() < self.min_interval
            {
                return Some(v.clone());
            }
            match &st.running {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(());
                    let work = refresh(st.last.as_ref().map(|(_, v)| v.clone()));
                    let state = self.state.clone();
                    tokio::spawn(async move {
                        let mut finish = Finish { state, value: None };
                        finish.value = work.await;
                        drop(finish); // stores the value before the waiters wake
                        drop(tx);
                    });
                    st.running = Some(rx.clone());
                    rx
                }
            }
        };
        // `changed` fails once the sender is gone: the refresh ended.
        let _ = tokio::time::timeout_at(deadline, done.changed()).await;
        self.latest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test(start_paused = true)]
    async fn slot_refreshes_once_per_interval() {
        let slot = Slot::new(Duration::from_secs(60));
        let runs = Arc::new(AtomicU32::new(0));
        for _ in 0..10 {
            let runs = runs.clone();
            let v = slot.get(soon(), |_| async move { Some(runs.fetch_add(1, Ordering::SeqCst)) }).await;
            assert_eq!(*v.unwrap(), 0);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(61)).await;
        let v = slot.get(soon(), |_| async { Some(7) }).await;
        assert_eq!(*v.unwrap(), 7, "refreshed once the interval passed");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_refresh() {
        let slot = Arc::new(Slot::new(Duration::from_secs(60)));
        let runs = Arc::new(AtomicU32::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (slot, runs) = (slot.clone(), runs.clone());
                tokio::spawn(async move {
                    slot.get(soon(), |_| async move {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Some(runs.fetch_add(1, Ordering::SeqCst))
                    })
                    .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(*t.await.unwrap().unwrap(), 0);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_value_is_refreshed_with_the_previous_one_at_hand() {
        let slot = Slot::new(Duration::ZERO);
        slot.get(soon(), |prev| async move { Some(prev.map_or(1, |p| *p + 1)) }).await;
        let v = slot.get(soon(), |prev| async move { Some(prev.map_or(1, |p| *p + 1)) }).await;
        assert_eq!(*v.unwrap(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_past_its_deadline_gets_the_last_value() {
        let slot = Arc::new(Slot::new(Duration::ZERO));
        slot.get(soon(), |_| async { Some(7) }).await;
        let s2 = slot.clone();
        let slow = tokio::spawn(async move {
            s2.get(soon(), |_| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Some(8)
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let v = slot.get(Instant::now() + Duration::from_millis(20), |_| async { Some(9) }).await;
        assert_eq!(*v.unwrap(), 7, "waiter answers with the last value instead of blocking");
        assert_eq!(*slow.await.unwrap().unwrap(), 8, "the running refresh was joined, not a second one started");
    }

    /// Regression: a request with a zero deadline ran the shared refresh under
    /// that deadline and cached the failure for every other caller.
    #[tokio::test(start_paused = true)]
    async fn a_request_that_gives_up_neither_cancels_the_refresh_nor_caches_a_failure() {
        let slot = Slot::new(Duration::from_secs(60));
        let v = slot
            .get(Instant::now(), |_| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                Some("complete")
            })
            .await;
        assert_eq!(v, None, "nothing probed yet: the impatient request gets no value, and none is cached");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(slot.latest().as_deref(), Some(&"complete"), "the refresh ran to completion without its requester");
        let again = slot.get(soon(), |_| async { Some("second") }).await;
        assert_eq!(again.as_deref(), Some(&"complete"), "the completed result is fresh for everyone");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_request_does_not_cancel_the_refresh() {
        let slot = Slot::new(Duration::from_secs(60));
        let started = Arc::new(AtomicU32::new(0));
        let s = started.clone();
        let request = slot.get(soon(), |_| async move {
            s.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some(1)
        });
        // The client goes away mid-probe: the request future is dropped.
        assert!(tokio::time::timeout(Duration::from_millis(10), request).await.is_err());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(slot.latest().as_deref(), Some(&1));
        assert_eq!(started.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refresh_with_nothing_new_keeps_the_last_value_stale() {
        let slot = Slot::new(Duration::from_secs(10));
        slot.get(soon(), |_| async { Some(1) }).await;
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(slot.get(soon(), |_| async { None }).await.as_deref(), Some(&1));
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let v = slot.get(soon(), |_| async move { Some(r.fetch_add(1, Ordering::SeqCst) + 2) }).await;
        assert_eq!(v.as_deref(), Some(&2), "still stale: the next caller refreshes again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_refresh_does_not_wedge_the_slot() {
        let slot = Slot::<u32>::new(Duration::ZERO);
        assert_eq!(slot.get(soon(), |_| async { panic!("probe bug") }).await, None);
        assert_eq!(slot.get(soon(), |_| async { Some(3) }).await.as_deref(), Some(&3));
    }
}
