//! Servers some tests need (Redis, PostgreSQL), named by environment variables. A test that
//! finds its variable unset is skipped, and says so loudly on stderr; under CI (`CI=true`) a
//! missing server is a failure instead, so CI can never skip these tests quietly.

/// `REDIS_URL`, or `None` after announcing that the calling test is skipped (a panic under CI).
pub fn redis_url() -> Option<String> {
    required("REDIS_URL")
}

/// `DATABASE_URL`, or `None` after announcing that the calling test is skipped (a panic under
/// CI).
pub fn database_url() -> Option<String> {
    required("DATABASE_URL")
}

/// The value of `var`, or `None` after a `SKIPPED: <test> needs <var>` line on stderr. Panics
/// when `CI` is `true` (or `1`): there the server must be present.
pub fn required(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => Some(value),
        _ => {
            skip(&format!("needs {var}"));
            None
        }
    }
}

/// Announces that the calling test is skipped for `reason`; under CI, fails it instead.
pub fn skip(reason: &str) {
    let test = current_test();
    if on_ci() {
        panic!("{test} {reason}, and CI=true: CI must provide it, this test may not be skipped");
    }
    // Written to the process's stderr directly: the test harness captures `eprintln!`, and a
    // skip must show in a plain `cargo test` run.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test} {reason}");
}

/// Whether this run is CI's (`CI=true`, as CI services set it).
pub fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The running test's name: the test harness names each test's thread after it (the body of a
/// `#[tokio::test]` runs on that thread too).
fn current_test() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("this test")
        .to_owned()
}
