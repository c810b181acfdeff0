//! Giving memory back to the system after a spike of connections.
//!
//! mimalloc keeps freed pages for reuse and returns them (purges) only when the allocator is
//! next busy on the thread that owns them; a thread's heap can be collected only by that
//! thread. After thousands of connections close, the worker threads go quiet, so the memory
//! those connections used would stay in RSS. Here every open downstream connection is counted
//! ([`OpenConnection`]), and every thread that opens or closes connections keeps its own mark:
//! - when the count has halved since the highest count this thread has seen, the thread
//!   collects its own heap at its next close (and the count becomes its new mark, so a long
//!   drain collects a few times per thread, at each halving). Every worker thread closes its
//!   share of a spike's connections, so every worker's heap is collected, not only the heap of
//!   the one thread that happened to close the connection that halved the count;
//! - [`MemoryReturn`], a background service, collects every [`TICK`] while the count keeps
//!   falling and once more after it stops, which purges the shared arenas' freed segments
//!   (mimalloc's arenas are shared by all threads).
//!
//! A steady load never triggers either: the count does not halve, and does not keep falling.
//!
//! Transparent huge pages are turned off for the process at start-up
//! ([`disable_transparent_huge_pages`]): the kernel would otherwise fill returned pages back in.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

/// Below this mark a spike is not worth a collect.
const MIN_SPIKE: usize = 256;
/// How often the background service looks at the count.
pub const TICK: Duration = Duration::from_secs(5);

/// Open downstream connections, all listeners and threads.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// One thread's view of the count: the highest count it has seen since it last collected.
#[derive(Debug, Default, Clone, Copy)]
struct Mark {
    peak: usize,
}

impl Mark {
    /// Notes a count this thread has seen (at an open, or just before a close).
    fn saw(&mut self, count: usize) {
        self.peak = self.peak.max(count);
    }

    /// After a close on this thread left `now` open: true when this thread should collect.
    fn closed(&mut self, before: usize, now: usize) -> bool {
        self.saw(before);
        if halved(now, self.peak) {
            self.peak = now;
            true
        } else {
            false
        }
    }
}

thread_local! {
    static MARK: Cell<Mark> = const { Cell::new(Mark { peak: 0 }) };
}

/// One open downstream connection; dropping it counts the close.
#[derive(Debug)]
pub struct OpenConnection(());

impl OpenConnection {
    pub fn opened() -> Self {
        let now = OPEN.fetch_add(1, Ordering::Relaxed) + 1;
        MARK.with(|mark| {
            let mut m = mark.get();
            m.saw(now);
            mark.set(m);
        });
        Self(())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let before = OPEN.fetch_sub(1, Ordering::Relaxed);
        let now = before.saturating_sub(1);
        let collect_here = MARK.with(|mark| {
            let mut m = mark.get();
            let due = m.closed(before, now);
            mark.set(m);
            due
        });
        if collect_here {
            collect();
        }
    }
}

/// Open downstream connections, all listeners.
pub fn open_connections() -> usize {
    OPEN.load(Ordering::Relaxed)
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

/// Turns transparent huge pages off for this process, once, at start-up.
///
/// mimalloc marks its arenas for huge pages, and the kernel's khugepaged (every 10 s) then
/// collapses partly used 2 MiB ranges into huge pages, filling in the pages a collect has just
/// returned: measured, 30 MiB came back within 30 s of 10 000 connections closing, and idle
/// connections cost more while open. The gateway's heap is small, so the fewer TLB misses of
/// huge pages are worth less than an RSS that follows the load. `Err` when the kernel refuses.
pub fn disable_transparent_huge_pages() -> std::io::Result<()> {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
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
    fn every_thread_collects_at_each_halving_it_sees() {
        // Two worker threads share a spike of 1 000 connections, each closing every other one.
        let (mut a, mut b) = (Mark::default(), Mark::default());
        for count in 1..=1_000 {
            if count % 2 == 0 {
                a.saw(count)
            } else {
                b.saw(count)
            }
        }
        let (mut by_a, mut by_b) = (Vec::new(), Vec::new());
        for before in (1..=1_000).rev() {
            let now = before - 1;
            if before % 2 == 0 {
                if a.closed(before, now) {
                    by_a.push(now);
                }
            } else if b.closed(before, now) {
                by_b.push(now);
            }
        }
        // Both heaps are collected at each halving, not only the one that closed first.
        assert_eq!(by_a, vec![499, 249]);
        assert_eq!(by_b, vec![498, 248]);
        // A new spike is measured from its own peak.
        let mut c = Mark::default();
        c.saw(600);
        let first = (1..=600).rev().find(|&before| c.closed(before, before - 1));
        assert_eq!(first, Some(301));
    }

    #[test]
    fn a_thread_that_only_closes_still_collects() {
        // Work stealing: connections opened on one thread may all close on another.
        let mut closer = Mark::default();
        let due: Vec<usize> = (1..=2_000)
            .rev()
            .filter(|&before| closer.closed(before, before - 1))
            .map(|before| before - 1)
            .collect();
        assert_eq!(due, vec![1_000, 500, 250]);
    }

    #[test]
    fn huge_pages_can_be_turned_off_for_the_process() {
        disable_transparent_huge_pages().expect("prctl");
        // SAFETY: PR_GET_THP_DISABLE takes no pointer.
        assert_eq!(
            unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) },
            1
        );
    }

    #[test]
    fn opening_and_closing_counts_and_collects_without_panicking() {
        let base = open_connections();
        let open: Vec<OpenConnection> = (0..300).map(|_| OpenConnection::opened()).collect();
        assert!(open_connections() >= base + 300);
        drop(open);
        collect();
    }
}
