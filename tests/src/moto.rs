//! Starts moto (Secrets Manager) from the repo's `.venv` on a free loopback port, one
//! server per test. `SECRETSMANAGER_ENDPOINT` set: use that server instead.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

pub struct Moto {
    child: Option<Child>,
    endpoint: String,
}

impl Moto {
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Panics (this is test support) with what to do when moto is not installed.
    pub fn start() -> Moto {
        if let Ok(endpoint) = std::env::var("SECRETSMANAGER_ENDPOINT") {
            return Moto {
                child: None,
                endpoint,
            };
        }
        let bin = crate::repo_root().join(".venv/bin/moto_server");
        let mut last = String::new();
        for _ in 0..5 {
            let port = match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
                Ok(addr) => addr.port(),
                Err(e) => panic!("no free loopback port: {e}"),
            };
            let mut child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run {}: {e}. Run `bash infra/local/install`.",
                        bin.display()
                    )
                });
            let Some(stderr) = child.stderr.take() else {
                panic!("no stderr pipe")
            };
            // The server logs "Running on http://..." once it listens; then its log is
            // drained so that it never blocks on a full pipe.
            let mut lines = BufReader::new(stderr).lines();
            let mut ready = false;
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if line.contains("Running on") {
                    ready = true;
                    break;
                }
                last = line;
            }
            if ready {
                std::thread::spawn(move || lines.for_each(drop));
                return Moto {
                    child: Some(child),
                    endpoint: format!("http://127.0.0.1:{port}"),
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto did not start: {last}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
