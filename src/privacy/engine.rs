//! The privacy engine: one immutable object built from [`PrivacySettings`] at config load, shared
//! by every log path, the response-masking stage and leak detection. Reload builds a new engine
//! and swaps it into the [`SharedPrivacyEngine`].

use std::collections::HashSet;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::catalogue::{CatalogueSettings, FieldCatalogue};
use super::detectors::Detectors;
use super::error::PrivacyError;
use super::keyed::KeyedValueMatcher;
use super::log_redact::{self, HeaderAllowList, QueryAllowList};
use super::pseudonym::Pseudonymizer;
use crate::config::Secret;

/// Runtime privacy settings (the lead's config layer fills these from `gateway.yaml`).
#[derive(Debug, Clone)]
pub struct PrivacySettings {
    /// HMAC key for pseudonyms (`${env:..}`/`${file:..}`), at least 16 bytes. Keep it stable:
    /// changing it changes every pseudonym, which breaks correlation with older logs.
    pub pseudonym_key: Secret,
    /// Extensions of the JSON field catalogue.
    pub catalogue: CatalogueSettings,
    /// Header names (any case) whose values may be logged, besides the built-in list. Credential
    /// headers (`authorization`, `cookie`, `x-tts-access-token`...) are refused.
    pub extra_safe_headers: Vec<String>,
    /// Query keys whose values may be logged, besides the built-in list. Credential keys
    /// (`sign`, `access_token`, `app_secret`, `auth_code`...) are refused.
    pub extra_safe_query_keys: Vec<String>,
}

impl PrivacySettings {
    /// Built-in lists only.
    pub fn with_key(pseudonym_key: Secret) -> Self {
        Self {
            pseudonym_key,
            catalogue: CatalogueSettings::default(),
            extra_safe_headers: Vec::new(),
            extra_safe_query_keys: Vec::new(),
        }
    }
}

/// See the module note. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct PrivacyEngine {
    pub(crate) catalogue: FieldCatalogue,
    pub(crate) detectors: Detectors,
    /// Finds `key: value` pairs whose key is personal, in free text.
    pub(crate) personal_keys: KeyedValueMatcher,
    pub(crate) pseudonymizer: Pseudonymizer,
    pub(crate) safe_headers: HeaderAllowList,
    pub(crate) safe_query_keys: QueryAllowList,
}

/// The engine as the pipeline and the log writer hold it: swapped whole on config reload.
pub type SharedPrivacyEngine = Arc<ArcSwap<PrivacyEngine>>;

impl PrivacyEngine {
    pub fn new(settings: &PrivacySettings) -> Result<Self, PrivacyError> {
        let catalogue = FieldCatalogue::new(&settings.catalogue)?;
        let personal_keys = KeyedValueMatcher::new(catalogue.text_keys(), true)?;
        Ok(Self {
            detectors: Detectors::new()?,
            personal_keys,
            pseudonymizer: Pseudonymizer::new(&settings.pseudonym_key)?,
            safe_headers: log_redact::header_allow_list(&settings.extra_safe_headers)?,
            safe_query_keys: log_redact::query_allow_list(&settings.extra_safe_query_keys)?,
            catalogue,
        })
    }

    /// Wraps the engine for sharing and later hot swaps.
    pub fn into_shared(self) -> SharedPrivacyEngine {
        Arc::new(ArcSwap::from_pointee(self))
    }

    pub fn catalogue(&self) -> &FieldCatalogue {
        &self.catalogue
    }

    pub fn detectors(&self) -> &Detectors {
        &self.detectors
    }

    pub fn pseudonymizer(&self) -> &Pseudonymizer {
        &self.pseudonymizer
    }
}

/// Lowercased, deduplicated names.
pub(crate) fn lower_set<'a>(names: impl Iterator<Item = &'a str>) -> HashSet<Box<str>> {
    names
        .map(|n| n.trim().to_ascii_lowercase().into_boxed_str())
        .collect()
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub const TEST_KEY: &str = "test-pseudonym-key-0123456789";

    pub fn engine() -> PrivacyEngine {
        PrivacyEngine::new(&PrivacySettings::with_key(Secret::new(TEST_KEY))).expect("valid")
    }
}
