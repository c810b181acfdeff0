//! Errors of the privacy engine. None of them carries a value from the data being processed:
//! only field/header names from configuration and byte offsets.

use thiserror::Error;

/// Building the engine from settings failed (a configuration problem).
#[derive(Debug, Error, PartialEq)]
pub enum PrivacyError {
    #[error("pseudonym key is too short: need at least {min} bytes")]
    WeakPseudonymKey { min: usize },
    #[error("field name in privacy settings is empty or not a plain identifier: {0:?}")]
    BadFieldName(String),
    #[error("field {0:?} is personal data in the built-in catalogue and cannot be declared safe")]
    SafeFieldIsPersonal(String),
    #[error("header {0:?} carries credentials and can never be logged")]
    SecretHeaderNotLoggable(String),
    #[error("query key {0:?} carries credentials and can never be logged")]
    SecretQueryKeyNotLoggable(String),
    #[error("log filter is invalid: {0}")]
    BadLogFilter(String),
    #[error("a global tracing subscriber is already installed")]
    SubscriberAlreadySet,
    #[error("detector pattern failed to compile")]
    Pattern(#[from] regex::Error),
}

/// A body could not be masked or redacted. The caller must then refuse to pass it on (masking)
/// or log only its size (logging): never fall back to the original bytes.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MaskError {
    #[error("body is not UTF-8 (at byte {at})")]
    NotUtf8 { at: usize },
    #[error("body is not valid JSON (at byte {at})")]
    InvalidJson { at: usize },
    #[error("JSON nesting deeper than {limit}")]
    TooDeep { limit: usize },
}
