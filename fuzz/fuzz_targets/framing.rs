//! The framing checks on arbitrary heads: the input is read both as a raw HTTP/1 head and as
//! `name: value` lines for the parsed-map check. Neither may panic, and a head holding both
//! Content-Length and Transfer-Encoding is always refused.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue, Version, header};
use libfuzzer_sys::fuzz_target;
use tiktok_gateway::inspect::{check_framing, check_raw_head};

fuzz_target!(|data: &[u8]| {
    let _ = check_raw_head(data);

    let mut map = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..]
            .strip_prefix(b" ")
            .unwrap_or(&line[colon + 1..]);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            map.append(name, value);
        }
    }
    let both =
        map.contains_key(header::CONTENT_LENGTH) && map.contains_key(header::TRANSFER_ENCODING);
    for version in [Version::HTTP_10, Version::HTTP_11, Version::HTTP_2] {
        let result = check_framing(version, &map);
        if both {
            assert!(result.is_err());
        }
    }
});
