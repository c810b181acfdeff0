//! The token host's two endpoints: `GET /api/v2/token/get` (auth code for tokens) and
//! `GET /api/v2/token/refresh` (refresh token for a new access token). Unsigned; the app
//! proves itself with `app_key` and `app_secret` in the query. `*_expire_in` are absolute unix
//! times, as TikTok returns them.

use axum::http::{Method, StatusCode, Uri};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::check::Params;
use super::config::ACCESS_TOKEN_LIFETIME_SECS;
use super::record::RejectReason;
use super::reply::{self, Reply};
use super::state::{Grant, Inner, SandboxState};

pub(crate) const GET_PATH: &str = "/api/v2/token/get";
pub(crate) const REFRESH_PATH: &str = "/api/v2/token/refresh";

const GRANTED_SCOPES: [&str; 5] = [
    "seller.authorization.info",
    "seller.order.info",
    "seller.fulfillment.basic",
    "seller.product.basic",
    "seller.finance.info",
];

fn refused(message: &str) -> Reply {
    Reply::error(
        RejectReason::TokenGrant,
        StatusCode::UNAUTHORIZED,
        reply::INVALID_REQUEST,
        message,
    )
}

/// Answers a call to one of the token paths.
pub(crate) fn answer(state: &SandboxState, inner: &mut Inner, method: &Method, uri: &Uri) -> Reply {
    if method != Method::GET {
        return Reply::error(
            RejectReason::WrongMethod,
            StatusCode::METHOD_NOT_ALLOWED,
            reply::WRONG_METHOD,
            "Method not allowed.",
        );
    }
    if inner.token_host_down {
        return Reply::error(
            RejectReason::TokenGrant,
            StatusCode::SERVICE_UNAVAILABLE,
            reply::INTERNAL_ERROR,
            "Internal error. Please try again.",
        );
    }
    let params = match Params::from_raw(uri.query()) {
        Ok(p) => p,
        Err(reply) => return reply,
    };
    let secret_ok = params
        .get("app_secret")
        .is_some_and(|s| bool::from(s.as_bytes().ct_eq(state.app_secret.expose().as_bytes())));
    if params.get("app_key") != Some(state.app_key.as_str()) || !secret_ok {
        return refused("Invalid app_key or app_secret.");
    }
    let now = state.now();
    let refresh_path = uri.path() == REFRESH_PATH;
    let (grant_type, code_key) = if refresh_path {
        ("refresh_token", "refresh_token")
    } else {
        ("authorized_code", "auth_code")
    };
    if params.get("grant_type") != Some(grant_type) {
        return Reply::invalid("grant_type is invalid.");
    }
    let Some(code) = params.get(code_key) else {
        return Reply::invalid("Required parameter is missing.");
    };

    let (shop_id, refresh_token, refresh_expires_at) = if refresh_path {
        match inner.refresh_tokens.get(code) {
            Some(grant) if grant.expires_at >= now => {
                (grant.shop_id.clone(), code.to_owned(), grant.expires_at)
            }
            _ => return refused("refresh_token is invalid or expired."),
        }
    } else {
        // Single use: taken out whether or not it is still valid.
        match inner.auth_codes.remove(code) {
            Some(grant) if grant.expires_at >= now => {
                let token = inner.new_token("TTP_rt_");
                let expires_at = now + super::config::REFRESH_TOKEN_LIFETIME_SECS;
                inner.refresh_tokens.insert(
                    token.clone(),
                    Grant {
                        shop_id: grant.shop_id.clone(),
                        expires_at,
                    },
                );
                (grant.shop_id, token, expires_at)
            }
            _ => {
                return Reply::error(
                    RejectReason::TokenGrant,
                    StatusCode::OK,
                    reply::AUTH_CODE_INVALID,
                    "auth_code is invalid, used or expired.",
                );
            }
        }
    };

    let access_token = inner.new_token("TTP_at_");
    let access_expires_at = now + ACCESS_TOKEN_LIFETIME_SECS;
    inner.access_tokens.insert(
        access_token.clone(),
        Grant {
            shop_id: shop_id.clone(),
            expires_at: access_expires_at,
        },
    );
    let (seller_name, region) = inner
        .shop(&shop_id)
        .map(|s| (s.name.clone(), s.region.clone()))
        .unwrap_or_default();
    Reply::ok(json!({
        "access_token": access_token,
        "access_token_expire_in": access_expires_at,
        "refresh_token": refresh_token,
        "refresh_token_expire_in": refresh_expires_at,
        "open_id": format!("open_{shop_id}"),
        "seller_name": seller_name,
        "seller_base_region": region,
        "user_type": 0,
        "granted_scopes": GRANTED_SCOPES,
    }))
}
