//! The webhook server over real HTTPS on loopback: endpoints, limits, certificate reload
//! without dropping open connections, readiness, and graceful shutdown that drains
//! requests in flight. No cluster needed.

mod support;

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use support::{connect, realistic_pod, request, review};
use tandem_core::{ClusterKnowledge, Config, Mode};
use tandem_webhook::live::LiveKnowledge;
use tandem_webhook::server::TlsSource;
use tandem_webhook::tls::{CertFiles, Pki};
use tandem_webhook::{ServeOptions, Webhook};

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[tokio::test]
async fn serves_mutate_health_ready_metrics() {
    init();
    let hook = Webhook::start(ServeOptions::standalone(
        Config::builtin(),
        Some(Mode::Native),
    ))
    .await
    .unwrap();
    let ca = hook.ca_pem().unwrap().to_string();
    let mut c = connect(hook.addr(), &ca).await.unwrap();
    assert_eq!(
        request(&mut c, "GET", "/healthz", vec![]).await.unwrap().0,
        200
    );
    assert_eq!(
        request(&mut c, "GET", "/readyz", vec![]).await.unwrap().0,
        200
    );

    let (status, body) = request(&mut c, "POST", "/mutate", review(realistic_pod(), false))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["response"]["allowed"], true);
    let patch = base64::engine::general_purpose::STANDARD
        .decode(v["response"]["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let mut pod = realistic_pod();
    json_patch::patch(&mut pod, &patch).unwrap();
    assert_eq!(pod["spec"]["initContainers"][0]["restartPolicy"], "Always");

    // Garbage on the same keep-alive connection: 400, and the connection still serves.
    let (status, _) = request(&mut c, "POST", "/mutate", b"{not json".to_vec())
        .await
        .unwrap();
    assert_eq!(status, 400);
    // Pod opt-in path: a pod without the label in a namespace that isn't opted in is skipped.
    let (status, body) = request(
        &mut c,
        "POST",
        "/mutate/labelled",
        review(realistic_pod(), false),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(v["response"].get("patch").is_none(), "{v}");

    let (status, text) = request(&mut c, "GET", "/metrics", vec![]).await.unwrap();
    assert_eq!(status, 200);
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("tandem_webhook_requests_total{outcome=\"injected\",mode=\"native\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("tandem_webhook_requests_total{outcome=\"invalid\",mode=\"none\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("tandem_webhook_cert_expiry_timestamp_seconds "),
        "{text}"
    );
    hook.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn oversized_body_is_rejected() {
    init();
    let mut opts = ServeOptions::standalone(Config::builtin(), Some(Mode::Native));
    opts.max_body_bytes = 64 * 1024;
    let hook = Webhook::start(opts).await.unwrap();
    let ca = hook.ca_pem().unwrap().to_string();
    let mut c = connect(hook.addr(), &ca).await.unwrap();
    let mut pod = realistic_pod();
    pod["metadata"]["annotations"]["big"] = json!("x".repeat(100 * 1024));
    let (status, _) = request(&mut c, "POST", "/mutate", review(pod, false))
        .await
        .unwrap();
    assert_eq!(status, 413);
    // Other requests are unaffected.
    let mut c = connect(hook.addr(), &ca).await.unwrap();
    let (status, _) = request(&mut c, "POST", "/mutate", review(realistic_pod(), false))
        .await
        .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn auto_is_not_ready_until_synced() {
    init();
    let mut opts = ServeOptions::standalone(Config::builtin(), Some(Mode::Auto));
    opts.knowledge = LiveKnowledge::fixed(ClusterKnowledge::default(), false);
    let hook = Webhook::start(opts).await.unwrap();
    let ca = hook.ca_pem().unwrap().to_string();
    let mut c = connect(hook.addr(), &ca).await.unwrap();
    assert_eq!(
        request(&mut c, "GET", "/readyz", vec![]).await.unwrap().0,
        503
    );
    // It still answers, in the safe mode.
    let (status, body) = request(&mut c, "POST", "/mutate", review(realistic_pod(), false))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["response"]["auditAnnotations"]["placement"], "legacy",
        "{v}"
    );
    assert!(v["response"]["warnings"].to_string().contains("not synced"));
}

fn write_pki(dir: &std::path::Path, pki: &Pki) -> CertFiles {
    let files = CertFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    // Write to temp names and rename, as a Secret volume update does (atomically).
    std::fs::write(dir.join("tls.crt.tmp"), &pki.cert_pem).expect("writing test certificates");
    std::fs::write(dir.join("tls.key.tmp"), &pki.key_pem).expect("writing test certificates");
    std::fs::rename(dir.join("tls.key.tmp"), &files.key).expect("writing test certificates");
    std::fs::rename(dir.join("tls.crt.tmp"), &files.cert).expect("writing test certificates");
    files
}

#[tokio::test]
async fn reloads_certificates_without_dropping_connections() {
    init();
    let dir = std::env::temp_dir().join(format!("tandem-webhook-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sans = ["localhost".to_string()];
    let first = Pki::generate("first-ca", &sans, &[], 10).unwrap();
    let files = write_pki(&dir, &first);
    let mut opts = ServeOptions::standalone(Config::builtin(), Some(Mode::Native));
    opts.tls = TlsSource::Files {
        files,
        every: Duration::from_millis(100),
    };
    let hook = Webhook::start(opts).await.unwrap();
    let mut old_conn = connect(hook.addr(), &first.ca_pem).await.unwrap();
    assert_eq!(
        request(&mut old_conn, "GET", "/healthz", vec![])
            .await
            .unwrap()
            .0,
        200
    );

    let second = Pki::generate("second-ca", &sans, &[], 20).unwrap();
    write_pki(&dir, &second);
    let mut reloaded = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if connect(hook.addr(), &second.ca_pem).await.is_ok() {
            reloaded = true;
            break;
        }
    }
    assert!(reloaded, "the new certificate was never served");
    assert!(
        connect(hook.addr(), &first.ca_pem).await.is_err(),
        "old certificate still served"
    );
    // The connection opened before the rotation keeps working.
    let (status, _) = request(
        &mut old_conn,
        "POST",
        "/mutate",
        review(realistic_pod(), false),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let metrics = hook.metrics_text();
    assert!(
        metrics.contains("tandem_webhook_cert_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "tandem_webhook_cert_expiry_timestamp_seconds {}",
        second.not_after
    )));

    // A broken pair is refused and the current certificate stays.
    std::fs::write(dir.join("tls.key"), "garbage").unwrap();
    std::fs::write(dir.join("tls.crt"), "garbage").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(connect(hook.addr(), &second.ca_pem).await.is_ok());
    assert!(
        hook.metrics_text()
            .contains("tandem_webhook_cert_reloads_total{result=\"error\"} 1")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn graceful_shutdown_drains_requests_in_flight() {
    use tokio::io::AsyncWriteExt as _;
    init();
    let hook = Webhook::start(ServeOptions::standalone(
        Config::builtin(),
        Some(Mode::Native),
    ))
    .await
    .unwrap();
    let addr = hook.addr();
    let ca = hook.ca_pem().unwrap().to_string();
    // A request whose body is only half sent when the shutdown starts.
    let body = review(realistic_pod(), false);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = support::connector(&ca)
        .connect(
            rustls::pki_types::ServerName::try_from("localhost")
                .unwrap()
                .to_owned(),
            tcp,
        )
        .await
        .unwrap();
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let half = body.len() / 2;
    tls.write_all(&body[..half]).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let shutdown = tokio::spawn(hook.shutdown(Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New connections are refused while the old request is still in flight.
    assert!(connect(addr, &ca).await.is_err());
    tls.write_all(&body[half..]).await.unwrap();
    tls.flush().await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 8192];
    use tokio::io::AsyncReadExt as _;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                response.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&response).contains("\"allowed\":true") {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"allowed\":true"), "{text}");
    drop(tls);
    shutdown.await.unwrap().unwrap();
}

/// The sizes behind the base64-vs-array choice (printed with `--nocapture`): a Go-style
/// base64 patch is 4/3 of the raw JSON; kube-core's number array is about 3.5 times it.
#[test]
fn patch_encoding_sizes() {
    use tandem_webhook::admission::{Context, PatchEncoding, review as answer};
    let config = Config::builtin();
    let k = ClusterKnowledge::default();
    for mode in [Mode::Native, Mode::Universal] {
        let mut sizes = Vec::new();
        for encoding in [PatchEncoding::Base64, PatchEncoding::Array] {
            let ctx = Context {
                config: &config,
                knowledge: &k,
                synced: true,
                mode_override: Some(mode),
                namespace: tandem_core::NamespaceOptIn::Enabled,
                encoding,
            };
            let a = answer(&review(realistic_pod(), false), &ctx);
            let v: Value = serde_json::from_slice(&a.body).unwrap();
            let field = serde_json::to_string(&v["response"]["patch"])
                .unwrap()
                .len();
            sizes.push((encoding, a.patch_bytes, field, a.body.len()));
        }
        for (encoding, raw, field, body) in &sizes {
            eprintln!(
                "{mode:?} {encoding:?}: patch {raw} B raw JSON, {field} B in the response field, response {body} B"
            );
        }
        let (raw, b64, arr) = (sizes[0].1, sizes[0].2, sizes[1].2);
        assert!(b64 <= raw * 4 / 3 + 8, "base64 {b64} for {raw}");
        assert!(arr > raw * 3, "array {arr} for {raw}");
    }
}
