//! Privacy engine costs: masking a 100-order search response (the largest body the masking stage
//! sees routinely), redacting it for a debug log, leak-scanning it, and redacting one log line.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Value;
use tiktok_gateway::config::Secret;
use tiktok_gateway::privacy::{
    PrivacyEngine, PrivacySettings, mask_tiktok_response, scan_for_leaks,
};

const ORDER_SEARCH: &str = include_str!("../src/privacy/testdata/order_search.json");
const PRODUCT_SEARCH: &str = include_str!("../src/privacy/testdata/product_search.json");

/// The sample search response with its one order repeated 100 times under distinct ids.
fn hundred_orders() -> Vec<u8> {
    let mut v: Value = serde_json::from_str(ORDER_SEARCH).expect("sample is JSON");
    let order = v["data"]["orders"][0].clone();
    let orders: Vec<Value> = (0..100u64)
        .map(|i| {
            let mut o = order.clone();
            o["id"] = Value::String((576461413038785752u64 + i).to_string());
            o["recipient_address"]["phone_number"] = Value::String(format!("+1 213 555 {:04}", i));
            o["buyer_email"] = Value::String(format!("buyer{i}@example.com"));
            o
        })
        .collect();
    v["data"]["orders"] = Value::Array(orders);
    serde_json::to_vec(&v).expect("serialises")
}

fn engine() -> PrivacyEngine {
    PrivacyEngine::new(&PrivacySettings::with_key(Secret::new(
        "bench-pseudonym-key-0123456789",
    )))
    .expect("valid settings")
}

fn bodies(c: &mut Criterion) {
    let e = engine();
    let body = hundred_orders();
    let mut g = c.benchmark_group("privacy_100_orders");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("mask_response", |b| {
        b.iter(|| mask_tiktok_response(black_box(&body), &e).expect("masks"))
    });
    g.bench_function("redact_json_for_log", |b| {
        b.iter(|| e.redact_json_for_log(black_box(&body)).expect("redacts"))
    });
    g.bench_function("scan_for_leaks", |b| {
        b.iter(|| scan_for_leaks(black_box(&body), &e))
    });
    g.finish();

    let clean = PRODUCT_SEARCH.as_bytes();
    let mut g = c.benchmark_group("privacy_clean_product_search");
    g.throughput(Throughput::Bytes(clean.len() as u64));
    g.bench_function("scan_for_leaks", |b| {
        b.iter(|| scan_for_leaks(black_box(clean), &e))
    });
    g.bench_function("mask_response", |b| {
        b.iter(|| mask_tiktok_response(black_box(clean), &e).expect("masks"))
    });
    g.finish();
}

fn log_lines(c: &mut Criterion) {
    let e = engine();
    let clean = r#"{"timestamp":"2026-01-05T10:12:44.123456Z","level":"INFO","fields":{"message":"access","request_id":"01HZX3K9","route":"tiktok-orders","method":"POST","path":"/order/202309/orders/search","status":200,"latency_us":1843,"caller":"svc-orders","shop_id":"7494049642642441621"},"target":"tiktok_gateway::telemetry"}"#;
    let dirty = r#"{"timestamp":"2026-01-05T10:12:44.123456Z","level":"WARN","fields":{"message":"upstream refused for maria.silva@example.com from 203.0.113.9 card 4111 1111 1111 1111","request_id":"01HZX3K9","route":"tiktok-orders","status":502,"x-tts-access-token":"TTP_aGVsbG8td29ybGQtdG9rZW4xMjM0","name":"Maria Silva"},"target":"tiktok_gateway::pipeline"}"#;
    let mut g = c.benchmark_group("privacy_log_line");
    g.throughput(Throughput::Elements(1));
    g.bench_function("redact_text_clean", |b| {
        b.iter(|| e.redact_text(black_box(clean)).len())
    });
    g.bench_function("redact_text_with_pii", |b| {
        b.iter(|| e.redact_text(black_box(dirty)).len())
    });
    g.finish();
}

criterion_group!(benches, bodies, log_lines);
criterion_main!(benches);
