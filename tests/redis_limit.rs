//! Fleet rate limiting against a real Redis (`REDIS_URL`; skipped, saying why, when unset).
//!
//! Each test writes under its own key prefix, so runs never see each other's buckets.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Relay, redis_url, split_redis_url, unique_name};
use tiktok_gateway::config::Secret;
use tiktok_gateway::limit::{
    Backend, DecisionSource, LimitSettings, LimitSpec, OnBackendError, RateLimitSettings,
    RateLimiter, RedisSettings,
};

fn unique_prefix(test: &str) -> String {
    unique_name(&format!("tgw-test:{test}"))
}

fn settings(url: &str, prefix: &str, mode: OnBackendError) -> RateLimitSettings {
    let mut redis = RedisSettings::new(Secret::new(url));
    redis.key_prefix = prefix.to_owned();
    redis.on_backend_error = mode;
    redis.retry_interval = Duration::from_millis(200);
    RateLimitSettings {
        backend: Backend::Redis(redis),
        ..RateLimitSettings::default()
    }
}

fn limiter(url: &str, prefix: &str, rate: &str, burst: u64) -> RateLimiter {
    let limits = vec![LimitSettings {
        route: "orders".to_owned(),
        name: "orders".to_owned(),
        spec: LimitSpec::parse("caller", rate, Some(burst)).unwrap(),
    }];
    RateLimiter::new(&settings(url, prefix, OnBackendError::Local), limits).unwrap()
}

#[tokio::test]
async fn redis_gcra_admits_the_burst_then_refuses_with_headers() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("burst");
    let rl = limiter(&url, &prefix, "10/m", 3);
    let id = rl.find("orders", "orders").unwrap();

    let mut remaining = Vec::new();
    for _ in 0..3 {
        let d = rl.check(id, b"alice").await;
        assert!(d.allowed);
        assert_eq!(d.source, DecisionSource::Redis);
        remaining.push(d.remaining);
    }
    assert_eq!(remaining, [2, 1, 0]);

    let refused = rl.check(id, b"alice").await;
    assert!(!refused.allowed);
    assert_eq!(refused.source, DecisionSource::Redis);
    // One request costs 6 s at 10/m; a little of it has passed already.
    assert!((5..=6).contains(&refused.retry_after_secs()));
    let h = rl.headers(&[refused]).unwrap();
    assert_eq!(h.policy, "\"orders\";q=10;w=60");
    assert_eq!(h.rate_limit.unwrap(), "\"orders\";r=0;t=18");
    assert_eq!(
        h.retry_after.unwrap().to_str().unwrap(),
        refused.retry_after_secs().to_string()
    );

    // Another key is untouched.
    assert!(rl.check(id, b"bob").await.allowed);
}

#[tokio::test]
async fn two_instances_share_one_limit_within_one_percent() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("fleet");
    const RATE: f64 = 100.0;
    const BURST: u64 = 10;
    // Two gateways, each with its own connection manager.
    let a = Arc::new(limiter(&url, &prefix, "100/s", BURST));
    let b = Arc::new(limiter(&url, &prefix, "100/s", BURST));

    // Each sends 150/s for 10 s: together 3x the limit.
    let run = |rl: Arc<RateLimiter>| {
        tokio::spawn(async move {
            let id = rl.find("orders", "orders").unwrap();
            let mut ticker = tokio::time::interval(Duration::from_micros(6_667));
            let mut admitted = 0u64;
            for _ in 0..1_500 {
                ticker.tick().await;
                let d = rl.check(id, b"fleet-caller").await;
                assert_eq!(d.source, DecisionSource::Redis, "Redis must decide");
                admitted += u64::from(d.allowed);
            }
            admitted
        })
    };
    let started = Instant::now();
    let (ha, hb) = (run(a), run(b));
    let (admitted_a, admitted_b) = (ha.await.unwrap(), hb.await.unwrap());
    let elapsed = started.elapsed().as_secs_f64();

    let total = admitted_a + admitted_b;
    let expected = RATE * elapsed;
    eprintln!(
        "fleet: a={admitted_a} b={admitted_b} total={total} over {elapsed:.3}s (limit {expected:.0} + burst {BURST})"
    );
    assert!(
        admitted_a > 0 && admitted_b > 0,
        "both instances got a share"
    );
    assert!(
        (total as f64) <= expected * 1.01 + BURST as f64,
        "admitted {total}, above the limit"
    );
    assert!(
        (total as f64) >= expected * 0.99,
        "admitted {total}, well below the limit"
    );
}

#[tokio::test]
async fn outage_falls_back_to_local_and_shared_limiting_resumes() {
    let Some(url) = redis_url() else { return };
    let Some((target, via)) = split_redis_url(&url) else {
        common::env::skip("needs REDIS_URL as a plain redis:// URL (to relay it)");
        return;
    };
    let relay = Relay::start(target).await;
    let prefix = unique_prefix("outage");
    // 2 per minute: nothing refills during the test.
    let gw = limiter(&via(relay.addr), &prefix, "2/m", 2);
    let peer = limiter(&url, &prefix, "2/m", 2);
    let id = gw.find("orders", "orders").unwrap();

    // Shared: the gateway spends the key's budget on Redis.
    for _ in 0..2 {
        let d = gw.check(id, b"alice").await;
        assert!(d.allowed);
        assert_eq!(d.source, DecisionSource::Redis);
    }
    assert!(!gw.check(id, b"alice").await.allowed);

    // Redis gone: the local fallback decides (its own fresh bucket), nothing panics.
    relay.cut_and_wait().await;
    let mut during = Vec::new();
    for _ in 0..4 {
        let d = gw.check(id, b"alice").await;
        assert_eq!(d.source, DecisionSource::Local);
        during.push(d.allowed);
    }
    assert_eq!(during, [true, true, false, false]);

    // Redis back: the first probe after the retry interval (200 ms) decides on Redis again,
    // though the connection it had was broken by the outage, and the shared bucket still
    // remembers the budget spent before the outage.
    relay.restore();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d = gw.check(id, b"alice").await;
    assert_eq!(
        d.source,
        DecisionSource::Redis,
        "the first probe after Redis came back"
    );
    assert!(!d.allowed, "the shared bucket was spent before the outage");
    // And another replica agrees.
    let other = peer.check(id, b"alice").await;
    assert_eq!(other.source, DecisionSource::Redis);
    assert!(!other.allowed);
    assert!(peer.check(id, b"bob").await.allowed);
}

#[tokio::test]
async fn gateways_share_buckets_only_under_the_same_key_secret() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("keyed");
    let keyed = |secret: &str| {
        let mut s = settings(&url, &prefix, OnBackendError::Local);
        if let Backend::Redis(r) = &mut s.backend {
            r.key_secret = Some(Secret::new(secret));
        }
        let limits = vec![LimitSettings {
            route: "orders".to_owned(),
            name: "orders".to_owned(),
            spec: LimitSpec::parse("client_ip", "1/m", Some(2)).unwrap(),
        }];
        RateLimiter::new(&s, limits).unwrap()
    };
    let (a, a2, b) = (keyed("fleet"), keyed("fleet"), keyed("other"));
    let id = a.find("orders", "orders").unwrap();
    for _ in 0..2 {
        assert!(a.check(id, b"198.51.100.23").await.allowed);
    }
    // The same secret names the same bucket: spent.
    let d = a2.check(id, b"198.51.100.23").await;
    assert_eq!(d.source, DecisionSource::Redis);
    assert!(!d.allowed);
    // Another secret names another bucket (as does the unkeyed hash).
    assert!(b.check(id, b"198.51.100.23").await.allowed);
    assert!(
        limiter(&url, &prefix, "1/m", 2)
            .check(id, b"198.51.100.23")
            .await
            .allowed
    );
}
