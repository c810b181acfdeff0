//! The fixed set of personal-data and secret kinds the engine recognises. Small and closed so a
//! kind can be a metric label (`pii_leak_detected_total{kind}`) without unbounded cardinality.

use std::fmt;

/// What a finding or a masked field is. `as_str()` is the stable metric/log label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PiiKind {
    Email,
    Phone,
    PaymentCard,
    Cpf,
    IpAddress,
    BearerToken,
    Jwt,
    TiktokToken,
    /// A value after a secret-bearing key (`token=`, `sign=`, `app_secret:`...).
    Secret,
    Name,
    Address,
    /// Buyer and user identifiers (`user_id`, `im_user_id`...).
    UserId,
    /// Buyer or seller free text (`buyer_message`, customer-service `content`...).
    Message,
    TrackingNumber,
    /// Payment details other than card numbers (`payment_auth_code`, bank account...).
    Payment,
    /// Shipping label / document URLs, which grant access to the label itself.
    DocumentUrl,
    /// Anything else personal: unknown fields under sealed objects, extra configured fields.
    PersonalField,
}

impl PiiKind {
    /// Every kind, for tests and for pre-registering metric label values.
    pub const ALL: [PiiKind; 17] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::PaymentCard,
        PiiKind::Cpf,
        PiiKind::IpAddress,
        PiiKind::BearerToken,
        PiiKind::Jwt,
        PiiKind::TiktokToken,
        PiiKind::Secret,
        PiiKind::Name,
        PiiKind::Address,
        PiiKind::UserId,
        PiiKind::Message,
        PiiKind::TrackingNumber,
        PiiKind::Payment,
        PiiKind::DocumentUrl,
        PiiKind::PersonalField,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::PaymentCard => "payment_card",
            PiiKind::Cpf => "cpf",
            PiiKind::IpAddress => "ip_address",
            PiiKind::BearerToken => "bearer_token",
            PiiKind::Jwt => "jwt",
            PiiKind::TiktokToken => "tiktok_token",
            PiiKind::Secret => "secret",
            PiiKind::Name => "name",
            PiiKind::Address => "address",
            PiiKind::UserId => "user_id",
            PiiKind::Message => "message",
            PiiKind::TrackingNumber => "tracking_number",
            PiiKind::Payment => "payment",
            PiiKind::DocumentUrl => "document_url",
            PiiKind::PersonalField => "personal_field",
        }
    }

    /// Secrets are never pseudonymised: correlating them has no investigative value and a keyed
    /// hash of a token is still a stable handle on it.
    pub const fn is_secret(self) -> bool {
        matches!(
            self,
            PiiKind::BearerToken
                | PiiKind::Jwt
                | PiiKind::TiktokToken
                | PiiKind::Secret
                | PiiKind::DocumentUrl
        )
    }
}

impl fmt::Display for PiiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn labels_are_unique_lowercase_identifiers() {
        let labels: HashSet<_> = PiiKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(labels.len(), PiiKind::ALL.len());
        for l in labels {
            assert!(
                l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{l}"
            );
        }
    }
}
