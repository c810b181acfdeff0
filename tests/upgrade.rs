//! Zero-downtime upgrade, run as the real binaries: a `run --upgrade` process takes the listening
//! sockets over from the running one on SIGQUIT (through the socket in `server.state_dir`), waits
//! for it to release the embedded webhook queue, and serves on. Under steady load of proxied
//! requests and TikTok webhooks, none fails, and every acknowledged webhook is delivered.

#![cfg(feature = "demo")]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::binary::{Running, wait_listening};
use common::{
    Auth, Config, Listener, Route, Server, TikTok, Upstream, Webhooks, free_port, loopback,
};
use tiktok_gateway::sandbox::orders::OrderService;

const APP_KEY: &str = "abcdef";
const APP_SECRET: &str = "123";

fn sign(body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
    mac.update(APP_KEY.as_bytes());
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: AtomicUsize,
    webhooks: parking_lot::Mutex<Vec<String>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgrade_under_load_fails_no_request_and_loses_no_webhook() {
    tiktok_gateway::transport::install_crypto_provider();
    let orders = OrderService::spawn(None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let port = free_port();
    let config = Config::new()
        .listener(Listener::plain("public", port))
        .upstream(Upstream::new("orders", orders.addr()))
        .tiktok(TikTok::new().app(TikTok::webhook_app("main", APP_KEY, APP_SECRET)))
        .webhooks(Webhooks::new("forward-secret"))
        .route(Route::prefix("orders", "public", "/orders/").upstream("orders"))
        .route(
            Route::exact("hooks", "public", "/webhooks/tiktok")
                .methods(&["POST"])
                .auth(Auth::tiktok_webhook("main"))
                .upstream("orders")
                .rewrite("/internal/events"),
        )
        .server(
            Server::default()
                .grace_period("20s")
                .threads(1)
                .state_dir(&state),
        );
    let mut old = Running::start(dir.path(), &config);
    wait_listening(&mut old, loopback(port));

    // Steady load: proxied GETs and signed webhooks, each on a fresh connection.
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (tally, stop) = (tally.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let res = if w % 2 == 0 {
                    client
                        .get(format!("http://127.0.0.1:{port}/orders/{w}-{n}"))
                        .send()
                        .await
                } else {
                    let id = format!("upgrade-{w}-{n}");
                    let body = format!(
                        r#"{{"type":1,"tts_notification_id":"{id}","shop_id":"1","timestamp":1,"data":{{}}}}"#
                    );
                    let res = client
                        .post(format!("http://127.0.0.1:{port}/webhooks/tiktok"))
                        .header("content-type", "application/json")
                        .header("authorization", sign(&body))
                        .body(body)
                        .send()
                        .await;
                    if res.as_ref().is_ok_and(|r| r.status() == 200) {
                        tally.webhooks.lock().push(id);
                    }
                    res
                };
                match res {
                    Ok(r) if r.status() == 200 => tally.ok.fetch_add(1, Ordering::Relaxed),
                    Ok(r) => {
                        eprintln!("worker {w}: status {}", r.status());
                        tally.failed.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) => {
                        eprintln!("worker {w}: {e}");
                        tally.failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The new process waits on the upgrade socket; the old one hands over on SIGQUIT.
    let mut new = Running::spawn(dir.path(), &["--upgrade"], "new.log", &[]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    old.signal("QUIT");
    let before_exit = tally.ok.load(Ordering::Relaxed);
    let exit = tokio::task::spawn_blocking(move || {
        let status = old.wait_exit(Duration::from_secs(40));
        (status, old)
    })
    .await
    .unwrap();
    let (status, old) = exit;
    let status =
        status.unwrap_or_else(|| panic!("the old gateway never exited:\n{}", old.output()));
    assert!(status.success(), "{status}:\n{}", old.output());
    // The new process alone serves from here on.
    let at_exit = tally.ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let ok = tally.ok.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    eprintln!(
        "upgrade under load: {ok} requests answered 200 ({} before SIGQUIT, {} after the old \
         process exited), {failed} failed",
        before_exit,
        ok - at_exit
    );
    assert_eq!(
        failed,
        0,
        "requests failed across the upgrade\nold:\n{}\nnew:\n{}",
        old.output(),
        new.output()
    );
    assert!(
        ok > at_exit,
        "the new process served after the old one exited"
    );
    assert!(new.child.try_wait().unwrap().is_none(), "{}", new.output());

    // Every acknowledged webhook reaches the order service (delivered by either process).
    let acknowledged: BTreeSet<String> = tally.webhooks.lock().iter().cloned().collect();
    assert!(!acknowledged.is_empty());
    let mut delivered = BTreeSet::new();
    for _ in 0..200 {
        delivered = orders
            .received()
            .iter()
            .filter(|r| r.uri == "/internal/events")
            .filter_map(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
                v["tts_notification_id"].as_str().map(str::to_owned)
            })
            .collect();
        if acknowledged.is_subset(&delivered) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let missing: Vec<_> = acknowledged.difference(&delivered).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but never delivered: {missing:?}"
    );

    new.signal("TERM");
    let status = new.wait_exit(Duration::from_secs(30)).expect("new exits");
    assert!(status.success());
}
