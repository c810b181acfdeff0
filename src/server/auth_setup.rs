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
use crate::config::{GatewayConfig, JwksSourceConfig, RouteAuth as RouteAuthConfig, Secret};

pub type JwtVerifiers = HashMap<String, Arc<JwtVerifier>>;

/// One verifier per configured issuer.
pub fn jwt_verifiers(config: &GatewayConfig, clock: SharedClock) -> Result<JwtVerifiers, String> {
    let mut out = HashMap::new();
    for j in &config.identity.jwt {
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
            (None, None) => return Err(format!("identity.jwt `{}` has no key source", j.name)),
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
            .map_err(|e| format!("identity.jwt `{}`: {e}", j.name))?;
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

pub fn runtime_auth(config: &GatewayConfig, jwt: &JwtVerifiers) -> Result<RuntimeAuth, String> {
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
    let all_keys =
        Arc::new(ApiKeyStore::new(&keys).map_err(|e| format!("identity.api_keys: {e}"))?);
    let mtls_rules: Vec<MtlsRule> = config
        .identity
        .mtls
        .iter()
        .map(|m| MtlsRule {
            matches: subject_match(&m.name),
            scopes: m.scopes.clone(),
        })
        .collect();
    let mtls = Arc::new(
        MtlsAuthenticator::new(&MtlsSettings {
            rules: mtls_rules,
            ..MtlsSettings::default()
        })
        .map_err(|e| format!("identity.mtls: {e}"))?,
    );

    let mut routes = HashMap::new();
    for route in &config.routes {
        let requirement = match &route.auth {
            RouteAuthConfig::None => {
                RouteAuth::new(vec![AcceptedMethod::Anonymous], ScopeSet::default())
            }
            // Webhook routes are authenticated by their signature over the body (webhook_ingress).
            auth if auth.webhook().is_some() => continue,
            RouteAuthConfig::Rules(rules) => {
                let mut methods = Vec::new();
                for name in &rules.jwt {
                    let v = jwt.get(name).ok_or_else(|| {
                        format!("route `{}`: unknown JWT issuer `{name}`", route.name)
                    })?;
                    methods.push(AcceptedMethod::Jwt(v.clone()));
                }
                match &rules.api_keys {
                    None => {}
                    Some(names) if names.is_empty() => {
                        methods.push(AcceptedMethod::ApiKey(all_keys.clone()))
                    }
                    Some(names) => {
                        let subset: Vec<ApiKeySettings> = keys
                            .iter()
                            .filter(|k| names.contains(&k.name))
                            .cloned()
                            .collect();
                        let store = ApiKeyStore::new(&subset)
                            .map_err(|e| format!("route `{}`: {e}", route.name))?;
                        methods.push(AcceptedMethod::ApiKey(Arc::new(store)));
                    }
                }
                if rules.mtls {
                    methods.push(AcceptedMethod::Mtls(mtls.clone()));
                }
                let scopes = ScopeSet::from_config(rules.scopes.iter().map(String::as_str))
                    .map_err(|e| format!("route `{}`: {e}", route.name))?;
                RouteAuth::new(methods, scopes)
            }
        }
        .map_err(|e| format!("route `{}`: {e}", route.name))?;
        routes.insert(route.name.clone(), requirement);
    }

    let admin = match &config.admin {
        None => None,
        Some(a) => {
            let verifier = jwt
                .get(&a.jwt_issuer)
                .ok_or_else(|| format!("admin.jwt: unknown issuer `{}`", a.jwt_issuer))?
                .clone();
            let access = AdminAccess::new(
                MfaPolicy {
                    accepted_amr: a.mfa_methods.clone(),
                    admin_scope: a.scope.clone(),
                },
                true,
            );
            Some(AdminGate { verifier, access })
        }
    };
    Ok(RuntimeAuth { routes, admin })
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
