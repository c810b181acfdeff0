//! `tiktok-gateway admin ...`: a small client for the admin API. It presents the client
//! certificate, sends the MFA token from a file, prints the JSON answer and exits 0 on 2xx.

use std::process::ExitCode;

use serde_json::{Value, json};

use crate::cli::{AdminArgs, AdminCommand, BlocksCommand, DeadLettersCommand};

fn client(args: &AdminArgs) -> Result<reqwest::Client, String> {
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let ca = reqwest::Certificate::from_pem(&read(&args.ca)?)
        .map_err(|e| format!("--ca: not a PEM certificate: {e}"))?;
    let mut pem = read(&args.cert)?;
    pem.push(b'\n');
    pem.extend_from_slice(&read(&args.key)?);
    let identity = reqwest::Identity::from_pem(&pem).map_err(|e| format!("--cert/--key: {e}"))?;
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .identity(identity)
        .timeout(args.timeout)
        .build()
        .map_err(|e| format!("client: {e}"))
}

/// The method, path and body of a command.
fn request(command: &AdminCommand) -> (&'static str, String, Option<Value>) {
    match command {
        AdminCommand::Status => ("GET", "/admin/status".into(), None),
        AdminCommand::Blocks(BlocksCommand::List) => ("GET", "/admin/blocks".into(), None),
        AdminCommand::Blocks(BlocksCommand::Add {
            kind,
            value,
            reason,
            expires_in,
        }) => {
            let mut body = json!({ "kind": kind, "value": value, "reason": reason });
            if let Some(secs) = expires_in {
                body["expires_in"] = json!(secs);
            }
            ("POST", "/admin/blocks".into(), Some(body))
        }
        AdminCommand::Blocks(BlocksCommand::Remove { id }) => {
            ("DELETE", format!("/admin/blocks/{id}"), None)
        }
        AdminCommand::DeadLetters(DeadLettersCommand::List { after, limit }) => (
            "GET",
            format!("/admin/webhooks/dead-letters?after={after}&limit={limit}"),
            None,
        ),
        AdminCommand::DeadLetters(DeadLettersCommand::Replay { id }) => (
            "POST",
            format!("/admin/webhooks/dead-letters/{id}/replay"),
            None,
        ),
        AdminCommand::Reload => ("POST", "/admin/reload".into(), None),
        AdminCommand::Audit { after, limit } => (
            "GET",
            format!("/admin/audit?after={after}&limit={limit}"),
            None,
        ),
    }
}

pub fn run(args: AdminArgs) -> ExitCode {
    match call(&args) {
        Ok((ok, text)) => {
            println!("{text}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn call(args: &AdminArgs) -> Result<(bool, String), String> {
    crate::transport::install_crypto_provider();
    let token = std::fs::read_to_string(&args.token_file)
        .map_err(|e| format!("{}: {e}", args.token_file.display()))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(format!("{}: empty token file", args.token_file.display()));
    }
    let client = client(args)?;
    let (method, path, body) = request(&args.command);
    let url = format!("{}{path}", args.url.trim_end_matches('/'));
    let method: reqwest::Method = method.parse().map_err(|_| "method".to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(async {
        let mut req = client.request(method, &url).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.map_err(|e| format!("{url}: {e}"))?;
        let ok = res.status().is_success();
        let status = res.status().as_u16();
        let text = res.text().await.map_err(|e| format!("{url}: {e}"))?;
        let pretty = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or(text);
        Ok((
            ok,
            if ok {
                pretty
            } else {
                format!("HTTP {status}\n{pretty}")
            },
        ))
    })
}
