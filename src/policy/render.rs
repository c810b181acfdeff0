//! The policy report for people (text) and for pipelines (JSON).

use std::fmt::Write;

use serde_json::json;

use super::report::{Report, Status};

/// One JSON object: the verdict, counts, and every clause with its checks and findings.
pub fn json(report: &Report) -> serde_json::Value {
    json!({
        "file": report.file,
        "version": report.version,
        "hash": report.hash,
        "status": report.status(),
        "counts": report.counts(),
        "clauses": report.clauses,
    })
}

/// Clause by clause: each check's verdict, then its findings with `file:line path: evidence`
/// and the remedy; a last line with the verdict and counts.
pub fn text(report: &Report) -> String {
    let file = &report.file;
    let mut out = String::new();
    let short = report.hash.get(..12).unwrap_or(&report.hash);
    let _ = writeln!(
        out,
        "{file}: policy report (version {}, hash {short})\n",
        report.version
    );
    for clause in &report.clauses {
        let Some(status) = clause.status else {
            let _ = writeln!(
                out,
                "§{} {}: not checked by the gateway ({})",
                clause.clause,
                clause.title,
                clause.reason.unwrap_or("organisational")
            );
            continue;
        };
        let _ = writeln!(
            out,
            "§{} {}: {}",
            clause.clause,
            clause.title,
            status.as_str()
        );
        for check in &clause.checks {
            let _ = writeln!(
                out,
                "  {} {}: {}",
                check.status.as_str(),
                check.id,
                check.requirement
            );
            for f in &check.findings {
                let place = match (f.line, f.path.is_empty()) {
                    (Some(line), false) => format!("{file}:{line}: {}: ", f.path),
                    (None, false) => format!("{}: ", f.path),
                    _ => String::new(),
                };
                let _ = writeln!(out, "    {} {place}{}", f.status.as_str(), f.evidence);
                if let Some(remedy) = f.remedy {
                    let _ = writeln!(out, "         remedy: {remedy}");
                }
            }
        }
    }
    let c = report.counts();
    let verdict = match report.status() {
        Status::Fail => "FAIL",
        Status::Warn => "PASS with warnings",
        Status::Pass => "PASS",
    };
    let _ = writeln!(
        out,
        "\n{file}: policy {verdict}: {} check(s) failed, {} warned, {} passed; {} clause(s) not checked by the gateway",
        c.fail, c.warn, c.pass, c.not_checked
    );
    out
}
