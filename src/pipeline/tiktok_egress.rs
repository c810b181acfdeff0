//! Stage 6-7 for TikTok routes: the caller names a shop; the gateway checks the caller may act
//! for it, injects the app key, shop cipher and access token the caller never sees, signs the
//! exact bytes it sends, paces calls per (app, shop, endpoint), and calls TikTok itself over
//! verified TLS. Owning the call lets it refresh an expired token and retry once (`105002`), and
//! back off on throttling (`429` / `36009002`) without the caller's help.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use pingora::proxy::Session;

use super::body;
use super::ctx::RequestCtx;
use super::error::GatewayError;
use super::proxy::Reply;
use crate::auth::Identity;
use crate::config::{Route, RouteTikTok};
use crate::limit::PaceKey;
use crate::server::state::{Gateway, Runtime};
use crate::telemetry::metrics::metrics;
use crate::tiktok::query::{EgressRequest, ShopCredentials, SignRequestError, sign_request};

/// TikTok's "access token expired" and "rate limited" codes.
const CODE_TOKEN_EXPIRED: i64 = 105002;
const CODE_RATE_LIMITED: i64 = 36009002;

pub async fn forward(
    gateway: &Gateway,
    runtime: &Runtime,
    route: &Route,
    tiktok: &RouteTikTok,
    identity: &Identity,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<Reply, GatewayError> {
    let forbid = |ctx: &mut RequestCtx, reason: &'static str, message: &str| {
        metrics()
            .auth_failures
            .with_label_values(&[route.name.as_str(), reason])
            .inc();
        ctx.reason = Some(reason);
        GatewayError::new(StatusCode::FORBIDDEN, reason, message.to_string())
    };
    let shop_id = session
        .req_header()
        .headers
        .get(tiktok.shop_header.as_str())
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| {
            GatewayError::bad_request(
                "shop_required",
                format!("name the shop in `{}`", tiktok.shop_header),
            )
        })?;
    // Least privilege per shop: the caller needs this shop's scope (or the wildcard).
    if !identity.has_scope(&format!("tiktok:shop:{shop_id}"))
        && !identity.has_scope("tiktok:shop:*")
    {
        return Err(forbid(
            ctx,
            "shop_forbidden",
            "the caller may not act for this shop",
        ));
    }
    let (Some(tconf), Some(services)) = (
        runtime.config.tiktok.as_ref(),
        gateway.tiktok.egress.as_ref(),
    ) else {
        return Err(GatewayError::internal(
            "TikTok route without TikTok configuration",
        ));
    };
    let Some(shop) = tconf
        .shops
        .iter()
        .find(|s| s.id == shop_id && s.app == tiktok.app)
    else {
        return Err(forbid(
            ctx,
            "unknown_shop",
            "this shop is not configured for the route's app",
        ));
    };
    let (Some(app), Some(tokens)) = (tconf.apps.get(&tiktok.app), gateway.tiktok.tokens.as_ref())
    else {
        return Err(GatewayError::internal("TikTok app missing"));
    };

    // The exact bytes that are signed and sent.
    let raw = match body::declared_body(session)? {
        body::DeclaredBody::None => Bytes::new(),
        _ => body::read_whole(session, route.limits.max_body, ctx.body_rate).await?,
    };
    let content_type = session
        .req_header()
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if !raw.is_empty() && super::inspect_stage::is_json_body(session) {
        crate::inspect::check_json(&raw, raw.len(), route.inspection.limits.max_json_depth)
            .map_err(|e| GatewayError::from(crate::inspect::InspectError::from(e)))?;
    }
    let path = route
        .rewrite_path
        .clone()
        .unwrap_or_else(|| session.req_header().uri.path().to_string());
    let raw_query = session.req_header().uri.query().map(str::to_owned);
    let method = reqwest::Method::from_bytes(session.req_header().method.as_str().as_bytes())
        .map_err(|_| GatewayError::bad_request("bad_method", "unsupported method"))?;

    let key = PaceKey {
        app: &tiktok.app,
        shop: &shop.id,
        endpoint: &route.name,
    };
    services.pacer.try_acquire(&key).map_err(|wait| {
        metrics()
            .refusals
            .with_label_values(&[route.name.as_str(), "tiktok_budget"])
            .inc();
        GatewayError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "tiktok_budget_exhausted",
            "the outbound budget for this shop is used up; retry later",
        )
        .with_header("retry-after", wait.secs().to_string())
    })?;

    let client = services
        .clients
        .get(&tiktok.app)
        .ok_or_else(|| GatewayError::internal("no HTTP client for the TikTok app"))?;
    let mut token = tokens.access_token(&shop.id).map_err(|e| {
        tracing::error!(shop = %shop.id, error = %e, "no usable TikTok access token");
        GatewayError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "token_unavailable",
            "the shop's TikTok authorization is not usable",
        )
    })?;
    let mut refreshed = false;
    loop {
        let signed = sign_request(
            &EgressRequest {
                path: &path,
                raw_query: raw_query.as_deref(),
                body: &raw,
                content_type: content_type.as_deref(),
            },
            &ShopCredentials {
                app_key: &app.app_key,
                app_secret: app.app_secret.expose().as_bytes(),
                access_token: token.expose(),
                shop_cipher: Some(&shop.cipher),
            },
            gateway.clock.unix_seconds(),
        )
        .map_err(|e| match e {
            SignRequestError::Query(q) => GatewayError::bad_request("bad_query", q.to_string()),
            other => {
                tracing::error!(shop = %shop.id, error = %other, "cannot sign TikTok request");
                GatewayError::internal("the request could not be signed")
            }
        })?;
        let mut request = client
            .request(
                method.clone(),
                format!("{}{}", app.api_base, signed.path_and_query),
            )
            .body(raw.clone());
        for (name, value) in signed.headers() {
            request = request.header(name, value.clone());
        }
        let response = request.send().await.map_err(|e| {
            let timeout = e.is_timeout();
            metrics()
                .upstream_errors
                .with_label_values(&[
                    route.upstream.as_str(),
                    if timeout { "timeout" } else { "connect" },
                ])
                .inc();
            if timeout {
                GatewayError::gateway_timeout()
            } else {
                GatewayError::bad_gateway("upstream_unavailable", "TikTok could not be reached")
            }
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let response_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_owned();
        let body = read_bounded(response, route.limits.max_response_body).await?;
        let code = tiktok_code(&body);

        if status == StatusCode::TOO_MANY_REQUESTS || code == Some(CODE_RATE_LIMITED) {
            let wait = services.pacer.on_throttled(&key, retry_after);
            ctx.reason = Some("tiktok_throttled");
            return Err(GatewayError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "tiktok_throttled",
                "TikTok is throttling this shop; retry later",
            )
            .with_header("retry-after", wait.as_secs().max(1).to_string()));
        }
        if code == Some(CODE_TOKEN_EXPIRED) && !refreshed {
            refreshed = true;
            // Refreshes only if `token` is still the shop's current one, and not during the
            // back-off after a failed refresh.
            token = tokens
                .force_refresh(&shop.id, token.generation())
                .await
                .map_err(|e| {
                    tracing::error!(shop = %shop.id, error = %e, "token refresh after 105002 failed");
                    let err = GatewayError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "token_refresh_failed",
                        "the shop's TikTok token could not be refreshed",
                    );
                    match e.retry_after_secs() {
                        Some(secs) => err.with_header("retry-after", secs.max(1).to_string()),
                        None => err,
                    }
                })?;
            continue;
        }
        services.pacer.on_success(&key);
        ctx.shop = Some(shop.id.clone());
        let engine = gateway.privacy.load();
        let body = super::privacy_stage::outgoing(&engine, route, identity, &ctx.request_id, body)?;
        return Ok(Reply {
            status: StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
            headers: vec![("content-type", response_type)],
            body,
        });
    }
}

/// Reads a response body, refusing one over `limit` rather than passing part of it on.
async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, GatewayError> {
    let too_big = || {
        GatewayError::bad_gateway(
            "upstream_response_too_large",
            "the TikTok response exceeds the route's limit",
        )
    };
    if response
        .content_length()
        .is_some_and(|n| n as usize > limit)
    {
        return Err(too_big());
    }
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| GatewayError::bad_gateway("upstream_error", "the TikTok response broke off"))?
    {
        if out.len() + chunk.len() > limit {
            return Err(too_big());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// TikTok's envelope `code`, if the body is a JSON object that has one.
fn tiktok_code(body: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        code: Option<i64>,
    }
    serde_json::from_slice::<Envelope>(body)
        .ok()
        .and_then(|e| e.code)
}
