//! The checks behind each clause: functions of the validated config, each returning at least one
//! finding. They read what the gateway will do with the config at runtime (addresses as bound,
//! secrets as resolved, routes as matched), not what a key's name suggests.

use std::collections::BTreeMap;
use std::path::Path;

use super::report::Finding;
use crate::config::{
    ClientAuth, GatewayConfig, JwksSourceConfig, Listener, ListenerRole, RateLimitBackend,
    RouteAuth, SecretGiven, StateBackendConfig, TlsVersion, Upstream,
};

/// Whether a host name or IP literal stays on this machine.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn on_loopback(listener: &Listener) -> bool {
    listener.address.ip().is_loopback()
}

/// Upstreams by name, in name order (the config keeps them in a hash map).
fn upstreams(c: &GatewayConfig) -> BTreeMap<&str, &Upstream> {
    c.upstreams
        .iter()
        .map(|(name, u)| (name.as_str(), u.as_ref()))
        .collect()
}

fn off_host_targets(u: &Upstream) -> Vec<String> {
    u.targets
        .iter()
        .filter(|t| !is_loopback_host(&t.host))
        .map(ToString::to_string)
        .collect()
}

fn auth_methods(auth: &RouteAuth) -> String {
    match auth {
        RouteAuth::None => "none".into(),
        RouteAuth::Rules(r) => {
            let mut m: Vec<String> = r.jwt.iter().map(|j| format!("jwt {j}")).collect();
            match &r.api_keys {
                Some(names) if names.is_empty() => m.push("any api key".into()),
                Some(names) => m.push(format!("api keys {}", names.join(", "))),
                None => {}
            }
            if r.mtls {
                m.push("mtls".into());
            }
            if let Some(app) = &r.tiktok_webhook {
                m.push(format!("TikTok webhook signature of {app}"));
            }
            if let Some(app) = &r.tiktok_developer_webhook {
                m.push(format!("TikTok developer webhook signature of {app}"));
            }
            m.join(" or ")
        }
    }
}

// ---------------------------------------------------------------- §3

pub fn routes_authenticate(c: &GatewayConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut closed = Vec::new();
    for (i, r) in c.routes.iter().enumerate() {
        let listener = c.listener(&r.listener);
        let at = listener.map_or_else(String::new, |l| l.address.to_string());
        match &r.auth {
            RouteAuth::None if listener.is_none_or(|l| !on_loopback(l)) => out.push(Finding::fail(
                format!("routes[{i}].auth"),
                format!(
                    "route `{}` is open (`auth: none`) on listener `{}` ({at}), reachable from outside the host",
                    r.name, r.listener
                ),
                "name the credentials the route accepts (jwt, api_key, mtls or tiktok_webhook) and the scopes it needs",
            )),
            RouteAuth::None => out.push(Finding::warn(
                format!("routes[{i}].auth"),
                format!(
                    "route `{}` is open (`auth: none`) on loopback listener `{}` ({at}): any process on the host may call it",
                    r.name, r.listener
                ),
                "name the credentials the route accepts, or keep the host to trusted processes only",
            )),
            RouteAuth::Rules(_) => closed.push(format!("`{}` ({})", r.name, auth_methods(&r.auth))),
        }
    }
    if !closed.is_empty() {
        out.push(Finding::pass(
            "routes",
            format!(
                "{} of {} routes authenticate their caller: {}",
                closed.len(),
                c.routes.len(),
                closed.join(", ")
            ),
        ));
    }
    if c.routes.is_empty() {
        out.push(Finding::pass(
            "routes",
            "no routes: the gateway serves nothing",
        ));
    }
    out
}

pub fn availability(c: &GatewayConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut limited = 0;
    for (i, r) in c.routes.iter().enumerate() {
        let public = c.listener(&r.listener).is_none_or(|l| !on_loopback(l));
        if !r.rate_limits.is_empty() {
            limited += 1;
        } else if public {
            out.push(Finding::warn(
                format!("routes[{i}]"),
                format!(
                    "route `{}` is reachable from outside the host without a rate limit",
                    r.name
                ),
                "add `rate_limit: { key: client_ip, rate: ... }` (or key by caller)",
            ));
        }
    }
    for (name, u) in upstreams(c) {
        if u.health_check.is_none() {
            out.push(Finding::warn(
                format!("upstreams.{name}"),
                format!("upstream `{name}` has no active health check: a dead target is found only by failing requests"),
                "add `health_check: { type: http, path: /healthz }` (or `type: tcp`)",
            ));
        }
        if u.circuit_breaker.failures == 0 {
            out.push(Finding::warn(
                format!("upstreams.{name}.circuit_breaker.failures"),
                format!("upstream `{name}` has its circuit breaker turned off"),
                "leave `circuit_breaker.failures` at its default (3) or above 0",
            ));
        }
    }
    let probed = c
        .upstreams
        .values()
        .filter(|u| u.health_check.is_some())
        .count();
    out.push(Finding::pass(
        "routes",
        format!(
            "{limited} of {} routes rate-limited; {probed} of {} upstreams probed; every upstream call has connect/read/write timeouts",
            c.routes.len(),
            c.upstreams.len()
        ),
    ));
    out
}

pub fn tiktok_pii_masking(c: &GatewayConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, r) in c.routes.iter().enumerate() {
        let Some(t) = &r.tiktok else { continue };
        match r.privacy.as_ref().and_then(|p| p.pii_scope.as_deref()) {
            Some(scope) => out.push(Finding::pass(
                format!("routes[{i}].privacy.pii_scope"),
                format!(
                    "TikTok route `{}`: callers without scope `{scope}` get order PII masked",
                    r.name
                ),
            )),
            None => out.push(Finding::fail(
                format!("routes[{i}]"),
                format!(
                    "TikTok route `{}` (app `{}`) has no `privacy.pii_scope`: every caller gets buyer PII unmasked",
                    r.name, t.app
                ),
                "add `privacy: { pii_scope: pii:read }` so only callers holding that scope see personal data",
            )),
        }
    }
    if out.is_empty() {
        out.push(Finding::pass(
            "routes",
            "no TikTok egress routes: no TikTok order data passes through",
        ));
    }
    out
}

// ---------------------------------------------------------------- §6

/// `amr` values (RFC 8176) that prove one factor only: accepting one lets a password-only login in.
const SINGLE_FACTOR_AMR: &[&str] = &["pwd", "pin", "kba", "user", "geo", "wia", "rba", "tel"];
/// `amr` values that prove a second factor or several.
const MFA_AMR: &[&str] = &[
    "mfa", "mca", "otp", "hwk", "swk", "sc", "sms", "pop", "face", "fpt", "iris", "retina", "vbm",
];

pub fn admin_mfa(c: &GatewayConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    let admin_listeners: Vec<(usize, &Listener)> = c
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| l.role == ListenerRole::Admin)
        .collect();
    if admin_listeners.is_empty() {
        out.push(Finding::pass(
            "listeners",
            "no admin listener: the gateway offers no administrative access",
        ));
        return out;
    }
    for (_, l) in &admin_listeners {
        let mtls = l
            .tls
            .as_ref()
            .is_some_and(|t| t.client_auth == ClientAuth::Required);
        if !mtls {
            out.push(Finding::fail(
                format!("listeners.{}", l.name),
                format!(
                    "admin listener `{}` does not require a client certificate",
                    l.name
                ),
                "give it `tls` with `client_ca` and `client_auth: required`",
            ));
        }
    }
    let Some(admin) = &c.admin else {
        out.push(Finding::fail(
            "admin",
            "an admin listener without an `admin:` section: no MFA requirement applies",
            "add `admin: { jwt: <issuer>, mfa_methods: [mfa, otp, hwk, swk] }`",
        ));
        return out;
    };
    for m in &admin.mfa_methods {
        if SINGLE_FACTOR_AMR.contains(&m.as_str()) {
            out.push(Finding::fail(
                "admin.mfa_methods",
                format!("`{m}` is accepted as proof of MFA, but it proves a single factor: an administrator may sign in without MFA"),
                "list only values that prove several factors (mfa, otp, hwk, swk)",
            ));
        } else if !MFA_AMR.contains(&m.as_str()) {
            out.push(Finding::warn(
                "admin.mfa_methods",
                format!(
                    "`{m}` is accepted as proof of MFA but is not an RFC 8176 multi-factor method"
                ),
                "make sure the identity provider sets it only after a second factor, or remove it",
            ));
        }
    }
    if admin.scope.trim().is_empty() {
        out.push(Finding::fail(
            "admin.scope",
            "the admin scope is empty: any token of the issuer is an admin token",
            "set `admin.scope` (default `gateway:admin`)",
        ));
    }
    if let Some((i, _)) = c
        .identity
        .jwt
        .iter()
        .enumerate()
        .find(|(_, j)| j.name == admin.jwt_issuer && j.hmac_secret.is_some())
    {
        out.push(Finding::warn(
            format!("identity.jwt[{i}].hmac_secret"),
            format!(
                "admin tokens of `{}` may be HMAC-signed: whoever holds the shared secret can mint a token claiming MFA",
                admin.jwt_issuer
            ),
            "sign admin tokens with the identity provider's private key (jwks) only",
        ));
    }
    if out.is_empty() {
        let names: Vec<String> = admin_listeners
            .iter()
            .map(|(_, l)| format!("`{}` ({})", l.name, l.address))
            .collect();
        out.push(Finding::pass(
            "admin",
            format!(
                "admin listener {} requires a client certificate; tokens from `{}` need scope `{}` and `amr` in [{}]",
                names.join(", "),
                admin.jwt_issuer,
                admin.scope,
                admin.mfa_methods.join(", ")
            ),
        ));
    }
    out
}

pub fn least_privilege(c: &GatewayConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut scoped = 0;
    for (i, r) in c.routes.iter().enumerate() {
        let RouteAuth::Rules(rules) = &r.auth else {
            continue; // open routes are §3's finding
        };
        let named_keys_only = rules.jwt.is_empty()
            && !rules.mtls
            && rules.api_keys.as_ref().is_some_and(|k| !k.is_empty());
        // A webhook's caller is the TikTok app its signature proves; a TikTok route also
        // requires the caller's `tiktok:shop:<id>` scope.
        if !rules.scopes.is_empty()
            || r.auth.webhook().is_some()
            || r.tiktok.is_some()
            || named_keys_only
        {
            scoped += 1;
            continue;
        }
        out.push(Finding::warn(
            format!("routes[{i}].auth"),
            format!(
                "route `{}` requires no scope: any caller with a valid credential ({}) may use it",
                r.name,
                auth_methods(&r.auth)
            ),
            "add `auth.scopes` naming what this route grants",
        ));
    }
    out.push(Finding::pass(
        "routes",
        format!(
            "{scoped} authenticated routes require scopes, a named API key, a TikTok shop scope or a webhook signature; callers never see TikTok app secrets or shop tokens (the gateway injects them)"
        ),
    ));
    out
}

// ---------------------------------------------------------------- §7

/// Fields that accept a literal because the value is no secret (the validator refuses a URL
/// with a password written inline).
fn literal_allowed(path: &str) -> bool {
    path.ends_with(".app_key") || path == "state.url" || path == "rate_limits.url"
}

pub fn secrets_not_inline(c: &GatewayConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    let (mut env, mut file) = (0, 0);
    let mut literals = Vec::new();
    for s in &c.secret_sources {
        match &s.given {
            SecretGiven::Env(_) => env += 1,
            SecretGiven::File(path) => {
                file += 1;
                if let Some(mode) = loose_mode(path) {
                    out.push(Finding::warn(
                        s.path.clone(),
                        format!(
                            "secret file {} may be read by other users (mode {mode:o})",
                            path.display()
                        ),
                        "chmod 600 (or 640 for the gateway's group)",
                    ));
                }
            }
            SecretGiven::Literal if literal_allowed(&s.path) => literals.push(s.path.clone()),
            SecretGiven::Literal => out.push(Finding::fail(
                s.path.clone(),
                "written inline in the YAML: the versioned file holds a credential",
                "move it to the environment or a file and write \"${env:NAME}\" or \"${file:/path}\"",
            )),
        }
    }
    let mut evidence = format!("{env} secret values come from the environment, {file} from files");
    if !literals.is_empty() {
        evidence.push_str(&format!(
            "; literal values only where the field holds no secret: {}",
            literals.join(", ")
        ));
    }
    out.push(Finding::pass("", evidence));
    out
}

/// The mode bits of a secret file when group or others may read or write it.
#[cfg(unix)]
fn loose_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o066 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn loose_mode(_: &Path) -> Option<u32> {
    None
}

pub fn encrypted_in_transit(c: &GatewayConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut summary = Vec::new();
    for (name, u) in upstreams(c) {
        let off_host = off_host_targets(u);
        match (&u.tls, off_host.is_empty()) {
            (Some(t), _) => summary.push(format!("`{name}` over TLS ({})", t.sni)),
            (None, true) => summary.push(format!("`{name}` on loopback")),
            (None, false) => out.push(Finding::fail(
                format!("upstreams.{name}"),
                format!(
                    "upstream `{name}` is sent requests (order data, identities) in plaintext to {}",
                    off_host.join(", ")
                ),
                "add `tls: { sni: <host> }` (and `ca:` for a private CA), or reach it on loopback",
            )),
        }
    }
    if let Some(t) = &c.tiktok {
        let mut apps: Vec<_> = t.apps.values().collect();
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        for app in apps {
            for (key, url) in [("api_base", &app.api_base), ("auth_base", &app.auth_base)] {
                if url.starts_with("http://") {
                    out.push(Finding::warn(
                        format!("tiktok.apps.{}.{key}", app.name),
                        format!("`{url}` is plaintext on loopback: a sandbox, not TikTok"),
                        "use TikTok's https:// base URL in production",
                    ));
                }
            }
        }
    }
    if let RateLimitBackend::Redis(r) = &c.rate_limits.backend {
        let host = redis_host(r.url.expose());
        if !is_loopback_host(&host) && r.key_secret.is_none() {
            out.push(Finding::warn(
                "rate_limits",
                format!("rate-limit keys (caller names, client IPs) go to Redis at `{host}` unencrypted and unhashed"),
                "set `rate_limits.key_secret` so keys are HMACs, or run Redis on loopback",
            ));
        }
    }
    if let StateBackendConfig::Postgres(_) = &c.state.backend {
        summary.push("state on PostgreSQL (TLS required off loopback)".into());
    }
    let jwks_urls = c
        .identity
        .jwt
        .iter()
        .filter(|j| matches!(j.jwks, Some(JwksSourceConfig::Url { .. })))
        .count();
    if jwks_urls > 0 {
        summary.push(format!("{jwks_urls} JWKS URL(s) over https or loopback"));
    }
    if let Some(t) = &c.tiktok {
        let https = t
            .apps
            .values()
            .filter(|a| a.api_base.starts_with("https://") && a.auth_base.starts_with("https://"))
            .count();
        if https > 0 {
            summary.push(format!("{https} TikTok app(s) over https"));
        }
    }
    if summary.is_empty() {
        summary.push("nothing configured leaves the host".into());
    }
    out.push(Finding::pass("", summary.join("; ")));
    out
}

/// The host of a `redis://[user[:password]@]host[:port][/db]` URL (never the password).
fn redis_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host = if authority.starts_with('[') {
        authority
            .split(']')
            .next()
            .unwrap_or("")
            .trim_start_matches('[')
    } else {
        authority.split(':').next().unwrap_or("")
    };
    host.to_string()
}

/// Fewer distinct bytes than this in a 32-byte key: a placeholder (all zeros, a repeated
/// character), not a random key.
const MIN_DISTINCT_KEY_BYTES: usize = 8;

pub fn tokens_at_rest(c: &GatewayConfig) -> Vec<Finding> {
    let Some(t) = &c.tiktok else {
        return vec![Finding::pass("", "no `tiktok:` section: no shop tokens")];
    };
    let Some(store) = &t.token_store else {
        return vec![Finding::pass(
            "tiktok",
            format!(
                "no token store: the {} shops' tokens come from secret references and refreshed ones are kept in memory only, never written",
                t.shops.len()
            ),
        )];
    };
    match crate::tiktok::token_store::decode_key(store.key.expose()) {
        Err(_) => vec![Finding::fail(
            "tiktok.token_store.key",
            "the key is not 32 bytes of hex or base64",
            "generate one: `openssl rand -hex 32`",
        )],
        Ok(key) => {
            let mut distinct: Vec<u8> = key.to_vec();
            distinct.sort_unstable();
            distinct.dedup();
            if distinct.len() < MIN_DISTINCT_KEY_BYTES {
                vec![Finding::fail(
                    "tiktok.token_store.key",
                    format!(
                        "the key has {} distinct byte value(s) out of 32 (a placeholder such as all zeros): the sealed tokens are as good as unencrypted",
                        distinct.len()
                    ),
                    "generate a random key (`openssl rand -hex 32`) and keep it in your secret store",
                )]
            } else {
                vec![Finding::pass(
                    "tiktok.token_store",
                    "refreshed shop tokens are sealed (ChaCha20-Poly1305, shop id as associated data) with a 32-byte key from a secret reference",
                )]
            }
        }
    }
}

// ---------------------------------------------------------------- §8

pub fn detection(c: &GatewayConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    match c.listeners.iter().find(|l| l.role == ListenerRole::Metrics) {
        Some(l) => out.push(Finding::pass(
            format!("listeners.{}", l.name),
            format!(
                "metrics listener `{}` ({}) exposes auth failures, rate-limit refusals and PII-leak counters",
                l.name, l.address
            ),
        )),
        None => out.push(Finding::warn(
            "listeners",
            "no metrics listener: auth failures and API abuse cannot be watched or alerted on",
            "add a `metrics` listener (e.g. 127.0.0.1:9090) and scrape it",
        )),
    }
    let mut evidence = format!(
        "kill switch: {} subject(s) blocked in `identity.blocked_subjects` (applied by reload), plus the runtime block list",
        c.identity.blocked_subjects.len()
    );
    if let Some(t) = &c.tiktok {
        evidence.push_str(&format!(
            "; outbound TikTok calls paced at {} per (app, shop, route), burst {}",
            t.pacing.rate, t.pacing.burst
        ));
    }
    out.push(Finding::pass("identity", evidence));
    out
}

// ---------------------------------------------------------------- §9

/// Folders whose contents do not outlive a reboot (or a container) on common systems.
fn is_scratch_path(path: &Path) -> bool {
    ["/tmp", "/dev/shm", "/run", "/var/run"]
        .iter()
        .any(|p| path.starts_with(p))
        || path.starts_with(std::env::temp_dir())
}

pub fn durable_state(c: &GatewayConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    let webhook_routes: Vec<&str> = c
        .routes
        .iter()
        .filter(|r| r.auth.webhook().is_some())
        .map(|r| r.name.as_str())
        .collect();
    if webhook_routes.is_empty() {
        out.push(Finding::pass(
            "routes",
            "no webhook routes: no webhook to keep",
        ));
    } else {
        let routes = webhook_routes.join(", ");
        match &c.state.backend {
            StateBackendConfig::Postgres(p) => out.push(Finding::pass(
                "state",
                format!("webhooks of {routes} are queued in PostgreSQL (schema `{}`) before TikTok gets its answer", p.schema),
            )),
            StateBackendConfig::Embedded { path: Some(path) } if is_scratch_path(path) => {
                out.push(Finding::fail(
                    "state.path",
                    format!(
                        "the webhook queue of {routes} is in {}, which does not survive a reboot: accepted webhooks would be lost",
                        path.display()
                    ),
                    "keep `state.path` on persistent storage (e.g. /var/lib/tiktok-gateway) or use `backend: postgres`",
                ));
            }
            StateBackendConfig::Embedded { path: Some(path) } => out.push(Finding::pass(
                "state.path",
                format!(
                    "webhooks of {routes} are queued in {} before TikTok gets its answer",
                    path.display()
                ),
            )),
            StateBackendConfig::Embedded { path: None } => out.push(Finding::fail(
                "state",
                format!("the webhook queue of {routes} is in memory: accepted webhooks are lost on restart"),
                "add `state: { backend: embedded, path: ... }` or `backend: postgres`",
            )),
        }
    }
    if let Some(t) = &c.tiktok
        && t.token_store.is_none()
        && t.shops.iter().any(|s| s.refresh_token.is_some())
    {
        out.push(Finding::warn(
            "tiktok",
            "refreshed shop tokens are kept in memory only: after a restart the gateway starts again from the configured tokens, which TikTok may no longer accept",
            "add `tiktok.token_store: { key: \"${env:TOKEN_STORE_KEY}\" }` to keep refreshed tokens sealed in the state store",
        ));
    }
    out
}

// ---------------------------------------------------------------- §10

pub fn secure_listeners(c: &GatewayConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut ok = Vec::new();
    for l in &c.listeners {
        let p = format!("listeners.{}", l.name);
        match &l.tls {
            None if !on_loopback(l) => out.push(Finding::fail(
                p,
                format!(
                    "listener `{}` serves plaintext on {}, off the host (`allow_plaintext: true`)",
                    l.name, l.address
                ),
                "add `tls: { cert, key }`, or bind it to 127.0.0.1",
            )),
            None => ok.push(format!(
                "`{}` plaintext on loopback only ({})",
                l.name, l.address
            )),
            Some(t) => {
                let version = match t.min_version {
                    TlsVersion::V1_2 => "1.2",
                    TlsVersion::V1_3 => "1.3",
                };
                ok.push(format!("`{}` TLS {version}+ ({})", l.name, l.address));
                if l.role == ListenerRole::Metrics
                    && !on_loopback(l)
                    && t.client_auth != ClientAuth::Required
                {
                    out.push(Finding::warn(
                        p,
                        format!(
                            "metrics listener `{}` on {} answers anyone who reaches it (no client certificate required)",
                            l.name, l.address
                        ),
                        "bind it to loopback or require client certificates (`client_auth: required`)",
                    ));
                }
            }
        }
    }
    if !ok.is_empty() {
        out.push(Finding::pass("listeners", ok.join("; ")));
    }
    out
}

// ---------------------------------------------------------------- §11

pub fn tiktok_pinned(c: &GatewayConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut pinned = Vec::new();
    for (i, r) in c.routes.iter().enumerate() {
        let Some(t) = &r.tiktok else { continue };
        let Some(u) = c.upstreams.get(&r.upstream) else {
            continue;
        };
        let off_host = off_host_targets(u);
        match &u.tls {
            Some(tls) => {
                pinned.push(format!("`{}` -> {} (TLS, {})", r.name, r.upstream, tls.sni));
                if tls.ca.is_some() {
                    out.push(Finding::warn(
                        format!("upstreams.{}.tls.ca", r.upstream),
                        format!("TikTok upstream `{}` is verified against a private CA bundle, not the system roots", r.upstream),
                        "remove `ca` unless a TLS-inspecting proxy you control sits in front of TikTok",
                    ));
                }
            }
            None if off_host.is_empty() => out.push(Finding::warn(
                format!("routes[{i}].upstream"),
                format!(
                    "TikTok route `{}` goes to `{}` on loopback without TLS: a sandbox, not TikTok",
                    r.name, r.upstream
                ),
                "point TikTok routes at TikTok's hosts over TLS in production",
            )),
            None => out.push(Finding::fail(
                format!("upstreams.{}", r.upstream),
                format!(
                    "TikTok route `{}` reaches {} without TLS: TikTok's identity is not verified",
                    r.name,
                    off_host.join(", ")
                ),
                "add `tls: { sni: <TikTok host> }` to the upstream",
            )),
        }
        if let Some(app) = c.tiktok.as_ref().and_then(|tk| tk.apps.get(&t.app))
            && app.ca.is_some()
        {
            out.push(Finding::warn(
                format!("tiktok.apps.{}.ca", app.name),
                format!(
                    "TikTok app `{}` trusts a private CA bundle for TikTok's hosts",
                    app.name
                ),
                "remove `ca` unless a TLS-inspecting proxy you control sits in front of TikTok",
            ));
        }
    }
    if pinned.is_empty() && out.is_empty() {
        out.push(Finding::pass("routes", "no TikTok egress routes"));
    } else if !pinned.is_empty() {
        out.push(Finding::pass(
            "routes",
            format!(
                "TikTok routes go only to their app's api_base host, over verified TLS: {}",
                pinned.join(", ")
            ),
        ));
    }
    out
}

// ---------------------------------------------------------------- §13

pub fn versioned_config(c: &GatewayConfig) -> Vec<Finding> {
    let short = c.hash.get(..12).unwrap_or(&c.hash);
    if c.version == "unversioned" {
        vec![Finding::warn(
            "version",
            format!(
                "the file has no `version:`; only its hash ({short}) tells one config from another"
            ),
            "set `version:` and bump it on every change",
        )]
    } else {
        vec![Finding::pass(
            "version",
            format!(
                "version `{}` (hash {short}); validated by the same load and compile as start-up before it is applied",
                c.version
            ),
        )]
    }
}

#[cfg(test)]
mod tests;
