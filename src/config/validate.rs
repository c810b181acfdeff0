//! Turns a parsed `ConfigFile` into the runtime model, collecting every problem with its YAML path
//! and line. Never panics, whatever the input.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde_saphyr::Spanned;

use super::Secret;
use super::diagnostics::{ConfigIssue, Issues, line_of, suggest};
use super::file::*;
use super::runtime::*;
use super::secret_ref::{SecretRef, parse_secret_ref, resolve_secret};
use super::units::{parse_byte_rate, parse_duration, parse_size};

mod health;

/// Context shared by the section validators.
struct V<'a> {
    issues: Issues,
    base_dir: &'a Path,
    /// How each secret-bearing value was given, for the policy report.
    secret_sources: Vec<SecretSource>,
}

impl V<'_> {
    fn duration(&mut self, path: &str, value: &Option<S>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(v) => parse_duration(&v.value).unwrap_or_else(|e| {
                self.issues.at(path, v, e);
                default
            }),
        }
    }

    fn size(&mut self, path: &str, value: &Option<S>, default: usize) -> usize {
        match value {
            None => default,
            Some(v) => parse_size(&v.value).unwrap_or_else(|e| {
                self.issues.at(path, v, e);
                default
            }),
        }
    }

    fn secret(&mut self, path: &str, value: &S) -> Option<Secret> {
        if let Ok(given) = parse_secret_ref(&value.value) {
            self.secret_sources.push(SecretSource {
                path: path.to_string(),
                given: match given {
                    SecretRef::Env(name) => SecretGiven::Env(name.to_string()),
                    SecretRef::File(file) => SecretGiven::File(self.base_dir.join(file)),
                },
            });
        }
        match resolve_secret(&value.value, self.base_dir) {
            Ok(s) => Some(s),
            Err(e) => {
                self.issues.at(path, value, e);
                None
            }
        }
    }

    /// A value that may be a literal or a secret reference (e.g. an app key).
    fn literal_or_secret(&mut self, path: &str, value: &S) -> Option<String> {
        if value.value.trim_start().starts_with("${") {
            self.secret(path, value).map(|s| s.expose().to_string())
        } else if value.value.is_empty() {
            self.issues.at(path, value, "must not be empty");
            None
        } else {
            self.secret_sources.push(SecretSource {
                path: path.to_string(),
                given: SecretGiven::Literal,
            });
            Some(value.value.clone())
        }
    }

    /// A Redis URL, checked now rather than at the first request that needs it. A password in
    /// it makes it a secret, which is never written inline. Messages never echo the URL.
    fn redis_url(&mut self, path: &str, value: &S) -> Option<Secret> {
        let inline = !value.value.trim_start().starts_with("${");
        let url = Secret::new(self.literal_or_secret(path, value)?);
        match redis::IntoConnectionInfo::into_connection_info(url.expose()) {
            Err(_) => {
                self.issues.at(
                    path,
                    value,
                    "not a valid redis:// URL (rediss:// is not supported by this build)",
                );
                None
            }
            Ok(info) if inline && info.redis_settings().password().is_some() => {
                self.issues.at(
                    path,
                    value,
                    "this URL carries a password: secrets are never inline, use \"${env:NAME}\" or \"${file:/path}\"",
                );
                None
            }
            Ok(_) => Some(url),
        }
    }

    fn file(&mut self, path: &str, value: &S) -> PathBuf {
        let full = self.base_dir.join(&value.value);
        if !full.is_file() {
            self.issues.at(
                path,
                value,
                format!("file {} does not exist", full.display()),
            );
        }
        full
    }
}

/// Validates `file`; relative paths are taken from `base_dir`.
pub fn build(
    file: &ConfigFile,
    base_dir: &Path,
    source: PathBuf,
    hash: String,
) -> Result<GatewayConfig, super::ConfigError> {
    let mut v = V {
        issues: Issues::default(),
        base_dir,
        secret_sources: Vec::new(),
    };
    let listeners = listeners(&mut v, file);
    let upstreams = upstreams(&mut v, file);
    let identity = identity(&mut v, &file.identity);
    let tiktok = file.tiktok.as_ref().map(|t| tiktok(&mut v, t));
    let rate_limits = rate_limits(&mut v, file.rate_limits.as_ref());
    let webhooks = file.webhooks.as_ref().map(|w| webhooks(&mut v, w));
    let routes = routes(
        &mut v,
        file,
        &Known {
            listeners: &listeners,
            upstreams: &upstreams,
            tiktok: tiktok.as_ref(),
        },
    );
    // Warnings only for a config without errors: next to an error they may only repeat it
    // (an upstream unused because a route misspells its name).
    if !v.issues.has_errors() {
        super::no_effect::check(file, &mut v.issues);
        shadow_warnings(&mut v, file, &routes);
    }
    let has_webhook_routes = routes.iter().any(|r| r.auth.webhook().is_some());
    if has_webhook_routes && webhooks.is_none() {
        v.issues.add(
            "webhooks",
            None,
            "routes verify TikTok webhooks but no `webhooks:` section configures their delivery",
        );
    }
    let has_token_store = tiktok.as_ref().is_some_and(|t| t.token_store.is_some());
    let needs_durable = if has_webhook_routes {
        Some("webhook routes (their queue and dedupe index)")
    } else if has_token_store {
        Some("`tiktok.token_store` (refreshed tokens)")
    } else {
        None
    };
    let state = state(&mut v, file, needs_durable);
    let admin = file.admin.as_ref().map(|a| admin(&mut v, a, &identity));
    if listeners.iter().any(|l| l.role == ListenerRole::Admin) && admin.is_none() {
        v.issues.add(
            "admin",
            None,
            "an admin listener needs an `admin:` section (JWT issuer for MFA tokens)",
        );
    }
    let audit = audit(&mut v, file.audit.as_ref(), admin.is_some());
    let logging = logging(&mut v, file.logging.as_ref());
    let tracing = file
        .telemetry
        .as_ref()
        .and_then(|t| t.tracing.as_ref())
        .and_then(|t| tracing(&mut v, t));
    let privacy = privacy(&mut v, file.privacy.as_ref());
    let server = server(&mut v, file.server.as_ref());
    let proxies: Vec<&str> = file
        .trusted_proxies
        .iter()
        .map(|c| c.value.as_str())
        .collect();
    let trusted_proxies = crate::limit::TrustedProxies::parse(&proxies).unwrap_or_else(|e| {
        v.issues.add(
            "trusted_proxies",
            file.trusted_proxies.first().and_then(line_of),
            e.to_string(),
        );
        crate::limit::TrustedProxies::default()
    });
    let forwarded_headers = match &file.forwarded_headers {
        None => crate::inspect::ForwardedStyle::default(),
        Some(style) => crate::inspect::ForwardedStyle::parse(&style.value).unwrap_or_else(|| {
            v.issues.at(
                "forwarded_headers",
                style,
                "expected `x-forwarded` or `forwarded`",
            );
            crate::inspect::ForwardedStyle::default()
        }),
    };
    let config = GatewayConfig {
        version: file
            .version
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_else(|| "unversioned".into()),
        hash,
        source,
        listeners,
        upstreams,
        routes,
        identity,
        tiktok,
        rate_limits,
        logging,
        tracing,
        privacy,
        webhooks,
        state,
        admin,
        audit,
        server,
        trusted_proxies,
        forwarded_headers,
        secret_sources: std::mem::take(&mut v.secret_sources),
        warnings: Vec::new(),
    };
    let warnings = v.issues.finish()?;
    Ok(GatewayConfig { warnings, ..config })
}

fn listeners(v: &mut V, file: &ConfigFile) -> Vec<Listener> {
    let mut out = Vec::new();
    let mut addresses = HashSet::new();
    if file.listeners.is_empty() {
        v.issues
            .add("listeners", None, "at least one listener is needed");
    }
    for (name, l) in &file.listeners {
        let p = format!("listeners.{name}");
        let line = line_of(l);
        let lf = &l.value;
        // A bad address is reported, and the rest of the listener still checked; the checks
        // that depend on the address are skipped rather than guessed.
        let address = lf.address.value.parse::<SocketAddr>().ok();
        if address.is_none() {
            v.issues.push(
                ConfigIssue::error(
                    format!("{p}.address"),
                    "not an IP:port address (e.g. 127.0.0.1:8080)",
                )
                .maybe_hint(address_hint(&lf.address.value))
                .at(&lf.address),
            );
        }
        if let Some(address) = address
            && !addresses.insert(address)
        {
            v.issues.at(
                format!("{p}.address"),
                &lf.address,
                "address used by another listener",
            );
        }
        let role = match lf.role.as_ref().map(|r| r.value.as_str()) {
            Some("proxy") => ListenerRole::Proxy,
            Some("admin") => ListenerRole::Admin,
            Some("metrics") => ListenerRole::Metrics,
            Some(other) => {
                v.issues.add(
                    format!("{p}.role"),
                    lf.role.as_ref().and_then(line_of),
                    format!("unknown role `{other}` (proxy, admin or metrics)"),
                );
                ListenerRole::Proxy
            }
            None => match name.as_str() {
                "admin" => ListenerRole::Admin,
                "metrics" => ListenerRole::Metrics,
                _ => ListenerRole::Proxy,
            },
        };
        let tls = lf.tls.as_ref().map(|t| listener_tls(v, &p, t));
        let loopback = address.is_some_and(|a| a.ip().is_loopback());
        if tls.is_none() && address.is_some() && !loopback && !lf.allow_plaintext {
            v.issues.add(
                p.clone(),
                line,
                "plaintext listener on a non-loopback address: add `tls:` or set `allow_plaintext: true` (policy §10)",
            );
        }
        if role == ListenerRole::Admin
            && !matches!(&tls, Some(t) if t.client_auth == ClientAuth::Required)
        {
            v.issues.add(
                p.clone(),
                line,
                "the admin listener needs TLS with `client_auth: required` (policy §6: MFA over mTLS)",
            );
        }
        let mut connections = ConnectionLimits::default();
        // Every internal caller shares 127.0.0.1: a per-IP cap there would cap the whole fleet.
        if loopback {
            connections.max_per_ip = 0;
        }
        if let Some(c) = &lf.connections {
            let d = ConnectionLimits::default();
            connections.max = c.max.unwrap_or(d.max);
            connections.max_per_ip = c.max_per_ip.unwrap_or(connections.max_per_ip);
            connections.header_timeout = v.duration(
                &format!("{p}.connections.header_timeout"),
                &c.header_timeout,
                d.header_timeout,
            );
            connections.body_timeout = v.duration(
                &format!("{p}.connections.body_timeout"),
                &c.body_timeout,
                d.body_timeout,
            );
            if let Some(rate) = &c.min_body_rate {
                match parse_byte_rate(&rate.value) {
                    Ok(n) => connections.min_body_rate.min_bytes_per_sec = n,
                    Err(e) => v
                        .issues
                        .at(format!("{p}.connections.min_body_rate"), rate, e),
                }
            }
            connections.min_body_rate.grace = v.duration(
                &format!("{p}.connections.min_body_rate_after"),
                &c.min_body_rate_after,
                d.min_body_rate.grace,
            );
            connections.idle_timeout = v.duration(
                &format!("{p}.connections.idle_timeout"),
                &c.idle_timeout,
                d.idle_timeout,
            );
            for (key, written, value) in [
                (
                    "header_timeout",
                    &c.header_timeout,
                    connections.header_timeout,
                ),
                ("body_timeout", &c.body_timeout, connections.body_timeout),
                ("idle_timeout", &c.idle_timeout, connections.idle_timeout),
            ] {
                if let Some(w) = written
                    && value.is_zero()
                {
                    v.issues.at(
                        format!("{p}.connections.{key}"),
                        w,
                        "must be above 0 (a timeout of 0 would refuse every request)",
                    );
                }
            }
            if c.max == Some(0) || c.max_per_ip == Some(0) {
                v.issues.add(
                    format!("{p}.connections"),
                    line,
                    "connection caps must be above 0",
                );
            }
        }
        let host_names: Vec<String> = lf
            .hosts
            .iter()
            .map(|h| h.value.to_ascii_lowercase())
            .collect();
        let hosts = if host_names.is_empty() {
            crate::inspect::HostAllowList::any()
        } else {
            crate::inspect::HostAllowList::new(&host_names).unwrap_or_else(|e| {
                v.issues.add(format!("{p}.hosts"), line, e.to_string());
                crate::inspect::HostAllowList::any()
            })
        };
        let Some(address) = address else { continue };
        out.push(Listener {
            name: name.clone(),
            address,
            role,
            tls,
            hosts,
            connections,
        });
    }
    out
}

/// The usual fix of a listener address that does not parse.
fn address_hint(text: &str) -> Option<String> {
    let (host, port) = text.rsplit_once(':')?;
    if port.parse::<u16>().is_err() {
        return Some("the port is a number from 1 to 65535".into());
    }
    if host.parse::<std::net::IpAddr>().is_err() && !host.starts_with('[') {
        return Some(format!(
            "a listener binds an IP address, not a name: `127.0.0.1:{port}` for loopback, `0.0.0.0:{port}` for every interface"
        ));
    }
    None
}

fn listener_tls(v: &mut V, p: &str, t: &Spanned<TlsFile>) -> ListenerTls {
    let tf = &t.value;
    let cert = v.file(&format!("{p}.tls.cert"), &tf.cert);
    let key = v.file(&format!("{p}.tls.key"), &tf.key);
    let min_version = match tf.min_version.as_ref().map(|s| s.value.as_str()) {
        None | Some("1.2") => TlsVersion::V1_2,
        Some("1.3") => TlsVersion::V1_3,
        Some(other) => {
            v.issues.add(
                format!("{p}.tls.min_version"),
                tf.min_version.as_ref().and_then(line_of),
                format!("`{other}`: only \"1.2\" or \"1.3\" (older TLS is never offered)"),
            );
            TlsVersion::V1_2
        }
    };
    let client_auth = match tf.client_auth.as_ref().map(|s| s.value.as_str()) {
        None | Some("none") => ClientAuth::None,
        Some("optional") => ClientAuth::Optional,
        Some("required") => ClientAuth::Required,
        Some(other) => {
            v.issues.add(
                format!("{p}.tls.client_auth"),
                tf.client_auth.as_ref().and_then(line_of),
                format!("`{other}`: use none, optional or required"),
            );
            ClientAuth::None
        }
    };
    let client_ca = tf
        .client_ca
        .as_ref()
        .map(|ca| v.file(&format!("{p}.tls.client_ca"), ca));
    if client_auth != ClientAuth::None && client_ca.is_none() {
        v.issues.at(
            format!("{p}.tls.client_ca"),
            t,
            "client_auth needs a client_ca bundle to verify client certificates",
        );
    }
    ListenerTls {
        cert,
        key,
        min_version,
        client_ca,
        client_auth,
        http2: tf.http2.unwrap_or(true),
    }
}

fn upstreams(v: &mut V, file: &ConfigFile) -> HashMap<String, Arc<Upstream>> {
    let mut out = HashMap::new();
    for (name, u) in &file.upstreams {
        let p = format!("upstreams.{name}");
        let uf = &u.value;
        let mut targets = Vec::new();
        if uf.targets.is_empty() {
            v.issues
                .at(format!("{p}.targets"), u, "at least one target is needed");
        }
        for (i, t) in uf.targets.iter().enumerate() {
            match parse_target(&t.value) {
                Ok(target) => targets.push(target),
                Err(e) => v.issues.at(format!("{p}.targets[{i}]"), t, e),
            }
        }
        let to = uf.timeouts.as_ref();
        let tp = format!("{p}.timeouts");
        let connect_timeout = v.duration(
            &format!("{tp}.connect"),
            &to.and_then(|t| t.connect.clone()),
            Duration::from_secs(1),
        );
        let read_timeout = v.duration(
            &format!("{tp}.read"),
            &to.and_then(|t| t.read.clone()),
            Duration::from_secs(10),
        );
        let write_timeout = v.duration(
            &format!("{tp}.write"),
            &to.and_then(|t| t.write.clone()),
            Duration::from_secs(10),
        );
        let idle_timeout = v.duration(
            &format!("{tp}.idle"),
            &to.and_then(|t| t.idle.clone()),
            Duration::from_secs(60),
        );
        let tls = uf.tls.as_ref().map(|t| UpstreamTls {
            sni: t.value.sni.value.clone(),
            ca: t
                .value
                .ca
                .as_ref()
                .map(|ca| v.file(&format!("{p}.tls.ca"), ca)),
        });
        let health_check = uf
            .health_check
            .as_ref()
            .map(|h| health::health_check(v, &p, h));
        let circuit_breaker = health::circuit_breaker(v, &p, uf.circuit_breaker.as_ref());
        out.insert(
            name.clone(),
            Arc::new(Upstream {
                name: name.clone(),
                targets,
                connect_timeout,
                read_timeout,
                write_timeout,
                idle_timeout,
                tls,
                retries: uf.retries.unwrap_or(1),
                health_check,
                circuit_breaker,
            }),
        );
    }
    out
}

/// `host:port` or `[v6]:port`.
pub fn parse_target(text: &str) -> Result<Target, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(Target {
            host: addr.ip().to_string(),
            port: addr.port(),
        });
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("`{text}` is not host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{text}`: `{port}` is not a port"))?;
    let valid_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if !valid_host || port == 0 {
        return Err(format!("`{text}` is not host:port"));
    }
    Ok(Target {
        host: host.to_ascii_lowercase(),
        port,
    })
}

fn identity(v: &mut V, file: &IdentityFile) -> IdentityConfig {
    let mut out = IdentityConfig::default();
    for (i, s) in file.blocked_subjects.iter().enumerate() {
        if s.value.trim().is_empty() {
            v.issues.at(
                format!("identity.blocked_subjects[{i}]"),
                s,
                "must not be empty",
            );
        } else {
            out.blocked_subjects.insert(s.value.clone());
        }
    }
    let mut names = HashSet::new();
    for (i, j) in file.jwt.iter().enumerate() {
        let p = format!("identity.jwt[{i}]");
        let jf = &j.value;
        if !names.insert(jf.name.value.clone()) {
            v.issues
                .at(format!("{p}.name"), &jf.name, "duplicate issuer name");
        }
        if jf.audiences.is_empty() {
            v.issues.at(
                format!("{p}.audiences"),
                j,
                "at least one audience is needed (tokens without a matching `aud` are refused)",
            );
        }
        let mut algorithms = Vec::new();
        for (k, a) in jf.algorithms.iter().enumerate() {
            match parse_algorithm(&a.value) {
                Ok(alg) => algorithms.push(alg),
                Err(e) => v.issues.at(format!("{p}.algorithms[{k}]"), a, e),
            }
        }
        if algorithms.is_empty() {
            v.issues.at(
                format!("{p}.algorithms"),
                j,
                "list the algorithms to accept",
            );
        }
        let hmac_secret = jf
            .hmac_secret
            .as_ref()
            .and_then(|s| v.secret(&format!("{p}.hmac_secret"), s));
        let uses_hmac = algorithms.iter().any(|a| {
            matches!(
                a,
                jsonwebtoken::Algorithm::HS256
                    | jsonwebtoken::Algorithm::HS384
                    | jsonwebtoken::Algorithm::HS512
            )
        });
        if uses_hmac && jf.hmac_secret.is_none() {
            v.issues.at(
                format!("{p}.algorithms"),
                j,
                "HMAC algorithms need `hmac_secret`; a public key is never an HMAC secret",
            );
        }
        let jwks = jf.jwks.as_ref().and_then(|k| jwks(v, &p, k));
        if jwks.is_none() && jf.hmac_secret.is_none() {
            v.issues
                .at(p.clone(), j, "needs `jwks` (file or url) or `hmac_secret`");
        }
        let max_token_size = v.size(&format!("{p}.max_token_size"), &jf.max_token_size, 8 << 10);
        let leeway = v.duration(&format!("{p}.leeway"), &jf.leeway, Duration::from_secs(30));
        let max_token_age =
            jf.max_token_age
                .as_ref()
                .and_then(|age| match parse_duration(&age.value) {
                    Ok(d) if d >= Duration::from_secs(1) => Some(d),
                    Ok(_) => {
                        v.issues.at(
                            format!("{p}.max_token_age"),
                            age,
                            "must be at least 1s (leave it out for no age limit)",
                        );
                        None
                    }
                    Err(e) => {
                        v.issues.at(format!("{p}.max_token_age"), age, e);
                        None
                    }
                });
        out.jwt.push(JwtIssuerConfig {
            name: jf.name.value.clone(),
            issuer: jf.issuer.value.clone(),
            audiences: jf.audiences.iter().map(|a| a.value.clone()).collect(),
            jwks,
            hmac_secret,
            algorithms,
            leeway,
            max_token_age,
            scopes_claim: jf
                .scopes_claim
                .as_ref()
                .map(|s| s.value.clone())
                .unwrap_or_else(|| "scope".into()),
            max_token_size,
        });
    }
    let mut key_names = HashSet::new();
    for (i, k) in file.api_keys.iter().enumerate() {
        let p = format!("identity.api_keys[{i}]");
        let kf = &k.value;
        if !key_names.insert(kf.name.value.clone()) {
            v.issues
                .at(format!("{p}.name"), &kf.name, "duplicate API key name");
        }
        let Some(hex_text) = v.literal_or_secret(&format!("{p}.sha256"), &kf.sha256) else {
            continue;
        };
        let mut sha256 = [0u8; 32];
        if hex::decode_to_slice(hex_text.trim(), &mut sha256).is_err() {
            v.issues.at(
                format!("{p}.sha256"),
                &kf.sha256,
                "must be the SHA-256 of the key as 64 hex characters",
            );
            continue;
        }
        out.api_keys.push(ApiKeyConfig {
            name: kf.name.value.clone(),
            sha256,
            scopes: kf.scopes.iter().map(|s| s.value.clone()).collect(),
        });
    }
    for m in &file.mtls {
        out.mtls.push(MtlsIdentityConfig {
            name: m.value.name.value.clone(),
            scopes: m.value.scopes.iter().map(|s| s.value.clone()).collect(),
        });
    }
    out
}

fn parse_algorithm(text: &str) -> Result<jsonwebtoken::Algorithm, String> {
    use jsonwebtoken::Algorithm::*;
    Ok(match text {
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "EdDSA" => EdDSA,
        "HS256" => HS256,
        "HS384" => HS384,
        "HS512" => HS512,
        "none" => return Err("`none` is never accepted".into()),
        other => return Err(format!("unknown algorithm `{other}`")),
    })
}

fn jwks(v: &mut V, p: &str, k: &Spanned<JwksFile>) -> Option<JwksSourceConfig> {
    let kf = &k.value;
    match (&kf.file, &kf.url) {
        (Some(file), None) => Some(JwksSourceConfig::File(
            v.file(&format!("{p}.jwks.file"), file),
        )),
        (None, Some(url)) => {
            let u = url.value.as_str();
            if !(u.starts_with("https://") || is_loopback_http(u)) {
                v.issues.at(
                    format!("{p}.jwks.url"),
                    url,
                    "JWKS must be fetched over https (http only to loopback)",
                );
            }
            Some(JwksSourceConfig::Url {
                url: url.value.clone(),
                refresh: v.duration(
                    &format!("{p}.jwks.refresh"),
                    &kf.refresh,
                    Duration::from_secs(300),
                ),
                unknown_kid_cooldown: v.duration(
                    &format!("{p}.jwks.unknown_kid_cooldown"),
                    &kf.unknown_kid_cooldown,
                    Duration::from_secs(30),
                ),
                stale_if_error: v.duration(
                    &format!("{p}.jwks.stale_if_error"),
                    &kf.stale_if_error,
                    Duration::from_secs(3600),
                ),
                timeout: v.duration(
                    &format!("{p}.jwks.timeout"),
                    &kf.timeout,
                    Duration::from_secs(5),
                ),
                ca: kf.ca.as_ref().map(|ca| v.file(&format!("{p}.jwks.ca"), ca)),
            })
        }
        _ => {
            v.issues.at(
                format!("{p}.jwks"),
                k,
                "give exactly one of `file` or `url`",
            );
            None
        }
    }
}

/// `http://127.x.x.x:port/...` or `http://localhost...`: the only places plaintext may go.
pub fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

fn tiktok(v: &mut V, file: &TikTokFile) -> TikTokConfig {
    let mut apps = HashMap::new();
    for (name, a) in &file.apps {
        let p = format!("tiktok.apps.{name}");
        let af = &a.value;
        let app_key = v.literal_or_secret(&format!("{p}.app_key"), &af.app_key);
        let app_secret = v.secret(&format!("{p}.app_secret"), &af.app_secret);
        let urls = [
            ("api_base", Some(&af.api_base)),
            ("auth_base", af.auth_base.as_ref()),
            ("authorize_url", af.authorize_url.as_ref()),
        ];
        for (key, url) in urls {
            let Some(url) = url else { continue };
            let u = url.value.as_str();
            if !(u.starts_with("https://") || is_loopback_http(u))
                || u.ends_with('/')
                || u.contains(['?', '#'])
            {
                v.issues.at(
                    format!("{p}.{key}"),
                    url,
                    "must be an https:// URL without a trailing slash, query or fragment (http only to loopback)",
                );
            }
        }
        let service_id = af.service_id.as_ref().map(|s| s.value.clone());
        let authorize_url = match (&af.authorize_url, &service_id) {
            (Some(u), _) => u.value.clone(),
            (None, Some(_)) => DEFAULT_AUTHORIZE_URL.to_owned(),
            (None, None) => LEGACY_AUTHORIZE_URL.to_owned(),
        };
        let ca = af.ca.as_ref().map(|ca| v.file(&format!("{p}.ca"), ca));
        if let (Some(app_key), Some(app_secret)) = (app_key, app_secret) {
            apps.insert(
                name.clone(),
                TikTokApp {
                    name: name.clone(),
                    app_key,
                    app_secret,
                    api_base: af.api_base.value.clone(),
                    auth_base: af
                        .auth_base
                        .as_ref()
                        .map(|u| u.value.clone())
                        .unwrap_or_else(|| DEFAULT_AUTH_BASE.to_owned()),
                    authorize_url,
                    service_id,
                    ca,
                },
            );
        }
    }
    let mut shops = Vec::new();
    let mut ids = HashSet::new();
    for (i, s) in file.shops.iter().enumerate() {
        let p = format!("tiktok.shops[{i}]");
        let sf = &s.value;
        if !ids.insert(sf.id.value.clone()) {
            v.issues.at(format!("{p}.id"), &sf.id, "duplicate shop id");
        }
        if !file.apps.contains_key(&sf.app.value) {
            let apps: Vec<&str> = file.apps.keys().map(String::as_str).collect();
            unknown(
                v,
                format!("{p}.app"),
                &sf.app,
                ("TikTok app", "tiktok.apps"),
                &sf.app.value,
                &apps,
            );
        }
        let access_token = sf
            .access_token
            .as_ref()
            .and_then(|t| v.secret(&format!("{p}.access_token"), t));
        let refresh_token = sf
            .refresh_token
            .as_ref()
            .and_then(|t| v.secret(&format!("{p}.refresh_token"), t));
        if sf.access_token.is_none() && sf.refresh_token.is_none() && file.token_store.is_none() {
            v.issues.at(
                p.clone(),
                s,
                "a shop needs `access_token`, `refresh_token` or a `tiktok.token_store`",
            );
        }
        shops.push(TikTokShop {
            id: sf.id.value.clone(),
            app: sf.app.value.clone(),
            cipher: sf.cipher.value.clone(),
            access_token,
            access_token_expires_at: sf.access_token_expires_at,
            refresh_token,
            refresh_token_expires_at: sf.refresh_token_expires_at,
        });
    }
    let token_store = file.token_store.as_ref().and_then(|ts| {
        let key = v.secret("tiktok.token_store.key", &ts.value.key)?;
        if let Err(e) = crate::tiktok::token_seal::TokenSealer::new(&key) {
            v.issues
                .at("tiktok.token_store.key", &ts.value.key, e.to_string());
        }
        Some(TokenStoreConfig {
            path: ts.value.path.as_ref().map(|p| v.base_dir.join(&p.value)),
            key,
        })
    });
    let mut pacing = crate::limit::PacerSettings::default();
    if let Some(pf) = &file.pacing {
        if let Some(r) = &pf.rate {
            match r.value.parse::<crate::limit::Rate>() {
                Ok(rate) => pacing.rate = rate,
                Err(e) => v.issues.at("tiktok.pacing.rate", r, e.to_string()),
            }
        }
        if let Some(b) = pf.burst {
            match std::num::NonZeroU32::new(b) {
                Some(b) => pacing.burst = b,
                None => v
                    .issues
                    .add("tiktok.pacing.burst", None, "burst must be above 0"),
            }
        }
    }
    TikTokConfig {
        apps,
        shops,
        token_store,
        token_refresh_margin: v.duration(
            "tiktok.token_refresh_margin",
            &file.token_refresh_margin,
            Duration::from_secs(24 * 3600),
        ),
        pacing,
        developer_apps: file
            .developer_apps
            .iter()
            .filter_map(|(name, d)| {
                let p = format!("tiktok.developer_apps.{name}");
                let secret = v.secret(&format!("{p}.client_secret"), &d.value.client_secret)?;
                let tolerance = v.duration(
                    &format!("{p}.tolerance"),
                    &d.value.tolerance,
                    Duration::from_secs(300),
                );
                Some((name.clone(), (secret, tolerance)))
            })
            .collect(),
    }
}

fn rate_limits(v: &mut V, file: Option<&RateLimitsFile>) -> RateLimitsConfig {
    let Some(f) = file else {
        return RateLimitsConfig {
            backend: RateLimitBackend::Local,
            max_keys: 100_000,
        };
    };
    let backend = match f.backend.value.as_str() {
        "local" => {
            // Settings that only the Redis backend reads would be silently ignored.
            for (key, value) in [
                ("url", &f.url),
                ("on_backend_error", &f.on_backend_error),
                ("retry_interval", &f.retry_interval),
                ("timeout", &f.timeout),
                ("connect_timeout", &f.connect_timeout),
                ("key_prefix", &f.key_prefix),
                ("key_secret", &f.key_secret),
            ] {
                if let Some(value) = value {
                    v.issues.at(
                        format!("rate_limits.{key}"),
                        value,
                        "only used with `backend: redis`",
                    );
                }
            }
            if let Some(n) = &f.pool_size {
                v.issues.at(
                    "rate_limits.pool_size",
                    n,
                    "only used with `backend: redis`",
                );
            }
            RateLimitBackend::Local
        }
        "redis" => match &f.url {
            Some(url) => match v.redis_url("rate_limits.url", url) {
                Some(u) => RateLimitBackend::Redis(redis_backend(v, f, u)),
                None => RateLimitBackend::Local,
            },
            None => {
                v.issues.at(
                    "rate_limits.url",
                    &f.backend,
                    "the redis backend needs `url`",
                );
                RateLimitBackend::Local
            }
        },
        other => {
            v.issues.at(
                "rate_limits.backend",
                &f.backend,
                format!("`{other}`: use local or redis"),
            );
            RateLimitBackend::Local
        }
    };
    RateLimitsConfig {
        backend,
        max_keys: f.max_keys.unwrap_or(100_000),
    }
}

fn redis_backend(v: &mut V, f: &RateLimitsFile, url: Secret) -> crate::limit::RedisSettings {
    let d = crate::limit::RedisSettings::new(url);
    let on_backend_error = match &f.on_backend_error {
        None => d.on_backend_error,
        Some(mode) => mode
            .value
            .parse()
            .unwrap_or_else(|e: crate::limit::UnknownFallback| {
                v.issues
                    .at("rate_limits.on_backend_error", mode, e.to_string());
                d.on_backend_error
            }),
    };
    let key_prefix = match &f.key_prefix {
        None => d.key_prefix.clone(),
        Some(p) if p.value.trim().is_empty() || p.value.chars().any(char::is_whitespace) => {
            v.issues.at(
                "rate_limits.key_prefix",
                p,
                "must be non-empty and contain no spaces",
            );
            d.key_prefix.clone()
        }
        Some(p) => p.value.clone(),
    };
    let timeout = v.duration("rate_limits.timeout", &f.timeout, d.timeout);
    let connect_timeout = v.duration(
        "rate_limits.connect_timeout",
        &f.connect_timeout,
        d.connect_timeout,
    );
    let retry_interval = v.duration(
        "rate_limits.retry_interval",
        &f.retry_interval,
        d.retry_interval,
    );
    for (key, written, value) in [
        ("timeout", &f.timeout, timeout),
        ("connect_timeout", &f.connect_timeout, connect_timeout),
        ("retry_interval", &f.retry_interval, retry_interval),
    ] {
        if let Some(w) = written
            && value.is_zero()
        {
            v.issues
                .at(format!("rate_limits.{key}"), w, "must be above 0");
        }
    }
    let pool_size = match &f.pool_size {
        None => d.pool_size,
        Some(n) if (1..=64).contains(&n.value) => n.value,
        Some(n) => {
            v.issues
                .at("rate_limits.pool_size", n, "must be between 1 and 64");
            d.pool_size
        }
    };
    let key_secret = f
        .key_secret
        .as_ref()
        .and_then(|s| v.secret("rate_limits.key_secret", s));
    crate::limit::RedisSettings {
        key_secret,
        url: d.url,
        key_prefix,
        timeout,
        connect_timeout,
        retry_interval,
        pool_size,
        on_backend_error,
    }
}

fn webhooks(v: &mut V, f: &WebhooksFile) -> WebhooksConfig {
    // On failure an issue is recorded, so this placeholder never reaches a running gateway.
    let forward_secret = v
        .secret("webhooks.forward_secret", &f.forward_secret)
        .unwrap_or_else(|| Secret::new(""));
    for (key, value) in [
        ("dedup_backend", &f.dedup_backend),
        ("redis_url", &f.redis_url),
    ] {
        if let Some(value) = value {
            v.issues.at(
                format!("webhooks.{key}"),
                value,
                "no longer used: replays are deduplicated in the state store (`state:`), in the same transaction as the queue insert; remove this key",
            );
        }
    }
    let dead_letter_after = v.duration(
        "webhooks.dead_letter_after",
        &f.dead_letter_after,
        Duration::from_secs(72 * 3600),
    );
    if dead_letter_after < Duration::from_secs(1) {
        v.issues.add(
            "webhooks.dead_letter_after",
            f.dead_letter_after.as_ref().and_then(line_of),
            "must be at least 1s",
        );
    }
    WebhooksConfig {
        dedup_ttl: v.duration(
            "webhooks.dedup_ttl",
            &f.dedup_ttl,
            Duration::from_secs(72 * 3600),
        ),
        forward_secret,
        max_retry_backoff: v.duration(
            "webhooks.max_retry_backoff",
            &f.max_retry_backoff,
            Duration::from_secs(300),
        ),
        dead_letter_after,
    }
}

/// `state:`, with `webhooks.queue_path` as the older name of the embedded file. What needs to
/// be durable (webhook routes, a token store) needs a file or a database.
fn state(v: &mut V, file: &ConfigFile, needs_durable: Option<&'static str>) -> StateConfig {
    let defaults = StateConfig::default();
    let queue_path = file.webhooks.as_ref().and_then(|w| w.queue_path.as_ref());
    let Some(f) = &file.state else {
        let path = queue_path.map(|p| v.base_dir.join(&p.value));
        if path.is_none()
            && let Some(what) = needs_durable
        {
            v.issues.add(
                "state",
                None,
                format!("{what} need durable state: add `state: {{ backend: embedded, path: ... }}` (or `backend: postgres`)"),
            );
        }
        return StateConfig {
            backend: StateBackendConfig::Embedded { path },
            ..defaults
        };
    };
    if let Some(q) = queue_path {
        v.issues.at(
            "webhooks.queue_path",
            q,
            "the queue lives in the state store: with a `state:` section, remove `webhooks.queue_path` (an embedded file is `state.path`)",
        );
    }
    let lease = v.duration("state.lease", &f.lease, defaults.lease);
    let poll_interval = v.duration(
        "state.poll_interval",
        &f.poll_interval,
        defaults.poll_interval,
    );
    let timeout = v.duration("state.timeout", &f.timeout, defaults.timeout);
    for (key, value, at_least) in [
        ("lease", &f.lease, Duration::from_secs(1)),
        ("poll_interval", &f.poll_interval, Duration::from_millis(10)),
        ("timeout", &f.timeout, Duration::from_millis(10)),
    ] {
        let got = match key {
            "lease" => lease,
            "poll_interval" => poll_interval,
            _ => timeout,
        };
        if got < at_least {
            v.issues.add(
                format!("state.{key}"),
                value.as_ref().and_then(line_of),
                format!("must be at least {}", humantime::format_duration(at_least)),
            );
        }
    }
    let backend_name = f
        .backend
        .as_ref()
        .map(|b| b.value.as_str())
        .unwrap_or("embedded");
    let postgres_only: [(&str, bool, Option<u64>); 5] = [
        ("url", f.url.is_some(), f.url.as_ref().and_then(line_of)),
        (
            "schema",
            f.schema.is_some(),
            f.schema.as_ref().and_then(line_of),
        ),
        ("pool_size", f.pool_size.is_some(), None),
        (
            "connect_timeout",
            f.connect_timeout.is_some(),
            f.connect_timeout.as_ref().and_then(line_of),
        ),
        ("tls", f.tls.is_some(), None),
    ];
    let backend = match backend_name {
        "embedded" => {
            for (key, set, line) in postgres_only {
                if set {
                    v.issues.add(
                        format!("state.{key}"),
                        line,
                        "applies to `backend: postgres` only",
                    );
                }
            }
            let path = f.path.as_ref().map(|p| v.base_dir.join(&p.value));
            if path.is_none()
                && let Some(what) = needs_durable
            {
                v.issues.add(
                    "state.path",
                    f.backend.as_ref().and_then(line_of),
                    format!("{what} need durable state: set `path` (or use `backend: postgres`)"),
                );
            }
            StateBackendConfig::Embedded { path }
        }
        "postgres" => {
            if let Some(p) = &f.path {
                v.issues
                    .at("state.path", p, "applies to `backend: embedded` only");
            }
            match postgres(v, f) {
                Some(settings) => StateBackendConfig::Postgres(settings),
                None => StateBackendConfig::Embedded { path: None },
            }
        }
        other => {
            v.issues.add(
                "state.backend",
                f.backend.as_ref().and_then(line_of),
                format!("`{other}`: use embedded or postgres"),
            );
            StateBackendConfig::Embedded { path: None }
        }
    };
    StateConfig {
        backend,
        lease,
        poll_interval,
        timeout,
    }
}

fn postgres(v: &mut V, f: &StateFile) -> Option<PostgresSettings> {
    let Some(url_ref) = &f.url else {
        v.issues.add(
            "state.url",
            f.backend.as_ref().and_then(line_of),
            "`backend: postgres` needs `url` (a secret reference such as \"${env:DATABASE_URL}\")",
        );
        return None;
    };
    let inline = !url_ref.value.trim_start().starts_with("${");
    let url = Secret::new(v.literal_or_secret("state.url", url_ref)?);
    let schema = f
        .schema
        .as_ref()
        .map(|s| s.value.clone())
        .unwrap_or_else(|| "tiktok_gateway".into());
    let valid_schema = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !schema.as_bytes()[0].is_ascii_digit()
        && !schema.starts_with("pg_");
    if !valid_schema {
        v.issues.add(
            "state.schema",
            f.schema.as_ref().and_then(line_of),
            "a schema name is 1-63 of a-z, 0-9 and _, not starting with a digit or pg_",
        );
    }
    let pool_size = f.pool_size.unwrap_or(8);
    if pool_size == 0 {
        v.issues.add("state.pool_size", None, "must be at least 1");
    }
    let connect_timeout = v.duration(
        "state.connect_timeout",
        &f.connect_timeout,
        Duration::from_secs(5),
    );
    let ca = f
        .tls
        .as_ref()
        .and_then(|t| t.ca.as_ref())
        .map(|ca| v.file("state.tls.ca", ca));
    let settings = PostgresSettings {
        url,
        schema,
        pool_size,
        connect_timeout,
        ca,
    };
    // Messages never echo the URL: it may carry a password.
    match crate::state::postgres::pg_config(&settings) {
        Err(e) => {
            v.issues.at("state.url", url_ref, e);
            None
        }
        Ok(config) => {
            if inline && config.get_password().is_some() {
                v.issues.at(
                    "state.url",
                    url_ref,
                    "this URL carries a password: secrets are never inline, use \"${env:NAME}\" or \"${file:/path}\"",
                );
                return None;
            }
            let tls = config.get_ssl_mode() == tokio_postgres::config::SslMode::Require;
            if !tls && !crate::state::postgres::all_local(&config) {
                v.issues.at(
                    "state.url",
                    url_ref,
                    "a PostgreSQL server outside loopback must be reached over TLS: add `sslmode=require` to the URL (policy §7)",
                );
                return None;
            }
            Some(settings)
        }
    }
}

fn admin(v: &mut V, f: &AdminFile, identity: &IdentityConfig) -> AdminConfig {
    if !identity.jwt.iter().any(|j| j.name == f.jwt.value) {
        let issuers: Vec<&str> = identity.jwt.iter().map(|j| j.name.as_str()).collect();
        unknown(
            v,
            "admin.jwt".into(),
            &f.jwt,
            ("JWT issuer", "identity.jwt"),
            &f.jwt.value,
            &issuers,
        );
    }
    AdminConfig {
        jwt_issuer: f.jwt.value.clone(),
        scope: f.scope.clone().unwrap_or_else(|| "gateway:admin".into()),
        mfa_methods: if f.mfa_methods.is_empty() {
            ["mfa", "otp", "hwk", "swk"].map(String::from).to_vec()
        } else {
            f.mfa_methods.clone()
        },
    }
}

fn logging(v: &mut V, f: Option<&LoggingFile>) -> LoggingConfig {
    let mut out = LoggingConfig {
        access_log: LogTarget::Stdout,
        application_log: LogTarget::Stdout,
        level: "info".into(),
    };
    let Some(f) = f else { return out };
    let base = v.base_dir;
    let target = |t: &str| match t {
        "stdout" => LogTarget::Stdout,
        "stderr" => LogTarget::Stderr,
        path => LogTarget::File(base.join(path)),
    };
    if let Some(format) = f.format.as_ref().filter(|f| f.value != "json") {
        v.issues
            .at("logging.format", format, "only `json` is supported");
    }
    if let Some(t) = &f.access_log {
        out.access_log = target(&t.value);
    }
    if let Some(t) = &f.application_log {
        out.application_log = target(&t.value);
    }
    if let Some(level) = &f.level {
        // The same parse start-up uses: a filter `validate` accepts always installs.
        if let Err(e) = crate::privacy::LogFilter::parse(&level.value) {
            v.issues.at("logging.level", level, e.to_string());
        }
        out.level = level.value.clone();
    }
    out
}

/// `audit:`. An admin API without a signing key is refused: admin actions are what the signed
/// checkpoints exist to protect.
fn audit(v: &mut V, f: Option<&AuditFile>, has_admin: bool) -> AuditConfig {
    let mut out = AuditConfig::default();
    let Some(f) = f else {
        if has_admin {
            v.issues.add(
                "audit.signing_key",
                None,
                "an admin API needs `audit.signing_key` (a secret reference to a 32-byte Ed25519 seed, e.g. from `openssl rand -hex 32`) to sign the audit log's checkpoints",
            );
        }
        return out;
    };
    match &f.signing_key {
        Some(k) => {
            if let Some(secret) = v.secret("audit.signing_key", k) {
                match crate::audit::checkpoint::Signer::from_secret(&secret) {
                    Ok(_) => out.signing_key = Some(secret),
                    Err(e) => v.issues.at("audit.signing_key", k, e),
                }
            }
        }
        None if has_admin => v.issues.add(
            "audit.signing_key",
            None,
            "an admin API needs `audit.signing_key` (a secret reference to a 32-byte Ed25519 seed) to sign the audit log's checkpoints",
        ),
        None => {}
    }
    if let Some(n) = f.checkpoint_every {
        if n == 0 {
            v.issues
                .add("audit.checkpoint_every", None, "must be at least 1");
        } else {
            out.checkpoint_every = n;
        }
    }
    out.checkpoint_interval = v.duration(
        "audit.checkpoint_interval",
        &f.checkpoint_interval,
        out.checkpoint_interval,
    );
    if out.checkpoint_interval < Duration::from_secs(1) {
        v.issues
            .add("audit.checkpoint_interval", None, "must be at least 1s");
    }
    out
}

fn tracing(v: &mut V, f: &TracingFile) -> Option<TracingConfig> {
    let p = "telemetry.tracing";
    let endpoint = f.otlp_endpoint.value.trim().to_owned();
    let endpoint_ok = match reqwest::Url::parse(&endpoint) {
        Ok(url) => {
            matches!(url.scheme(), "http" | "https")
                && url.host().is_some()
                && url.username().is_empty()
                && url.password().is_none()
                && url.fragment().is_none()
        }
        Err(_) => false,
    };
    if !endpoint_ok {
        v.issues.at(
            format!("{p}.otlp_endpoint"),
            &f.otlp_endpoint,
            "expected an http(s) URL with a host and no credentials, e.g. `http://otel-collector:4318/v1/traces`",
        );
    }
    let sampling_ratio = match &f.sampling_ratio {
        None => 1.0,
        Some(r) => match r.value.trim().parse::<f64>() {
            Ok(x) if (0.0..=1.0).contains(&x) => x,
            _ => {
                v.issues.at(
                    format!("{p}.sampling_ratio"),
                    r,
                    "expected a number from 0 to 1",
                );
                1.0
            }
        },
    };
    let service_name = match &f.service_name {
        None => "tiktok-gateway".to_owned(),
        Some(n) if n.value.trim().is_empty() => {
            v.issues
                .at(format!("{p}.service_name"), n, "must not be empty");
            String::new()
        }
        Some(n) => n.value.trim().to_owned(),
    };
    let timeout = v.duration(&format!("{p}.timeout"), &f.timeout, Duration::from_secs(10));
    if timeout.is_zero()
        && let Some(t) = &f.timeout
    {
        v.issues
            .at(format!("{p}.timeout"), t, "must be more than 0s");
    }
    let max_queue_size = match &f.max_queue_size {
        None => 2048,
        Some(n) if n.value == 0 || n.value > 1_000_000 => {
            v.issues.at(
                format!("{p}.max_queue_size"),
                n,
                "expected 1 to 1000000 spans",
            );
            2048
        }
        Some(n) => n.value,
    };
    let mut headers = Vec::new();
    for (name, value) in &f.headers {
        let path = format!("{p}.headers.{name}");
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            v.issues.at(&path, value, "not a valid header name");
            continue;
        }
        if let Some(resolved) = v.literal_or_secret(&path, value) {
            if http::HeaderValue::from_str(&resolved).is_err() {
                // Never echo the value: it may be a secret.
                v.issues.at(&path, value, "not a valid header value");
                continue;
            }
            headers.push((name.clone(), Secret::new(resolved)));
        }
    }
    let callers: Vec<&str> = f.trusted_callers.iter().map(|c| c.value.as_str()).collect();
    let trusted_callers = crate::limit::TrustedProxies::parse(&callers).unwrap_or_else(|e| {
        v.issues.add(
            format!("{p}.trusted_callers"),
            f.trusted_callers.first().and_then(line_of),
            e.to_string(),
        );
        crate::limit::TrustedProxies::default()
    });
    endpoint_ok.then_some(TracingConfig {
        endpoint,
        sampling_ratio,
        service_name,
        timeout,
        max_queue_size,
        headers,
        trusted_callers,
    })
}

fn privacy(v: &mut V, f: Option<&PrivacyFile>) -> PrivacyConfig {
    let Some(f) = f else {
        return PrivacyConfig::default();
    };
    PrivacyConfig {
        pseudonym_key: f
            .pseudonym_key
            .as_ref()
            .and_then(|k| v.secret("privacy.pseudonym_key", k)),
        extra_pii_fields: f.extra_pii_fields.iter().map(|s| s.value.clone()).collect(),
        extra_safe_fields: f
            .extra_safe_fields
            .iter()
            .map(|s| s.value.clone())
            .collect(),
    }
}

fn server(v: &mut V, f: Option<&ServerFile>) -> ServerConfig {
    let default_threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    match f {
        None => ServerConfig {
            threads: default_threads,
            grace_period: Duration::from_secs(10),
            drain_delay: Duration::ZERO,
            state_dir: super::runtime::default_state_dir(),
        },
        Some(f) => ServerConfig {
            threads: f.threads.unwrap_or(default_threads).max(1),
            grace_period: v.duration(
                "server.grace_period",
                &f.grace_period,
                Duration::from_secs(10),
            ),
            drain_delay: v.duration("server.drain_delay", &f.drain_delay, Duration::ZERO),
            state_dir: f
                .state_dir
                .as_ref()
                .map(|d| v.base_dir.join(&d.value))
                .unwrap_or_else(super::runtime::default_state_dir),
        },
    }
}

/// What routes may refer to.
struct Known<'a> {
    listeners: &'a [Listener],
    upstreams: &'a HashMap<String, Arc<Upstream>>,
    tiktok: Option<&'a TikTokConfig>,
}

/// The names a file declares, valid or not. A reference to a declared name whose own section
/// failed its checks is not reported again: that section's error is the one to fix.
struct Declared<'a> {
    listeners: Vec<&'a str>,
    upstreams: Vec<&'a str>,
    jwt: Vec<&'a str>,
    api_keys: Vec<&'a str>,
    apps: Vec<&'a str>,
    developer_apps: Vec<&'a str>,
}

impl<'a> Declared<'a> {
    fn of(file: &'a ConfigFile) -> Self {
        let tiktok = file.tiktok.as_ref();
        Declared {
            listeners: file.listeners.keys().map(String::as_str).collect(),
            upstreams: file.upstreams.keys().map(String::as_str).collect(),
            jwt: file
                .identity
                .jwt
                .iter()
                .map(|j| j.value.name.value.as_str())
                .collect(),
            api_keys: file
                .identity
                .api_keys
                .iter()
                .map(|k| k.value.name.value.as_str())
                .collect(),
            apps: tiktok
                .map(|t| t.apps.keys().map(String::as_str).collect())
                .unwrap_or_default(),
            developer_apps: tiktok
                .map(|t| t.developer_apps.keys().map(String::as_str).collect())
                .unwrap_or_default(),
        }
    }
}

/// What a reference names and where such names are declared, e.g. ("upstream", "upstreams").
type Named<'a> = (&'a str, &'a str);

/// `unknown <what> `name``, with the closest declared name (or where to declare one) as a hint.
fn unknown<T>(
    v: &mut V,
    path: String,
    at: &Spanned<T>,
    (what, section): Named,
    name: &str,
    declared: &[&str],
) {
    let hint = suggest(name, declared.iter().copied()).unwrap_or_else(|| {
        if declared.is_empty() {
            format!("declare it under `{section}`")
        } else {
            format!("declared under `{section}`: {}", declared.join(", "))
        }
    });
    v.issues.push(
        ConfigIssue::error(path, format!("unknown {what} `{name}`"))
            .hint(hint)
            .at(at),
    );
}

fn routes(v: &mut V, file: &ConfigFile, known: &Known) -> Vec<Arc<Route>> {
    let declared = Declared::of(file);
    let mut out = Vec::new();
    let mut names = HashSet::new();

    for (i, r) in file.routes.iter().enumerate() {
        let p = format!("routes[{i}]");
        let rf = &r.value;
        if !names.insert(rf.name.value.clone()) {
            v.issues
                .at(format!("{p}.name"), &rf.name, "duplicate route name");
        }
        match known.listeners.iter().find(|l| l.name == rf.listener.value) {
            None if declared.listeners.contains(&rf.listener.value.as_str()) => {}
            None => unknown(
                v,
                format!("{p}.listener"),
                &rf.listener,
                ("listener", "listeners"),
                &rf.listener.value,
                &declared.listeners,
            ),
            Some(l) if l.role != ListenerRole::Proxy => v.issues.at(
                format!("{p}.listener"),
                &rf.listener,
                "routes go on proxy listeners, not admin or metrics ones",
            ),
            Some(_) => {}
        }
        if !declared.upstreams.contains(&rf.upstream.value.as_str()) {
            unknown(
                v,
                format!("{p}.upstream"),
                &rf.upstream,
                ("upstream", "upstreams"),
                &rf.upstream.value,
                &declared.upstreams,
            );
        }
        let path = match (&rf.match_.path, &rf.match_.path_prefix) {
            (Some(exact), None) => Some((PathMatch::Exact(exact.value.clone()), exact)),
            (None, Some(prefix)) => Some((PathMatch::Prefix(prefix.value.clone()), prefix)),
            _ => {
                v.issues.at(
                    format!("{p}.match"),
                    r,
                    "give exactly one of `path` or `path_prefix`",
                );
                None
            }
        };
        if let Some((_, at)) = path.as_ref().filter(|(_, at)| !at.value.starts_with('/')) {
            v.issues
                .at(format!("{p}.match"), at, "paths start with `/`");
        }
        let mut methods = Vec::new();
        for (k, m) in rf.match_.methods.iter().enumerate() {
            match Method::from_bytes(m.value.to_ascii_uppercase().as_bytes()) {
                Ok(method) => methods.push(method),
                Err(_) => v
                    .issues
                    .at(format!("{p}.match.methods[{k}]"), m, "not an HTTP method"),
            }
        }
        let auth = route_auth(v, &p, r, &declared);
        let tiktok = rf.tiktok.as_ref().map(|t| {
            if !declared.apps.contains(&t.value.app.as_str()) {
                unknown(
                    v,
                    format!("{p}.tiktok.app"),
                    t,
                    ("TikTok app", "tiktok.apps"),
                    &t.value.app,
                    &declared.apps,
                );
            }
            RouteTikTok {
                app: t.value.app.clone(),
                shop_header: t
                    .value
                    .shop_header
                    .clone()
                    .unwrap_or_else(|| "x-tiktok-shop-id".into())
                    .to_ascii_lowercase(),
            }
        });
        let tiktok_authorization = rf
            .tiktok_authorization
            .as_ref()
            .map(|t| authorization_route(v, &p, r, t, &auth, known, &declared));
        let privacy = rf.privacy.as_ref().map(|pf| RoutePrivacy {
            pii_scope: pf.pii_scope.clone(),
            on_leak: match pf.on_leak.as_ref().map(|s| s.value.as_str()) {
                None | Some("log") => OnLeak::Log,
                Some("block") => OnLeak::Block,
                Some(other) => {
                    v.issues.add(
                        format!("{p}.privacy.on_leak"),
                        pf.on_leak.as_ref().and_then(line_of),
                        format!("`{other}`: use log or block"),
                    );
                    OnLeak::Log
                }
            },
        });
        let mut rate_limits = Vec::new();
        if let Some(list) = &rf.rate_limit {
            for (k, rl) in list.as_slice().iter().enumerate() {
                let rp = format!("{p}.rate_limit[{k}]");
                match crate::limit::LimitSpec::parse(
                    &rl.value.key,
                    &rl.value.rate,
                    rl.value.burst.map(u64::from),
                ) {
                    Ok(spec) => rate_limits.push(RateLimitRule { spec }),
                    Err(e) => v.issues.at(rp, rl, e.to_string()),
                }
            }
        }
        let (limits, content_types, max_response_body) = route_limits(v, &p, rf.limits.as_ref());
        let is_webhook = auth.webhook().is_some();
        let inspection = route_inspection(
            v,
            &p,
            r,
            &methods,
            (limits, &content_types),
            tiktok.is_some(),
            is_webhook,
        );
        let rewrite_path = rf.rewrite.as_ref().map(|rw| {
            if !rw.path.value.starts_with('/') {
                v.issues.at(
                    format!("{p}.rewrite.path"),
                    &rw.path,
                    "paths start with `/`",
                );
            }
            rw.path.value.clone()
        });
        // TikTok routes are sent by the gateway to the app's api_base; the route's upstream must
        // name that same host so the config says where calls go in one consistent way (§11).
        // The authorization callback lists the authorized shops through its upstream too.
        let api_app = tiktok
            .as_ref()
            .map(|t| &t.app)
            .or(tiktok_authorization.as_ref().map(|t| &t.app));
        if let (Some(app_name), Some(up)) = (api_app, known.upstreams.get(&rf.upstream.value))
            && let Some(app) = known.tiktok.and_then(|k| k.apps.get(app_name))
        {
            let host = app
                .api_base
                .split("://")
                .nth(1)
                .unwrap_or("")
                .split('/')
                .next()
                .unwrap_or("");
            let pinned = up.targets.iter().any(|tg| {
                host == format!("{}:{}", tg.host, tg.port)
                    || (host == tg.host && (tg.port == 443 || tg.port == 80))
            });
            if !pinned {
                v.issues.at(
                    format!("{p}.upstream"),
                    &rf.upstream,
                    format!(
                        "a TikTok route's upstream must target the app's api_base host `{host}`"
                    ),
                );
            }
        }
        // Only TikTok routes (whole responses) and webhook routes (whole bodies) pass through the
        // privacy stage; on a plain proxied route the setting would silently do nothing.
        if rf.privacy.is_some() && tiktok.is_none() && !is_webhook {
            v.issues.at(
                format!("{p}.privacy"),
                r,
                "`privacy` applies to TikTok and webhook routes only; a proxied route's responses are not masked or scanned",
            );
        } else if privacy.as_ref().is_some_and(|p| p.on_leak == OnLeak::Block) && tiktok.is_none() {
            v.issues.at(
                format!("{p}.privacy.on_leak"),
                r,
                "`block` needs a TikTok route (the gateway holds those responses whole); use `log` here",
            );
        }
        if rf.forward_authorization && tiktok.is_some() {
            v.issues.at(
                format!("{p}.forward_authorization"),
                r,
                "the caller's Authorization is never forwarded to TikTok",
            );
        }
        kind_applicability(v, &p, r, &auth, tiktok.is_some(), &rate_limits);
        let Some((path, _)) = path else { continue };
        out.push(Arc::new(Route {
            name: rf.name.value.clone(),
            line: super::diagnostics::line_of(r),
            listener: rf.listener.value.clone(),
            host: rf
                .match_
                .host
                .as_ref()
                .map(|h| h.value.to_ascii_lowercase()),
            methods,
            path,
            auth,
            rate_limits,
            tiktok,
            tiktok_authorization,
            privacy,
            upstream: rf.upstream.value.clone(),
            rewrite_path,
            max_response_body,
            inspection,
            forward_authorization: rf.forward_authorization,
        }));
    }
    out
}

/// `routes[].tiktok_authorization`: the app exists, and the route is nothing else. The seller's
/// browser arrives from TikTok's redirect with no credentials (`auth: none`): the single-use
/// `state` is the protection, so the route must be reachable over TLS (loopback excepted), and
/// the tokens it receives are sealed with `tiktok.token_store.key`.
fn authorization_route(
    v: &mut V,
    p: &str,
    r: &Spanned<RouteFile>,
    t: &Spanned<RouteTikTokAuthorizationFile>,
    auth: &RouteAuth,
    known: &Known,
    declared: &Declared,
) -> RouteTikTokAuthorization {
    let rf = &r.value;
    let at = format!("{p}.tiktok_authorization");
    if !declared.apps.contains(&t.value.app.as_str()) {
        unknown(
            v,
            format!("{at}.app"),
            t,
            ("TikTok app", "tiktok.apps"),
            &t.value.app,
            &declared.apps,
        );
    }
    if rf.tiktok.is_some() {
        v.issues.at(
            at.clone(),
            t,
            "a route is either a TikTok egress route (`tiktok`) or the authorization callback (`tiktok_authorization`), not both",
        );
    }
    if !matches!(auth, RouteAuth::None) {
        v.issues.at(
            format!("{p}.auth"),
            r,
            "the authorization callback is opened by the seller's browser, which carries no credentials: write `auth: none` (the single-use `state` protects it)",
        );
    }
    if known.tiktok.is_some_and(|k| k.token_store.is_none()) {
        v.issues.at(
            at.clone(),
            t,
            "the authorization callback stores the shops' tokens sealed: configure `tiktok.token_store`",
        );
    }
    if let Some(listener) = known.listeners.iter().find(|l| l.name == rf.listener.value)
        && listener.tls.is_none()
        && !listener.address.ip().is_loopback()
    {
        v.issues.at(
            format!("{p}.listener"),
            &rf.listener,
            "the authorization callback carries a seller's auth code: serve it on a TLS listener",
        );
    }
    for (set, key) in [
        (rf.forward_authorization, "forward_authorization"),
        (rf.rewrite.is_some(), "rewrite"),
    ] {
        if set {
            v.issues.at(
                format!("{p}.{key}"),
                r,
                "the authorization callback answers the seller itself; nothing is forwarded",
            );
        }
    }
    RouteTikTokAuthorization {
        app: t.value.app.clone(),
    }
}

/// Warns about each route an earlier route takes every request of. Only for a config without
/// errors, so every route of the file is in `routes`, in file order.
fn shadow_warnings(v: &mut V, file: &ConfigFile, routes: &[Arc<Route>]) {
    use super::shadowing::{RouteKey, shadowed};
    let keys: Vec<RouteKey> = routes
        .iter()
        .map(|r| RouteKey {
            listener: &r.listener,
            host: r.host.as_deref(),
            path: &r.path,
            methods: &r.methods,
        })
        .collect();
    for (later, takers) in shadowed(&keys) {
        let Some(route) = routes.get(later) else {
            continue;
        };
        let i = later;
        let names: Vec<String> = takers
            .iter()
            .filter_map(|t| Some((t, routes.get(*t)?)))
            .map(|(j, r)| format!("routes[{j}] (`{}`)", r.name))
            .collect();
        let mut issue = ConfigIssue::warning(
            format!("routes[{i}].match"),
            format!(
                "route `{}` can never match: {} before it already take{} all its requests",
                route.name,
                names.join(" and "),
                if names.len() == 1 { "s" } else { "" }
            ),
        )
        .hint("move the more specific route first, or narrow the earlier one");
        if let Some(r) = file.routes.get(i) {
            issue = issue.at(r);
        }
        v.issues.push(issue);
    }
}

/// The inspection settings of a route. Content types default to JSON, plus multipart on TikTok
/// routes (product image uploads).
/// Route settings that cannot act on the route's kind are refused here, never accepted and
/// ignored: each kind runs the same stages, but some inputs do not exist on some kinds.
fn kind_applicability(
    v: &mut V,
    p: &str,
    r: &Spanned<RouteFile>,
    auth: &RouteAuth,
    tiktok: bool,
    rate_limits: &[RateLimitRule],
) {
    use crate::limit::KeyKind;
    let rf = &r.value;
    let webhook = auth.webhook().is_some();
    let accepts_api_keys = matches!(auth, RouteAuth::Rules(rules) if rules.api_keys.is_some());
    for (k, rule) in rate_limits.iter().enumerate() {
        let at = format!("{p}.rate_limit[{k}].key");
        match &rule.spec.key {
            KeyKind::ApiKey if !accepts_api_keys => v.issues.at(
                at,
                r,
                "`api_key` keys by the caller's API key, but this route does not accept API keys; key by `caller`, `client_ip`, `header` or `route`",
            ),
            KeyKind::Shop if !tiktok => v.issues.at(
                at,
                r,
                "`shop` keys by the TikTok shop a caller names, which only TikTok routes have",
            ),
            _ => {}
        }
    }
    if webhook {
        if let RouteAuth::Rules(rules) = auth
            && !rules.scopes.is_empty()
        {
            v.issues.at(
                format!("{p}.auth.scopes"),
                r,
                "a webhook's caller is the TikTok app its signature proves, which holds no scopes; remove `scopes`",
            );
        }
        if rf.forward_authorization {
            v.issues.at(
                format!("{p}.forward_authorization"),
                r,
                "a webhook route answers TikTok itself and delivers from its queue; nothing is forwarded",
            );
        }
        if let Some(limit) = rf
            .limits
            .as_ref()
            .and_then(|l| l.max_response_body.as_ref())
        {
            v.issues.at(
                format!("{p}.limits.max_response_body"),
                limit,
                "a webhook route's answer is the gateway's own acknowledgement; there is no upstream response to bound",
            );
        }
    }
}

fn route_inspection(
    v: &mut V,
    p: &str,
    r: &Spanned<RouteFile>,
    methods: &[Method],
    (limits, content_types): (crate::inspect::RequestLimits, &[String]),
    tiktok: bool,
    webhook: bool,
) -> crate::inspect::InspectionSettings {
    use crate::inspect::{ContentTypeAllowList, InspectionSettings, MethodAllowList};
    let mut out = InspectionSettings {
        limits,
        ..InspectionSettings::default()
    };
    if !methods.is_empty() {
        let names: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
        match MethodAllowList::new(&names) {
            Ok(m) => out.methods = m,
            Err(e) => v.issues.at(format!("{p}.match.methods"), r, e.to_string()),
        }
    }
    let types: Vec<String> = if !content_types.is_empty() {
        content_types.to_vec()
    } else if tiktok && !webhook {
        vec!["application/json".into(), "multipart/form-data".into()]
    } else {
        vec!["application/json".into()]
    };
    match ContentTypeAllowList::new(&types) {
        Ok(c) => out.content_types = c,
        Err(e) => v
            .issues
            .at(format!("{p}.limits.content_types"), r, e.to_string()),
    }
    out.json_body = types.iter().any(|t| t == "application/json");
    if let Err(e) = out.validate() {
        v.issues.at(format!("{p}.limits"), r, e.to_string());
    }
    out
}

fn route_auth(v: &mut V, p: &str, r: &Spanned<RouteFile>, declared: &Declared) -> RouteAuth {
    let Some(auth) = &r.value.auth else {
        v.issues.at(
            format!("{p}.auth"),
            r,
            "every route needs `auth` (write `auth: none` to open it on purpose)",
        );
        return RouteAuth::None;
    };
    match &auth.value {
        AuthFile::Keyword(k) if k == "none" => RouteAuth::None,
        AuthFile::Keyword(k) => {
            v.issues.at(
                format!("{p}.auth"),
                auth,
                format!("`{k}`: write `none` or a map such as {{ jwt: issuer, scopes: [..] }}"),
            );
            RouteAuth::None
        }
        AuthFile::Rules(rules) => {
            let jwt: Vec<String> = rules
                .jwt
                .as_ref()
                .map(|j| j.as_slice().to_vec())
                .unwrap_or_default();
            for name in &jwt {
                if !declared.jwt.contains(&name.as_str()) {
                    unknown(
                        v,
                        format!("{p}.auth.jwt"),
                        auth,
                        ("JWT issuer", "identity.jwt"),
                        name,
                        &declared.jwt,
                    );
                }
            }
            let api_keys = match &rules.api_key {
                None | Some(ApiKeyChoice::Any(false)) => None,
                Some(ApiKeyChoice::Any(true)) => Some(Vec::new()),
                Some(ApiKeyChoice::Names(names)) => {
                    for name in names {
                        if !declared.api_keys.contains(&name.as_str()) {
                            unknown(
                                v,
                                format!("{p}.auth.api_key"),
                                auth,
                                ("API key", "identity.api_keys"),
                                name,
                                &declared.api_keys,
                            );
                        }
                    }
                    Some(names.clone())
                }
            };
            if let Some(app) = &rules.tiktok_webhook {
                if !declared.apps.contains(&app.as_str()) {
                    unknown(
                        v,
                        format!("{p}.auth.tiktok_webhook"),
                        auth,
                        ("TikTok app", "tiktok.apps"),
                        app,
                        &declared.apps,
                    );
                }
                if !jwt.is_empty() || api_keys.is_some() || rules.mtls {
                    v.issues.at(
                        format!("{p}.auth"),
                        auth,
                        "a TikTok webhook route takes only `tiktok_webhook`",
                    );
                }
            }
            if let Some(app) = &rules.tiktok_developer_webhook {
                if !declared.developer_apps.contains(&app.as_str()) {
                    unknown(
                        v,
                        format!("{p}.auth.tiktok_developer_webhook"),
                        auth,
                        ("TikTok developer app", "tiktok.developer_apps"),
                        app,
                        &declared.developer_apps,
                    );
                }
                if !jwt.is_empty()
                    || api_keys.is_some()
                    || rules.mtls
                    || rules.tiktok_webhook.is_some()
                {
                    v.issues.at(
                        format!("{p}.auth"),
                        auth,
                        "a TikTok developer webhook route takes only `tiktok_developer_webhook`",
                    );
                }
            }
            if jwt.is_empty()
                && api_keys.is_none()
                && !rules.mtls
                && rules.tiktok_webhook.is_none()
                && rules.tiktok_developer_webhook.is_none()
            {
                v.issues.at(
                    format!("{p}.auth"),
                    auth,
                    "name at least one method: jwt, api_key, mtls or tiktok_webhook",
                );
            }
            RouteAuth::Rules(AuthRules {
                jwt,
                api_keys,
                mtls: rules.mtls,
                tiktok_webhook: rules.tiktok_webhook.clone(),
                tiktok_developer_webhook: rules.tiktok_developer_webhook.clone(),
                scopes: rules.scopes.clone(),
            })
        }
    }
}

/// The route's request limits (defaults from `RequestLimits`, the one place they are written),
/// its own content types as given, and its response ceiling.
fn route_limits(
    v: &mut V,
    p: &str,
    f: Option<&RouteLimitsFile>,
) -> (crate::inspect::RequestLimits, Vec<String>, usize) {
    let d = crate::inspect::RequestLimits::default();
    let Some(f) = f else {
        return (d, Vec::new(), DEFAULT_MAX_RESPONSE_BODY);
    };
    let limits = crate::inspect::RequestLimits {
        max_body_bytes: v.size(
            &format!("{p}.limits.max_body"),
            &f.max_body,
            d.max_body_bytes as usize,
        ) as u64,
        max_json_depth: f
            .json_max_depth
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            .unwrap_or(d.max_json_depth),
        max_header_count: f.max_headers.unwrap_or(d.max_header_count),
        max_header_bytes: v.size(
            &format!("{p}.limits.max_header_bytes"),
            &f.max_header_bytes,
            d.max_header_bytes,
        ),
        max_uri_bytes: v.size(&format!("{p}.limits.max_uri"), &f.max_uri, d.max_uri_bytes),
        max_query_params: f.max_query_params.unwrap_or(d.max_query_params),
    };
    let content_types = f
        .content_types
        .iter()
        .map(|s| s.value.to_ascii_lowercase())
        .collect();
    let max_response_body = v.size(
        &format!("{p}.limits.max_response_body"),
        &f.max_response_body,
        DEFAULT_MAX_RESPONSE_BODY,
    );
    (limits, content_types, max_response_body)
}

/// Largest upstream response a route passes on unless `limits.max_response_body` says otherwise.
const DEFAULT_MAX_RESPONSE_BODY: usize = 8 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("127.0.0.1:9001").unwrap(),
            Target {
                host: "127.0.0.1".into(),
                port: 9001
            }
        );
        assert_eq!(
            parse_target("Open-API.example.com:443").unwrap().host,
            "open-api.example.com"
        );
        assert!(parse_target("nohost").is_err());
        assert!(parse_target("a b:80").is_err());
        assert!(parse_target("x:0").is_err());
    }

    fn with_tracing(tracing: &str) -> Result<GatewayConfig, crate::config::ConfigError> {
        let yaml = format!(
            "listeners:\n  public:\n    address: 127.0.0.1:8080\ntelemetry:\n  tracing:\n{tracing}"
        );
        crate::config::load_str(&yaml, Path::new("."), Path::new("gateway.yaml"))
    }

    #[test]
    fn tracing_settings_are_checked_with_their_yaml_paths() {
        let ok = with_tracing(
            "    otlp_endpoint: http://collector:4318/v1/traces\n    sampling_ratio: 0.25\n    trusted_callers: [10.0.0.0/8]\n    headers:\n      x-api-key: abc\n",
        )
        .unwrap();
        let t = ok.tracing.unwrap();
        assert_eq!(t.sampling_ratio, 0.25);
        assert_eq!(t.service_name, "tiktok-gateway");
        assert!(t.trusted_callers.is_trusted("10.1.2.3".parse().unwrap()));
        for (bad, path) in [
            (
                "    otlp_endpoint: collector:4318\n",
                "telemetry.tracing.otlp_endpoint",
            ),
            (
                "    otlp_endpoint: http://u:p@collector:4318/v1/traces\n",
                "telemetry.tracing.otlp_endpoint",
            ),
            (
                "    otlp_endpoint: http://collector:4318/v1/traces\n    sampling_ratio: 1.5\n",
                "telemetry.tracing.sampling_ratio",
            ),
            (
                "    otlp_endpoint: http://collector:4318/v1/traces\n    sampling_ratio: -0.1\n",
                "telemetry.tracing.sampling_ratio",
            ),
            (
                "    otlp_endpoint: http://collector:4318/v1/traces\n    trusted_callers: [not-a-cidr]\n",
                "telemetry.tracing.trusted_callers",
            ),
            (
                "    otlp_endpoint: http://collector:4318/v1/traces\n    timeout: 0s\n",
                "telemetry.tracing.timeout",
            ),
        ] {
            let err = with_tracing(bad).unwrap_err();
            assert!(err.issues.iter().any(|i| i.path == path), "{bad}: {err}");
        }
        let off = crate::config::load_str(
            "listeners:\n  public:\n    address: 127.0.0.1:8080\n",
            Path::new("."),
            Path::new("gateway.yaml"),
        )
        .unwrap();
        assert!(off.tracing.is_none(), "off unless configured");
    }

    #[test]
    fn loopback_http() {
        assert!(is_loopback_http("http://127.0.0.1:9000/x"));
        assert!(is_loopback_http("http://localhost:9000"));
        assert!(!is_loopback_http("http://10.0.0.1/"));
        assert!(!is_loopback_http("https://127.0.0.1/"));
    }
}
