//! `validate` and `run` agree: every shipped config that `validate` accepts also starts (the
//! gateway is built from it and its Pingora server assembled, everything short of binding the
//! listeners), because both run the same load and compile.

use std::path::Path;
use std::sync::Arc;

use tiktok_gateway::clock::SystemClock;
use tiktok_gateway::config::load_file;
use tiktok_gateway::gateway::state::Gateway;
use tiktok_gateway::server::{build, dev_certs};

/// The placeholder values `examples/env.example` gives for the shipped configs' secrets.
fn load_example_env() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/env.example"))
            .unwrap();
    for line in text.lines() {
        if let Some((name, value)) = line
            .strip_prefix("export ")
            .and_then(|rest| rest.split_once('='))
        {
            // SAFETY: this test binary runs one test, before any thread reads the environment.
            unsafe { std::env::set_var(name, value) };
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_config_that_validates_also_starts() {
    tiktok_gateway::transport::install_crypto_provider();
    load_example_env();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    dev_certs::generate(&dir.path().join("certs")).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();

    let mut shipped = vec![root.join("gateway.yaml")];
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            shipped.push(path);
        }
    }
    assert!(shipped.len() >= 2, "{shipped:?}");
    for source in shipped {
        // Relative paths resolve from the config's folder: the copy sits next to the dev certs,
        // and state files go to a temporary folder instead of /var/lib.
        let text = std::fs::read_to_string(&source)
            .unwrap()
            .replace("/var/lib/tiktok-gateway", state.to_str().unwrap());
        let path = dir.path().join(source.file_name().unwrap());
        std::fs::write(&path, text).unwrap();

        let validated = load_file(&path).and_then(build::validate);
        assert!(
            validated.is_ok(),
            "{}: validate refused it: {}",
            source.display(),
            validated.err().map(|e| e.to_string()).unwrap_or_default()
        );
        let gateway = Gateway::new(load_file(&path).unwrap(), Arc::new(SystemClock))
            .unwrap_or_else(|e| {
                panic!(
                    "{}: validate accepted it, start refused: {e}",
                    source.display()
                )
            });
        if let Err(e) = build::build_server(gateway, None) {
            panic!(
                "{}: validate accepted it, the server refused: {e}",
                source.display()
            );
        }
    }
}
