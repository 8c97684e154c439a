//! Which certificate authorities the AWS SDK's HTTPS client trusts.
//!
//! The SDK's default client reads the system's whole trust store at start-up: on AL2023 a
//! bundle of about 150 certificates, here a bundle plus ~290 single files. That is most of
//! a cold start's SDK cost (README, "Cold start"). AWS's service endpoints all chain to
//! Amazon Trust Services' five roots, so those are what the client trusts, unless:
//!
//! | setting | roots |
//! |---|---|
//! | `AWS_CA_BUNDLE` (a PEM file, as the other AWS SDKs read it) | exactly that bundle |
//! | `DYNAMODB_ENDPOINT` or `SECRETSMANAGER_ENDPOINT` on `https://` | the system's store: such an endpoint's CA may be any |
//! | otherwise (AWS's endpoints, or plain-`http://` local ones) | Amazon Trust Services (`roots/`) |

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Amazon Root CA 1–4 and Starfield Services Root CA – G2 (`roots/README.md`).
pub const AMAZON_ROOTS: &str = include_str!("../roots/amazon-trust-services.pem");

/// Where the client's trust comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// Amazon Trust Services' roots, compiled in: nothing to read at start-up.
    Amazon,
    /// The PEM bundle at this path (`AWS_CA_BUNDLE`).
    Bundle(String),
    /// The system's trust store.
    System,
}

impl Roots {
    /// The roots for the settings `get` gives (the environment, in the functions).
    pub fn from_settings(get: impl Fn(&str) -> Option<String>) -> Roots {
        if let Some(path) = get("AWS_CA_BUNDLE") {
            return Roots::Bundle(path);
        }
        let custom_tls = ["DYNAMODB_ENDPOINT", "SECRETSMANAGER_ENDPOINT"]
            .into_iter()
            .filter_map(&get)
            .any(|url| !url.starts_with("http://"));
        if custom_tls { Roots::System } else { Roots::Amazon }
    }

    /// The trust store, with a bundle read and checked now: the SDK would panic later on a
    /// certificate it cannot parse.
    pub fn trust_store(&self) -> Result<TrustStore, String> {
        match self {
            Roots::System => Ok(TrustStore::default()),
            Roots::Amazon => Ok(TrustStore::empty().with_pem_certificate(AMAZON_ROOTS)),
            Roots::Bundle(path) => {
                let pem = std::fs::read(path).map_err(|e| format!("reading AWS_CA_BUNDLE {path}: {e}"))?;
                match certificates(&pem) {
                    Ok(n) if n > 0 => Ok(TrustStore::empty().with_pem_certificate(pem)),
                    Ok(_) => Err(format!("AWS_CA_BUNDLE {path} holds no certificate")),
                    Err(e) => Err(format!("AWS_CA_BUNDLE {path}: {e}")),
                }
            }
        }
    }
}

/// How many certificates `pem` holds, each usable as a root; an error names the first
/// that is not.
pub fn certificates(pem: &[u8]) -> Result<usize, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates ({e})"))?;
    let count = certs.len();
    let mut store = rustls::RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        store
            .add(cert)
            .map_err(|e| format!("certificate {} is not a usable root ({e})", i + 1))?;
    }
    Ok(count)
}

/// The SDK's default HTTPS client (rustls on aws-lc, proxy from the environment, the
/// SDK's timeouts), trusting `roots`.
pub fn https_client(roots: &Roots) -> Result<aws_sdk_dynamodb::config::SharedHttpClient, String> {
    let context = TlsContext::builder()
        .with_trust_store(roots.trust_store()?)
        .build()
        .map_err(|e| format!("the TLS settings: {e}"))?;
    Ok(
        Builder::new().build_with_connector_fn(move |settings, components| {
            let mut connector = ConnectorBuilder::default()
                .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
                .tls_context(context.clone());
            connector.set_connector_settings(settings.cloned());
            if let Some(components) = components {
                connector.set_sleep_impl(components.sleep_impl());
            }
            connector.set_proxy_config(Some(ProxyConfig::from_env()));
            connector.build()
        }),
    )
}
