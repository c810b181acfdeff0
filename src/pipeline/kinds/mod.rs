//! The last step of the shared stage list: what ends a request of each route kind.
//! - proxy: hand the request to Pingora's upstream machinery (`pipeline::proxy`);
//! - TikTok egress: sign and send the call through the route's upstream, read the answer whole;
//! - webhook ingress: store the verified event durably and acknowledge it;
//! - TikTok authorization: a seller's browser back from TikTok, onboarding the shops.

pub mod tiktok_authorization;
pub mod tiktok_egress;
pub mod webhook_ingress;

use super::stages::{Reply, Request};
use crate::error::GatewayError;
use crate::gateway::route::{CompiledRoute, RouteKind};

/// What a kind handler produced.
pub enum Handled {
    /// Pingora proxies the request to the route's upstream.
    Proxy,
    /// An answer of the gateway's own (a webhook acknowledgement).
    Answer(Reply),
    /// An upstream's whole answer; it passes response inspection before it is written.
    Upstream(Reply),
}

/// The kind's handler. The non-proxy handlers' futures are boxed where they run: inline, their
/// state (a TikTok call, a durable store write) would size every request's future, proxied ones
/// included, and Pingora copies that future whole for each request.
pub async fn handle(req: &mut Request<'_>, route: &CompiledRoute) -> Result<Handled, GatewayError> {
    match &route.kind {
        RouteKind::Proxy => Ok(Handled::Proxy),
        RouteKind::TikTokEgress(plan) => Box::pin(tiktok_egress::send(req, route, plan))
            .await
            .map(Handled::Upstream),
        RouteKind::WebhookIngress(plan) => Box::pin(webhook_ingress::accept(req, route, plan))
            .await
            .map(Handled::Answer),
        RouteKind::TikTokAuthorization(plan) => {
            Box::pin(tiktok_authorization::callback(req, route, plan))
                .await
                .map(Handled::Answer)
        }
    }
}
