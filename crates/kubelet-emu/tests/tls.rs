//! tandem-shim's Job-completion client over real TLS: a rustls server with a
//! certificate from a test CA stands in for the kube-apiserver; the shim trusts
//! only the CA in its service-account directory.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

struct Pki {
    ca_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("leaf");
    let cert = leaf.signed_by(&key, &issuer).expect("sign");
    Pki {
        ca_pem: ca_cert.pem(),
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
    }
}

/// Serves every request with a pod whose main container `app` has terminated (0).
fn serve(p: &Pki) -> (u16, Arc<std::sync::atomic::AtomicU32>) {
    let certs = vec![rustls::pki_types::CertificateDer::from(p.cert_der.clone())];
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(p.key_der.clone().into());
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let cfg = Arc::new(cfg);
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let hits = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let h2 = hits.clone();
    std::thread::spawn(move || {
        for sock in l.incoming().flatten() {
            let conn = rustls::ServerConnection::new(cfg.clone()).expect("conn");
            let mut tls = rustls::StreamOwned::new(conn, sock);
            let mut r = BufReader::new(&mut tls);
            let mut auth_ok = false;
            let mut path = String::new();
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                    break;
                }
                if l.starts_with("GET ") {
                    path = l.split(' ').nth(1).unwrap_or("").to_string();
                }
                auth_ok |= l
                    .to_ascii_lowercase()
                    .starts_with("authorization: bearer tls-token");
            }
            h2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let body = if auth_ok && path == "/api/v1/namespaces/ns1/pods/job-1" {
                r#"{"kind":"Pod","status":{"phase":"Running","containerStatuses":[{"name":"app","state":{"terminated":{"exitCode":0}}}]}}"#
            } else {
                r#"{"kind":"Status","code":403}"#
            };
            let code = if body.contains("403") {
                "403 Forbidden"
            } else {
                "200 OK"
            };
            let resp = format!(
                "HTTP/1.1 {code}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(resp.as_bytes());
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (port, hits)
}

fn legacy_job(sa: &std::path::Path, port: u16, state: &std::path::Path) -> Command {
    let mut c = Command::new(shim());
    c.args([
        "legacy",
        "--pod-restart-policy",
        "Never",
        "--main-containers",
        "app",
        "--pod-name",
        "job-1",
        "--pod-namespace",
        "ns1",
        "--poll-interval",
        "100ms",
        "--grace-period",
        "5s",
        "--",
        "sleep",
        "60",
    ])
    .env_clear()
    .env("PATH", "/usr/bin:/bin")
    .env("TANDEM_STATE_DIR", state)
    .env("TANDEM_SERVICEACCOUNT_DIR", sa)
    .env("TANDEM_API_URL", format!("https://127.0.0.1:{port}"))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    c
}

#[test]
fn job_completion_over_tls() {
    let p = pki();
    let (port, _) = serve(&p);
    let dir = scratch("tls");
    let sa = dir.join("sa");
    std::fs::create_dir_all(&sa).expect("mkdir");
    std::fs::write(sa.join("ca.crt"), &p.ca_pem).expect("ca");
    std::fs::write(sa.join("token"), "tls-token\n").expect("token");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("mkdir");
    let _ = shim(); // build first: the time bound is for the shim, not cargo
    let t = Instant::now();
    let o = legacy_job(&sa, port, &state).output().expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("main containers finished"), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn untrusted_server_is_refused() {
    let p = pki();
    let other = pki();
    let (port, _) = serve(&p);
    let dir = scratch("tls-bad");
    let sa = dir.join("sa");
    std::fs::create_dir_all(&sa).expect("mkdir");
    std::fs::write(sa.join("ca.crt"), &other.ca_pem).expect("ca");
    std::fs::write(sa.join("token"), "tls-token\n").expect("token");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("mkdir");
    let mut child = legacy_job(&sa, port, &state).spawn().expect("spawn");
    // Read stderr on a thread so that a silent shim cannot hang the test.
    let err = BufReader::new(child.stderr.take().expect("stderr"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in err.lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let end = Instant::now() + LONG;
    let mut seen = String::new();
    while let Ok(l) = rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
        seen.push_str(&l);
        seen.push('\n');
        // The first complaint ends the wait (it is repeated only every 5 minutes).
        if l.contains("job completion") {
            break;
        }
    }
    // still acting: it never guesses that the Job is done
    assert!(child.try_wait().expect("try_wait").is_none(), "{seen}");
    tandem_kubelet_emu::sys::kill(child.id(), libc::SIGTERM);
    let st = child.wait().expect("wait");
    assert_eq!(st.code(), Some(143), "SIGTERM forwarded to sleep: {seen}");
    assert!(seen.contains("job completion"), "{seen}");
    assert!(
        seen.to_lowercase().contains("certificate"),
        "no TLS reason given: {seen}"
    );
}
