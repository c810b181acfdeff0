//! The seller authorization page: `GET /oauth/authorize?app_key=..&state=..` (the older form) or
//! `GET /open/authorize?service_id=..&state=..`. TikTok shows the seller a consent page; the
//! sandbox's seller always consents at once: a fresh single-use auth code (30 minutes) for the
//! seller's shop, and a `302` to the app's registered redirect URL with `code` and `state`
//! (unchanged). `shop_id` in the query picks another of the sandbox's shops.

use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::check::Params;
use super::record::RejectReason;
use super::reply::{self, Reply};
use super::state::SandboxState;

pub(crate) const PATHS: [&str; 2] = ["/oauth/authorize", "/open/authorize"];

/// The answer, and how to record it (status, code, reason).
pub(crate) fn answer(state: &SandboxState, method: &Method, uri: &Uri) -> (Response, Reply) {
    let refuse = |message: &str| {
        let r = Reply::error(
            RejectReason::TokenGrant,
            StatusCode::BAD_REQUEST,
            reply::INVALID_REQUEST,
            message,
        );
        (r.clone().into_http("authorize"), r)
    };
    if method != Method::GET {
        return refuse("Method not allowed.");
    }
    let params = match Params::from_raw(uri.query()) {
        Ok(p) => p,
        Err(r) => return (r.clone().into_http("authorize"), r),
    };
    let app_ok = params.get("app_key") == Some(state.app_key.as_str())
        || params.get("service_id").is_some_and(|s| !s.is_empty());
    if !app_ok {
        return refuse("Unknown app.");
    }
    let Some(client_state) = params.get("state").filter(|s| !s.is_empty()) else {
        return refuse("state is required.");
    };
    let (redirect, shop) = {
        let inner = state.inner.lock();
        let shop = params
            .get("shop_id")
            .map(str::to_owned)
            .or_else(|| inner.authorize_shop.clone())
            .or_else(|| inner.shops.first().map(|s| s.id.clone()));
        (inner.redirect_uri.clone(), shop)
    };
    let Some(redirect) = redirect else {
        return refuse("The app has no redirect URL registered.");
    };
    let Some(code) = shop.and_then(|s| state.issue_auth_code(&s)) else {
        return refuse("Unknown shop.");
    };
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("code", code.expose())
        .append_pair("state", client_state)
        .finish();
    let sep = if redirect.contains('?') { '&' } else { '?' };
    let location = format!("{redirect}{sep}{query}");
    let mut response = StatusCode::FOUND.into_response();
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            response.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => return refuse("The redirect URL is not valid."),
    }
    let mut recorded = Reply::ok(serde_json::json!({}));
    recorded.status = StatusCode::FOUND;
    (response, recorded)
}
