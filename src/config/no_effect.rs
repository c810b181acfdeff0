//! Warnings for settings that are accepted but change nothing where they are written: harmless
//! to run with, but the operator meant something by them. Settings that would silently weaken a
//! rule are errors in `validate`, not warnings here.

use std::collections::HashSet;
use std::net::SocketAddr;

use super::diagnostics::{ConfigIssue, Issues};
use super::file::ConfigFile;
use super::units::parse_byte_rate;

pub fn check(file: &ConfigFile, issues: &mut Issues) {
    listeners(file, issues);
    jwks(file, issues);
    webhooks(file, issues);
    shops(file, issues);
    unused_upstreams(file, issues);
}

fn listeners(file: &ConfigFile, issues: &mut Issues) {
    for (name, l) in &file.listeners {
        let p = format!("listeners.{name}");
        let lf = &l.value;
        if lf.allow_plaintext {
            let loopback = lf
                .address
                .value
                .parse::<SocketAddr>()
                .is_ok_and(|a| a.ip().is_loopback());
            let why = if lf.tls.is_some() {
                Some("this listener serves TLS")
            } else if loopback {
                Some("plaintext is always allowed on a loopback address")
            } else {
                None
            };
            if let Some(why) = why {
                issues.push(
                    ConfigIssue::warning(
                        format!("{p}.allow_plaintext"),
                        format!("has no effect: {why}"),
                    )
                    .hint("remove it")
                    .at(l),
                );
            }
        }
        if let Some(tls) = &lf.tls {
            let auth = tls.value.client_auth.as_ref().map(|a| a.value.as_str());
            if let Some(ca) = &tls.value.client_ca
                && matches!(auth, None | Some("none"))
            {
                issues.push(
                    ConfigIssue::warning(
                        format!("{p}.tls.client_ca"),
                        "has no effect while `client_auth` is `none`: client certificates are not asked for",
                    )
                    .hint("set `client_auth: optional` or `required`, or remove `client_ca`")
                    .at(ca),
                );
            }
        }
        if let Some(c) = &lf.connections
            && let (Some(rate), Some(after)) = (&c.min_body_rate, &c.min_body_rate_after)
            && parse_byte_rate(&rate.value) == Ok(0)
        {
            issues.push(
                ConfigIssue::warning(
                    format!("{p}.connections.min_body_rate_after"),
                    "has no effect: `min_body_rate` is 0, so there is no floor to start",
                )
                .at(after),
            );
        }
    }
}

/// Refresh settings of a JWKS read from a file: only a JWKS URL is fetched and refreshed.
fn jwks(file: &ConfigFile, issues: &mut Issues) {
    for (i, j) in file.identity.jwt.iter().enumerate() {
        let Some(k) = &j.value.jwks else { continue };
        let kf = &k.value;
        if kf.file.is_none() || kf.url.is_some() {
            continue;
        }
        for (key, value) in [
            ("refresh", &kf.refresh),
            ("unknown_kid_cooldown", &kf.unknown_kid_cooldown),
            ("stale_if_error", &kf.stale_if_error),
            ("timeout", &kf.timeout),
            ("ca", &kf.ca),
        ] {
            if let Some(value) = value {
                issues.push(
                    ConfigIssue::warning(
                        format!("identity.jwt[{i}].jwks.{key}"),
                        "has no effect with `jwks.file`: only a JWKS `url` is fetched",
                    )
                    .hint("remove it")
                    .at(value),
                );
            }
        }
    }
}

fn webhooks(file: &ConfigFile, issues: &mut Issues) {
    let Some(w) = &file.webhooks else { return };
    let redis = w.dedup_backend.as_ref().is_some_and(|b| b.value == "redis");
    if let Some(url) = &w.redis_url
        && !redis
    {
        issues.push(
            ConfigIssue::warning(
                "webhooks.redis_url",
                "has no effect: `dedup_backend` is `memory`",
            )
            .hint("set `dedup_backend: redis` to share deduplication across gateways, or remove it")
            .at(url),
        );
    }
}

fn shops(file: &ConfigFile, issues: &mut Issues) {
    let Some(t) = &file.tiktok else { return };
    for (i, s) in t.shops.iter().enumerate() {
        let sf = &s.value;
        for (key, expiry, token) in [
            (
                "access_token_expires_at",
                sf.access_token_expires_at,
                sf.access_token.is_some(),
            ),
            (
                "refresh_token_expires_at",
                sf.refresh_token_expires_at,
                sf.refresh_token.is_some(),
            ),
        ] {
            if expiry.is_some() && !token {
                let token = key.trim_end_matches("_expires_at");
                issues.push(
                    ConfigIssue::warning(
                        format!("tiktok.shops[{i}].{key}"),
                        format!("has no effect without `{token}`"),
                    )
                    .at(s),
                );
            }
        }
    }
}

fn unused_upstreams(file: &ConfigFile, issues: &mut Issues) {
    let used: HashSet<&str> = file
        .routes
        .iter()
        .map(|r| r.value.upstream.value.as_str())
        .collect();
    for (name, u) in &file.upstreams {
        if !used.contains(name.as_str()) {
            issues.push(
                ConfigIssue::warning(format!("upstreams.{name}"), "no route uses this upstream")
                    .at(u),
            );
        }
    }
}
