//! The seller-authorization callback kind: TikTok redirects the seller's browser here with
//! `?code=&state=`. In order, each step only after the previous one passed: the `state` is taken
//! from the state layer (single use, unexpired, this route's app), the auth code is exchanged at
//! the app's token host, the authorized shops and their ciphers are listed (a signed call through
//! the route's upstream), then each shop's tokens are stored sealed and the shop is recorded as
//! active, usable at once by callers holding `tiktok:shop:<id>`. Any failure answers a clear
//! error, stores nothing, and leaves an audit record; neither the code, the tokens nor the token
//! host's URL (which carries the app secret) reaches a log, an error or a record.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use pingora::http::RequestHeader;
use serde_json::json;

use super::tiktok_egress::exchange;
use crate::audit::{AuditEvent, Outcome};
use crate::error::GatewayError;
use crate::gateway::route::{AuthorizationPlan, CompiledRoute};
use crate::pipeline::stages::{Reply, Request};
use crate::tiktok::authorization::{AuthorizationError, MAX_PARAM_LEN, parse_shops};
use crate::tiktok::query::{EgressRequest, ShopCredentials, sign_request};
use crate::tiktok::tokens::{AppCredentials, TokenError, exchange_auth_code};

/// TikTok's answer to an auth code that is invalid or already used.
const CODE_AUTH_CODE_INVALID: i64 = 36_004_004;
/// Bound on the token host call.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
const SHOPS_PATH: &str = "/authorization/202309/shops";

/// `code` and `state` from the query: each exactly once, non-empty, bounded.
fn params(query: Option<&str>) -> Option<(String, String)> {
    let (mut code, mut state) = (None, None);
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let slot = match &*k {
            "code" => &mut code,
            "state" => &mut state,
            _ => continue,
        };
        if slot.is_some() || v.is_empty() || v.len() > MAX_PARAM_LEN {
            return None;
        }
        *slot = Some(v.into_owned());
    }
    Some((code?, state?))
}

pub async fn callback(
    req: &mut Request<'_>,
    route: &CompiledRoute,
    plan: &AuthorizationPlan,
) -> Result<Reply, GatewayError> {
    let (Some(authorizations), Some(registry)) = (
        req.gateway.tiktok.authorizations.clone(),
        req.gateway.tiktok.shops.clone(),
    ) else {
        return Err(GatewayError::internal(
            "authorization callback without TikTok services",
        ));
    };
    let app = plan.app.name.as_str();
    let audit = req.gateway.audit.clone();
    let refused = |reason: &'static str, actor: Option<&str>, outcome: Outcome| {
        let mut event = AuditEvent::new("shop.authorization", outcome)
            .detail("app", app)
            .detail("reason", reason)
            .detail("route", &*route.name);
        if let Some(actor) = actor {
            event = event.actor(actor);
        }
        audit.record(event);
    };

    let Some((code, state)) = params(req.session.req_header().uri.query()) else {
        req.ctx.reason = Some("invalid_state");
        refused("missing_parameters", None, Outcome::Refused);
        return Err(GatewayError::bad_request(
            "invalid_state",
            "the callback needs one `code` and one `state`",
        ));
    };
    let pending = match authorizations.take(&state, app).await {
        Ok(pending) => pending,
        Err(AuthorizationError::Store(e)) => {
            tracing::error!(route = %route.name, error = %e, "authorization state could not be read");
            refused("state_unavailable", None, Outcome::Failed);
            return Err(GatewayError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "state_unavailable",
                "the authorization could not be checked; start again later",
            ));
        }
        Err(_) => {
            req.ctx.reason = Some("invalid_state");
            refused("invalid_state", None, Outcome::Refused);
            return Err(GatewayError::bad_request(
                "invalid_state",
                "this authorization link is unknown, already used or expired; ask for a new one",
            ));
        }
    };
    let admin = pending.subject.as_str();

    let creds = AppCredentials {
        app_key: plan.app.app_key.clone(),
        app_secret: plan.app.app_secret.clone(),
        auth_base: plan.app.auth_base.clone(),
        ca: plan.app.ca.clone(),
    };
    let now = req.gateway.clock.unix_seconds();
    let tokens = match exchange_auth_code(&creds, &code, TOKEN_TIMEOUT, now).await {
        Ok(tokens) => tokens,
        Err(TokenError::Refused {
            code: CODE_AUTH_CODE_INVALID,
            ..
        }) => {
            req.ctx.reason = Some("auth_code_rejected");
            refused("auth_code_rejected", Some(admin), Outcome::Refused);
            return Err(GatewayError::bad_request(
                "auth_code_rejected",
                "TikTok refused the authorization code (invalid or already used, 36004004); ask for a new link",
            ));
        }
        Err(e) => {
            tracing::warn!(route = %route.name, error = %e, "token host refused or failed the code exchange");
            req.ctx.reason = Some("token_host_error");
            refused("token_host_error", Some(admin), Outcome::Failed);
            return Err(GatewayError::bad_gateway(
                "token_host_error",
                "TikTok's token host did not give tokens for this authorization",
            ));
        }
    };

    // The shops the authorization covers, with their ciphers: signed, no shop_cipher.
    let signed = sign_request(
        &EgressRequest {
            path: SHOPS_PATH,
            raw_query: None,
            body: b"",
            content_type: None,
        },
        &ShopCredentials {
            app_key: &plan.app.app_key,
            app_secret: plan.app.app_secret.expose().as_bytes(),
            access_token: tokens.access_token.expose(),
            shop_cipher: None,
        },
        now,
    )
    .map_err(|_| GatewayError::internal("the shop list request could not be signed"))?;
    let mut head = RequestHeader::build(http::Method::GET, signed.path_and_query.as_bytes(), None)
        .map_err(|_| GatewayError::internal("the shop list request could not be built"))?;
    let built = (|| -> pingora::Result<()> {
        head.insert_header(http::header::HOST, &plan.authority)?;
        for (name, value) in signed.headers() {
            head.insert_header(name, value.clone())?;
        }
        head.insert_header(http::header::CONTENT_LENGTH, "0")?;
        head.insert_header_name(
            &crate::telemetry::request_id::HEADER_NAME,
            req.ctx.request_id.header(),
        )?;
        Ok(())
    })();
    built.map_err(|_| GatewayError::internal("the shop list request could not be built"))?;
    let listed = match exchange(req, route, head, &Bytes::new()).await {
        Ok((head, body)) if head.status.is_success() => parse_shops(&body),
        Ok(_) => Err("TikTok answered an error status"),
        Err(_) => Err("TikTok could not be reached"),
    };
    let shops = match listed {
        Ok(shops) => shops,
        Err(what) => {
            tracing::warn!(route = %route.name, problem = what, "authorized shops could not be listed");
            req.ctx.reason = Some("shop_list_error");
            refused("shop_list_error", Some(admin), Outcome::Failed);
            return Err(GatewayError::bad_gateway(
                "shop_list_error",
                "TikTok did not list the shops of this authorization",
            ));
        }
    };

    if let Err(e) = registry.authorized(app, &shops, &tokens, admin).await {
        tracing::error!(route = %route.name, error = %e, "authorized shops could not be stored");
        refused("state_unavailable", Some(admin), Outcome::Failed);
        return Err(GatewayError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "state_unavailable",
            "the authorization could not be stored; ask for a new link",
        ));
    }
    for shop in &shops {
        audit.record(
            AuditEvent::new("shop.authorized", Outcome::Allowed)
                .actor(admin)
                .detail("shop_id", shop.id.as_str())
                .detail("app", app)
                .detail("region", shop.region.as_str()),
        );
    }
    req.ctx.reason = Some("shop_authorized");
    let body = json!({
        "authorized": true,
        "app": app,
        "shops": shops
            .iter()
            .map(|s| json!({"id": s.id, "name": s.name, "region": s.region}))
            .collect::<Vec<_>>(),
    });
    Ok(Reply {
        status: StatusCode::OK,
        headers: vec![
            ("content-type", "application/json".into()),
            ("cache-control", "no-store".into()),
        ],
        body: Bytes::from(body.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::params;

    #[test]
    fn code_and_state_exactly_once() {
        assert_eq!(
            params(Some("code=abc&state=xyz&locale=en")),
            Some(("abc".into(), "xyz".into()))
        );
        for bad in [
            None,
            Some("code=abc"),
            Some("state=xyz"),
            Some("code=&state=x"),
            Some("code=a&code=b&state=x"),
            Some("code=a&state=x&state=y"),
        ] {
            assert_eq!(params(bad), None, "{bad:?}");
        }
        let long = format!("code={}&state=x", "a".repeat(513));
        assert_eq!(params(Some(&long)), None);
    }
}
