//! The gateway binary as a child process (start-up, signals, exit codes, what it prints).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::config::Config;

/// The gateway binary running `dir/gateway.yaml`; its output goes to a file in `dir`.
pub struct Running {
    pub child: Child,
    out: PathBuf,
}

impl Running {
    /// Writes `config` to `dir/gateway.yaml` and runs it; output in `dir/out.log`.
    pub fn start(dir: &Path, config: &Config) -> Running {
        Self::start_with_env(dir, config, &[])
    }

    /// As [`Running::start`], with extra environment variables.
    pub fn start_with_env(dir: &Path, config: &Config, env: &[(&str, &str)]) -> Running {
        let yaml = config.render(dir);
        std::fs::write(dir.join("gateway.yaml"), yaml).unwrap();
        Self::spawn(dir, &[], "out.log", env)
    }

    /// Runs the `dir/gateway.yaml` already written, with extra `run` flags; output in
    /// `dir/<out>`.
    pub fn spawn(dir: &Path, flags: &[&str], out: &str, env: &[(&str, &str)]) -> Running {
        let path = dir.join(out);
        let file = std::fs::File::create(&path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tiktok-gateway"))
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .args(["run", "--config"])
            .arg(dir.join("gateway.yaml"))
            .args(flags)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Running { child, out: path }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -s {name}");
    }

    /// The exit status, if the process ends within `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        None
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `addr` accepts connections; panics with the gateway's output if it exits first
/// or never listens.
pub fn wait_listening(gw: &mut Running, addr: std::net::SocketAddr) {
    for _ in 0..400 {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return;
        }
        if let Some(status) = gw.child.try_wait().unwrap() {
            panic!("gateway exited ({status}):\n{}", gw.output());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("gateway never listened on {addr}:\n{}", gw.output());
}
