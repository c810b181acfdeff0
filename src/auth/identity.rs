//! Who the caller is, once authenticated: subject, how they proved it, their scopes and the
//! authentication methods (`amr`) their token reports.
//!
//! Identities are built once per verified credential and shared as `Arc<Identity>` (the JWT cache
//! and the API key store hand out clones), so the per-request path does not allocate. The values
//! the pipeline propagates upstream are precomputed here for the same reason.

use std::sync::Arc;

use http::HeaderValue;

use super::scopes::ScopeSet;

/// How an identity was established; the name is the configured issuer/key/app name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    Jwt { issuer: Arc<str> },
    ApiKey { key: Arc<str> },
    Mtls,
    TikTokWebhook { app: Arc<str> },
    None,
}

impl AuthMethod {
    /// A fixed label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Jwt { .. } => "jwt",
            Self::ApiKey { .. } => "api_key",
            Self::Mtls => "mtls",
            Self::TikTokWebhook { .. } => "tiktok_webhook",
            Self::None => "none",
        }
    }

    /// The configured name behind the method (issuer, key or app name), if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Jwt { issuer } => Some(issuer),
            Self::ApiKey { key } => Some(key),
            Self::TikTokWebhook { app } => Some(app),
            Self::Mtls | Self::None => None,
        }
    }
}

/// Why an identity could not be built from the given values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("subject is empty, too long, or not a valid header value")]
    BadSubject,
    #[error("method name is not a valid header value")]
    BadMethodName,
}

/// Longest subject accepted; subjects are propagated in a header and logged.
pub const MAX_SUBJECT_BYTES: usize = 256;

#[derive(Debug, Clone)]
pub struct Identity {
    subject: Arc<str>,
    method: AuthMethod,
    scopes: ScopeSet,
    amr: Box<[Box<str>]>,
    subject_header: HeaderValue,
    scopes_header: HeaderValue,
    method_header: HeaderValue,
}

impl Identity {
    /// Builds an identity. The subject must be visible ASCII (it is sent upstream as a header and
    /// must not carry control characters into logs), at most [`MAX_SUBJECT_BYTES`].
    pub fn new(
        subject: &str,
        method: AuthMethod,
        scopes: ScopeSet,
        amr: Vec<Box<str>>,
    ) -> Result<Self, IdentityError> {
        if subject.is_empty()
            || subject.len() > MAX_SUBJECT_BYTES
            || !subject.bytes().all(|b| (0x20..0x7f).contains(&b))
        {
            return Err(IdentityError::BadSubject);
        }
        let subject_header =
            HeaderValue::from_str(subject).map_err(|_| IdentityError::BadSubject)?;
        // Scope names are validated visible ASCII, so this cannot fail; map it anyway.
        let scopes_header =
            HeaderValue::from_str(scopes.joined()).map_err(|_| IdentityError::BadSubject)?;
        let method_text = match method.name() {
            Some(n) => format!("{}:{n}", method.label()),
            None => method.label().to_owned(),
        };
        let method_header =
            HeaderValue::from_str(&method_text).map_err(|_| IdentityError::BadMethodName)?;
        Ok(Self {
            subject: Arc::from(subject),
            method,
            scopes,
            amr: amr.into_boxed_slice(),
            subject_header,
            scopes_header,
            method_header,
        })
    }

    /// The unauthenticated identity of a route marked `auth: none`.
    pub fn anonymous() -> Self {
        Self {
            subject: Arc::from("anonymous"),
            method: AuthMethod::None,
            scopes: ScopeSet::default(),
            amr: Box::new([]),
            subject_header: HeaderValue::from_static("anonymous"),
            scopes_header: HeaderValue::from_static(""),
            method_header: HeaderValue::from_static("none"),
        }
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn method(&self) -> &AuthMethod {
        &self.method
    }

    pub fn scopes(&self) -> &ScopeSet {
        &self.scopes
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// Authentication method references from the token (`amr`, RFC 8176); empty otherwise.
    pub fn amr(&self) -> impl Iterator<Item = &str> {
        self.amr.iter().map(|s| s.as_ref())
    }

    /// `x-gateway-subject` value.
    pub fn subject_header(&self) -> &HeaderValue {
        &self.subject_header
    }

    /// `x-gateway-scopes` value: the scopes, space-separated.
    pub fn scopes_header(&self) -> &HeaderValue {
        &self.scopes_header
    }

    /// `x-gateway-auth` value: `jwt:<issuer>`, `api_key:<name>`, `mtls`, `tiktok_webhook:<app>`, `none`.
    pub fn method_header(&self) -> &HeaderValue {
        &self.method_header
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_precomputes_headers() {
        let id = Identity::new(
            "svc-orders",
            AuthMethod::Jwt {
                issuer: Arc::from("internal-idp"),
            },
            ScopeSet::from_space_separated("orders:read"),
            vec![Box::from("mfa")],
        )
        .unwrap();
        assert_eq!(id.subject_header(), "svc-orders");
        assert_eq!(id.scopes_header(), "orders:read");
        assert_eq!(id.method_header(), "jwt:internal-idp");
        assert!(id.has_scope("orders:read"));
        assert_eq!(id.amr().collect::<Vec<_>>(), ["mfa"]);
        assert_eq!(Identity::anonymous().method_header(), "none");
    }

    #[test]
    fn refuses_subjects_that_could_inject_headers_or_log_lines() {
        for bad in [
            "",
            "a\r\nx-gateway-subject: admin",
            "tab\there",
            "é",
            &"x".repeat(300),
        ] {
            assert_eq!(
                Identity::new(bad, AuthMethod::Mtls, ScopeSet::default(), vec![]).err(),
                Some(IdentityError::BadSubject),
                "{bad:?}"
            );
        }
    }
}
