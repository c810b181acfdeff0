//! Giving memory back to the system after a spike of connections.
//!
//! mimalloc keeps freed pages for reuse and returns them (purges) only when the allocator is
//! next busy on the thread that owns them. After thousands of connections close, the worker
//! threads go quiet, so the memory those connections used would stay in RSS. Here every open
//! downstream connection is counted ([`OpenConnection`]):
//! - when the count has halved since its peak, the thread that closes the connection collects
//!   its heap at once (and the count becomes the new peak, so a long drain collects a few times,
//!   at each halving);
//! - [`MemoryReturn`], a background service, collects every [`TICK`] while the count keeps
//!   falling and once more after it stops, which also purges the pages the other threads freed
//!   (mimalloc's arenas are shared by all threads).
//!
//! A steady load never triggers either: the count does not halve, and does not keep falling.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

/// Below this peak a spike is not worth a collect.
const MIN_SPIKE: usize = 256;
/// How often the background service looks at the count.
pub const TICK: Duration = Duration::from_secs(5);

/// Open connections and the peak the next collect is measured against.
#[derive(Debug)]
struct Counter {
    open: AtomicUsize,
    /// The highest count since the last collect triggered by a close.
    peak: AtomicUsize,
}

impl Counter {
    const fn new() -> Self {
        Self {
            open: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    fn open(&self) {
        let now = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    /// Counts a close; true for the one close that should collect (one thread per halving).
    fn close(&self) -> bool {
        let now = self.open.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        let peak = self.peak.load(Ordering::Relaxed);
        halved(now, peak)
            && self
                .peak
                .compare_exchange(peak, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    fn get(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

static CONNECTIONS: Counter = Counter::new();

/// One open downstream connection; dropping it counts the close.
#[derive(Debug)]
pub struct OpenConnection(());

impl OpenConnection {
    pub fn opened() -> Self {
        CONNECTIONS.open();
        Self(())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if CONNECTIONS.close() {
            collect();
        }
    }
}

/// Open downstream connections, all listeners.
pub fn open_connections() -> usize {
    CONNECTIONS.get()
}

/// Whether `now` open connections are a spike's worth below `peak`.
fn halved(now: usize, peak: usize) -> bool {
    peak >= MIN_SPIKE && now.saturating_mul(2) <= peak
}

/// Decides, once per [`TICK`], whether to collect: while the count falls, and once after.
#[derive(Debug, Default)]
struct Falling {
    last: usize,
    /// Ticks to go that collect although the count did not fall.
    after: u8,
}

impl Falling {
    fn tick(&mut self, now: usize) -> bool {
        let fell = now < self.last;
        self.last = now;
        if fell {
            // Pages freed just now are purged after mimalloc's purge delay: look again.
            self.after = 1;
            true
        } else if self.after > 0 {
            self.after -= 1;
            true
        } else {
            false
        }
    }
}

/// Returns this thread's free pages and the shared arenas' expired ones to the system.
pub fn collect() {
    #[cfg(not(feature = "system-allocator"))]
    // SAFETY: mi_collect takes no pointers; it may be called from any thread at any time.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

/// Collects while the number of open connections falls (see the module docs).
pub struct MemoryReturn;

#[async_trait]
impl BackgroundService for MemoryReturn {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut falling = Falling::default();
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {
                    if falling.tick(open_connections()) {
                        collect();
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_collects_at_each_halving_of_a_real_spike() {
        assert!(!halved(9_999, 10_000));
        assert!(!halved(5_001, 10_000));
        assert!(halved(5_000, 10_000));
        assert!(halved(0, 10_000));
        // A handful of connections is no spike.
        assert!(!halved(0, MIN_SPIKE - 1));
    }

    #[test]
    fn a_drain_from_ten_thousand_collects_a_few_times_not_per_close() {
        let mut peak = 10_000;
        let mut collects = 0;
        for now in (0..10_000).rev() {
            if halved(now, peak) {
                peak = now;
                collects += 1;
            }
        }
        // 5000, 2500, 1250, 625, 312, 156: then the peak is below a spike.
        assert_eq!(collects, 6);
    }

    #[test]
    fn the_ticker_collects_while_falling_and_once_after() {
        let mut f = Falling::default();
        assert!(!f.tick(0), "nothing open, nothing fell");
        assert!(!f.tick(8_000), "rising is not falling");
        assert!(f.tick(5_000));
        assert!(f.tick(100));
        assert!(f.tick(100), "once more after the fall stops");
        assert!(!f.tick(100));
        assert!(!f.tick(120));
        assert!(!f.tick(120));
    }

    #[test]
    fn the_counter_asks_for_a_collect_once_per_halving() {
        let c = Counter::new();
        for _ in 0..1_000 {
            c.open();
        }
        assert_eq!(c.get(), 1_000);
        let collects: Vec<usize> = (0..1_000).filter(|_| c.close()).map(|_| c.get()).collect();
        assert_eq!(collects, vec![500, 250]);
        assert_eq!(c.get(), 0);
        // A new spike is measured from its own peak.
        for _ in 0..600 {
            c.open();
        }
        let first = (0..600).find(|_| c.close()).map(|_| c.get());
        assert_eq!(first, Some(300));
        collect();
    }
}
