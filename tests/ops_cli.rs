//! The operator commands, run as the binary: `certs` (never overwrites without --force, lists
//! exactly what it writes), `health` (exit status from a real HTTP answer) and `--help`.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};

fn gateway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tiktok-gateway"))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const FILES: [&str; 7] = [
    "ca.crt",
    "gateway.crt",
    "gateway.key",
    "client.crt",
    "client.key",
    "other-client.crt",
    "other-client.key",
];

fn certs(dir: &Path, force: bool) -> Output {
    let dir = dir.to_str().unwrap();
    let mut args = vec!["certs", "--out", dir];
    if force {
        args.push("--force");
    }
    gateway(&args)
}

#[test]
fn certs_reports_exactly_the_files_it_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let out = certs(&dir, false);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("wrote 7 files into "), "{stdout}");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    let mut expected: Vec<String> = FILES.iter().map(|f| f.to_string()).collect();
    expected.sort();
    assert_eq!(on_disk, expected);
    let listed: Vec<&str> = stdout.lines().skip(1).map(str::trim).collect();
    assert_eq!(listed.len(), 7, "{stdout}");
    for f in FILES {
        let path = dir.join(f);
        assert!(
            listed.contains(&path.to_str().unwrap()),
            "{f} not listed:\n{stdout}"
        );
    }
}

#[test]
fn certs_refuses_to_overwrite_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert!(certs(dir, false).status.success());
    let ca = std::fs::read(dir.join("ca.crt")).unwrap();
    let key = std::fs::read(dir.join("gateway.key")).unwrap();

    let again = certs(dir, false);
    assert!(!again.status.success());
    let msg = text(&again);
    assert!(msg.contains("refusing to overwrite"), "{msg}");
    assert!(msg.contains("ca.crt") && msg.contains("--force"), "{msg}");
    assert_eq!(
        std::fs::read(dir.join("ca.crt")).unwrap(),
        ca,
        "CA replaced"
    );
    assert_eq!(std::fs::read(dir.join("gateway.key")).unwrap(), key);

    // One existing file is enough to refuse, and nothing else is written then.
    let partial = tempfile::tempdir().unwrap();
    std::fs::write(partial.path().join("ca.crt"), "operator's CA").unwrap();
    assert!(!certs(partial.path(), false).status.success());
    assert_eq!(std::fs::read_dir(partial.path()).unwrap().count(), 1);

    let forced = certs(dir, true);
    assert!(forced.status.success(), "{}", text(&forced));
    assert_ne!(std::fs::read(dir.join("ca.crt")).unwrap(), ca);
}

#[test]
fn health_exit_status_follows_the_answer() {
    for (answer, ok) in [
        ("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", true),
        (
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
            false,
        ),
    ] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/readyz", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap();
            s.write_all(answer.as_bytes()).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let out = gateway(&["health", "--url", &url, "--timeout", "5s"]);
        assert_eq!(out.status.success(), ok, "{answer}: {}", text(&out));
        assert!(
            server
                .join()
                .unwrap()
                .starts_with("GET /readyz HTTP/1.1\r\n")
        );
    }
    // Nothing listening: a failure, quickly.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = gateway(&[
        "health",
        "--url",
        &format!("http://127.0.0.1:{port}/healthz"),
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("cannot connect"), "{}", text(&out));
}

#[test]
fn help_explains_flags_defaults_and_signals() {
    let run = text(&gateway(&["help", "run"]));
    for needle in [
        "--config",
        "[default: gateway.yaml]",
        "SIGHUP",
        "SIGTERM",
        "SIGINT",
        "SIGQUIT",
    ] {
        assert!(run.contains(needle), "`help run` lacks {needle}:\n{run}");
    }
    let certs = text(&gateway(&["certs", "--help"]));
    for needle in ["--out", "--force", "90 days", "[default: certs]"] {
        assert!(
            certs.contains(needle),
            "`certs --help` lacks {needle}:\n{certs}"
        );
    }
    let health = text(&gateway(&["health", "--help"]));
    for needle in ["--url", "--timeout", "[default: 2s]"] {
        assert!(
            health.contains(needle),
            "`health --help` lacks {needle}:\n{health}"
        );
    }
    let top = text(&gateway(&["--help"]));
    for cmd in ["run", "validate", "certs", "schema", "health"] {
        assert!(top.contains(cmd), "--help lacks {cmd}");
    }
}
