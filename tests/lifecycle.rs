//! Start-up and stop, run as the real binary: an address in use stops start-up at once (exit 1,
//! the address named); SIGTERM closes the listeners, lets in-flight requests finish and exits as
//! soon as they have, well inside the grace period; with `server.drain_delay`, `/readyz` answers
//! 503 `draining` while the gateway still serves, before the listeners close; a request already
//! on its way when the stop begins (half a head sent, or a connection accepted just before) is
//! still answered.

#![cfg(feature = "demo")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::binary::{Running, wait_listening};
use common::{
    Config, Listener, Route, Server, TestGateway, Upstream, free_port, read_until_closed,
};
use tiktok_gateway::sandbox::orders::{Behaviour, OrderService};

fn listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Whether the listener on `port` stops accepting within `limit` (looked at every 10 ms).
async fn refuses_within(port: u16, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while listening(loopback(port)) {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// A proxy listener on `port` forwarding `/orders/` to `orders`, and a metrics listener.
fn config(port: u16, metrics: u16, orders: SocketAddr, grace: &str) -> Config {
    Config::new()
        .listener(Listener::plain("plain", port))
        .listener(Listener::plain("metrics", metrics))
        .upstream(Upstream::new("orders", orders).timeouts("1s", "20s"))
        .route(Route::prefix("orders", "plain", "/orders/").upstream("orders"))
        .server(Server::default().grace_period(grace).threads(1))
}

#[test]
fn an_address_in_use_stops_start_up_at_once_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let metrics = free_port();
    let mut gw = Running::start(
        dir.path(),
        &config(metrics, port, loopback(free_port()), "10s"),
    );
    // Pingora alone retries for seconds, then panics in a task and never exits.
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running:\n{}", gw.output()));
    assert_eq!(status.code(), Some(1), "{}", gw.output());
    let out = gw.output();
    assert!(
        out.contains(&format!("127.0.0.1:{port}")),
        "the address is named in clear:\n{out}"
    );
    assert!(out.contains("`metrics`"), "the listener is named:\n{out}");
    assert!(!listening(loopback(metrics)), "no listener was left open");
    drop(taken);
}

#[test]
fn sigterm_with_nothing_in_flight_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics) = (free_port(), free_port());
    let mut gw = Running::start(
        dir.path(),
        &config(port, metrics, loopback(free_port()), "60s"),
    );
    wait_listening(&mut gw, loopback(port));
    wait_listening(&mut gw, loopback(metrics));
    // A kept-alive connection that is idle holds nothing in flight.
    let mut idle = TcpStream::connect(loopback(metrics)).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: m\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(idle.read(&mut buf).unwrap() > 0);

    gw.signal("TERM");
    // The grace period (60 s) is a ceiling, not a wait.
    let status = gw
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("still running after SIGTERM:\n{}", gw.output()));
    assert!(status.success(), "{status}:\n{}", gw.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_drains_in_flight_requests_then_exits() {
    tiktok_gateway::transport::install_crypto_provider();
    let orders = OrderService::spawn(None).await.unwrap();
    orders.set_behaviour(Behaviour::Stall(Duration::from_secs(2)));
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics) = (free_port(), free_port());
    let mut gw = Running::start(dir.path(), &config(port, metrics, orders.addr(), "60s"));
    wait_listening(&mut gw, loopback(port));

    let in_flight = tokio::spawn(async move {
        let res = common::http_client()
            .get(format!("http://127.0.0.1:{port}/orders/slow"))
            .send()
            .await?;
        let status = res.status().as_u16();
        res.text().await.map(|body| (status, body))
    });
    for _ in 0..200 {
        if orders.received_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        orders.received_count(),
        1,
        "the request reached the upstream"
    );

    gw.signal("TERM");
    // New connections are refused while the request is still being answered.
    assert!(
        refuses_within(port, Duration::from_secs(1)).await,
        "the listener still accepts after SIGTERM"
    );
    assert!(
        gw.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );

    let (status, body) = in_flight.await.unwrap().expect("the in-flight request");
    assert_eq!(status, 200, "{body}");
    let exit = gw
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("still running after the drain:\n{}", gw.output()));
    assert!(exit.success(), "{exit}:\n{}", gw.output());
    // The access log was written out before the exit.
    let log = std::fs::read_to_string(dir.path().join("access.log")).unwrap();
    assert!(
        log.lines().any(|l| l.contains("\"path\":\"/orders/slow\"")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_still_answers_requests_already_on_their_way() {
    use tokio::io::AsyncWriteExt;
    tiktok_gateway::transport::install_crypto_provider();
    let orders = OrderService::spawn(None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics) = (free_port(), free_port());
    let mut gw = Running::start(dir.path(), &config(port, metrics, orders.addr(), "30s"));
    wait_listening(&mut gw, loopback(port));

    // Two connections accepted before the stop: one has sent half a head, one nothing yet.
    let mut half = tokio::net::TcpStream::connect(loopback(port))
        .await
        .unwrap();
    half.write_all(b"GET /orders/half HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let mut fresh = tokio::net::TcpStream::connect(loopback(port))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    gw.signal("TERM");
    assert!(
        refuses_within(port, Duration::from_secs(2)).await,
        "the listener still accepts after SIGTERM"
    );
    // The stop has begun: the rest of one head, and a whole one within the fresh connection's
    // short grace.
    tokio::time::sleep(Duration::from_millis(50)).await;
    half.write_all(b"\r\n").await.unwrap();
    fresh
        .write_all(b"GET /orders/fresh HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();

    for (name, stream) in [("half", &mut half), ("fresh", &mut fresh)] {
        let answer = read_until_closed(stream, Duration::from_secs(10)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "the {name} request was dropped by the stop: {answer:?}\n{}",
            gw.output()
        );
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "a stopping gateway does not keep the connection: {answer:?}"
        );
    }
    assert_eq!(orders.received_count(), 2, "both reached the upstream");
    let exit = gw
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("still running after the stop:\n{}", gw.output()));
    assert!(exit.success(), "{exit}:\n{}", gw.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_is_not_ready_while_the_drain_delay_still_serves() {
    tiktok_gateway::transport::install_crypto_provider();
    let orders = OrderService::spawn(None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics) = (free_port(), free_port());
    let cfg = config(port, metrics, orders.addr(), "30s").server(
        Server::default()
            .grace_period("30s")
            .drain_delay("3s")
            .threads(1),
    );
    let mut gw = Running::start(dir.path(), &cfg);
    wait_listening(&mut gw, loopback(metrics));
    let client = common::http_client();
    let get = |path: String| {
        let client = client.clone();
        async move {
            let res = client.get(path).send().await?;
            let status = res.status().as_u16();
            res.text().await.map(|t| (status, t))
        }
    };
    let readyz = format!("http://127.0.0.1:{metrics}/readyz");
    assert_eq!(get(readyz.clone()).await.unwrap().0, 200);

    gw.signal("TERM");
    let mut draining = None;
    for _ in 0..100 {
        let (status, body) = get(readyz.clone()).await.unwrap();
        if status == 503 {
            draining = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body: serde_json::Value =
        serde_json::from_str(&draining.expect("/readyz turned 503")).unwrap();
    assert_eq!(body["status"], "draining", "{body}");
    assert_eq!(body["causes"][0]["check"], "draining", "{body}");
    // Still serving meanwhile: liveness, and requests.
    let (live, _) = get(format!("http://127.0.0.1:{metrics}/healthz"))
        .await
        .unwrap();
    assert_eq!(live, 200);
    let (status, _) = get(format!("http://127.0.0.1:{port}/orders/1"))
        .await
        .unwrap();
    assert_eq!(
        status, 200,
        "requests are still answered during the drain delay"
    );

    let exit = gw
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("still running after the drain:\n{}", gw.output()));
    assert!(exit.success(), "{exit}:\n{}", gw.output());
}

#[test]
fn a_reload_that_changes_what_applies_on_restart_is_refused() {
    let port = free_port();
    let base = |grace: &str, drain: &str| {
        Config::new()
            .listener(Listener::plain("plain", port))
            .upstream(Upstream::new("orders", loopback(free_port())))
            .route(Route::prefix("orders", "plain", "/orders/").upstream("orders"))
            .server(Server::default().grace_period(grace).drain_delay(drain))
    };
    let gw = TestGateway::with(&base("10s", "0s"));
    let dir = gw.dir.path();
    std::fs::write(&gw.config_path, base("30s", "0s").render(dir)).unwrap();
    let err = gw.gateway.reload_from(&gw.config_path).unwrap_err();
    assert!(err.to_string().contains("apply on restart"), "{err}");
    // The drain delay is read when SIGTERM arrives: it reloads.
    std::fs::write(&gw.config_path, base("10s", "3s").render(dir)).unwrap();
    gw.gateway.reload_from(&gw.config_path).unwrap();
    assert_eq!(
        gw.gateway.snapshot().config.server.drain_delay,
        Duration::from_secs(3)
    );
}
