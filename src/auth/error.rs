//! Why a request was refused. Each variant maps to one fixed metrics reason, an HTTP status and an
//! RFC 6750 `WWW-Authenticate` challenge. Nothing a caller sent (token, key, subject) is ever part
//! of the message, so these errors are safe to log.

use std::borrow::Cow;
use std::sync::Arc;

use http::StatusCode;

/// The realm named in every challenge.
const REALM: &str = "tiktok-gateway";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials presented")]
    MissingCredentials,
    #[error("credentials use a scheme this route does not accept")]
    WrongScheme,
    #[error("malformed credentials")]
    Malformed,
    #[error("token larger than allowed")]
    TokenTooLarge,
    #[error("token algorithm not allowed")]
    DisallowedAlgorithm,
    #[error("token header names a critical extension that is not supported")]
    UnsupportedCritical,
    #[error("token signed with an unknown key")]
    UnknownKey,
    #[error("signing keys unavailable")]
    KeysUnavailable,
    #[error("bad token signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token issued in the future")]
    IssuedInFuture,
    #[error("token older than the issuer's maximum age")]
    TooOld,
    #[error("token issuer not accepted")]
    WrongIssuer,
    #[error("token audience not accepted")]
    WrongAudience,
    #[error("token lacks a required claim")]
    MissingClaim,
    #[error("API key not accepted")]
    BadApiKey,
    #[error("client certificate not accepted")]
    BadClientCert,
    #[error("client certificate required")]
    ClientCertRequired,
    #[error("identity lacks a required scope")]
    InsufficientScope {
        /// The route's required scopes, space-separated (from config, never from the caller).
        required: Arc<str>,
    },
    #[error("multi-factor authentication required")]
    MfaRequired,
}

impl AuthError {
    /// A fixed, low-cardinality label for `auth_failures_total{reason}` and the access log.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingCredentials => "missing_credentials",
            Self::WrongScheme => "wrong_scheme",
            Self::Malformed => "malformed",
            Self::TokenTooLarge => "token_too_large",
            Self::DisallowedAlgorithm => "disallowed_algorithm",
            Self::UnsupportedCritical => "unsupported_crit",
            Self::UnknownKey => "unknown_key",
            Self::KeysUnavailable => "keys_unavailable",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "token_issued_in_future",
            Self::TooOld => "token_too_old",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::MissingClaim => "missing_claim",
            Self::BadApiKey => "bad_api_key",
            Self::BadClientCert => "bad_client_cert",
            Self::ClientCertRequired => "client_cert_required",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::MfaRequired => "mfa_required",
        }
    }

    /// 401 when the caller is not (properly) authenticated, 403 when it is but lacks a scope.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The `WWW-Authenticate` value (RFC 6750 §3; RFC 9470 for the MFA step-up case).
    /// Requests without any credentials get a bare challenge with no error code, as §3.1 asks.
    pub fn www_authenticate(&self) -> Cow<'static, str> {
        match self {
            Self::MissingCredentials | Self::WrongScheme => {
                Cow::Borrowed("Bearer realm=\"tiktok-gateway\"")
            }
            Self::BadClientCert | Self::ClientCertRequired => Cow::Borrowed(
                "Bearer realm=\"tiktok-gateway\", error=\"invalid_request\", \
                 error_description=\"valid client certificate required\"",
            ),
            Self::InsufficientScope { required } => Cow::Owned(format!(
                "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{required}\""
            )),
            Self::MfaRequired => Cow::Borrowed(
                "Bearer realm=\"tiktok-gateway\", error=\"insufficient_user_authentication\", \
                 error_description=\"multi-factor authentication required\"",
            ),
            _ => Cow::Borrowed("Bearer realm=\"tiktok-gateway\", error=\"invalid_token\""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_challenges() {
        assert_eq!(AuthError::Expired.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            AuthError::Expired.www_authenticate(),
            "Bearer realm=\"tiktok-gateway\", error=\"invalid_token\""
        );
        assert_eq!(
            AuthError::MissingCredentials.www_authenticate(),
            "Bearer realm=\"tiktok-gateway\""
        );
        let scope = AuthError::InsufficientScope {
            required: Arc::from("orders:read pii:read"),
        };
        assert_eq!(scope.status(), StatusCode::FORBIDDEN);
        assert_eq!(scope.reason(), "insufficient_scope");
        assert_eq!(
            scope.www_authenticate(),
            "Bearer realm=\"tiktok-gateway\", error=\"insufficient_scope\", scope=\"orders:read pii:read\""
        );
        assert!(
            AuthError::MfaRequired
                .www_authenticate()
                .contains("insufficient_user_authentication")
        );
    }

    #[test]
    fn every_challenge_is_a_valid_header_value() {
        let all = [
            AuthError::MissingCredentials,
            AuthError::WrongScheme,
            AuthError::Malformed,
            AuthError::TokenTooLarge,
            AuthError::DisallowedAlgorithm,
            AuthError::UnsupportedCritical,
            AuthError::UnknownKey,
            AuthError::KeysUnavailable,
            AuthError::BadSignature,
            AuthError::Expired,
            AuthError::NotYetValid,
            AuthError::IssuedInFuture,
            AuthError::TooOld,
            AuthError::WrongIssuer,
            AuthError::WrongAudience,
            AuthError::MissingClaim,
            AuthError::BadApiKey,
            AuthError::BadClientCert,
            AuthError::ClientCertRequired,
            AuthError::InsufficientScope {
                required: Arc::from("a"),
            },
            AuthError::MfaRequired,
        ];
        let mut reasons = std::collections::HashSet::new();
        for e in all {
            assert!(http::HeaderValue::from_str(&e.www_authenticate()).is_ok());
            assert!(
                reasons.insert(e.reason()),
                "duplicate reason {}",
                e.reason()
            );
        }
    }
}
