//! Route matching: per listener, optional host, path (exact or prefix), method. First match in
//! file order wins. Built once per config snapshot.

use std::sync::Arc;

use http::Method;

use super::route::CompiledRoute;
use crate::config::GatewayConfig;

pub enum RouteMatch<'a> {
    Found(&'a Arc<CompiledRoute>),
    NotFound,
    /// A route matched the path but not the method: the methods that would have matched.
    MethodNotAllowed(String),
}

/// Routes per listener index (the position in `config.listeners`), in file order.
#[derive(Default)]
pub struct Router {
    by_listener: Vec<Vec<Arc<CompiledRoute>>>,
}

impl Router {
    pub fn new(config: &GatewayConfig, routes: &[Arc<CompiledRoute>]) -> Self {
        let by_listener = config
            .listeners
            .iter()
            .map(|l| {
                routes
                    .iter()
                    .filter(|r| r.config.listener == l.name)
                    .cloned()
                    .collect()
            })
            .collect();
        Self { by_listener }
    }

    /// The route called `name` (background work such as webhook delivery; requests use `find`).
    pub fn named(&self, name: &str) -> Option<&Arc<CompiledRoute>> {
        self.by_listener.iter().flatten().find(|r| &*r.name == name)
    }

    /// `path` must already be normalised; `host` is without port, in any case (route hosts are
    /// lowercase, so no allocation is needed to compare).
    pub fn find(
        &self,
        listener: usize,
        host: Option<&str>,
        method: &Method,
        path: &str,
    ) -> RouteMatch<'_> {
        let Some(routes) = self.by_listener.get(listener) else {
            return RouteMatch::NotFound;
        };
        let mut allowed: Vec<&str> = Vec::new();
        for compiled in routes {
            let route = &compiled.config;
            if route
                .host
                .as_deref()
                .is_some_and(|want| !host.is_some_and(|h| h.eq_ignore_ascii_case(want)))
            {
                continue;
            }
            if !route.path.matches(path) {
                continue;
            }
            if route.methods.is_empty() || route.methods.contains(method) {
                return RouteMatch::Found(compiled);
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
