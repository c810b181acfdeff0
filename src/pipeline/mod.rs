//! The request pipeline: the Pingora `ProxyHttp` impl, the per-request context and stage order.
