//! The metrics listener: `/metrics` (Prometheus text), `/healthz` (the process is up: no check
//! beyond answering) and `/readyz` (200 when nothing keeps the gateway from its job, else 503
//! with the causes; see `telemetry::readiness` and `server::readiness`; the state backend's
//! health is read at the moment of the request).

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::gateway::state::Gateway;
use crate::telemetry::metrics;
use crate::telemetry::readiness::Weight;

pub struct MetricsApp {
    pub gateway: Arc<Gateway>,
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                metrics::render().into_bytes(),
            ),
            "/healthz" => reply(
                StatusCode::OK,
                "application/json",
                br#"{"status":"ok"}"#.to_vec(),
            ),
            "/readyz" => {
                let rt = self.gateway.snapshot();
                // The state store's health is known at once (every operation reports it); the
                // background check only adds a ping when there is no traffic.
                let health = &self.gateway.state.health;
                self.gateway.readiness.report(
                    "state_backend",
                    Weight::Blocking,
                    health.cause().map_or(Ok(()), Err),
                );
                let readiness = self.gateway.readiness.report_now();
                let (status, word) = match (readiness.ready, self.gateway.readiness.is_draining()) {
                    (true, _) => (StatusCode::OK, "ready"),
                    (false, true) => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
                    (false, false) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
                };
                let body = serde_json::json!({
                    "status": word,
                    "causes": readiness.causes,
                    "degraded": readiness.degraded,
                    "checks": readiness.checks,
                    "config_version": rt.config.version,
                    "config_hash": rt.config.hash,
                    "routes": rt.config.routes.len(),
                    "state_backend": health.backend(),
                });
                reply(status, "application/json", body.to_string().into_bytes())
            }
            _ => crate::error::GatewayError::not_found().to_http_response(""),
        }
    }
}
