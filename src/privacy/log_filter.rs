//! The application-log filter (`logging.level`), parsed once by the same function for `validate`
//! and for start-up, so both agree.
//!
//! The rule: the gateway's own targets (this crate's modules and its named targets such as
//! `audit`, `security`, `access`, `panic`) log at whatever level the filter asks for; every other
//! target (Pingora, h2, hyper, rustls, reqwest, tokio, redis, redb...) is **capped at `info`**,
//! whatever the filter says, because their `debug`/`trace` output prints raw request heads
//! (custom headers, cookies, query strings) that no free-text detector can classify. The cap is
//! not a rewrite of the directive text (a more specific directive such as
//! `pingora_core::protocols=trace` would override it): it is a separate filter in front of the
//! directives that refuses any dependency event above `info`. Directives that ask a dependency
//! for more are accepted and listed by [`LogFilter::capped`], so `validate` and start-up can say
//! they have no effect.

use std::str::FromStr;

use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Directive;
use tracing_subscriber::layer::{Context, Layer};

use super::error::PrivacyError;

/// Targets that belong to the gateway (a target matches a name or a `name::` path below it).
pub const OWN_TARGETS: &[&str] = &["tiktok_gateway", "audit", "security", "access", "panic"];

/// The most verbose level any other target may log at.
pub const DEPENDENCY_CEILING: Level = Level::INFO;

/// What the filter is when `logging.level` is empty.
const DEFAULT_FILTER: &str = "info";

/// A parsed, checked `logging.level`. Build the runtime filter with [`LogFilter::layers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter {
    spec: String,
    capped: Vec<String>,
}

impl LogFilter {
    /// Parses `spec` (tracing `EnvFilter` syntax). Every directive must parse; an error names the
    /// first one that does not.
    pub fn parse(spec: &str) -> Result<Self, PrivacyError> {
        let spec = match spec.trim() {
            "" => DEFAULT_FILTER,
            s => s,
        };
        let mut capped = Vec::new();
        let mut directives = Vec::new();
        // `EnvFilter` splits on commas the same way; it is handed the trimmed directives.
        for raw in spec.split(',') {
            let directive = raw.trim();
            if directive.is_empty() {
                continue;
            }
            directives.push(directive);
            Directive::from_str(directive)
                .map_err(|e| PrivacyError::BadLogFilter(format!("directive `{directive}`: {e}")))?;
            let (target, level) = target_and_level(directive);
            if let Some(target) = target
                && !is_own_target(target)
                && level > LevelFilter::from_level(DEPENDENCY_CEILING)
            {
                capped.push(directive.to_owned());
            }
        }
        let spec = if directives.is_empty() {
            DEFAULT_FILTER.to_owned()
        } else {
            directives.join(",")
        };
        // Whole-filter errors the per-directive parse cannot see.
        EnvFilter::try_new(&spec).map_err(|e| PrivacyError::BadLogFilter(e.to_string()))?;
        Ok(Self { spec, capped })
    }

    /// The filter text in effect (the default when the setting was empty).
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// Directives that ask a dependency target for more than [`DEPENDENCY_CEILING`]; they are
    /// accepted but have no effect beyond it.
    pub fn capped(&self) -> &[String] {
        &self.capped
    }

    /// One line explaining the capped directives, if there are any (for `validate` and start-up).
    pub fn capped_note(&self) -> Option<String> {
        if self.capped.is_empty() {
            return None;
        }
        let list: Vec<String> = self.capped.iter().map(|d| format!("`{d}`")).collect();
        Some(format!(
            "logging.level: {} capped at {}: targets outside the gateway never log above {} (their debug output carries raw request heads)",
            list.join(", "),
            DEPENDENCY_CEILING.as_str().to_ascii_lowercase(),
            DEPENDENCY_CEILING.as_str().to_ascii_lowercase(),
        ))
    }

    /// The directives as an `EnvFilter` (built anew: `EnvFilter` is not `Clone`).
    pub fn env_filter(&self) -> Result<EnvFilter, PrivacyError> {
        EnvFilter::try_new(&self.spec).map_err(|e| PrivacyError::BadLogFilter(e.to_string()))
    }
}

/// Whether `target` is one of the gateway's own.
pub fn is_own_target(target: &str) -> bool {
    OWN_TARGETS.iter().any(|own| {
        target
            .strip_prefix(own)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

/// The target a directive names (none for a bare level or a span-only directive) and the level
/// it enables. A directive naming a target without a level enables every level (`trace`).
fn target_and_level(directive: &str) -> (Option<&str>, LevelFilter) {
    if let Ok(level) = directive.parse::<LevelFilter>() {
        return (None, level);
    }
    let (head, level) = match directive.rsplit_once('=') {
        // A `=` inside `[span{field=value}]` is not the level separator.
        Some((head, level)) if !level.contains([']', '}']) => {
            (head, level.parse().unwrap_or(LevelFilter::TRACE))
        }
        _ => (directive, LevelFilter::TRACE),
    };
    let target = head.split('[').next().unwrap_or("").trim();
    ((!target.is_empty()).then_some(target), level)
}

/// The cap itself: a filter layer that refuses events and spans of non-gateway targets above
/// [`DEPENDENCY_CEILING`], before the directives are consulted. `log` records from dependencies
/// arrive with their real target and are checked the same way.
#[derive(Debug, Clone, Copy, Default)]
pub struct DependencyCap;

impl DependencyCap {
    fn allows(meta: &Metadata<'_>) -> bool {
        *meta.level() <= DEPENDENCY_CEILING || is_own_target(meta.target())
    }
}

impl<S: Subscriber> Layer<S> for DependencyCap {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if Self::allows(meta) {
            Interest::always()
        } else if meta.target() == "log" {
            // The callsites `log` records are dispatched through; each record is checked in
            // `enabled` with its own target.
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, _: Context<'_, S>) -> bool {
        Self::allows(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_targets_are_the_crate_and_its_named_targets() {
        for t in [
            "tiktok_gateway",
            "tiktok_gateway::pipeline::proxy",
            "audit",
            "security",
            "access",
            "panic",
        ] {
            assert!(is_own_target(t), "{t}");
        }
        for t in [
            "pingora_core::protocols::http::v1::server",
            "h2::proto",
            "hyper",
            "rustls::server::hs",
            "tiktok_gateway_evil",
            "auditor",
            "log",
            "",
        ] {
            assert!(!is_own_target(t), "{t}");
        }
    }

    #[test]
    fn directives_asking_a_dependency_for_more_than_info_are_listed() {
        let f = LogFilter::parse(
            "debug,pingora_core::protocols=trace, h2=debug,hyper,rustls[handshake]=TRACE,\
             tokio=info,tiktok_gateway=trace,audit=trace,[request]=trace,redb=5,reqwest=warn",
        )
        .expect("valid");
        assert_eq!(
            f.capped(),
            [
                "pingora_core::protocols=trace",
                "h2=debug",
                "hyper",
                "rustls[handshake]=TRACE",
                "redb=5"
            ]
        );
        let note = f.capped_note().expect("a note");
        assert!(
            note.contains("`pingora_core::protocols=trace`") && note.contains("capped at info"),
            "{note}"
        );
        let quiet =
            LogFilter::parse("debug,tiktok_gateway::auth=trace,pingora=info").expect("valid");
        assert!(quiet.capped().is_empty());
        assert_eq!(quiet.capped_note(), None);
        assert_eq!(LogFilter::parse("  ").expect("valid").spec(), "info");
    }

    #[test]
    fn a_bad_directive_is_named() {
        for (spec, named) in [
            ("info,pingora_core=loud", "pingora_core=loud"),
            ("info,=[", "=["),
            ("tiktok_gateway[{=x", "tiktok_gateway[{=x"),
        ] {
            match LogFilter::parse(spec) {
                Err(PrivacyError::BadLogFilter(msg)) => {
                    assert!(msg.contains(&format!("`{named}`")), "{spec}: {msg}")
                }
                other => panic!("{spec}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_cap_refuses_dependency_events_above_info_only() {
        use tracing::callsite::Identifier;
        use tracing::field::FieldSet;
        use tracing::metadata::Kind;
        struct Cs;
        impl tracing::callsite::Callsite for Cs {
            fn set_interest(&self, _: Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!("not registered")
            }
        }
        static CS: Cs = Cs;
        let meta = |target: &'static str, level| {
            Metadata::new(
                "e",
                target,
                level,
                None,
                None,
                None,
                FieldSet::new(&[], Identifier(&CS)),
                Kind::EVENT,
            )
        };
        for (target, level, allowed) in [
            ("pingora_core::protocols", Level::TRACE, false),
            ("pingora_core::protocols", Level::DEBUG, false),
            ("pingora_core::protocols", Level::INFO, true),
            ("h2::codec", Level::WARN, true),
            ("tiktok_gateway::auth", Level::TRACE, true),
            ("audit", Level::DEBUG, true),
            ("log", Level::DEBUG, false),
        ] {
            assert_eq!(
                DependencyCap::allows(&meta(target, level)),
                allowed,
                "{target} {level}"
            );
        }
    }
}
