//! Starts dynoxide as an HTTP server on a free loopback port. Each test gets its own
//! server (it starts in milliseconds), so tests share nothing and run in parallel.
//!
//! `DYNAMODB_ENDPOINT` set: use that server instead (e.g. the local stack's).

use std::path::PathBuf;

use crate::server::{Server, Spec};

pub struct Dynoxide(Server);

impl Dynoxide {
    pub fn endpoint(&self) -> &str {
        self.0.endpoint()
    }

    /// The server for one test. Panics (this is test support) with what to do when
    /// dynoxide is not installed.
    pub fn start() -> Dynoxide {
        Dynoxide(Server::start(&Spec {
            name: "dynoxide",
            endpoint_var: "DYNAMODB_ENDPOINT",
            binary: &binary(),
            args: |host, port| vec!["--host".into(), host.into(), "--port".into(), port.to_string()],
            // Its banner, printed once the socket is bound.
            ready: "listening on",
            install_hint: "Run `bash tests/run` or infra/local/install.",
        }))
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
