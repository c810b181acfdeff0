//! An order-service stand-in: records every request it receives so tests (and the demo) can see
//! exactly what the gateway forwarded, and can be told to fail or stall.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use tokio::net::TcpListener;

/// One request as the order service saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    /// Path and query, as received.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The status this service answered with.
    pub status: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 with a small JSON body.
    Ok,
    /// 503 for everything (the request is still recorded).
    Fail,
    /// Wait this long before answering 200.
    Stall(Duration),
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    behaviour: Option<Behaviour>,
}

/// Handle to a running order service.
#[derive(Clone)]
pub struct OrderService {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    stop: Arc<tokio::sync::Notify>,
}

impl OrderService {
    /// Serves on `127.0.0.1:0` (or `addr`) on the current tokio runtime.
    pub async fn spawn(addr: Option<SocketAddr>) -> std::io::Result<Self> {
        let listener =
            TcpListener::bind(addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))))
                .await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Mutex::new(Inner::default()));
        let stop = Arc::new(tokio::sync::Notify::new());
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.notified().await })
                .await;
        });
        Ok(Self { addr, inner, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().received.clone()
    }

    pub fn received_count(&self) -> usize {
        self.inner.lock().received.len()
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.inner.lock().behaviour = Some(behaviour);
    }

    pub fn shutdown(&self) {
        self.stop.notify_waiters();
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let behaviour = {
        let mut guard = inner.lock();
        let behaviour = guard.behaviour.unwrap_or(Behaviour::Ok);
        guard.received.push(Received {
            method: method.clone(),
            uri: uri.to_string(),
            headers,
            body: body.clone(),
            status: if behaviour == Behaviour::Fail {
                503
            } else {
                200
            },
        });
        behaviour
    };
    match behaviour {
        Behaviour::Fail => {
            (StatusCode::SERVICE_UNAVAILABLE, "order service unavailable").into_response()
        }
        Behaviour::Stall(d) => {
            tokio::time::sleep(d).await;
            ok(&method, &uri, body.len())
        }
        Behaviour::Ok => ok(&method, &uri, body.len()),
    }
}

fn ok(method: &Method, uri: &Uri, body_len: usize) -> Response {
    let body = serde_json::json!({
        "ok": true,
        "method": method.as_str(),
        "path": uri.path(),
        "body_bytes": body_len,
    });
    (
        StatusCode::OK,
        [
            ("content-type", "application/json"),
            ("x-order-service", "sandbox"),
        ],
        body.to_string(),
    )
        .into_response()
}
