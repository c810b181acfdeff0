//! Seller authorization (onboarding a shop): the link an admin hands a seller, and the checks
//! the callback makes before anything is exchanged.
//!
//! The link carries a `state` of 32 random bytes (base64url). Only its SHA-256 is stored, in the
//! state layer, with the admin who asked, the app and an expiry, so any replica of a fleet can
//! take it when TikTok redirects the seller's browser back; taking it removes it (single use)
//! and answers only if it has not expired. A forged, replayed or expired `state` is refused
//! before the auth code is exchanged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::clock::SharedClock;
use crate::config::TikTokApp;
use crate::state::health::{StateHealth, with_timeout};
use crate::state::{AuthorizationState, SharedState, StateError};

/// How long an authorization link can be used.
pub const STATE_TTL: Duration = Duration::from_secs(10 * 60);
/// Longest `state` or `code` accepted from the callback's query.
pub const MAX_PARAM_LEN: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum AuthorizationError {
    #[error("unknown TikTok app `{0}`")]
    UnknownApp(String),
    #[error("the authorization state is unknown, used or expired")]
    InvalidState,
    #[error("state store: {0}")]
    Store(#[from] StateError),
}

/// A link to hand the seller.
#[derive(Debug, Clone)]
pub struct AuthorizationLink {
    pub url: String,
    /// Unix seconds after which the link's `state` is refused.
    pub expires_at: i64,
}

/// Pending authorizations of this gateway's apps, kept in the state layer.
pub struct Authorizations {
    store: SharedState,
    health: Arc<StateHealth>,
    timeout: Duration,
    clock: SharedClock,
    apps: HashMap<String, Arc<TikTokApp>>,
}

/// The key a `state` is stored under: its SHA-256, hex.
pub fn state_key(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

impl Authorizations {
    pub fn new(
        store: SharedState,
        health: Arc<StateHealth>,
        timeout: Duration,
        clock: SharedClock,
        apps: HashMap<String, Arc<TikTokApp>>,
    ) -> Self {
        Self {
            store,
            health,
            timeout,
            clock,
            apps,
        }
    }

    pub fn app(&self, name: &str) -> Option<&Arc<TikTokApp>> {
        self.apps.get(name)
    }

    async fn observed<T>(
        &self,
        op: &'static str,
        fut: impl std::future::Future<Output = Result<T, StateError>>,
    ) -> Result<T, StateError> {
        let result = with_timeout(self.timeout, fut).await;
        self.health.observe(op, &result);
        result
    }

    /// A new link for `app`, asked for by `subject`.
    pub async fn start(
        &self,
        app: &str,
        subject: &str,
    ) -> Result<AuthorizationLink, AuthorizationError> {
        let tiktok_app = self
            .apps
            .get(app)
            .ok_or_else(|| AuthorizationError::UnknownApp(app.to_owned()))?;
        let raw: [u8; 32] = rand::random();
        let state = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let now = self.clock.unix_millis();
        let ttl = i64::try_from(STATE_TTL.as_millis()).unwrap_or(i64::MAX);
        let expires_at = now.saturating_add(ttl);
        let record = AuthorizationState {
            subject: subject.to_owned(),
            app: app.to_owned(),
            expires_at,
        };
        self.observed(
            "put_authorization_state",
            self.store
                .put_authorization_state(&state_key(&state), &record, now),
        )
        .await?;
        Ok(AuthorizationLink {
            url: link(tiktok_app, &state),
            expires_at: expires_at / 1000,
        })
    }

    /// Takes the pending authorization `state` names for `app`: once, unexpired, same app.
    pub async fn take(
        &self,
        state: &str,
        app: &str,
    ) -> Result<AuthorizationState, AuthorizationError> {
        if state.is_empty() || state.len() > MAX_PARAM_LEN {
            return Err(AuthorizationError::InvalidState);
        }
        let now = self.clock.unix_millis();
        let taken = self
            .observed(
                "take_authorization_state",
                self.store.take_authorization_state(&state_key(state), now),
            )
            .await?;
        match taken {
            Some(pending) if pending.app == app => Ok(pending),
            _ => Err(AuthorizationError::InvalidState),
        }
    }
}

/// `authorize_url?service_id=..&state=..` (or `app_key=..` without a service id).
pub fn link(app: &TikTokApp, state: &str) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    match &app.service_id {
        Some(id) => query.append_pair("service_id", id),
        None => query.append_pair("app_key", &app.app_key),
    };
    query.append_pair("state", state);
    format!("{}?{}", app.authorize_url, query.finish())
}

/// One shop of `GET /authorization/202309/shops`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedShop {
    pub id: String,
    pub name: String,
    pub region: String,
    pub cipher: String,
}

/// The shops of TikTok's `/authorization/202309/shops` answer; `Err` names what is wrong
/// (never a value). IDs are strings; a shop without id or cipher is refused.
pub fn parse_shops(body: &[u8]) -> Result<Vec<AuthorizedShop>, &'static str> {
    let value: Value = serde_json::from_slice(body).map_err(|_| "not JSON")?;
    match value.get("code").and_then(Value::as_i64) {
        Some(0) => {}
        Some(_) => return Err("TikTok refused the call"),
        None => return Err("no code"),
    }
    let shops = value
        .get("data")
        .and_then(|d| d.get("shops"))
        .and_then(Value::as_array)
        .ok_or("no data.shops")?;
    let text = |shop: &Value, key: &str| {
        shop.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let mut out = Vec::with_capacity(shops.len());
    for shop in shops {
        let parsed = AuthorizedShop {
            id: text(shop, "id"),
            name: text(shop, "name"),
            region: text(shop, "region"),
            cipher: text(shop, "cipher"),
        };
        let id_ok = !parsed.id.is_empty()
            && parsed.id.len() <= 64
            && parsed.id.bytes().all(|b| b.is_ascii_alphanumeric());
        let cipher_ok = !parsed.cipher.is_empty()
            && parsed.cipher.len() <= 256
            && parsed.cipher.bytes().all(|b| b.is_ascii_graphic());
        if !id_ok || !cipher_ok {
            return Err("a shop without a valid id or cipher");
        }
        out.push(parsed);
    }
    if out.is_empty() {
        return Err("no shops");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::Secret;

    fn app(service_id: Option<&str>) -> TikTokApp {
        TikTokApp {
            name: "main".into(),
            app_key: "29a39d".into(),
            app_secret: Secret::new("e59af819cc"),
            api_base: "https://open-api.tiktokglobalshop.com".into(),
            auth_base: "https://auth.tiktok-shops.com".into(),
            authorize_url: "https://services.tiktokshop.com/open/authorize".into(),
            service_id: service_id.map(str::to_owned),
            ca: None,
        }
    }

    #[test]
    fn links_name_the_service_or_the_app_key() {
        assert_eq!(
            link(&app(Some("7123")), "s+t/="),
            "https://services.tiktokshop.com/open/authorize?service_id=7123&state=s%2Bt%2F%3D"
        );
        assert_eq!(
            link(&app(None), "abc"),
            "https://services.tiktokshop.com/open/authorize?app_key=29a39d&state=abc"
        );
    }

    #[test]
    fn parses_the_documented_answer_and_refuses_the_rest() {
        let sample = br#"{"code":0,"data":{"shops":[{"id":"7000714532876273420","name":"Maomao beauty shop","region":"GB","seller_type":"CROSS_BORDER","cipher":"GCP_XF90igAAAABh00qsWgtvOiGFNqyubMt3","code":"CNGBCBA4LLU8"}]},"message":"Success","request_id":"202203070749000101890810281E8C70B7"}"#;
        assert_eq!(
            parse_shops(sample).unwrap(),
            vec![AuthorizedShop {
                id: "7000714532876273420".into(),
                name: "Maomao beauty shop".into(),
                region: "GB".into(),
                cipher: "GCP_XF90igAAAABh00qsWgtvOiGFNqyubMt3".into(),
            }]
        );
        for bad in [
            &b"nope"[..],
            br#"{"code":36009003,"message":"Internal error"}"#,
            br#"{"code":0,"data":{"shops":[]}}"#,
            br#"{"code":0,"data":{"shops":[{"id":7000714532876273420,"cipher":"x"}]}}"#,
            br#"{"code":0,"data":{"shops":[{"id":"1","cipher":""}]}}"#,
            br#"{"code":0,"data":{"shops":[{"id":"1/../2","cipher":"c"}]}}"#,
        ] {
            assert!(
                parse_shops(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[tokio::test]
    async fn a_state_is_taken_once_for_its_app_until_it_expires() {
        let clock = Arc::new(ManualClock::new(1_718_305_585));
        let store: SharedState =
            Arc::new(crate::state::embedded::EmbeddedStore::open(None, clock.clone()).unwrap());
        let auth = Authorizations::new(
            store.clone(),
            StateHealth::new("embedded"),
            Duration::from_secs(2),
            clock.clone(),
            HashMap::from([("main".to_owned(), Arc::new(app(None)))]),
        );
        let state_of = |url: &str| {
            reqwest::Url::parse(url)
                .unwrap()
                .query_pairs()
                .find(|(k, _)| k == "state")
                .map(|(_, v)| v.into_owned())
                .unwrap()
        };
        let first = auth.start("main", "ops-alice").await.unwrap();
        assert_eq!(first.expires_at, 1_718_305_585 + 600);
        let state = state_of(&first.url);
        assert_eq!(state.len(), 43, "32 random bytes");
        let pending = auth.take(&state, "main").await.unwrap();
        assert_eq!(pending.subject, "ops-alice");
        assert!(matches!(
            auth.take(&state, "main").await,
            Err(AuthorizationError::InvalidState)
        ));
        // Another app's callback cannot use it (and it is gone afterwards).
        let second = state_of(&auth.start("main", "ops-alice").await.unwrap().url);
        assert!(auth.take(&second, "other").await.is_err());
        assert!(auth.take(&second, "main").await.is_err());
        // Expired.
        let third = state_of(&auth.start("main", "ops-alice").await.unwrap().url);
        clock.advance(600);
        assert!(auth.take(&third, "main").await.is_err());
        assert!(matches!(
            auth.start("nope", "ops-alice").await,
            Err(AuthorizationError::UnknownApp(_))
        ));
        // Only the hash is stored: the state itself is not a key.
        assert_eq!(
            store.take_authorization_state(&state, 0).await.unwrap(),
            None
        );
    }
}
