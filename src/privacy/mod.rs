//! Privacy: one redaction engine for every log path, response masking, PII leak detection (policy §3, §7, §8).
