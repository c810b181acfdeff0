//! `tiktok-gateway demo`: the gateway plus local sandboxes in one process, no internet needed.
//! Dev certificates go to a temp dir; the printed curl commands work as printed.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use crate::clock::SystemClock;
use crate::config::load_str;
use crate::sandbox::orders::OrderService;
use crate::server::{build, dev_certs, state::Gateway};

/// Writes the demo's config for the given ports and sandbox addresses.
pub fn demo_config(dir: &Path, port: u16, orders: SocketAddr) -> String {
    format!(
        r#"version: demo
listeners:
  public:
    address: "127.0.0.1:{public}"
    tls: {{ cert: gateway.crt, key: gateway.key, min_version: "1.2" }}
  egress:
    address: "127.0.0.1:{egress}"
  metrics:
    address: "127.0.0.1:{metrics}"
upstreams:
  orders:
    targets: ["{orders}"]
    timeouts: {{ connect: 1s, read: 5s }}
routes:
  - name: order-status
    listener: public
    match: {{ path_prefix: /orders/, methods: [GET] }}
    auth: none
    upstream: orders
logging:
  access_log: {access_log}
"#,
        public = port + 363,
        egress = port,
        metrics = port + 10,
        orders = orders,
        access_log = dir.join("access.log").display(),
    )
}

pub fn run(port: u16) -> ExitCode {
    let dir = match tempfile::Builder::new()
        .prefix("tiktok-gateway-demo")
        .tempdir()
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot create a temp dir: {e}");
            return ExitCode::FAILURE;
        }
    };
    let certs = match dev_certs::generate(dir.path()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // The sandboxes run on their own runtime; Pingora builds its own for the gateway.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the sandbox runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let orders = match rt.block_on(OrderService::spawn(None)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cannot start the order-service sandbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = demo_config(dir.path(), port, orders.addr());
    let config = match load_str(&text, dir.path(), &dir.path().join("demo.yaml")) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("demo config: {e}");
            return ExitCode::FAILURE;
        }
    };
    let gateway = match Gateway::new(config, Arc::new(SystemClock)) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = crate::telemetry::install_logging("info", &gateway) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    let server = match build::build_server(gateway, None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let ca = certs.ca_cert.display();
    println!(
        "\ntiktok-gateway demo is running (Ctrl-C to stop). Try:\n\n\
         # forwarded to the order-service sandbox over TLS\n\
         curl --cacert {ca} https://localhost:{public}/orders/123\n\n\
         # refused: not a canonical path (400), no route (404), wrong method (405)\n\
         curl --cacert {ca} --path-as-is https://localhost:{public}/orders/../admin\n\
         curl --cacert {ca} https://localhost:{public}/nothing-here\n\
         curl --cacert {ca} -X DELETE https://localhost:{public}/orders/123\n\n\
         # metrics and health\n\
         curl http://127.0.0.1:{metrics}/metrics\n\
         curl http://127.0.0.1:{metrics}/healthz\n\n\
         access log: {log}\n",
        public = port + 363,
        metrics = port + 10,
        log = dir.path().join("access.log").display(),
    );
    build::run_with_signals(server);
    drop(rt);
    ExitCode::SUCCESS
}
