//! Conservative path check used before routing: anything ambiguous is refused, never guessed.

/// Returns a refusal reason for a path that is not plainly canonical.
pub fn refuse_reason(path: &str) -> Option<&'static str> {
    if !path.starts_with('/') {
        return Some("not_absolute");
    }
    let bytes = path.as_bytes();
    if bytes.iter().any(|b| *b < 0x20 || *b == 0x7f || *b == b'\\') {
        return Some("control_or_backslash");
    }
    if bytes.contains(&b'%') {
        let lower = path.to_ascii_lowercase();
        for bad in ["%2f", "%5c", "%2e", "%00", "%25", "%c0", "%c1"] {
            if lower.contains(bad) {
                return Some("encoded_separator");
            }
        }
    }
    if bytes.contains(&b';') {
        return Some("path_parameter");
    }
    for seg in path[1..].split('/') {
        if seg == "." || seg == ".." {
            return Some("dot_segment");
        }
    }
    if path.contains("//") {
        return Some("empty_segment");
    }
    None
}
