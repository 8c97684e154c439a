//! Starts moto (Secrets Manager) from the repo's `.venv` on a free loopback port, one
//! server per test. `SECRETSMANAGER_ENDPOINT` set: use that server instead.

use crate::server::{Server, Spec};

pub struct Moto(Server);

impl Moto {
    pub fn endpoint(&self) -> &str {
        self.0.endpoint()
    }

    /// Panics (this is test support) with what to do when moto is not installed.
    pub fn start() -> Moto {
        let bin = crate::repo_root().join(".venv/bin/moto_server");
        Moto(Server::start(&Spec {
            name: "moto",
            endpoint_var: "SECRETSMANAGER_ENDPOINT",
            binary: &bin,
            args: |host, port| vec!["-H".into(), host.into(), "-p".into(), port.to_string()],
            // Werkzeug's "Running on http://..." once it listens.
            ready: "Running on",
            install_hint: "Run `bash infra/local/install`.",
        }))
    }
}
