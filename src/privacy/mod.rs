//! Privacy: one redaction engine for every log path, response masking, PII leak detection (policy §3, §7, §8).
//!
//! Built on an allow-list: what is not known to be safe is not shown. The pieces:
//! - [`detectors`]: pattern detectors over free text (e-mail, phone, card, CPF, IP, tokens).
//! - [`pseudonym`]: keyed pseudonyms (`pii:...`) for values investigators need to correlate.
//! - [`catalogue`]: TikTok personal fields, sealed objects, safe fields; extendable from config.
//! - [`mask`]: masking TikTok responses for callers without the PII scope.
//! - [`log_redact`]: headers, query strings, JSON bodies and free text for logs.
//! - [`tracing_layer`]: every `tracing` line and panic message goes through the redactor.
//! - [`leak`]: which kinds of personal data a response carries.

pub mod catalogue;
pub mod detectors;
pub mod engine;
pub mod error;
pub mod json_walk;
pub mod keyed;
pub mod kind;
pub mod leak;
pub mod log_redact;
pub mod mask;
pub mod pseudonym;
pub mod tracing_layer;

#[cfg(test)]
mod corpus_tests;

pub use catalogue::{CatalogueSettings, FieldCatalogue, FieldRule, Treatment};
pub use detectors::{Detectors, Finding};
pub use engine::{PrivacyEngine, PrivacySettings, SharedPrivacyEngine};
pub use error::{MaskError, PrivacyError};
pub use kind::PiiKind;
pub use leak::scan_for_leaks;
pub use log_redact::{REDACTED, RedactedHeaders};
pub use mask::{MASK, mask_tiktok_response};
pub use pseudonym::Pseudonymizer;
pub use tracing_layer::{
    CapturedLogs, LogFormat, LogSettings, RedactingMakeWriter, build_subscriber,
    install_global_subscriber, install_panic_hook,
};
