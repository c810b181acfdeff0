//! An access token as handed to a caller, tagged with the generation it belongs to.
//!
//! The generation grows by one with every refresh of the shop's tokens. A caller that meets
//! TikTok's expired-token answer passes it back to [`super::TokenManager::force_refresh`], which
//! refreshes only if that token is still the current one: an answer about a token that was
//! already replaced must not spend the new refresh token (TikTok treats them as single use).

use std::fmt;

use crate::config::Secret;

#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    secret: Secret,
    generation: u64,
}

impl AccessToken {
    pub(super) fn new(secret: Secret, generation: u64) -> Self {
        Self { secret, generation }
    }

    /// The value itself, for `x-tts-access-token` and the signature.
    pub fn expose(&self) -> &str {
        self.secret.expose()
    }

    /// Which of the shop's successive tokens this is (0 for the one loaded at start).
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// Never shows the token.
impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &self.secret)
            .field("generation", &self.generation)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let t = AccessToken::new(Secret::new("TTP_live_token"), 3);
        let shown = format!("{t:?}");
        assert!(!shown.contains("TTP_live_token"), "{shown}");
        assert!(shown.contains("generation: 3"), "{shown}");
        assert_eq!(t.expose(), "TTP_live_token");
    }
}
