//! Starts dynoxide as an HTTP server on a free loopback port. Each test gets its own
//! server (it starts in milliseconds), so tests share nothing and run in parallel.
//!
//! `DYNAMODB_ENDPOINT` set: use that server instead (e.g. the local stack's).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct Dynoxide {
    child: Option<Child>,
    endpoint: String,
}

impl Dynoxide {
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The server for one test. Panics (this is test support) with what to do when
    /// dynoxide is not installed.
    pub fn start() -> Dynoxide {
        if let Ok(endpoint) = std::env::var("DYNAMODB_ENDPOINT") {
            return Dynoxide {
                child: None,
                endpoint,
            };
        }
        let bin = binary();
        let mut last_error = String::new();
        // A port found free can be taken before dynoxide binds it: try a few.
        for _ in 0..5 {
            let port = match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
                Ok(addr) => addr.port(),
                Err(e) => panic!("no free loopback port: {e}"),
            };
            let mut child = Command::new(&bin)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run {}: {e}. Run `bash tests/run` or infra/local/install.",
                        bin.display()
                    )
                });
            // dynoxide prints its banner once the socket is bound: wait for that line,
            // then keep draining stderr so the server never blocks on a full pipe.
            let Some(stderr) = child.stderr.take() else {
                panic!("no stderr pipe")
            };
            let mut lines = BufReader::new(stderr).lines();
            let mut ready = false;
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if line.contains("listening on") {
                    ready = true;
                    break;
                }
                last_error = line;
            }
            if ready {
                std::thread::spawn(move || lines.for_each(drop));
                return Dynoxide {
                    child: Some(child),
                    endpoint: format!("http://127.0.0.1:{port}"),
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("dynoxide did not start: {last_error}");
    }
}

impl Drop for Dynoxide {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `DYNOXIDE_BIN`, else `dynoxide` from cargo's bin folder or the PATH.
fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("DYNOXIDE_BIN") {
        return PathBuf::from(bin);
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(candidate) = cargo_home.map(|h| h.join("bin/dynoxide")).filter(|p| p.exists()) {
        return candidate;
    }
    PathBuf::from("dynoxide")
}
