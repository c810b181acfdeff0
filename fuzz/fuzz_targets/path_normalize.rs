//! The path normaliser on arbitrary text: an accepted path is a fixed point and holds no
//! spelling a backend could read as another path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tiktok_gateway::inspect::{PathRules, normalize_path_with};

fuzz_target!(|raw: &str| {
    for allow_non_ascii in [false, true] {
        let rules = PathRules { allow_non_ascii };
        let Ok(out) = normalize_path_with(raw, rules) else {
            continue;
        };
        assert_eq!(
            normalize_path_with(&out, rules).as_deref(),
            Ok(out.as_ref())
        );
        assert!(out.starts_with('/') && !out.contains("//") && !out.contains('\\'));
        assert!(out.split('/').all(|s| s != "." && s != ".."));
        let lower = out.to_ascii_lowercase();
        assert!(!lower.contains("%2f") && !lower.contains("%5c") && !lower.contains("%2e"));
    }
});
