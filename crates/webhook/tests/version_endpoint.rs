//! `/version` over real HTTPS: the build and the certificate actually served.

mod support;

use tandem_core::{Config, Mode};
use tandem_webhook::tls::{self, CertInfo};
use tandem_webhook::{ServeOptions, Webhook};

#[tokio::test]
async fn version_names_the_build_and_the_served_certificate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let hook = Webhook::start(ServeOptions::standalone(
        Config::builtin(),
        Some(Mode::Native),
    ))
    .await
    .expect("start");
    let ca = hook.ca_pem().expect("generated CA").to_string();
    let mut c = support::connect(hook.addr(), &ca).await.expect("connect");
    let (status, body) = support::request(&mut c, "GET", "/version", vec![])
        .await
        .expect("GET /version");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let cert = v["servingCertificate"].as_str().expect("certificate");
    tls::verify_leaf(ca.as_bytes(), cert.as_bytes(), "localhost", tls::unix_now())
        .expect("the served certificate verifies against the CA");
    let info = CertInfo::first_from_pem(cert.as_bytes()).expect("readable");
    assert_eq!(v["servingCertificateNotAfter"], info.not_after);
    // Not gated: generated TLS is ready at once.
    let (status, _) = support::request(&mut c, "GET", "/readyz", vec![])
        .await
        .expect("GET /readyz");
    assert_eq!(status, 200);
    hook.shutdown(std::time::Duration::from_secs(1))
        .await
        .expect("stop");
}
