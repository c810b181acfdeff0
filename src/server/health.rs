//! Runs the active upstream health checker (`gateway::health::checker`) as a background service.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::gateway::health::checker;
use crate::gateway::upstreams::UpstreamRegistry;

pub struct HealthCheckService {
    pub upstreams: Arc<UpstreamRegistry>,
}

#[async_trait]
impl BackgroundService for HealthCheckService {
    async fn start(&self, shutdown: ShutdownWatch) {
        checker::run(&self.upstreams, shutdown).await;
    }
}
