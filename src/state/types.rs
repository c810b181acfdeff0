//! The values that cross the state interface.

use bytes::Bytes;

/// A verified webhook to store.
#[derive(Clone)]
pub struct NewEvent {
    /// Route name, for logs and metrics.
    pub route: String,
    /// Absolute `http(s)://` URL of the order-service endpoint to POST the body to.
    pub target: String,
    /// `tts_notification_id`, or the SHA-256 of the body when it has none.
    pub dedup_key: String,
    /// The request id of TikTok's call, forwarded as `x-request-id`.
    pub request_id: String,
    /// The raw body exactly as TikTok sent it.
    pub body: Bytes,
    /// Unix seconds at which the gateway accepted it.
    pub received_at: i64,
    /// W3C `traceparent` of the request that brought it (tracing on), so its deliveries are
    /// spans of the same trace.
    pub traceparent: Option<String>,
}

impl std::fmt::Debug for NewEvent {
    // The body may carry buyer data: only its size is ever printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewEvent")
            .field("route", &self.route)
            .field("dedup_key", &self.dedup_key)
            .field("request_id", &self.request_id)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// What [`super::StateStore::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Stored under this id, due at once.
    Stored(u64),
    /// The dedupe key was already recorded: nothing stored.
    Duplicate,
}

/// One claim of one event: its id and the lease token of that claim. A claim that outlived its
/// lease and was taken by someone else no longer matches, so its bookkeeping cannot overwrite
/// the new holder's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventRef {
    pub id: u64,
    pub lease: u64,
}

/// A claimed event, ready for an attempt.
#[derive(Clone)]
pub struct ClaimedEvent {
    pub claim: EventRef,
    pub route: String,
    pub target: String,
    pub dedup_key: String,
    pub request_id: String,
    pub body: Bytes,
    /// Unix seconds at which the gateway accepted the webhook.
    pub received_at: i64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// W3C `traceparent` of the request that brought it, if one was recorded.
    pub traceparent: Option<String>,
}

impl std::fmt::Debug for ClaimedEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedEvent")
            .field("claim", &self.claim)
            .field("route", &self.route)
            .field("attempts", &self.attempts)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// `x-gateway-event-id`: the store's instance id and the event's id. The same on every replica
/// and every retry of the event.
pub fn public_event_id(instance: u64, id: u64) -> String {
    format!("{instance:016x}-{id}")
}

/// The queue at a glance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Events stored and not yet acknowledged or dead-lettered.
    pub live: u64,
    /// Unix seconds at which the oldest live event arrived.
    pub oldest_received_at: Option<i64>,
    /// Events in the dead-letter state.
    pub dead: u64,
}

/// What a block entry matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockKind {
    /// A caller's subject, as `x-gateway-subject` shows it.
    Subject,
    /// An API key, by its configured name.
    ApiKey,
    /// A client address or network (`203.0.113.7`, `2001:db8::/32`), after `trusted_proxies`.
    ClientIp,
}

impl BlockKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subject => "subject",
            Self::ApiKey => "api_key",
            Self::ClientIp => "client_ip",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "subject" => Some(Self::Subject),
            "api_key" => Some(Self::ApiKey),
            "client_ip" => Some(Self::ClientIp),
            _ => None,
        }
    }
}

/// A block entry to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBlock {
    pub kind: BlockKind,
    pub value: String,
    /// Why, for whoever reads the list later (never shown to the blocked caller).
    pub reason: String,
    /// Unix seconds after which the entry no longer applies; `None`: until removed.
    pub expires_at: Option<i64>,
}

/// A stored block entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockEntry {
    pub id: u64,
    pub kind: BlockKind,
    pub value: String,
    pub reason: String,
    pub expires_at: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A shop's tokens as stored: sealed by the caller (the store never sees them in clear) and
/// numbered, so a replica can tell newer tokens from the ones it holds.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedTokens {
    pub generation: u64,
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for SealedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedTokens")
            .field("generation", &self.generation)
            .field("sealed_len", &self.sealed.len())
            .finish()
    }
}

/// A dead-lettered webhook as the admin API lists it: where it was going and how it fared, never
/// its body (which may carry buyer data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: u64,
    pub route: String,
    pub request_id: String,
    /// Unix seconds.
    pub received_at: i64,
    pub attempts: u32,
    /// Unix milliseconds.
    pub dead_at: i64,
}

pub use crate::audit::chain::{AuditEntry, AuditRecord};
/// A seller authorization in progress: who asked for the link, for which app, until when. Stored
/// under the SHA-256 of its `state` value (the value itself is never stored), taken once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationState {
    /// The admin subject that asked for the link.
    pub subject: String,
    /// The TikTok app (config name) the link is for.
    pub app: String,
    /// Unix milliseconds after which the state is refused.
    pub expires_at: i64,
}

/// Whether a shop's authorization may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShopStatus {
    Active,
    /// The seller revoked the authorization (webhook type 6) or an operator did: no call is made
    /// for the shop, its tokens are deleted.
    Revoked,
}

impl ShopStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// A shop known to the state layer: onboarded at runtime, or a configured shop whose status
/// changed (revoked). Its tokens live apart, sealed ([`SealedTokens`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopRecord {
    pub id: String,
    /// The TikTok app (config name) the shop authorized.
    pub app: String,
    pub cipher: String,
    pub name: String,
    pub region: String,
    pub status: ShopStatus,
    /// Who started the authorization (an admin subject) or revoked it (`tiktok-webhook:<app>`).
    pub changed_by: String,
    /// Unix seconds of the last change.
    pub updated_at: i64,
}
