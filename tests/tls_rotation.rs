//! Certificate rotation without a restart: when a TLS listener's certificate, key or client-CA
//! files change (a secret mount, cert-manager), new handshakes use the new material while open
//! connections carry on; bad new material is refused and the previous one stays. SIGHUP re-reads
//! the material even when the files look unchanged (the real binary, signalled).

#![cfg(feature = "demo")]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::binary::{Running, wait_listening};
use common::{
    Config, Listener, Route, Server, TestGateway, Upstream, free_port, loopback, metrics_text,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tiktok_gateway::sandbox::orders::OrderService;
use tiktok_gateway::server::dev_certs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A TLS connection trusting every CA in `trust`, with a client certificate if given.
async fn connect(
    addr: SocketAddr,
    trust: &[&Path],
    client: Option<(&Path, &Path)>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in trust {
        for c in certs(ca) {
            roots.add(c).unwrap();
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(certs(cert), PrivateKeyDer::from_pem_file(key).unwrap())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

fn leaf(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// One keep-alive GET; the status, or an error if the connection failed.
async fn get(stream: &mut TlsStream<TcpStream>, path: &str) -> std::io::Result<u16> {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::other("no answer"))??;
        if n == 0 {
            return Err(std::io::Error::other("closed"));
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= len {
                return Ok(common::status_of(&text));
            }
        }
    }
}

/// Replaces `to` with `from`'s contents the way a secret mount does: write aside, then rename.
fn swap_in(from: &Path, to: &Path) {
    let aside = to.with_extension("new");
    std::fs::copy(from, &aside).unwrap();
    std::fs::rename(&aside, to).unwrap();
}

fn reloads(listener: &str, outcome: &str) -> u64 {
    tiktok_gateway::telemetry::metrics::metrics()
        .tls_reloads
        .with_label_values(&[listener, outcome])
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificates_and_client_cas_apply_to_new_handshakes_only() {
    tiktok_gateway::transport::install_crypto_provider();
    let orders = OrderService::spawn(None).await.unwrap();
    let (public, mtls) = (free_port(), free_port());
    let gw = TestGateway::with(
        &Config::new()
            .listener(Listener::tls("public", public))
            .listener(Listener::tls("mtls", mtls).client_auth("required"))
            .upstream(Upstream::new("orders", orders.addr()))
            .route(Route::prefix("orders", "public", "/orders/").upstream("orders"))
            .route(Route::prefix("internal", "mtls", "/orders/").upstream("orders")),
    );
    let old = gw.certs.clone();
    let next_dir = tempfile::tempdir().unwrap();
    let next = dev_certs::generate(next_dir.path()).unwrap();
    // Both dev CAs carry the same name, so a client trusts one of them at a time. The old one is
    // kept aside: its file in the gateway's folder is about to be replaced.
    let old_ca = next_dir.path().join("old-ca.crt");
    std::fs::copy(&old.ca_cert, &old_ca).unwrap();
    let (trust_old, trust_new) = ([old_ca.as_path()], [next.ca_cert.as_path()]);

    let mut open = connect(loopback(public), &trust_old, None).await.unwrap();
    assert_eq!(leaf(&open), certs(&old.server_cert)[0].to_vec());
    assert_eq!(get(&mut open, "/orders/1").await.unwrap(), 200);
    let old_client = (old.client_cert.as_path(), old.client_key.as_path());
    let new_client = (next.client_cert.as_path(), next.client_key.as_path());
    let mut c = connect(loopback(mtls), &trust_old, Some(old_client))
        .await
        .unwrap();
    assert_eq!(get(&mut c, "/orders/1").await.unwrap(), 200);

    // Rotate: the new CA signs the new server certificate and the new client certificates.
    swap_in(&next.server_key, &old.server_key);
    swap_in(&next.server_cert, &old.server_cert);
    swap_in(&next.ca_cert, &old.ca_cert);

    let new_leaf = certs(&old.server_cert)[0].to_vec();
    let mut rotated = false;
    for _ in 0..100 {
        // Fails (the old certificate) until the rotation is picked up.
        if let Ok(s) = connect(loopback(public), &trust_new, None).await
            && leaf(&s) == new_leaf
        {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rotated, "new handshakes never got the new certificate");
    assert!(reloads("public", "applied") >= 1);

    // The connection opened before the rotation carries on with its session.
    assert_eq!(get(&mut open, "/orders/2").await.unwrap(), 200);

    // The client CA rotated with it: the new CA's clients get in, the old CA's do not.
    let mut fresh = connect(loopback(mtls), &trust_new, Some(new_client))
        .await
        .unwrap();
    assert_eq!(get(&mut fresh, "/orders/3").await.unwrap(), 200);
    let refused = match connect(loopback(mtls), &trust_new, Some(old_client)).await {
        Err(_) => true,
        Ok(mut s) => get(&mut s, "/orders/4").await.is_err(),
    };
    assert!(refused, "a client of the retired CA was let in");

    // Bad new material is refused and the listener keeps what it has: first a file that is not
    // a certificate, then an expired certificate with its matching key.
    let before = reloads("public", "rejected");
    std::fs::write(&old.server_cert, "not a certificate").unwrap();
    for _ in 0..100 {
        if reloads("public", "rejected") > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        reloads("public", "rejected") > before,
        "the bad file was not refused"
    );
    let s = connect(loopback(public), &trust_new, None).await.unwrap();
    assert_eq!(leaf(&s), new_leaf, "the previous certificate stays in use");

    let expired_dir = tempfile::tempdir().unwrap();
    let (cert_pem, key_pem) = expired_certificate();
    std::fs::write(expired_dir.path().join("k"), key_pem).unwrap();
    std::fs::write(expired_dir.path().join("c"), cert_pem).unwrap();
    let before = reloads("public", "rejected");
    swap_in(&expired_dir.path().join("k"), &old.server_key);
    swap_in(&expired_dir.path().join("c"), &old.server_cert);
    for _ in 0..100 {
        if reloads("public", "rejected") > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        reloads("public", "rejected") > before,
        "the expired certificate was not refused"
    );
    let mut s = connect(loopback(public), &trust_new, None).await.unwrap();
    assert_eq!(leaf(&s), new_leaf);
    assert_eq!(get(&mut s, "/orders/5").await.unwrap(), 200);
}

/// A self-signed certificate for localhost that expired yesterday, and its key (PEM).
fn expired_certificate() -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now - time::Duration::days(1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// `tiktok_gateway_tls_reloads_total{listener, outcome}` as the metrics listener on `port` reports
/// it (0 when the series does not exist yet).
async fn scraped_reloads(port: u16, listener: &str, outcome: &str) -> u64 {
    let series = format!(
        "tiktok_gateway_tls_reloads_total{{listener=\"{listener}\",outcome=\"{outcome}\"}} "
    );
    metrics_text(port)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(&series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

/// Waits (bounded) until the reload counter reaches `at_least`.
async fn wait_reloads(port: u16, listener: &str, outcome: &str, at_least: u64) -> u64 {
    let mut seen = 0;
    for _ in 0..100 {
        seen = scraped_reloads(port, listener, outcome).await;
        if seen >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_the_certificate_even_when_the_files_look_unchanged() {
    tiktok_gateway::transport::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let old = dev_certs::generate(dir.path()).unwrap();
    let orders = OrderService::spawn(None).await.unwrap();
    let (public, metrics) = (free_port(), free_port());
    let mut gw = Running::start(
        dir.path(),
        &Config::new()
            .listener(Listener::tls("public", public))
            .listener(Listener::plain("metrics", metrics))
            .upstream(Upstream::new("orders", orders.addr()))
            .route(Route::prefix("orders", "public", "/orders/").upstream("orders"))
            .server(Server::default().threads(1)),
    );
    wait_listening(&mut gw, loopback(public));
    wait_listening(&mut gw, loopback(metrics));
    // Until the reload service handles SIGHUP, the signal's default action ends the process.
    for _ in 0..200 {
        if gw.output().contains("reload on SIGHUP") {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(gw.output().contains("reload on SIGHUP"), "{}", gw.output());
    let old_ca = dir.path().join("old-ca.crt");
    std::fs::copy(&old.ca_cert, &old_ca).unwrap();
    let s = connect(loopback(public), &[old_ca.as_path()], None)
        .await
        .unwrap();
    let old_leaf = certs(&old.server_cert)[0].to_vec();
    assert_eq!(leaf(&s), old_leaf);
    assert_eq!(scraped_reloads(metrics, "public", "applied").await, 0);

    // Nothing changed on disk, so the change watcher has nothing to do: only the signal can make
    // the listener load its material again.
    gw.signal("HUP");
    assert_eq!(
        wait_reloads(metrics, "public", "applied", 1).await,
        1,
        "SIGHUP did not re-read the certificate:\n{}",
        gw.output()
    );

    let same = connect(loopback(public), &[old_ca.as_path()], None)
        .await
        .unwrap();
    assert_eq!(
        leaf(&same),
        old_leaf,
        "the same material is served after the re-read"
    );

    // The operator's rotation: new files, then the signal. New handshakes get the new certificate.
    let next_dir = tempfile::tempdir().unwrap();
    let next = dev_certs::generate(next_dir.path()).unwrap();
    swap_in(&next.server_key, &old.server_key);
    swap_in(&next.server_cert, &old.server_cert);
    swap_in(&next.ca_cert, &old.ca_cert);
    gw.signal("HUP");
    assert!(
        wait_reloads(metrics, "public", "applied", 2).await >= 2,
        "the rotated material was not applied:\n{}",
        gw.output()
    );
    let rotated = connect(loopback(public), &[next.ca_cert.as_path()], None)
        .await
        .unwrap();
    assert_eq!(leaf(&rotated), certs(&next.server_cert)[0].to_vec());
    assert_eq!(scraped_reloads(metrics, "public", "rejected").await, 0);
}
