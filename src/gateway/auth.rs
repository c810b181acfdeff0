//! Builds the auth module's runtime objects from the validated config. JWT verifiers (and their
//! JWKS stores and caches) are built once per process so the background refresher and the key
//! caches survive reloads; API keys, mTLS rules and each route's requirements are rebuilt with
//! every config snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use crate::auth::{
    AcceptedMethod, AdminAccess, ApiKeySettings, ApiKeyStore, JwksUrlSettings, JwtIssuerSettings,
    JwtVerifier, KeySource, MfaPolicy, MtlsAuthenticator, MtlsRule, MtlsSettings, RouteAuth,
    ScopeSet, SubjectMatch,
};
use crate::clock::SharedClock;
use crate::config::{
    ConfigError, GatewayConfig, Issues, JwksSourceConfig, RouteAuth as RouteAuthConfig, Secret,
};

pub type JwtVerifiers = HashMap<String, Arc<JwtVerifier>>;

/// One verifier per configured issuer.
pub fn jwt_verifiers(
    config: &GatewayConfig,
    clock: SharedClock,
) -> Result<JwtVerifiers, ConfigError> {
    let mut out = HashMap::new();
    for (i, j) in config.identity.jwt.iter().enumerate() {
        let at = format!("identity.jwt[{i}]");
        let keys = match (&j.hmac_secret, &j.jwks) {
            (Some(secret), _) => KeySource::HmacSecret(secret.clone()),
            (None, Some(JwksSourceConfig::File(path))) => KeySource::JwksFile(path.clone()),
            (
                None,
                Some(JwksSourceConfig::Url {
                    url,
                    refresh,
                    unknown_kid_cooldown,
                    stale_if_error,
                    timeout,
                    ca,
                }),
            ) => {
                let mut s = JwksUrlSettings::new(url.clone());
                s.refresh = *refresh;
                s.unknown_kid_cooldown = *unknown_kid_cooldown;
                s.stale_if_error = *stale_if_error;
                s.timeout = *timeout;
                s.extra_roots_pem = ca.clone();
                KeySource::JwksUrl(s)
            }
            (None, None) => return Err(ConfigError::single(at, None, "no key source")),
        };
        let mut settings = JwtIssuerSettings::new(
            j.name.clone(),
            j.issuer.clone(),
            j.audiences.clone(),
            keys,
            j.algorithms.clone(),
        );
        settings.leeway = j.leeway;
        settings.max_token_age = j.max_token_age;
        settings.scopes_claim = j.scopes_claim.clone();
        settings.max_token_bytes = j.max_token_size;
        let verifier = JwtVerifier::new(&settings, clock.clone())
            .map_err(|e| ConfigError::single(at, None, e.to_string()))?;
        out.insert(j.name.clone(), Arc::new(verifier));
    }
    Ok(out)
}

/// Per-snapshot auth: each route's requirement, and the admin gate.
pub struct RuntimeAuth {
    pub routes: HashMap<String, RouteAuth>,
    pub admin: Option<AdminGate>,
}

pub struct AdminGate {
    pub verifier: Arc<JwtVerifier>,
    pub access: AdminAccess,
}

/// Every route's requirement and the admin gate. All problems are reported, each with the route's
/// YAML path and line.
pub fn runtime_auth(
    config: &GatewayConfig,
    jwt: &JwtVerifiers,
) -> Result<RuntimeAuth, ConfigError> {
    let mut issues = Issues::default();
    let keys: Vec<ApiKeySettings> = config
        .identity
        .api_keys
        .iter()
        .map(|k| ApiKeySettings {
            name: k.name.clone(),
            sha256_hex: Secret::new(hex::encode(k.sha256)),
            scopes: k.scopes.clone(),
        })
        .collect();
    let all_keys = ApiKeyStore::new(&keys)
        .map(Arc::new)
        .map_err(|e| issues.add("identity.api_keys", None, e.to_string()))
        .ok();
    let mtls_rules: Vec<MtlsRule> = config
        .identity
        .mtls
        .iter()
        .map(|m| MtlsRule {
            matches: subject_match(&m.name),
            scopes: m.scopes.clone(),
        })
        .collect();
    let mtls = MtlsAuthenticator::new(&MtlsSettings {
        rules: mtls_rules,
        ..MtlsSettings::default()
    })
    .map(Arc::new)
    .map_err(|e| issues.add("identity.mtls", None, e.to_string()))
    .ok();

    let mut routes = HashMap::new();
    for (i, route) in config.routes.iter().enumerate() {
        let at = format!("routes[{i}].auth");
        let requirement = match &route.auth {
            RouteAuthConfig::None => {
                RouteAuth::new(vec![AcceptedMethod::Anonymous], ScopeSet::default())
            }
            // Webhook routes are authenticated by their signature over the body.
            auth if auth.webhook().is_some() => continue,
            RouteAuthConfig::Rules(rules) => {
                let mut methods = Vec::new();
                for name in &rules.jwt {
                    match jwt.get(name) {
                        Some(v) => methods.push(AcceptedMethod::Jwt(v.clone())),
                        None => issues.add(
                            format!("{at}.jwt"),
                            route.line,
                            format!("unknown JWT issuer `{name}`"),
                        ),
                    }
                }
                match (&rules.api_keys, &all_keys) {
                    (None, _) | (Some(_), None) => {}
                    (Some(names), Some(all)) if names.is_empty() => {
                        methods.push(AcceptedMethod::ApiKey(all.clone()))
                    }
                    (Some(names), Some(_)) => {
                        let subset: Vec<ApiKeySettings> = keys
                            .iter()
                            .filter(|k| names.contains(&k.name))
                            .cloned()
                            .collect();
                        match ApiKeyStore::new(&subset) {
                            Ok(store) => methods.push(AcceptedMethod::ApiKey(Arc::new(store))),
                            Err(e) => {
                                issues.add(format!("{at}.api_keys"), route.line, e.to_string())
                            }
                        }
                    }
                }
                if rules.mtls
                    && let Some(mtls) = &mtls
                {
                    methods.push(AcceptedMethod::Mtls(mtls.clone()));
                }
                let scopes = match ScopeSet::from_config(rules.scopes.iter().map(String::as_str)) {
                    Ok(scopes) => scopes,
                    Err(e) => {
                        issues.add(format!("{at}.scopes"), route.line, e.to_string());
                        continue;
                    }
                };
                RouteAuth::new(methods, scopes)
            }
        };
        match requirement {
            Ok(r) => {
                routes.insert(route.name.clone(), r);
            }
            Err(e) => issues.add(at, route.line, e.to_string()),
        }
    }

    let admin = match &config.admin {
        None => None,
        Some(a) => match jwt.get(&a.jwt_issuer) {
            None => {
                issues.add(
                    "admin.jwt",
                    None,
                    format!("unknown issuer `{}`", a.jwt_issuer),
                );
                None
            }
            Some(verifier) => Some(AdminGate {
                verifier: verifier.clone(),
                access: AdminAccess::new(
                    MfaPolicy {
                        accepted_amr: a.mfa_methods.clone(),
                        admin_scope: a.scope.clone(),
                    },
                    true,
                ),
            }),
        },
    };
    issues.into_result(RuntimeAuth { routes, admin })
}

/// `dns:`, `uri:`, `email:`, `cn:` prefixes pick the certificate name to match; bare names are DNS.
fn subject_match(name: &str) -> SubjectMatch {
    if let Some(v) = name.strip_prefix("uri:") {
        SubjectMatch::Uri(v.to_string())
    } else if let Some(v) = name.strip_prefix("email:") {
        SubjectMatch::Email(v.to_string())
    } else if let Some(v) = name.strip_prefix("cn:") {
        SubjectMatch::CommonName(v.to_string())
    } else {
        SubjectMatch::Dns(name.strip_prefix("dns:").unwrap_or(name).to_string())
    }
}
