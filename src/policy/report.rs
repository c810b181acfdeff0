//! The clause table (numbered and titled as in `POLICY.md`) and the report it produces. Every
//! check reads the validated config and returns at least one finding with its evidence; a
//! clause the gateway cannot enforce is reported as not checked, never as passing.

use serde::Serialize;

use super::checks;
use crate::config::{ConfigIssue, GatewayConfig, report as config_report};

/// A finding's or a check's outcome, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One piece of evidence: what the config does at `path`, and what to change when it falls short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub status: Status,
    /// Dotted YAML path, e.g. `routes[1].auth` (`""`: the file as a whole).
    pub path: String,
    /// 1-based line of `path` in the file, when the file's text is at hand.
    pub line: Option<u64>,
    pub evidence: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<&'static str>,
}

impl Finding {
    pub fn pass(path: impl Into<String>, evidence: impl Into<String>) -> Self {
        Self {
            status: Status::Pass,
            path: path.into(),
            line: None,
            evidence: evidence.into(),
            remedy: None,
        }
    }

    pub fn warn(
        path: impl Into<String>,
        evidence: impl Into<String>,
        remedy: &'static str,
    ) -> Self {
        Self {
            status: Status::Warn,
            remedy: Some(remedy),
            ..Self::pass(path, evidence)
        }
    }

    pub fn fail(
        path: impl Into<String>,
        evidence: impl Into<String>,
        remedy: &'static str,
    ) -> Self {
        Self {
            status: Status::Fail,
            remedy: Some(remedy),
            ..Self::pass(path, evidence)
        }
    }
}

/// One requirement of a clause (a row of POLICY.md's mapping table) and how it is checked.
pub struct Check {
    pub id: &'static str,
    pub requirement: &'static str,
    pub run: fn(&GatewayConfig) -> Vec<Finding>,
}

pub enum Coverage {
    Checked(&'static [Check]),
    /// Organisational: asks things of people and processes the config cannot show.
    NotChecked(&'static str),
}

pub struct Clause {
    pub number: u8,
    pub title: &'static str,
    pub coverage: Coverage,
}

/// Every clause of POLICY.md, in its order.
pub const CLAUSES: &[Clause] = &[
    Clause {
        number: 1,
        title: "Purpose",
        coverage: Coverage::NotChecked(
            "states the policy's purpose; its requirements are in the clauses below",
        ),
    },
    Clause {
        number: 2,
        title: "Scope",
        coverage: Coverage::NotChecked("says whom and what the policy applies to"),
    },
    Clause {
        number: 3,
        title: "Security Objectives",
        coverage: Coverage::Checked(&[
            Check {
                id: "3.access",
                requirement: "every route authenticates its caller; nothing is open by default",
                run: checks::routes_authenticate,
            },
            Check {
                id: "3.availability",
                requirement: "rate limits on routes reachable off the host, health checks and circuit breaking on upstreams",
                run: checks::availability,
            },
            Check {
                id: "3.privacy",
                requirement: "GDPR/CCPA: order PII is masked in TikTok responses for callers without an explicit PII scope",
                run: checks::tiktok_pii_masking,
            },
        ]),
    },
    Clause {
        number: 4,
        title: "Governance and Responsibilities",
        coverage: Coverage::NotChecked("assigns responsibilities to people"),
    },
    Clause {
        number: 5,
        title: "Acceptable Use",
        coverage: Coverage::NotChecked("rules for users and their devices"),
    },
    Clause {
        number: 6,
        title: "Access Management",
        coverage: Coverage::Checked(&[
            Check {
                id: "6.admin-mfa",
                requirement: "the admin API accepts only MFA-proven tokens with the admin scope, over mTLS",
                run: checks::admin_mfa,
            },
            Check {
                id: "6.least-privilege",
                requirement: "routes require scopes (or name the API keys they accept)",
                run: checks::least_privilege,
            },
        ]),
    },
    Clause {
        number: 7,
        title: "Data Classification & Protection",
        coverage: Coverage::Checked(&[
            Check {
                id: "7.secrets",
                requirement: "secrets come from env/files, never inline in YAML",
                run: checks::secrets_not_inline,
            },
            Check {
                id: "7.in-transit",
                requirement: "confidential data leaving the host is encrypted (upstreams, TikTok, state and rate-limit backends)",
                run: checks::encrypted_in_transit,
            },
            Check {
                id: "7.tokens-at-rest",
                requirement: "TikTok shop tokens at rest are encrypted with a real key",
                run: checks::tokens_at_rest,
            },
        ]),
    },
    Clause {
        number: 8,
        title: "Incident Management",
        coverage: Coverage::Checked(&[Check {
            id: "8.detection",
            requirement: "metrics on auth failures and API abuse, outbound TikTok quotas, a kill switch",
            run: checks::detection,
        }]),
    },
    Clause {
        number: 9,
        title: "Business Continuity",
        coverage: Coverage::Checked(&[Check {
            id: "9.durable-state",
            requirement: "no lost webhooks (a durable queue); refreshed tokens survive a restart",
            run: checks::durable_state,
        }]),
    },
    Clause {
        number: 10,
        title: "Physical & Remote Security",
        coverage: Coverage::Checked(&[Check {
            id: "10.secure-listeners",
            requirement: "no plaintext listener outside loopback; TLS 1.2+ only",
            run: checks::secure_listeners,
        }]),
    },
    Clause {
        number: 11,
        title: "Vendor & Third-Party Management",
        coverage: Coverage::Checked(&[Check {
            id: "11.tiktok-pinned",
            requirement: "TikTok endpoints pinned by host and reached over verified TLS",
            run: checks::tiktok_pinned,
        }]),
    },
    Clause {
        number: 12,
        title: "Security Awareness",
        coverage: Coverage::NotChecked("staff training"),
    },
    Clause {
        number: 13,
        title: "Policy Maintenance",
        coverage: Coverage::Checked(&[Check {
            id: "13.versioned-config",
            requirement: "the config is versioned and validated before it is applied",
            run: checks::versioned_config,
        }]),
    },
    Clause {
        number: 14,
        title: "Compliance & Enforcement",
        coverage: Coverage::NotChecked("disciplinary and legal consequences"),
    },
];

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub id: &'static str,
    pub requirement: &'static str,
    pub status: Status,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClauseResult {
    pub clause: u8,
    pub title: &'static str,
    /// `None`: not checked by the gateway (see `reason`); `"not_checked"` in JSON.
    #[serde(serialize_with = "clause_status")]
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub checks: Vec<CheckResult>,
}

fn clause_status<S: serde::Serializer>(status: &Option<Status>, s: S) -> Result<S::Ok, S::Error> {
    match status {
        Some(status) => status.serialize(s),
        None => s.serialize_str("not_checked"),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub file: String,
    pub version: String,
    pub hash: String,
    pub clauses: Vec<ClauseResult>,
}

/// How many checks ended in each status, and how many clauses the gateway does not check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub pass: usize,
    pub warn: usize,
    pub fail: usize,
    pub not_checked: usize,
}

/// Runs every check of every clause over `config`.
pub fn evaluate(config: &GatewayConfig) -> Report {
    let clauses = CLAUSES
        .iter()
        .map(|clause| match &clause.coverage {
            Coverage::NotChecked(reason) => ClauseResult {
                clause: clause.number,
                title: clause.title,
                status: None,
                reason: Some(reason),
                checks: Vec::new(),
            },
            Coverage::Checked(list) => {
                let checks: Vec<CheckResult> = list.iter().map(|c| run(c, config)).collect();
                ClauseResult {
                    clause: clause.number,
                    title: clause.title,
                    status: checks.iter().map(|c| c.status).max(),
                    reason: None,
                    checks,
                }
            }
        })
        .collect();
    Report {
        file: config.source.display().to_string(),
        version: config.version.clone(),
        hash: config.hash.clone(),
        clauses,
    }
}

fn run(check: &Check, config: &GatewayConfig) -> CheckResult {
    let mut findings = (check.run)(config);
    // A check that found nothing to say has not shown the requirement is met.
    if findings.is_empty() {
        findings.push(Finding::warn(
            "",
            "the check found no evidence either way",
            "report this as a defect of the policy report",
        ));
    }
    CheckResult {
        id: check.id,
        requirement: check.requirement,
        status: findings
            .iter()
            .map(|f| f.status)
            .max()
            .unwrap_or(Status::Warn),
        findings,
    }
}

impl Report {
    /// The worst status of any check: the report's verdict.
    pub fn status(&self) -> Status {
        self.checks()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Pass)
    }

    pub fn counts(&self) -> Counts {
        let mut counts = Counts {
            not_checked: self.clauses.iter().filter(|c| c.status.is_none()).count(),
            ..Counts::default()
        };
        for check in self.checks() {
            match check.status {
                Status::Pass => counts.pass += 1,
                Status::Warn => counts.warn += 1,
                Status::Fail => counts.fail += 1,
            }
        }
        counts
    }

    pub fn checks(&self) -> impl Iterator<Item = &CheckResult> {
        self.clauses.iter().flat_map(|c| c.checks.iter())
    }

    /// Gives each finding the line its YAML path is on in `text` (the file the config was
    /// loaded from), found the way `validate` places issues found after loading.
    pub fn locate(&mut self, text: &str) {
        let findings: Vec<&mut Finding> = self
            .clauses
            .iter_mut()
            .flat_map(|c| c.checks.iter_mut())
            .flat_map(|c| c.findings.iter_mut())
            .filter(|f| !f.path.is_empty())
            .collect();
        let mut issues: Vec<ConfigIssue> = findings
            .iter()
            .map(|f| ConfigIssue::warning(f.path.clone(), ""))
            .collect();
        config_report::locate(text, &mut issues);
        for (finding, issue) in findings.into_iter().zip(issues) {
            finding.line = issue.line;
        }
    }
}
