//! Token manager against a local imitation of TikTok's token endpoint.

use std::collections::HashMap;
use std::sync::atomic::AtomicU32;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::*;
use crate::clock::ManualClock;

const T0: i64 = 1_718_305_585;
const DAY: i64 = 86_400;
const SHOP: &str = "7494049642642441621";
const APP_SECRET: &str = "e59af819cc-app-secret";
const STORE_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Ok,
    Http500,
    Refused,
    DurationExpiry,
}

struct Mock {
    calls: AtomicU32,
    mode: Mutex<Mode>,
    delay: Duration,
    now: i64,
    /// The refresh token each call presented.
    presented: Mutex<Vec<String>>,
}

async fn refresh_endpoint(
    State(mock): State<Arc<Mock>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let n = mock.calls.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(mock.delay).await;
    let ok = q.get("app_key").map(String::as_str) == Some("29a39d")
        && q.get("app_secret").map(String::as_str) == Some(APP_SECRET)
        && q.get("grant_type").map(String::as_str) == Some("refresh_token");
    if !ok {
        return (StatusCode::BAD_REQUEST, "bad query").into_response();
    }
    mock.presented
        .lock()
        .push(q.get("refresh_token").cloned().unwrap_or_default());
    let mode = *mock.mode.lock();
    let (access_exp, refresh_exp) = match mode {
        Mode::Http500 => return (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
        Mode::Refused => {
            return axum::Json(serde_json::json!({
                "code": 36004004, "message": "invalid refresh_token", "data": {}
            }))
            .into_response();
        }
        Mode::DurationExpiry => (7 * DAY, 365 * DAY),
        Mode::Ok => (mock.now + 7 * DAY, mock.now + 365 * DAY),
    };
    axum::Json(serde_json::json!({
        "code": 0,
        "message": "success",
        "request_id": format!("req-{n}"),
        "data": {
            "access_token": format!("acc-{n}"),
            "access_token_expire_in": access_exp,
            "refresh_token": format!("ref-{n}"),
            "refresh_token_expire_in": refresh_exp,
            "open_id": "open",
            "seller_name": "seller",
            "seller_base_region": "GB",
            "user_type": 0,
            "granted_scopes": ["seller.order.info"]
        }
    }))
    .into_response()
}

async fn mock(now: i64, delay: Duration) -> (Arc<Mock>, String) {
    let mock = Arc::new(Mock {
        calls: AtomicU32::new(0),
        mode: Mutex::new(Mode::Ok),
        delay,
        now,
        presented: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new()
        .route(
            "/api/v2/token/refresh",
            axum::routing::get(refresh_endpoint),
        )
        .with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (mock, base)
}

fn shop(base: &str) -> ShopTokenSettings {
    ShopTokenSettings {
        shop_id: SHOP.into(),
        app: Arc::new(AppCredentials {
            app_key: "29a39d".into(),
            app_secret: Secret::new(APP_SECRET),
            auth_base: base.into(),
            ca: None,
        }),
        access_token: Some(Secret::new("acc-0")),
        access_expires_at: Some(T0 + 7 * DAY),
        refresh_token: Some(Secret::new("ref-0")),
        refresh_expires_at: Some(T0 + 365 * DAY),
    }
}

fn settings() -> TokenManagerSettings {
    TokenManagerSettings {
        refresh_margin: Duration::from_secs(DAY as u64),
        retry_interval: Duration::from_secs(60),
        request_timeout: Duration::from_secs(5),
        check_interval: Duration::from_secs(60),
        ..TokenManagerSettings::default()
    }
}

fn legacy_file(dir: &tempfile::TempDir) -> crate::tiktok::token_store::TokenStore {
    crate::tiktok::token_store::TokenStore::new(
        dir.path().join("tokens.enc"),
        &Secret::new(STORE_KEY),
    )
    .unwrap()
}

fn state_store() -> crate::state::SharedState {
    Arc::new(
        crate::state::embedded::EmbeddedStore::open(None, Arc::new(crate::clock::SystemClock))
            .unwrap(),
    )
}

fn vault(store: &crate::state::SharedState) -> TokenVault {
    TokenVault::new(
        store.clone(),
        crate::state::health::StateHealth::new("embedded"),
        crate::tiktok::token_seal::TokenSealer::new(&Secret::new(STORE_KEY)).unwrap(),
        Duration::from_secs(5),
        Duration::from_secs(2),
    )
}

#[tokio::test]
async fn refreshes_within_the_margin_and_persists() {
    // The endpoint's clock is at the refresh time: new tokens last 7 days from then.
    let (mock, base) = mock(T0 + 6 * DAY, Duration::ZERO).await;
    let store = state_store();
    let clock = ManualClock::new(T0);
    let tokens = TokenManager::new(
        settings(),
        vec![shop(&base)],
        Some((vault(&store), HashMap::new())),
        Arc::new(clock.clone()),
    )
    .unwrap();
    assert_eq!(tokens.access_token(SHOP).unwrap().expose(), "acc-0");
    // Six days out of seven: not yet within the one-day margin.
    clock.set(T0 + 6 * DAY - 1);
    assert!(tokens.refresh_due().await.is_empty());
    assert_eq!(mock.calls.load(Ordering::SeqCst), 0);
    clock.set(T0 + 6 * DAY);
    let results = tokens.refresh_due().await;
    assert_eq!(results, vec![(SHOP.to_string(), Ok(()))]);
    assert_eq!(*mock.presented.lock(), ["ref-0"]);
    assert_eq!(tokens.access_token(SHOP).unwrap().expose(), "acc-1");
    // The endpoint's absolute expiry is taken as is.
    assert_eq!(tokens.access_expires_at(SHOP), Some(T0 + 13 * DAY));
    let (generation, saved) = vault(&store).load(SHOP).await.unwrap().unwrap();
    assert_eq!(generation, 1);
    assert_eq!(saved.access_token.expose(), "acc-1");
    assert_eq!(saved.refresh_token.expose(), "ref-1");
    assert_eq!(saved.refresh_expires_at, T0 + 371 * DAY);
    // Sealed at rest: the store never holds the tokens in clear.
    let sealed = store.load_tokens(SHOP).await.unwrap().unwrap();
    assert!(!String::from_utf8_lossy(&sealed.sealed).contains("acc-1"));
    // Fresh again: nothing due.
    assert!(tokens.refresh_due().await.is_empty());

    // A restart picks the refreshed tokens from the store over the (older) config ones.
    let restarted = TokenManager::new(
        settings(),
        vec![shop(&base)],
        Some((vault(&store), HashMap::new())),
        Arc::new(clock.clone()),
    )
    .unwrap();
    assert_eq!(restarted.access_token(SHOP).unwrap().expose(), "acc-1");
}

#[tokio::test]
async fn replicas_sharing_a_store_refresh_once_and_all_use_the_new_tokens() {
    let (mock, base) = mock(T0 + 6 * DAY, Duration::from_millis(200)).await;
    let store = state_store();
    let clock = ManualClock::new(T0 + 6 * DAY);
    let replicas: Vec<TokenManager> = (0..3)
        .map(|_| {
            TokenManager::new(
                settings(),
                vec![shop(&base)],
                Some((vault(&store), HashMap::new())),
                Arc::new(clock.clone()),
            )
            .unwrap()
        })
        .collect();
    let results = futures::future::join_all(replicas.iter().map(|r| r.refresh_due())).await;
    assert!(
        results.iter().flatten().all(|(_, r)| r.is_ok()),
        "{results:?}"
    );
    assert_eq!(
        mock.calls.load(Ordering::SeqCst),
        1,
        "one call for the fleet"
    );
    for r in &replicas {
        assert_eq!(r.access_token(SHOP).unwrap().expose(), "acc-1");
        assert_eq!(r.access_token(SHOP).unwrap().generation(), 1);
    }
    // A replica told the old token expired reads the new one instead of refreshing again.
    let again = replicas[1].force_refresh(SHOP, 0).await.unwrap();
    assert_eq!(again.expose(), "acc-1");
    assert_eq!(mock.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn concurrent_force_refreshes_share_one_call() {
    let (mock, base) = mock(T0, Duration::from_millis(300)).await;
    let clock = ManualClock::new(T0);
    let tokens =
        TokenManager::new(settings(), vec![shop(&base)], None, Arc::new(clock.clone())).unwrap();
    let used = tokens.access_token(SHOP).unwrap();
    assert_eq!(used.generation(), 0);
    let calls = (0..20).map(|_| {
        let tokens = tokens.clone();
        async move { tokens.force_refresh(SHOP, 0).await }
    });
    let results = futures::future::join_all(calls).await;
    for r in &results {
        let token = r.as_ref().unwrap();
        assert_eq!((token.expose(), token.generation()), ("acc-1", 1));
    }
    assert_eq!(mock.calls.load(Ordering::SeqCst), 1);
    assert_eq!(tokens.access_token(SHOP).unwrap().expose(), "acc-1");
    // The background pass coalesces with a forced refresh too.
    clock.set(T0 + 6 * DAY + 1);
    let (forced, background) = tokio::join!(tokens.force_refresh(SHOP, 1), tokens.refresh_due());
    assert_eq!(forced.unwrap().expose(), "acc-2");
    assert_eq!(background.len(), 1);
    assert_eq!(mock.calls.load(Ordering::SeqCst), 2);
    // Later refreshes use the newest refresh token.
    assert_eq!(*mock.presented.lock(), ["ref-0", "ref-1"]);
}

#[tokio::test]
async fn forced_refreshes_obey_the_back_off_after_a_failure() {
    let (mock, base) = mock(T0, Duration::from_millis(50)).await;
    *mock.mode.lock() = Mode::Http500;
    let clock = ManualClock::new(T0);
    let tokens =
        TokenManager::new(settings(), vec![shop(&base)], None, Arc::new(clock.clone())).unwrap();
    let used = tokens.access_token(SHOP).unwrap().generation();

    // Five requests meet `105002` at once while the token host fails: one refresh call.
    let forced = (0..5).map(|_| {
        let tokens = tokens.clone();
        async move { tokens.force_refresh(SHOP, used).await }
    });
    for r in futures::future::join_all(forced).await {
        assert!(
            matches!(r, Err(TokenError::HttpStatus { status: 500, .. })),
            "{r:?}"
        );
    }
    assert_eq!(mock.calls.load(Ordering::SeqCst), 1);

    // Later ones within the retry interval are told to wait, without a call.
    for _ in 0..5 {
        let err = tokens.force_refresh(SHOP, used).await.unwrap_err();
        assert_eq!(
            err,
            TokenError::RefreshBackoff {
                shop: SHOP.into(),
                retry_in_secs: 60
            }
        );
        assert_eq!(err.retry_after_secs(), Some(60));
    }
    clock.advance(59);
    let err = tokens.force_refresh(SHOP, used).await.unwrap_err();
    assert_eq!(err.retry_after_secs(), Some(1));
    assert!(tokens.refresh_due().await.is_empty());
    assert_eq!(mock.calls.load(Ordering::SeqCst), 1);

    // After the interval, one new attempt; it succeeds and clears the back-off.
    clock.advance(1);
    *mock.mode.lock() = Mode::Ok;
    let token = tokens.force_refresh(SHOP, used).await.unwrap();
    assert_eq!((token.expose(), token.generation()), ("acc-2", 1));
    assert_eq!(mock.calls.load(Ordering::SeqCst), 2);
    // The refresh token was never spent by the failed call: both presented the original.
    assert_eq!(*mock.presented.lock(), ["ref-0", "ref-0"]);
}

#[tokio::test]
async fn an_expired_answer_for_a_replaced_token_retries_with_the_new_one() {
    let (mock, base) = mock(T0, Duration::ZERO).await;
    let clock = ManualClock::new(T0);
    let tokens =
        TokenManager::new(settings(), vec![shop(&base)], None, Arc::new(clock.clone())).unwrap();
    // Two requests took the same token; both will meet `105002`.
    let first = tokens.access_token(SHOP).unwrap();
    let second = tokens.access_token(SHOP).unwrap();
    let new = tokens
        .force_refresh(SHOP, first.generation())
        .await
        .unwrap();
    assert_eq!(new.expose(), "acc-1");
    // The second answer arrives after the replacement: no refresh, the current token.
    let retry = tokens
        .force_refresh(SHOP, second.generation())
        .await
        .unwrap();
    assert_eq!(retry, new);
    assert_eq!(mock.calls.load(Ordering::SeqCst), 1);
    assert_eq!(*mock.presented.lock(), ["ref-0"]);
    // An answer about the new token itself does refresh, with the new refresh token.
    let newer = tokens.force_refresh(SHOP, new.generation()).await.unwrap();
    assert_eq!((newer.expose(), newer.generation()), ("acc-2", 2));
    assert_eq!(*mock.presented.lock(), ["ref-0", "ref-1"]);
}

#[tokio::test]
async fn failures_keep_the_old_token_and_say_what_failed_without_secrets() {
    let (mock, base) = mock(T0, Duration::ZERO).await;
    // Within the refresh margin, so the background refresher would want to refresh.
    let clock = ManualClock::new(T0 + 6 * DAY + 1);
    let tokens =
        TokenManager::new(settings(), vec![shop(&base)], None, Arc::new(clock.clone())).unwrap();
    let check = |err: &TokenError| {
        let text = format!("{err} {err:?}");
        assert!(text.contains(SHOP), "{text}");
        for secret in [APP_SECRET, "ref-0", "acc-0", "refresh_token="] {
            assert!(!text.contains(secret), "{text}");
        }
    };

    *mock.mode.lock() = Mode::Http500;
    let err = tokens.force_refresh(SHOP, 0).await.unwrap_err();
    assert!(
        matches!(err, TokenError::HttpStatus { status: 500, .. }),
        "{err}"
    );
    check(&err);

    // Each later attempt waits out the back-off of the one before.
    clock.advance(60);
    *mock.mode.lock() = Mode::Refused;
    let err = tokens.force_refresh(SHOP, 0).await.unwrap_err();
    assert!(
        matches!(err, TokenError::Refused { code: 36004004, .. }),
        "{err}"
    );
    check(&err);

    // A duration where an absolute time belongs is refused, not stored as a near-past expiry.
    clock.advance(60);
    *mock.mode.lock() = Mode::DurationExpiry;
    let err = tokens.force_refresh(SHOP, 0).await.unwrap_err();
    assert!(matches!(err, TokenError::InvalidResponse { .. }), "{err}");
    check(&err);
    assert_eq!(tokens.access_token(SHOP).unwrap().expose(), "acc-0");
    assert_eq!(tokens.access_expires_at(SHOP), Some(T0 + 7 * DAY));

    // After a failure the background refresher waits out the retry interval.
    *mock.mode.lock() = Mode::Ok;
    let before = mock.calls.load(Ordering::SeqCst);
    assert!(tokens.refresh_due().await.is_empty());
    clock.advance(60);
    assert_eq!(tokens.refresh_due().await.len(), 1);
    assert_eq!(mock.calls.load(Ordering::SeqCst), before + 1);

    // Nothing listening: a transport error, still without the URL.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let tokens = TokenManager::new(
        settings(),
        vec![shop(&closed)],
        None,
        Arc::new(clock.clone()),
    )
    .unwrap();
    let err = tokens.force_refresh(SHOP, 0).await.unwrap_err();
    assert!(matches!(err, TokenError::Transport { .. }), "{err}");
    check(&err);
}

#[tokio::test]
async fn hot_path_errors_and_unknown_expiry() {
    let (mock, base) = mock(T0, Duration::ZERO).await;
    let clock = ManualClock::new(T0);
    let mut no_refresh = shop(&base);
    no_refresh.shop_id = "no-refresh".into();
    no_refresh.refresh_token = None;
    let mut unknown = shop(&base);
    unknown.shop_id = "unknown-expiry".into();
    unknown.access_expires_at = None;
    let mut empty = shop(&base);
    empty.shop_id = "empty".into();
    empty.access_token = None;
    empty.refresh_token = None;
    let tokens = TokenManager::new(
        settings(),
        vec![shop(&base), no_refresh, unknown, empty],
        None,
        Arc::new(clock.clone()),
    )
    .unwrap();
    assert_eq!(
        tokens.access_token("nope").unwrap_err(),
        TokenError::UnknownShop("nope".into())
    );
    assert_eq!(
        tokens.access_token("empty").unwrap_err(),
        TokenError::NoAccessToken("empty".into())
    );
    assert_eq!(
        tokens.force_refresh("no-refresh", 0).await.unwrap_err(),
        TokenError::NoRefreshToken("no-refresh".into())
    );
    // Unknown expiry: usable now, refreshed at the first pass to learn it.
    assert_eq!(
        tokens.access_token("unknown-expiry").unwrap().expose(),
        "acc-0"
    );
    let due: Vec<String> = tokens
        .refresh_due()
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(due, ["unknown-expiry"]);
    assert_eq!(mock.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        tokens.access_expires_at("unknown-expiry"),
        Some(T0 + 7 * DAY)
    );
    // An expired access token is refused rather than sent to TikTok.
    clock.set(T0 + 7 * DAY);
    assert_eq!(
        tokens.access_token(SHOP).unwrap_err(),
        TokenError::AccessExpired(SHOP.into())
    );
    // An expired refresh token cannot refresh.
    clock.set(T0 + 366 * DAY);
    assert_eq!(
        tokens.force_refresh(SHOP, 0).await.unwrap_err(),
        TokenError::NoRefreshToken(SHOP.into())
    );
}

#[tokio::test]
async fn unconfigured_shops_in_the_store_are_ignored_and_bad_bases_refused() {
    let dir = tempfile::tempdir().unwrap();
    let stranger = TokenSet {
        access_token: Secret::new("stranger-access"),
        access_expires_at: T0 + DAY,
        refresh_token: Secret::new("stranger-refresh"),
        refresh_expires_at: T0 + 300 * DAY,
    };
    let imported = TokenSet {
        access_token: Secret::new("imported-access"),
        access_expires_at: T0 + 5 * DAY,
        refresh_token: Secret::new("imported-refresh"),
        refresh_expires_at: T0 + 300 * DAY,
    };
    legacy_file(&dir)
        .save(&HashMap::from([
            ("999".to_string(), stranger),
            (SHOP.to_string(), imported),
        ]))
        .unwrap();
    let store = state_store();
    let clock = ManualClock::new(T0);
    let tokens = TokenManager::new(
        settings(),
        vec![shop("http://127.0.0.1:9")],
        Some((vault(&store), legacy_file(&dir).load().unwrap())),
        Arc::new(clock.clone()),
    )
    .unwrap();
    // The legacy file's tokens of a configured shop are imported into the store.
    assert_eq!(
        tokens.access_token(SHOP).unwrap().expose(),
        "imported-access"
    );
    assert!(store.load_tokens(SHOP).await.unwrap().is_some());
    assert!(store.load_tokens("999").await.unwrap().is_none());
    assert!(matches!(
        tokens.access_token("999"),
        Err(TokenError::UnknownShop(_))
    ));

    let err = TokenManager::new(
        settings(),
        vec![shop("auth.tiktok-shops.com")],
        None,
        Arc::new(clock),
    )
    .unwrap_err();
    assert_eq!(err, TokenError::BadAuthBase(SHOP.into()));
}

#[tokio::test]
async fn background_refresher_refreshes_and_stops() {
    let (mock, base) = mock(T0, Duration::ZERO).await;
    let clock = ManualClock::new(T0 + 6 * DAY + 10);
    let tokens =
        TokenManager::new(settings(), vec![shop(&base)], None, Arc::new(clock.clone())).unwrap();
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn({
        let tokens = tokens.clone();
        async move { tokens.run(stopped).await }
    });
    for _ in 0..200 {
        if mock.calls.load(Ordering::SeqCst) >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(mock.calls.load(Ordering::SeqCst), 1);
    assert_eq!(tokens.access_token(SHOP).unwrap().expose(), "acc-1");
}

#[test]
fn the_refresh_client_trusts_the_apps_ca_bundle() {
    // The bundle is read when the manager is built: a missing one is an error, not a silent
    // fallback to the system roots.
    let clock = ManualClock::new(T0);
    let mut s = shop("https://auth.example.test");
    s.app = Arc::new(AppCredentials {
        ca: Some("/nonexistent/tiktok-ca.pem".into()),
        ..(*s.app).clone()
    });
    let Err(err) = TokenManager::new(settings(), vec![s], None, Arc::new(clock)) else {
        panic!("the missing CA bundle must be reported");
    };
    assert!(
        matches!(&err, TokenError::Ca { path, .. } if path.contains("tiktok-ca.pem")),
        "{err}"
    );
}
