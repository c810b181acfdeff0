//! Cost of one rate-limit decision: local (in-process GCRA) and Redis (one script round trip).
//! The Redis case runs only when `REDIS_URL` is set.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use futures::FutureExt;
use tiktok_gateway::config::Secret;
use tiktok_gateway::limit::{
    Backend, LimitSettings, LimitSpec, RateLimitSettings, RateLimiter, RedisSettings,
};

fn limits() -> Vec<LimitSettings> {
    vec![LimitSettings {
        route: "bench".to_owned(),
        name: "bench".to_owned(),
        spec: LimitSpec::parse("caller", "100000/s", Some(1000)).expect("valid spec"),
    }]
}

fn keys() -> Vec<String> {
    (0..1024).map(|i| format!("caller-{i}")).collect()
}

fn local_decision(c: &mut Criterion) {
    let rl = RateLimiter::new(&RateLimitSettings::default(), limits()).expect("limiter");
    let id = rl.find("bench", "bench").expect("limit");
    let keys = keys();
    let mut i = 0usize;
    c.bench_function("limit/local_decision", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            // The local path never awaits: one poll completes it.
            let d = rl.check(id, keys[i].as_bytes()).now_or_never();
            black_box(d)
        })
    });
}

fn redis_decision(c: &mut Criterion) {
    let Ok(url) = std::env::var("REDIS_URL") else {
        eprintln!("limit/redis_decision skipped: REDIS_URL is not set");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut redis = RedisSettings::new(Secret::new(url));
    redis.key_prefix = "tgw-bench:rl".to_owned();
    redis.timeout = Duration::from_secs(1);
    let settings = RateLimitSettings {
        backend: Backend::Redis(redis),
        ..RateLimitSettings::default()
    };
    let rl = rt
        .block_on(async { RateLimiter::new(&settings, limits()) })
        .expect("limiter");
    let id = rl.find("bench", "bench").expect("limit");
    let keys = keys();
    let mut i = 0usize;
    c.bench_function("limit/redis_decision", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(rt.block_on(rl.check(id, keys[i].as_bytes())))
        })
    });
}

criterion_group!(benches, local_decision, redis_decision);
criterion_main!(benches);
