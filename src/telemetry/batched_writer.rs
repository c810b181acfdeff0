//! Lines written by one background thread, so the threads that produce them never make a write
//! syscall nor wait on a lock shared with the other producers.
//!
//! Producers hand each finished line over a bounded channel and do not wake the writer: it wakes
//! on its own every `max_delay` (or when the queue is half full, or for a flush or the end),
//! takes every line queued and writes them in batches of about `batch_bytes`, each with a single
//! `write_all`. (Woken per line, it cost each request a futex wake-up and the writer a context
//! switch: more CPU than the rest of the access log.) Nothing is lost silently: a line that finds
//! the queue full, or that was in a batch the sink refused, is counted; `flush` and dropping the
//! last handle write out every line queued before them.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use prometheus::IntCounter;

/// How much is buffered and for how long.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Lines that may wait in the queue; beyond that lines are dropped and counted.
    pub queue_lines: usize,
    /// Lines are written in batches of about this many bytes.
    pub batch_bytes: usize,
    /// How often the writer wakes to write what is queued: the longest a line waits.
    pub max_delay: Duration,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            // About 5 MiB of typical access-log lines: seconds of a disk stall at full load.
            queue_lines: 16 * 1024,
            batch_bytes: 64 * 1024,
            max_delay: Duration::from_millis(100),
        }
    }
}

/// Where lost lines are counted, by cause.
#[derive(Clone)]
pub struct DropCounters {
    /// The queue was full (the sink is slower than the producers).
    pub queue_full: IntCounter,
    /// The sink refused a batch (disk full, closed pipe) or the writer thread is gone.
    pub write_error: IntCounter,
}

enum Message {
    Line(Vec<u8>),
    /// Write out everything queued before this, then answer.
    Flush(SyncSender<()>),
}

/// A handle on the writer thread. Dropping it writes out what is queued and joins the thread.
pub struct BatchedWriter {
    queue: Option<SyncSender<Message>>,
    thread: Option<JoinHandle<()>>,
    /// The writer thread, to wake it early.
    writer: Thread,
    /// Lines in the queue (producers add, the writer takes away); at `wake_at` the producer
    /// that queued the line wakes the writer so the queue does not fill before its next round.
    queued: Arc<AtomicUsize>,
    wake_at: usize,
    dropped: DropCounters,
}

impl BatchedWriter {
    /// Starts the writer thread over `sink`.
    pub fn spawn(
        name: &str,
        sink: Box<dyn Write + Send>,
        settings: BatchSettings,
        dropped: DropCounters,
    ) -> std::io::Result<Self> {
        let (queue, rx) = mpsc::sync_channel(settings.queue_lines.max(1));
        let counters = dropped.clone();
        let queued = Arc::new(AtomicUsize::new(0));
        let taken = Arc::clone(&queued);
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || Batcher::new(sink, settings, counters).run(rx, &taken))?;
        Ok(Self {
            queue: Some(queue),
            writer: thread.thread().clone(),
            thread: Some(thread),
            queued,
            wake_at: (settings.queue_lines / 2).max(1),
            dropped,
        })
    }

    /// Queues one line (its bytes as they should appear, newline included). Never blocks.
    pub fn push(&self, line: Vec<u8>) {
        let Some(queue) = &self.queue else {
            return;
        };
        match queue.try_send(Message::Line(line)) {
            Ok(()) => {
                // The writer may count a line out before its producer counted it in: the
                // count can dip below zero for a moment, so it wraps rather than overflows.
                if self.queued.fetch_add(1, Ordering::Relaxed).wrapping_add(1) == self.wake_at {
                    self.writer.unpark();
                }
            }
            Err(TrySendError::Full(_)) => {
                self.dropped.queue_full.inc();
                self.writer.unpark();
            }
            Err(TrySendError::Disconnected(_)) => self.dropped.write_error.inc(),
        }
    }

    /// Writes out every line queued so far and flushes the sink; waits at most `timeout`.
    /// Returns whether that finished in time (a stuck sink must not hold a shutdown forever).
    pub fn flush(&self, timeout: Duration) -> bool {
        let Some(queue) = &self.queue else {
            return false;
        };
        let deadline = Instant::now() + timeout;
        let (ack, done) = mpsc::sync_channel(1);
        let mut message = Message::Flush(ack);
        // The queue may be full: retry until the writer makes room or time runs out.
        loop {
            match queue.try_send(message) {
                Ok(()) => {
                    self.writer.unpark();
                    break;
                }
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(m)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    message = m;
                    self.writer.unpark();
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        done.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

impl Drop for BatchedWriter {
    fn drop(&mut self) {
        // Closing the queue tells the thread to write what is left and stop.
        self.queue = None;
        self.writer.unpark();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer thread's state.
struct Batcher {
    sink: Box<dyn Write + Send>,
    settings: BatchSettings,
    dropped: DropCounters,
    batch: Vec<u8>,
    lines: u64,
    /// Whether the last write failed (the failure is logged once, not per batch).
    failing: bool,
}

impl Batcher {
    fn new(sink: Box<dyn Write + Send>, settings: BatchSettings, dropped: DropCounters) -> Self {
        Self {
            sink,
            batch: Vec::with_capacity(settings.batch_bytes + 4096),
            settings,
            dropped,
            lines: 0,
            failing: false,
        }
    }

    /// Rounds until the queue is closed: sleep until the next round or an early wake-up
    /// (`unpark`; a wake-up that came while awake is not lost, as `park` then returns at once),
    /// then take everything queued and write it.
    fn run(mut self, rx: Receiver<Message>, queued: &AtomicUsize) {
        loop {
            std::thread::park_timeout(self.settings.max_delay);
            let mut taken = 0;
            let open = loop {
                match rx.try_recv() {
                    Ok(Message::Line(line)) => {
                        taken += 1;
                        self.batch.extend_from_slice(&line);
                        self.lines += 1;
                        if self.batch.len() >= self.settings.batch_bytes {
                            self.write_out();
                        }
                    }
                    Ok(Message::Flush(ack)) => {
                        self.write_out();
                        let _ = ack.send(());
                    }
                    Err(TryRecvError::Empty) => break true,
                    Err(TryRecvError::Disconnected) => break false,
                }
            };
            queued.fetch_sub(taken, Ordering::Relaxed);
            self.write_out();
            if !open {
                return;
            }
        }
    }

    /// One write for the whole batch, then a flush of the sink.
    fn write_out(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        match self
            .sink
            .write_all(&self.batch)
            .and_then(|()| self.sink.flush())
        {
            Ok(()) => self.failing = false,
            Err(e) => {
                // A full disk must not take the proxy down; the loss is counted and said once.
                self.dropped.write_error.inc_by(self.lines);
                if !self.failing {
                    tracing::warn!(error = %e, "access log: write failed, lines dropped");
                }
                self.failing = true;
            }
        }
        self.batch.clear();
        self.lines = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Condvar, Mutex};

    /// A sink that records each `write` call separately and can be held shut.
    #[derive(Clone, Default)]
    struct Recorder {
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
        gate: Arc<(Mutex<bool>, Condvar)>,
        fail: Arc<Mutex<bool>>,
    }

    impl Recorder {
        fn close_gate(&self) {
            *self.gate.0.lock().unwrap() = true;
        }
        fn open_gate(&self) {
            *self.gate.0.lock().unwrap() = false;
            self.gate.1.notify_all();
        }
        fn writes(&self) -> Vec<Vec<u8>> {
            self.writes.lock().unwrap().clone()
        }
        fn text(&self) -> String {
            String::from_utf8(self.writes().concat()).unwrap()
        }
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut closed = self.gate.0.lock().unwrap();
            while *closed {
                closed = self.gate.1.wait(closed).unwrap();
            }
            if *self.fail.lock().unwrap() {
                return Err(std::io::Error::other("disk full"));
            }
            self.writes.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn counters() -> DropCounters {
        DropCounters {
            queue_full: IntCounter::new("queue_full", "test").unwrap(),
            write_error: IntCounter::new("write_error", "test").unwrap(),
        }
    }

    fn writer(sink: &Recorder, settings: BatchSettings) -> (BatchedWriter, DropCounters) {
        let c = counters();
        let w = BatchedWriter::spawn("test-writer", Box::new(sink.clone()), settings, c.clone())
            .unwrap();
        (w, c)
    }

    fn line(i: usize) -> Vec<u8> {
        format!("line {i}\n").into_bytes()
    }

    #[test]
    fn many_lines_become_few_writes_in_order() {
        let sink = Recorder::default();
        let settings = BatchSettings {
            queue_lines: 10_000,
            batch_bytes: 1024,
            max_delay: Duration::from_secs(60),
        };
        let (w, c) = writer(&sink, settings);
        // Held shut, the writer thread can take at most one line before it blocks, so the rest
        // pile up and are written in batches once the sink opens.
        sink.close_gate();
        for i in 0..1000 {
            w.push(line(i));
        }
        sink.open_gate();
        assert!(w.flush(Duration::from_secs(10)));
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(sink.text(), expected, "every line, in order, nothing torn");
        let writes = sink.writes();
        assert!(
            writes.len() < 50,
            "{} writes for 1000 lines: not batched",
            writes.len()
        );
        // Batches end on a line boundary.
        assert!(writes.iter().all(|w| w.ends_with(b"\n")));
        assert_eq!(c.queue_full.get() + c.write_error.get(), 0);
    }

    #[test]
    fn a_quiet_line_is_written_within_the_delay() {
        let sink = Recorder::default();
        let settings = BatchSettings {
            max_delay: Duration::from_millis(20),
            ..BatchSettings::default()
        };
        let (w, _) = writer(&sink, settings);
        w.push(line(1));
        let start = Instant::now();
        while sink.writes().is_empty() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(sink.text(), "line 1\n");
        drop(w);
    }

    #[test]
    fn a_half_full_queue_wakes_the_writer_before_its_round() {
        let sink = Recorder::default();
        let settings = BatchSettings {
            queue_lines: 10,
            max_delay: Duration::from_secs(60),
            ..BatchSettings::default()
        };
        let (w, c) = writer(&sink, settings);
        for i in 0..4 {
            w.push(line(i));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert!(sink.writes().is_empty(), "below half: the writer sleeps on");
        w.push(line(4));
        let start = Instant::now();
        while sink.text().lines().count() < 5 && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let expected: String = (0..5).map(|i| format!("line {i}\n")).collect();
        assert_eq!(
            sink.text(),
            expected,
            "written without a flush, long before the round"
        );
        assert_eq!(c.queue_full.get(), 0);
    }

    #[test]
    fn a_line_waits_for_the_batch_until_the_delay() {
        let sink = Recorder::default();
        let settings = BatchSettings {
            max_delay: Duration::from_secs(60),
            ..BatchSettings::default()
        };
        let (w, _) = writer(&sink, settings);
        w.push(line(1));
        std::thread::sleep(Duration::from_millis(100));
        assert!(sink.writes().is_empty(), "no write per line");
        assert!(w.flush(Duration::from_secs(10)));
        assert_eq!(sink.text(), "line 1\n");
    }

    #[test]
    fn dropping_the_writer_writes_everything_queued() {
        let sink = Recorder::default();
        let settings = BatchSettings {
            max_delay: Duration::from_secs(60),
            ..BatchSettings::default()
        };
        let (w, _) = writer(&sink, settings);
        for i in 0..100 {
            w.push(line(i));
        }
        drop(w);
        let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(sink.text(), expected);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let sink = Recorder::default();
        let settings = BatchSettings {
            queue_lines: 4,
            batch_bytes: 1,
            max_delay: Duration::from_secs(60),
        };
        let (w, c) = writer(&sink, settings);
        sink.close_gate();
        for i in 0..50 {
            w.push(line(i));
        }
        // At most the queue and the one line the blocked thread holds got through.
        assert!(
            c.queue_full.get() >= 50 - 5,
            "dropped {}",
            c.queue_full.get()
        );
        sink.open_gate();
        assert!(w.flush(Duration::from_secs(10)));
        let written = sink.text().lines().count() as u64;
        assert_eq!(
            written + c.queue_full.get(),
            50,
            "every line written or counted"
        );
    }

    #[test]
    fn a_failing_sink_counts_the_lost_lines() {
        let sink = Recorder::default();
        let settings = BatchSettings {
            max_delay: Duration::from_secs(60),
            ..BatchSettings::default()
        };
        let (w, c) = writer(&sink, settings);
        *sink.fail.lock().unwrap() = true;
        for i in 0..7 {
            w.push(line(i));
        }
        assert!(w.flush(Duration::from_secs(10)));
        assert_eq!(c.write_error.get(), 7);
        // The sink recovers: later lines are written again.
        *sink.fail.lock().unwrap() = false;
        w.push(line(8));
        assert!(w.flush(Duration::from_secs(10)));
        assert_eq!(sink.text(), "line 8\n");
    }

    #[test]
    fn flush_gives_up_on_a_stuck_sink() {
        let sink = Recorder::default();
        let (w, _) = writer(&sink, BatchSettings::default());
        sink.close_gate();
        w.push(line(1));
        assert!(!w.flush(Duration::from_millis(100)));
        sink.open_gate();
        assert!(w.flush(Duration::from_secs(10)));
        assert_eq!(sink.text(), "line 1\n");
    }
}
