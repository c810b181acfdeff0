//! `tiktok-gateway demo`: the gateway plus a TikTok Shop sandbox, an order-service sandbox and a
//! dev identity provider, in one process with no internet. Dev certificates, keys and secrets are
//! generated at start into a temp dir; the printed curl commands work as printed. Built only with
//! the `demo` feature.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use crate::clock::{SharedClock, SystemClock};
use crate::config::load_str;
use crate::gateway::state::Gateway;
use crate::sandbox::idp::{DevIdp, MintRequest};
use crate::sandbox::orders::OrderService;
use crate::sandbox::secret::random_hex;
use crate::sandbox::tiktok::{self as tiktok_sandbox, SandboxConfig, TikTokSandbox};
use crate::server::{build, dev_certs};

/// The demo's ports, all on 127.0.0.1, derived from `--port`.
pub struct DemoPorts {
    pub egress: u16,
    pub public: u16,
    pub metrics: u16,
}

impl DemoPorts {
    pub fn from_base(port: u16) -> Self {
        Self {
            egress: port,
            public: port.saturating_add(363),
            metrics: port.saturating_add(10),
        }
    }
}

/// Writes the demo's secrets into `dir` and returns its config.
pub fn demo_config(
    dir: &Path,
    ports: &DemoPorts,
    orders: std::net::SocketAddr,
    idp: &DevIdp,
    tiktok: &TikTokSandbox,
    sandbox: &SandboxConfig,
) -> std::io::Result<String> {
    std::fs::write(dir.join("tiktok_app_secret"), sandbox.app_secret.expose())?;
    // Made up for this run only: no demo secret is a literal in the binary.
    std::fs::write(dir.join("forward_secret"), random_hex(32))?;
    std::fs::write(dir.join("pseudonym_key"), random_hex(32))?;
    std::fs::write(dir.join("token_store_key"), random_hex(32))?;
    let mut shops = String::new();
    // The shop a seller authorizes during the demo is not configured: it arrives at runtime.
    for s in &sandbox.without_onboarding_shop().shops {
        std::fs::write(
            dir.join(format!("access-{}", s.id)),
            s.access_token.expose(),
        )?;
        std::fs::write(
            dir.join(format!("refresh-{}", s.id)),
            s.refresh_token.expose(),
        )?;
        shops.push_str(&format!(
            "    - {{ id: \"{id}\", app: main, cipher: \"{c}\", access_token: \"${{file:access-{id}}}\", access_token_expires_at: {ae}, refresh_token: \"${{file:refresh-{id}}}\", refresh_token_expires_at: {re} }}\n",
            id = s.id,
            c = s.cipher,
            ae = s.access_token_expires_at,
            re = s.refresh_token_expires_at,
        ));
    }
    let base = tiktok.base_url();
    Ok(format!(
        r#"version: demo
listeners:
  public:
    address: "127.0.0.1:{public}"
    tls: {{ cert: gateway.crt, key: gateway.key, min_version: "1.2" }}
  egress:
    address: "127.0.0.1:{egress}"
  metrics:
    address: "127.0.0.1:{metrics}"
identity:
  jwt:
    - name: dev-idp
      issuer: "{issuer}"
      audiences: [tiktok-gateway]
      jwks: {{ url: "{jwks}", refresh: 5m }}
      algorithms: [ES256, RS256]
upstreams:
  orders:
    targets: ["{orders}"]
    timeouts: {{ connect: 1s, read: 5s }}
  tiktok_api:
    targets: ["{tiktok_addr}"]
tiktok:
  apps:
    main: {{ app_key: "{app_key}", app_secret: "${{file:tiktok_app_secret}}", api_base: "{base}", auth_base: "{base}", authorize_url: "{base}/oauth/authorize" }}
  shops:
{shops}  token_store: {{ key: "${{file:token_store_key}}" }}
  pacing: {{ rate: 10/s, burst: 10 }}
state:
  backend: embedded
  path: state.redb
webhooks:
  forward_secret: "${{file:forward_secret}}"
privacy:
  pseudonym_key: "${{file:pseudonym_key}}"
routes:
  - name: tiktok-orders
    listener: egress
    match: {{ path_prefix: /order/, methods: [GET, POST] }}
    auth: {{ jwt: dev-idp, scopes: [orders:read] }}
    rate_limit: {{ key: caller, rate: 20/s, burst: 40 }}
    tiktok: {{ app: main, shop_header: x-tiktok-shop-id }}
    privacy: {{ pii_scope: pii:read }}
    upstream: tiktok_api
  - name: tiktok-webhooks
    listener: public
    match: {{ path: /webhooks/tiktok, methods: [POST] }}
    auth: {{ tiktok_webhook: main }}
    limits: {{ max_body: 256KiB }}
    upstream: orders
    rewrite: {{ path: /internal/tiktok/events }}
  - name: tiktok-authorized
    listener: public
    match: {{ path: /tiktok/authorized, methods: [GET] }}
    auth: none
    tiktok_authorization: {{ app: main }}
    upstream: tiktok_api
  - name: order-status
    listener: public
    match: {{ path_prefix: /orders/, methods: [GET] }}
    auth: {{ jwt: dev-idp, scopes: [orders:read] }}
    upstream: orders
logging:
  access_log: {access_log}
"#,
        public = ports.public,
        egress = ports.egress,
        metrics = ports.metrics,
        issuer = idp.issuer(),
        jwks = idp.jwks_url(),
        tiktok_addr = base.trim_start_matches("http://"),
        app_key = sandbox.app_key,
        access_log = dir.join("access.log").display(),
    ))
}

fn fail(what: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("demo: {what}: {e}");
    ExitCode::FAILURE
}

pub fn run(port: u16) -> ExitCode {
    let dir = match tempfile::Builder::new()
        .prefix("tiktok-gateway-demo")
        .tempdir()
    {
        Ok(d) => d,
        Err(e) => return fail("temp dir", e),
    };
    let certs = match dev_certs::generate(dir.path()) {
        Ok(c) => c,
        Err(e) => return fail("dev certificates", e),
    };
    // The sandboxes run on their own runtime; Pingora builds its own for the gateway.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail("sandbox runtime", e),
    };
    let clock: SharedClock = Arc::new(SystemClock);
    let sandbox_config = SandboxConfig::example(42).with_onboarding_shop();
    let started = rt.block_on(async {
        let orders = OrderService::spawn(None).await.map_err(|e| e.to_string())?;
        let idp = DevIdp::start(clock.clone())
            .await
            .map_err(|e| e.to_string())?;
        let tiktok = tiktok_sandbox::spawn(sandbox_config.clone())
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((orders, idp, tiktok))
    });
    let (orders, idp, tiktok) = match started {
        Ok(s) => s,
        Err(e) => return fail("sandboxes", e),
    };
    let ports = DemoPorts::from_base(port);
    tiktok.state().set_redirect_uri(&format!(
        "https://localhost:{}/tiktok/authorized",
        ports.public
    ));
    let text = match demo_config(
        dir.path(),
        &ports,
        orders.addr(),
        &idp,
        &tiktok,
        &sandbox_config,
    ) {
        Ok(t) => t,
        Err(e) => return fail("demo files", e),
    };
    let config = match load_str(&text, dir.path(), &dir.path().join("demo.yaml")) {
        Ok(c) => c,
        Err(e) => return fail("demo config", e),
    };
    let gateway = match Gateway::new(config, clock) {
        Ok(g) => g,
        Err(e) => return fail("gateway", e),
    };
    let logs = crate::telemetry::AppLogSettings {
        level: "warn".into(),
        sink: crate::config::LogTarget::Stdout,
    };
    if let Err(e) = crate::telemetry::install_logging(&logs, &gateway.privacy) {
        return fail("logging", e);
    }
    let mint = |scope: &str| {
        idp.mint(&MintRequest {
            sub: Some("order-sync".into()),
            scope: Some(scope.into()),
            ttl_seconds: Some(3600),
            ..MintRequest::default()
        })
    };
    let (full, no_pii, no_shop) = match (
        mint("orders:read pii:read tiktok:shop:*"),
        mint("orders:read tiktok:shop:*"),
        mint("orders:read"),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        _ => return fail("dev IdP", "could not mint tokens"),
    };
    // What `POST /admin/shops/authorize` hands an operator (the demo has no admin listener).
    let link = match &gateway.tiktok.authorizations {
        Some(a) => rt
            .block_on(a.start("main", "demo-operator"))
            .map(|l| l.url)
            .unwrap_or_else(|e| format!("(no link: {e})")),
        None => "(no TikTok app)".into(),
    };
    let onboarded = crate::sandbox::tiktok::ONBOARDING_SHOP;
    let server = match build::build_server(gateway, None) {
        Ok(s) => s,
        Err(e) => return fail("server", e),
    };
    let shop = sandbox_config
        .shops
        .first()
        .map(|s| s.id.clone())
        .unwrap_or_default();
    let order = tiktok
        .state()
        .order_ids(&shop)
        .first()
        .cloned()
        .unwrap_or_default();
    let ca = certs.ca_cert.display();
    let egress = ports.egress;
    println!(
        "\ntiktok-gateway demo is running (Ctrl-C to stop). Sandboxes: TikTok Shop at {tt}, order service at {os}, IdP at {idp}.\n\
         Paste any of these:\n\n\
         # 200: signed TikTok call, buyer PII visible (token has pii:read)\n\
         curl -s 'http://127.0.0.1:{egress}/order/202309/orders?ids={order}' -H 'x-tiktok-shop-id: {shop}' -H 'authorization: Bearer {full}'\n\n\
         # 200: same call, PII masked (token lacks pii:read)\n\
         curl -s 'http://127.0.0.1:{egress}/order/202309/orders?ids={order}' -H 'x-tiktok-shop-id: {shop}' -H 'authorization: Bearer {no_pii}'\n\n\
         # 401: no token\n\
         curl -si 'http://127.0.0.1:{egress}/order/202309/orders?ids={order}' -H 'x-tiktok-shop-id: {shop}'\n\n\
         # 403: token may not act for any shop\n\
         curl -si 'http://127.0.0.1:{egress}/order/202309/orders?ids={order}' -H 'x-tiktok-shop-id: {shop}' -H 'authorization: Bearer {no_shop}'\n\n\
         # 400: not a canonical path (over TLS on the public listener)\n\
         curl -si --cacert {ca} --path-as-is 'https://localhost:{public}/orders/../admin'\n\n\
         # onboard a shop: the seller opens the authorization link (valid 10 minutes, once); the\n\
         # sandbox consents and redirects to the gateway's callback, which stores the tokens\n\
         curl -s --cacert {ca} -L '{link}'\n\
         # then the new shop works at once (no restart, no config change)\n\
         curl -s 'http://127.0.0.1:{egress}/order/202309/orders/search?page_size=5' -X POST -H 'content-type: application/json' -d '{{}}' -H 'x-tiktok-shop-id: {onboarded}' -H 'authorization: Bearer {full}'\n\n\
         # metrics and health\n\
         curl -s http://127.0.0.1:{metrics}/metrics | grep -E '^tiktok_gateway_(requests_total|auth_failures_total)'\n\
         curl -s http://127.0.0.1:{metrics}/healthz\n\n\
         access log: {log}\n",
        tt = tiktok.base_url(),
        os = orders.addr(),
        idp = idp.issuer(),
        public = ports.public,
        metrics = ports.metrics,
        log = dir.path().join("access.log").display(),
    );
    build::run_with_signals(server);
    drop(rt);
    ExitCode::SUCCESS
}
