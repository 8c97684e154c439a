//! The functions served by `cargo lambda watch`, as `infra/local/up` serves them: the
//! real runtime API, the real binaries, events sent over HTTP.

// Test support: a failure to start the emulator is a failed test, with its reason.
#![allow(clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct Watch {
    child: Child,
    port: u16,
    agent: ureq::Agent,
}

impl Watch {
    /// Starts `cargo lambda watch` on a free loopback port with `env` for the functions.
    /// Panics with what to install when cargo-lambda is missing.
    pub fn start(env: &[(&str, String)]) -> Watch {
        let root = crate::repo_root();
        let venv_bin = root.join(".venv/bin");
        let path = format!(
            "{}:{}",
            venv_bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&root)
            .env("PATH", path)
            .args([
                "lambda",
                "watch",
                "--ignore-changes",
                "--invoke-address",
                "127.0.0.1",
            ])
            .args(["--invoke-port", &port.to_string()]);
        // Through its own environment, which the functions inherit: `--env-var` splits a
        // value at its commas (a JSON setting such as PLANS).
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Its own process group, so that dropping it stops the functions it started too.
        let mut child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cargo lambda watch: run `bash tests/run` (it installs cargo-lambda into .venv)");
        let (tx, rx) = mpsc::channel::<String>();
        for pipe in [
            child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
            child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    eprintln!("[cargo lambda watch] {line}");
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx);
        // Ready once the runtime server says where it listens.
        loop {
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(line) if line.contains("starting Runtime server") => break,
                Ok(_) => continue,
                Err(e) => panic!("cargo lambda watch did not start: {e}"),
            }
        }
        // The line comes as the server starts; it accepts a moment later. Wait for that
        // state (a connection accepted), not for a fixed time.
        let ready = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                ready.elapsed() < Duration::from_secs(60),
                "cargo lambda watch never accepted on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let config = ureq::Agent::config_builder()
            // The first invocation compiles the function.
            .timeout_global(Some(Duration::from_secs(900)))
            .http_status_as_error(false)
            .build();
        Watch {
            child,
            port,
            agent: config.into(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Invokes `function` with `event` through the runtime API and returns its response
    /// (for HTTP functions, the API Gateway v2 response object).
    pub fn invoke(&self, function: &str, event: &serde_json::Value) -> serde_json::Value {
        let url = format!(
            "http://127.0.0.1:{}/2015-03-31/functions/{function}/invocations",
            self.port
        );
        let mut response = self.agent.post(&url).send(event.to_string()).expect("invoke");
        let text = response
            .body_mut()
            .read_to_string()
            .expect("invoke response body");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("invoke response is not JSON ({e}): {text}"))
    }

    /// Invokes an HTTP function and returns (status, JSON body).
    pub fn call(&self, function: &str, event: &serde_json::Value) -> (u16, serde_json::Value) {
        let out = self.invoke(function, event);
        let status = out["statusCode"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(0);
        let body = out["body"]
            .as_str()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(serde_json::Value::Null);
        (status, body)
    }
}

/// What every function needs locally: the table on dynoxide, static credentials, and no
/// instance-metadata lookups (so the SDK never looks past loopback).
pub fn local_env(table: &str, dynamodb_endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TABLE_NAME", table.to_owned()),
        ("DYNAMODB_ENDPOINT", dynamodb_endpoint.to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "local".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "local".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("RUNTIME_ROLE_ARNS", crate::RUNTIME_ROLE.to_owned()),
        ("OPERATOR_ROLE_ARNS", crate::OPERATOR_ROLE.to_owned()),
    ]
}

impl Drop for Watch {
    /// Stops watch and the function processes it started: its whole process group, and
    /// nothing else (a signal to the exact group id, never through a `kill` command line).
    fn drop(&mut self) {
        if let Ok(pgid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = self.child.wait();
    }
}
