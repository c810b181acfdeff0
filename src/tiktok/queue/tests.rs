//! Queue behaviour against real files in a temporary directory.

use super::*;
use crate::clock::ManualClock;

const T0: i64 = 1_718_305_585;

fn event(n: usize) -> NewEvent {
    NewEvent {
        route: "tiktok-webhooks".into(),
        target: "http://127.0.0.1:9001/internal/tiktok/events".into(),
        dedup_key: format!("notif-{n}"),
        request_id: format!("req-{n}"),
        body: Bytes::from(format!("{{\"tts_notification_id\":\"notif-{n}\"}}\n")),
    }
}

fn open(path: &Path, clock: &ManualClock) -> WebhookQueue {
    WebhookQueue::open(path, Arc::new(clock.clone())).unwrap()
}

#[tokio::test]
async fn events_survive_a_reopen_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.redb");
    let clock = ManualClock::new(T0);
    let ids = {
        let q = open(&path, &clock);
        let mut ids = Vec::new();
        for n in 0..3 {
            ids.push(q.enqueue(event(n)).await.unwrap());
        }
        ids
    };
    let q = open(&path, &clock);
    assert_eq!(q.depth(), 3);
    let taken = q.take_due(10).await.unwrap();
    assert_eq!(taken.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    for (n, e) in taken.iter().enumerate() {
        assert_eq!(e.body, event(n).body);
        assert_eq!(e.dedup_key, format!("notif-{n}"));
        assert_eq!(e.request_id, format!("req-{n}"));
        assert_eq!(e.target, event(n).target);
        assert_eq!(e.received_at, T0);
        assert_eq!(e.attempts, 0);
        assert_eq!(e.public_id, q.public_id(e.id));
    }
}

#[tokio::test]
async fn ack_removes_durably_and_ids_never_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.redb");
    let clock = ManualClock::new(T0);
    let (first, first_public) = {
        let q = open(&path, &clock);
        let a = q.enqueue(event(0)).await.unwrap();
        let b = q.enqueue(event(1)).await.unwrap();
        let taken = q.take_due(10).await.unwrap();
        assert_eq!(taken.len(), 2);
        q.ack(a).await.unwrap();
        q.ack(b).await.unwrap();
        assert_eq!(q.depth(), 0);
        (a, q.public_id(a))
    };
    let q = open(&path, &clock);
    assert_eq!(q.depth(), 0);
    assert!(q.take_due(10).await.unwrap().is_empty());
    // An emptied queue keeps counting, so a receiver deduping on event ids is never fooled.
    let next = q.enqueue(event(2)).await.unwrap();
    assert!(next > first);
    assert_ne!(q.public_id(next), first_public);
    // Another file gets another instance id.
    let other = open(&dir.path().join("other.redb"), &clock);
    assert_ne!(other.public_id(first), first_public);
}

#[tokio::test]
async fn an_event_in_flight_is_not_handed_out_twice() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let q = open(&dir.path().join("q.redb"), &clock);
    q.enqueue(event(0)).await.unwrap();
    let taken = q.take_due(10).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert!(q.take_due(10).await.unwrap().is_empty());
    assert_eq!(q.next_due(), None);
    assert_eq!(q.depth(), 1);
    // Only an in-flight event can be rescheduled.
    q.retry_later(&taken[0], Duration::ZERO).await.unwrap();
    assert!(matches!(
        q.retry_later(&taken[0], Duration::ZERO).await,
        Err(QueueError::NotInFlight(_))
    ));
    let again = q.take_due(10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn retry_bookkeeping_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.redb");
    let clock = ManualClock::new(T0);
    {
        let q = open(&path, &clock);
        q.enqueue(event(0)).await.unwrap();
        let taken = q.take_due(1).await.unwrap();
        assert_eq!(
            q.retry_later(&taken[0], Duration::from_secs(60))
                .await
                .unwrap(),
            1
        );
        // Not due before its time.
        assert!(q.take_due(1).await.unwrap().is_empty());
        tokio::time::advance(Duration::from_secs(61)).await;
        let taken = q.take_due(1).await.unwrap();
        assert_eq!(
            q.retry_later(&taken[0], Duration::from_secs(120))
                .await
                .unwrap(),
            2
        );
    }
    clock.advance(100);
    let q = open(&path, &clock);
    let due = q.next_due().unwrap();
    let wait = due - Instant::now();
    assert!(
        wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
        "{wait:?}"
    );
    assert!(q.take_due(1).await.unwrap().is_empty());
    tokio::time::advance(Duration::from_secs(21)).await;
    let taken = q.take_due(1).await.unwrap();
    assert_eq!(taken[0].attempts, 2);
}

#[tokio::test]
async fn held_events_wait_for_release_and_can_be_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.redb");
    let clock = ManualClock::new(T0);
    {
        let q = open(&path, &clock);
        let held = q.enqueue_held(event(0)).await.unwrap();
        assert_eq!(q.depth(), 1);
        assert!(q.take_due(10).await.unwrap().is_empty());
        held.release();
        assert_eq!(q.take_due(10).await.unwrap().len(), 1);

        let dup = q.enqueue_held(event(1)).await.unwrap();
        dup.discard().await.unwrap();
        assert_eq!(q.depth(), 1);

        // Dropping the guard releases it: a forgotten guard never strands an event.
        drop(q.enqueue_held(event(2)).await.unwrap());
        assert_eq!(q.take_due(10).await.unwrap().len(), 1);
        // Held and never released before a "crash": still delivered after reopen.
        let held = q.enqueue_held(event(3)).await.unwrap();
        std::mem::forget(held);
    }
    let q = open(&path, &clock);
    let keys: Vec<_> = q
        .take_due(10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.dedup_key)
        .collect();
    assert_eq!(keys, ["notif-0", "notif-2", "notif-3"]);
}

#[tokio::test(start_paused = true)]
async fn a_held_event_is_delivered_after_its_lease_and_never_twice() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let q = open(&dir.path().join("q.redb"), &clock);
    let held = q.enqueue_held(event(0)).await.unwrap();
    assert!(q.take_due(10).await.unwrap().is_empty());
    // The caller vanished without releasing: the lease runs out and the worker takes it.
    tokio::time::advance(HOLD_LEASE + Duration::from_secs(1)).await;
    let taken = q.take_due(10).await.unwrap();
    assert_eq!(taken.len(), 1);
    // A late release must not hand the in-flight event out a second time.
    held.release();
    assert!(q.take_due(10).await.unwrap().is_empty());
    assert_eq!(q.next_due(), None);
}

#[tokio::test]
async fn refuses_bad_targets_and_oversized_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let q = open(&dir.path().join("q.redb"), &clock);
    for target in [
        "",
        "/internal/tiktok/events",
        "ftp://127.0.0.1/x",
        "file:///etc/passwd",
    ] {
        let mut e = event(0);
        e.target = target.into();
        assert!(
            matches!(q.enqueue(e).await, Err(QueueError::InvalidTarget)),
            "{target}"
        );
    }
    let mut e = event(0);
    e.body = Bytes::from(vec![b'x'; MAX_BODY_BYTES + 1]);
    assert!(matches!(q.enqueue(e).await, Err(QueueError::TooLarge(_))));
    assert_eq!(q.depth(), 0);
}

#[tokio::test]
async fn exposes_depth_and_oldest_age_as_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let q = open(&dir.path().join("q.redb"), &clock);
    let registry = prometheus::Registry::new();
    q.register_metrics(&registry).unwrap();
    let value = |name: &str| {
        registry
            .gather()
            .into_iter()
            .find(|f| f.name() == name)
            .map(|f| f.get_metric()[0].get_gauge().value())
            .unwrap()
    };
    assert_eq!(value("webhook_queue_depth"), 0.0);
    assert_eq!(value("webhook_queue_oldest_age_seconds"), 0.0);
    let a = q.enqueue(event(0)).await.unwrap();
    clock.advance(30);
    q.enqueue(event(1)).await.unwrap();
    clock.advance(12);
    assert_eq!(value("webhook_queue_depth"), 2.0);
    assert_eq!(value("webhook_queue_oldest_age_seconds"), 42.0);
    q.take_due(1).await.unwrap();
    q.ack(a).await.unwrap();
    assert_eq!(value("webhook_queue_depth"), 1.0);
    assert_eq!(value("webhook_queue_oldest_age_seconds"), 12.0);
    assert_eq!(q.oldest_age_seconds(), 12);
}

#[tokio::test]
async fn a_probe_write_commits_without_touching_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.redb");
    let clock = ManualClock::new(T0);
    {
        let q = open(&path, &clock);
        let id = q.enqueue(event(0)).await.unwrap();
        q.probe_write().await.unwrap();
        assert_eq!(q.depth(), 1);
        // Event ids keep counting from where they were.
        let next = q.enqueue(event(1)).await.unwrap();
        assert!(next > id);
    }
    let q = open(&path, &clock);
    assert_eq!(q.depth(), 2, "the probe is not an event");
    let read = q.db.begin_read().unwrap();
    let meta = read.open_table(META).unwrap();
    assert_eq!(
        meta.get(META_PROBE).unwrap().map(|v| v.value()),
        Some(T0 as u64)
    );
}
