//! Administrative access (policy §6): a client certificate **and** a JWT whose `amr` names an
//! MFA method and that carries the admin scope.

use std::sync::Arc;

use super::error::AuthError;
use super::identity::Identity;

#[derive(Debug, Clone)]
pub struct MfaPolicy {
    /// `amr` values that prove MFA (RFC 8176). Default: `mfa`, `otp`, `hwk`, `swk`.
    pub accepted_amr: Vec<String>,
    /// Scope every admin token must carry. Default: `admin`.
    pub admin_scope: String,
}

impl Default for MfaPolicy {
    fn default() -> Self {
        Self {
            accepted_amr: ["mfa", "otp", "hwk", "swk"].map(String::from).to_vec(),
            admin_scope: "admin".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AdminAccess {
    policy: MfaPolicy,
    admin_scope_challenge: Arc<str>,
    require_client_cert: bool,
}

impl AdminAccess {
    /// The admin gate; `require_client_cert` should stay true outside tests.
    pub fn new(policy: MfaPolicy, require_client_cert: bool) -> Self {
        Self {
            admin_scope_challenge: Arc::from(policy.admin_scope.as_str()),
            policy,
            require_client_cert,
        }
    }

    /// Checks a request already authenticated by JWT. `client_cert_verified` is whether the TLS
    /// layer verified a client certificate on this connection.
    pub fn check(&self, token: &Identity, client_cert_verified: bool) -> Result<(), AuthError> {
        if self.require_client_cert && !client_cert_verified {
            return Err(AuthError::ClientCertRequired);
        }
        let mfa = token
            .amr()
            .any(|a| self.policy.accepted_amr.iter().any(|m| m == a));
        if !mfa {
            return Err(AuthError::MfaRequired);
        }
        if !token.has_scope(&self.policy.admin_scope) {
            return Err(AuthError::InsufficientScope {
                required: Arc::clone(&self.admin_scope_challenge),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::identity::AuthMethod;
    use crate::auth::scopes::ScopeSet;

    fn token(scopes: &str, amr: &[&str]) -> Identity {
        Identity::new(
            "alice",
            AuthMethod::Jwt {
                issuer: Arc::from("idp"),
            },
            ScopeSet::from_space_separated(scopes),
            amr.iter().map(|a| Box::from(*a)).collect(),
        )
        .unwrap()
    }

    #[test]
    fn needs_cert_mfa_and_scope() {
        let gate = AdminAccess::new(MfaPolicy::default(), true);
        assert_eq!(gate.check(&token("admin", &["pwd", "otp"]), true), Ok(()));
        assert_eq!(gate.check(&token("admin", &["hwk"]), true), Ok(()));
        assert_eq!(
            gate.check(&token("admin", &["pwd"]), true),
            Err(AuthError::MfaRequired)
        );
        assert_eq!(
            gate.check(&token("admin", &[]), true),
            Err(AuthError::MfaRequired)
        );
        assert_eq!(
            gate.check(&token("admin", &["mfa"]), false),
            Err(AuthError::ClientCertRequired)
        );
        let e = gate
            .check(&token("orders:read", &["mfa"]), true)
            .unwrap_err();
        assert_eq!(e.reason(), "insufficient_scope");
        assert_eq!(e.status(), http::StatusCode::FORBIDDEN);
    }

    #[test]
    fn configurable_amr() {
        let gate = AdminAccess::new(
            MfaPolicy {
                accepted_amr: vec!["hwk".into()],
                admin_scope: "ops".into(),
            },
            true,
        );
        assert_eq!(
            gate.check(&token("ops", &["otp"]), true),
            Err(AuthError::MfaRequired)
        );
        assert_eq!(gate.check(&token("ops", &["hwk"]), true), Ok(()));
    }
}
