//! The AWS client's roots: the compiled-in Amazon Trust Services set is exactly the five
//! published certificates, and the settings pick the roots the module table documents.

use std::collections::HashMap;

use agent_credits_aws::tls::{AMAZON_ROOTS, Roots, certificates, https_client};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

/// Amazon Root CA 1–4 and Starfield Services Root CA – G2, as `roots/README.md` lists them.
const PUBLISHED: [&str; 5] = [
    "8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e",
    "1ba5b2aa8c65401a82960118f80bec4f62304d83cec4713a19c39c011ea46db4",
    "18ce6cfe7bf14e60b2e347b8dfe868cb31d02ebb3ada271569f50343b46db3a4",
    "e35d28419ed02025cfa69038cd623962458da5c695fbdea3c22b0bfb25897092",
    "568d6905a2c88708a4b3025190edcfedb1974a606a13c6e5290fcb2ae63edab5",
];

fn settings(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn the_compiled_in_roots_are_amazon_trust_services_five() {
    let fingerprints: Vec<String> = CertificateDer::pem_slice_iter(AMAZON_ROOTS.as_bytes())
        .map(|cert| hex::encode(Sha256::digest(cert.expect("the compiled-in PEM parses").as_ref())))
        .collect();
    assert_eq!(fingerprints, PUBLISHED);
    assert_eq!(
        certificates(AMAZON_ROOTS.as_bytes()),
        Ok(5),
        "each one is a usable root"
    );
    let readme = include_str!("../roots/README.md").to_lowercase();
    for fingerprint in PUBLISHED {
        assert!(
            readme.contains(fingerprint),
            "roots/README.md lists {fingerprint}"
        );
    }
}

#[test]
fn settings_pick_the_roots() {
    assert_eq!(
        Roots::from_settings(settings(&[])),
        Roots::Amazon,
        "AWS's own endpoints"
    );
    let local = settings(&[
        ("DYNAMODB_ENDPOINT", "http://127.0.0.1:8000"),
        ("SECRETSMANAGER_ENDPOINT", "http://127.0.0.1:5000"),
    ]);
    assert_eq!(
        Roots::from_settings(local),
        Roots::Amazon,
        "plain http needs no roots"
    );
    let proxy = settings(&[("DYNAMODB_ENDPOINT", "https://dynamodb.internal.example")]);
    assert_eq!(
        Roots::from_settings(proxy),
        Roots::System,
        "another endpoint's CA may be any"
    );
    let bundle = settings(&[
        ("AWS_CA_BUNDLE", "/etc/corp.pem"),
        ("DYNAMODB_ENDPOINT", "https://x"),
    ]);
    assert_eq!(
        Roots::from_settings(bundle),
        Roots::Bundle("/etc/corp.pem".into())
    );
}

#[test]
fn a_bundle_is_read_and_checked_at_start_up() {
    let dir = std::env::temp_dir().join(format!("agent-credits-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let good = dir.join("good.pem");
    std::fs::write(&good, AMAZON_ROOTS).expect("write");
    assert!(https_client(&Roots::Bundle(good.display().to_string())).is_ok());

    let cases = [
        ("missing.pem", None, "reading AWS_CA_BUNDLE"),
        (
            "empty.pem",
            Some("no certificates here\n"),
            "holds no certificate",
        ),
        (
            "garbled.pem",
            Some("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"),
            "not PEM",
        ),
        (
            "not-x509.pem",
            Some("-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n"),
            "certificate 1 is not a usable root",
        ),
    ];
    for (name, text, expected) in cases {
        let path = dir.join(name);
        if let Some(text) = text {
            std::fs::write(&path, text).expect("write");
        }
        let error = https_client(&Roots::Bundle(path.display().to_string())).err();
        assert!(
            error.as_deref().is_some_and(|e| e.contains(expected)),
            "{name}: {error:?} should say {expected:?}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
