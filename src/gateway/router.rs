//! Route matching: per listener, optional host, path (exact or prefix), method. First match in
//! file order wins. Built once per config snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;

use crate::config::{GatewayConfig, Route};

pub enum RouteMatch {
    Found(Arc<Route>),
    NotFound,
    /// A route matched the path but not the method: the methods that would have matched.
    MethodNotAllowed(String),
}

#[derive(Default)]
pub struct Router {
    by_listener: HashMap<String, Vec<Arc<Route>>>,
}

impl Router {
    pub fn new(config: &GatewayConfig) -> Self {
        let mut by_listener: HashMap<String, Vec<Arc<Route>>> = HashMap::new();
        for route in &config.routes {
            by_listener
                .entry(route.listener.clone())
                .or_default()
                .push(route.clone());
        }
        Self { by_listener }
    }

    /// `path` must already be normalised; `host` is lowercase without port.
    pub fn find(
        &self,
        listener: &str,
        host: Option<&str>,
        method: &Method,
        path: &str,
    ) -> RouteMatch {
        let Some(routes) = self.by_listener.get(listener) else {
            return RouteMatch::NotFound;
        };
        let mut allowed: Vec<&str> = Vec::new();
        for route in routes {
            if route.host.as_deref().is_some_and(|want| host != Some(want)) {
                continue;
            }
            if !route.path.matches(path) {
                continue;
            }
            if route.methods.is_empty() || route.methods.contains(method) {
                return RouteMatch::Found(route.clone());
            }
            for m in &route.methods {
                if !allowed.contains(&m.as_str()) {
                    allowed.push(m.as_str());
                }
            }
        }
        if allowed.is_empty() {
            RouteMatch::NotFound
        } else {
            RouteMatch::MethodNotAllowed(allowed.join(", "))
        }
    }
}
