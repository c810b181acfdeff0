//! Response masking on arbitrary bytes: no panic; for valid JSON the masked output is JSON with
//! the same keys and array lengths, and only scalars change (into strings).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::OnceLock;
use tiktok_gateway::config::Secret;
use tiktok_gateway::privacy::{PrivacyEngine, PrivacySettings};

fn engine() -> &'static PrivacyEngine {
    static ENGINE: OnceLock<PrivacyEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let settings = PrivacySettings::with_key(Secret::new("fuzz-pseudonym-key-0123456789"));
        match PrivacyEngine::new(&settings) {
            Ok(engine) => engine,
            Err(e) => panic!("built-in privacy settings refused: {e}"),
        }
    })
}

fn same_shape(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            if x.keys().eq(y.keys()) {
                return x.iter().all(|(k, va)| same_shape(va, &y[k]));
            }
            // A key had a finding replaced inside it, which may reorder the map or merge two
            // masked keys; every other key must still be there.
            y.len() <= x.len()
                && y.keys()
                    .all(|k| x.contains_key(k) || k.contains("***") || k.contains("pii:"))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(va, vb)| same_shape(va, vb))
        }
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => false,
        (x, y) => x == y || y.is_string(),
    }
}

fuzz_target!(|body: &[u8]| {
    let masked = engine().mask_response(body);
    let Ok(original) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let masked = match masked {
        Ok(masked) => masked,
        // The walker may be stricter than serde_json (e.g. depth, duplicate keys); refusing is safe.
        Err(_) => return,
    };
    let masked: Value = match serde_json::from_slice(&masked) {
        Ok(v) => v,
        Err(e) => panic!("masked output is not JSON: {e}"),
    };
    assert!(same_shape(&original, &masked));
});
