//! Privacy: one redaction engine for every log path, response masking, PII leak detection (policy §3, §7, §8).
//!
//! Built on an allow-list: what is not known to be safe is not shown. The pieces:
//! - [`detectors`]: pattern detectors over free text (e-mail, phone, card, CPF, IP, tokens).
//! - [`pseudonym`]: keyed pseudonyms (`pii:...`) for values investigators need to correlate.
//! - [`catalogue`]: TikTok personal fields, sealed objects, safe fields; extendable from config.
//! - [`mask`]: masking TikTok responses for callers without the PII scope.
//! - [`log_redact`]: headers, query strings, JSON bodies and free text for logs.
//! - [`tracing_layer`]: every `tracing` line and panic message goes through the redactor.
//! - [`log_filter`]: `logging.level`, with every target outside the gateway capped at `info`.
//! - [`leak`]: which kinds of personal data a response carries.
//!
//! # What is logged and what is not
//!
//! | input | logged as |
//! |---|---|
//! | header on the allow-list (`content-type`, `user-agent`, `x-request-id`, ...) | its value, after the free-text detectors |
//! | any other header (`authorization`, `cookie`, `x-tts-access-token`, custom ones) | name only, value `[redacted]` |
//! | query key on the allow-list (`app_key`, `timestamp`, `page_size`, `ids`, ...) | `key=value`, value after the detectors |
//! | any other query key (`sign`, `access_token`, `app_secret`, `shop_cipher`, ...) | `key=[redacted]` |
//! | a query key that is not an identifier (an e-mail, a phone, a name with a space, a number) | `[redacted]` |
//! | JSON body field on the safe list (ids, statuses, timestamps, amounts, currency, SKUs) | its value |
//! | JSON personal identifier (`user_id`, `buyer_email`, phone, tracking numbers) | keyed pseudonym `pii:<12 hex>` |
//! | any other JSON value, and everything under addresses / buyers / participants | `"[redacted]"` |
//! | non-JSON body | `[body not logged: N bytes, not JSON]` |
//! | TikTok's envelope `message` (free text an error may fill with buyer data) | its wording, with what the free-text rules below find replaced |
//! | free text (messages, errors, panics, every `tracing` line) | e-mail, phone (with its extension), IP -> pseudonym; card (Luhn + issuer prefix and length), CPF, JWT, bearer, TikTok token, `secret=`-style values -> `[redacted:<kind>]`; `key: value` pairs with personal keys (`name`, `full_address`, `buyer_message`, ...) in any notation -> pseudonym or `[redacted:<kind>]`; paths and URLs percent-decoded first, their queries as above |
//!
//! Free text cannot be fully protected by patterns: a name or street written into a message
//! *without* a key (`"shipping to {name}"`) is not recognisable. Call sites log structured fields
//! (`name = %n`, `?struct`) or ids, never personal values inside the message text.

pub mod catalogue;
pub mod detectors;
pub mod engine;
pub mod error;
pub mod json_walk;
pub mod keyed;
pub mod kind;
pub mod label_cache;
pub mod leak;
pub mod log_filter;
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
pub use log_filter::LogFilter;
pub use log_redact::{REDACTED, RedactedHeaders};
pub use mask::{MASK, mask_tiktok_response};
pub use pseudonym::Pseudonymizer;
pub use tracing_layer::{
    CapturedLogs, LogFormat, LogSettings, RedactingMakeWriter, build_subscriber,
    install_global_subscriber, install_panic_hook,
};
