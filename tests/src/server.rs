//! A local emulator as a child process on a free loopback port, one per test: started,
//! waited for until its log says it listens, killed when dropped. An endpoint given in
//! the environment (e.g. the local stack's) is used instead.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct Server {
    child: Option<Child>,
    endpoint: String,
}

/// How to start one emulator.
pub struct Spec<'a> {
    pub name: &'a str,
    /// The environment variable naming an endpoint to use instead of starting one.
    pub endpoint_var: &'a str,
    pub binary: &'a Path,
    /// The arguments for `host` and `port`.
    pub args: fn(&str, u16) -> Vec<String>,
    /// A line of its stderr saying it listens.
    pub ready: &'a str,
    /// What to do when it cannot be run.
    pub install_hint: &'a str,
}

impl Server {
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Panics (this is test support) with what to do when the emulator is not installed.
    pub fn start(spec: &Spec<'_>) -> Server {
        if let Ok(endpoint) = std::env::var(spec.endpoint_var) {
            return Server {
                child: None,
                endpoint,
            };
        }
        let mut last = String::new();
        // A port found free can be taken before the server binds it: try a few.
        for _ in 0..5 {
            let port = match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
                Ok(addr) => addr.port(),
                Err(e) => panic!("no free loopback port: {e}"),
            };
            let mut child = Command::new(spec.binary)
                .args((spec.args)("127.0.0.1", port))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run {}: {e}. {}", spec.binary.display(), spec.install_hint)
                });
            let Some(stderr) = child.stderr.take() else {
                panic!("no stderr pipe")
            };
            // Wait for the "listening" line, then keep draining stderr so that the server
            // never blocks on a full pipe.
            let mut lines = BufReader::new(stderr).lines();
            let mut ready = false;
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if line.contains(spec.ready) {
                    ready = true;
                    break;
                }
                last = line;
            }
            if ready {
                std::thread::spawn(move || lines.for_each(drop));
                return Server {
                    child: Some(child),
                    endpoint: format!("http://127.0.0.1:{port}"),
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("{} did not start: {last}", spec.name);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
