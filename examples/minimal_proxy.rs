//! The floor for `load-tests/pipeline.sh`: the smallest Pingora proxy the gateway could be.
//! Same Pingora version, same rustls (ring) TLS with h2 by ALPN, one worker thread, Pingora's
//! default scheduler (the gateway leaves `work_stealing` at its default too), plain HTTP to one
//! upstream over pooled connections. No routing, auth, limits, logs or metrics.
//!
//! `cargo run --release --example minimal_proxy -- LISTEN UPSTREAM CERT KEY`

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::*;

struct Forward(std::net::SocketAddr);

#[async_trait]
impl ProxyHttp for Forward {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.0, false, String::new())))
    }
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream, cert, key] = args.as_slice() else {
        return Err("usage: minimal_proxy LISTEN UPSTREAM CERT KEY".into());
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let conf = pingora::server::configuration::ServerConf {
        threads: 1,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let mut proxy = http_proxy_service(&server.configuration, Forward(upstream.parse()?));
    let mut tls = TlsSettings::intermediate(cert, key)?;
    tls.enable_h2();
    proxy.add_tls_with_settings(listen, None, tls);
    server.add_service(proxy);
    server.bootstrap();
    server.run(pingora::server::RunArgs::default());
    Ok(())
}
