//! The config loader on arbitrary bytes: any input ends in a config or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use tiktok_gateway::config::load_str;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = load_str(
        &text,
        Path::new("/nonexistent-fuzz-base"),
        Path::new("fuzz.yaml"),
    );
});
