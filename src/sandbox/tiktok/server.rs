//! Starting and stopping a sandbox: an axum app on a loopback listener (or one the caller
//! gives), with a handle that exposes the address and the shared state and shuts the server
//! down when asked or dropped.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::response::Response;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::config::SandboxConfig;
use super::record::{RecordedRequest, RejectReason};
use super::reply::{self, Reply};
use super::state::SandboxState;
use super::{api, authorize};

/// Request bodies above this are refused (image uploads are the largest TikTok takes).
const MAX_BODY: usize = 10 * 1024 * 1024;
/// How long `shutdown` waits for in-flight requests before it stops the task.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running sandbox. Dropping it stops the server.
pub struct TikTokSandbox {
    addr: SocketAddr,
    state: Arc<SandboxState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TikTokSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TikTokSandbox")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Starts a sandbox on `127.0.0.1` with a free port.
pub async fn spawn(config: SandboxConfig) -> std::io::Result<TikTokSandbox> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    spawn_on(listener, config).await
}

/// Starts a sandbox on a listener the caller bound.
pub async fn spawn_on(
    listener: TcpListener,
    config: SandboxConfig,
) -> std::io::Result<TikTokSandbox> {
    let addr = listener.local_addr()?;
    let state = Arc::new(SandboxState::new(&config));
    let app = Router::new().fallback(handle).with_state(state.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(async {
            // A dropped sender means the same as a sent stop.
            let _ = stopped.await;
        });
        if let Err(error) = server.await {
            tracing::warn!(%error, "tiktok sandbox server stopped with an error");
        }
    });
    Ok(TikTokSandbox {
        addr,
        state,
        stop: Some(stop),
        task: Some(task),
    })
}

impl TikTokSandbox {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, to use as both the API base and the token (auth) base.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The shared state: records, counters, tokens, data.
    pub fn state(&self) -> &Arc<SandboxState> {
        &self.state
    }

    /// Stops accepting, lets in-flight requests finish (bounded), then ends the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for TikTokSandbox {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Idle keep-alive connections would otherwise hold the server open.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn handle(State(state): State<Arc<SandboxState>>, request: Request) -> Response {
    let (parts, body): (Parts, Body) = request.into_parts();
    let mut page = None;
    let (body, reply) = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) if authorize::PATHS.contains(&parts.uri.path()) => {
            let (response, reply) = authorize::answer(&state, &parts.method, &parts.uri);
            page = Some(response);
            (bytes, reply)
        }
        Ok(bytes) => {
            let reply = api::answer(&state, &parts.method, &parts.uri, &parts.headers, &bytes);
            (bytes, reply)
        }
        Err(_) => (
            Bytes::new(),
            Reply::error(
                RejectReason::BodyTooLarge,
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                reply::INVALID_REQUEST,
                "Request body is too large.",
            ),
        ),
    };
    let request_id = {
        let mut inner = state.inner.lock();
        let request_id = inner.next_request_id(state.now());
        inner.record(RecordedRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body,
            status: reply.status.as_u16(),
            code: reply.code,
            rejected: reply.rejected,
        });
        request_id
    };
    match page {
        Some(response) => response,
        None => reply.into_http(&request_id),
    }
}
