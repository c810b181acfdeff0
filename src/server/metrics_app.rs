//! The metrics listener: `/metrics` (Prometheus text), `/healthz` (the process is up) and
//! `/readyz` (a config is loaded and the state backend answers; 503 naming the cause when not).

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::gateway::state::Gateway;
use crate::telemetry::metrics;

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
                let health = &self.gateway.state.health;
                let (status, body) = match health.cause() {
                    None => (
                        StatusCode::OK,
                        serde_json::json!({
                            "status": "ready",
                            "config_version": rt.config.version,
                            "config_hash": rt.config.hash,
                            "routes": rt.config.routes.len(),
                            "state_backend": health.backend(),
                        }),
                    ),
                    Some(cause) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        serde_json::json!({
                            "status": "not_ready",
                            "cause": cause,
                            "config_version": rt.config.version,
                            "state_backend": health.backend(),
                        }),
                    ),
                };
                reply(status, "application/json", body.to_string().into_bytes())
            }
            _ => crate::error::GatewayError::not_found().to_http_response(""),
        }
    }
}
