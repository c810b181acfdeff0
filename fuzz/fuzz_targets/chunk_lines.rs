//! The chunk-line check on arbitrary bodies: it never panics, and its verdict does not depend on
//! how the bytes are split into reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tiktok_gateway::inspect::ChunkLines;

fuzz_target!(|input: (u8, &[u8])| {
    let (cut, data) = input;
    let mut whole = ChunkLines::new();
    whole.feed(data);

    let cut = usize::from(cut).min(data.len());
    let mut split = ChunkLines::new();
    split.feed(&data[..cut]);
    split.feed(&data[cut..]);
    assert_eq!(whole, split, "the verdict depends on the read boundaries");
});
