//! Job completion on old kubelets: while the regular copy acts as the sidecar in
//! a pod whose `restartPolicy` is not `Always`, poll the pod's own status from the
//! API server and ask the supervisor to stop CMD once the main containers finished.
//!
//! Needs: the pod name and namespace (downward API), a mounted service-account
//! token, and RBAC `get` on `pods` in the pod's namespace for that account.
//! Without them it logs why, once, and the sidecar keeps running (as any legacy
//! sidecar would): it never guesses that the main containers are done.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::decide::RestartPolicy;
use crate::json::{self, Value};

/// Where the API server is and how to authenticate.
#[derive(Debug, Clone)]
pub struct Api {
    /// `https` (normal) or `http` (tests, `kubectl proxy`-style sidecars).
    pub tls: bool,
    /// IP address (no brackets); names are not resolved.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Service-account directory (`token`, `ca.crt`, `namespace`).
    pub sa_dir: PathBuf,
}

/// Everything the watcher needs.
#[derive(Debug, Clone)]
pub struct Watch {
    /// API server.
    pub api: Api,
    /// This pod's name.
    pub pod: String,
    /// This pod's namespace.
    pub namespace: String,
    /// Containers that must finish; empty: all regular containers except tandem's own copies.
    pub mains: Vec<String>,
    /// The pod's restart policy (not `Always`).
    pub policy: RestartPolicy,
    /// Time between polls.
    pub interval: Duration,
}

/// Whether the pod's main containers are done, judged from a Pod object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Every main container has terminated for good.
    Done,
    /// Some still run, or will be restarted.
    NotYet,
    /// The object does not say (no main containers known).
    Unknown(String),
}

/// Pure: decides from a Pod (JSON) whether the main containers have finished.
/// With `Never` any termination is final; with `OnFailure` only exit code 0 is
/// (a failed container is restarted by the kubelet).
pub fn completion(pod: &Value, mains: &[String], policy: RestartPolicy) -> Completion {
    if let Some(phase) = pod
        .get("status")
        .and_then(|s| s.get("phase"))
        .and_then(Value::as_str)
        && (phase == "Succeeded" || phase == "Failed")
    {
        return Completion::Done;
    }
    let derived;
    let mains: &[String] = if mains.is_empty() {
        derived = derive_mains(pod);
        &derived
    } else {
        mains
    };
    if mains.is_empty() {
        return Completion::Unknown("no main containers listed or found in the pod spec".into());
    }
    let statuses = pod
        .get("status")
        .and_then(|s| s.get("containerStatuses"))
        .and_then(Value::as_array)
        .unwrap_or(&[]);
    for name in mains {
        let Some(st) = statuses
            .iter()
            .find(|s| s.get("name").and_then(Value::as_str) == Some(name))
        else {
            return Completion::NotYet;
        };
        let Some(term) = st.get("state").and_then(|s| s.get("terminated")) else {
            return Completion::NotYet;
        };
        let code = term.get("exitCode").and_then(Value::as_f64).unwrap_or(-1.0);
        if policy == RestartPolicy::OnFailure && code != 0.0 {
            return Completion::NotYet;
        }
    }
    Completion::Done
}

/// Regular containers that are not a tandem legacy copy (`SHIM legacy -- …`).
fn derive_mains(pod: &Value) -> Vec<String> {
    let cs = pod
        .get("spec")
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .unwrap_or(&[]);
    cs.iter()
        .filter(|c| {
            let cmd = c.get("command").and_then(Value::as_array).unwrap_or(&[]);
            let is_shim = cmd
                .first()
                .and_then(Value::as_str)
                .is_some_and(|s| s.ends_with("tandem-shim"))
                && cmd.get(1).and_then(Value::as_str) == Some("legacy");
            !is_shim
        })
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
        .collect()
}

/// Starts the poller thread; the returned flag turns true when the Job's main
/// containers are done.
pub fn spawn(w: Watch) -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f2 = flag.clone();
    let res = std::thread::Builder::new()
        .name("jobwatch".into())
        .spawn(move || poll_loop(&w, &f2));
    if let Err(e) = res {
        crate::log(&format!(
            "job completion disabled: cannot start the poller thread: {e}"
        ));
    }
    flag
}

fn poll_loop(w: &Watch, done: &AtomicBool) {
    let path = format!("/api/v1/namespaces/{}/pods/{}", w.namespace, w.pod);
    let client = match Client::new(&w.api) {
        Ok(c) => c,
        Err(e) => {
            crate::log(&format!(
                "job completion disabled: {e}; this sidecar will keep the Job from completing"
            ));
            return;
        }
    };
    let mut last_complaint: Option<Instant> = None;
    let mut complain = |msg: String| {
        if last_complaint.is_none_or(|t| t.elapsed() > Duration::from_secs(300)) {
            crate::log(&msg);
            last_complaint = Some(Instant::now());
        }
    };
    loop {
        let mut wait = w.interval;
        match client.get(&path) {
            Ok((200, body)) => match json::parse(&body) {
                Ok(pod) => match completion(&pod, &w.mains, w.policy) {
                    Completion::Done => {
                        done.store(true, Ordering::Release);
                        return;
                    }
                    Completion::NotYet => {}
                    Completion::Unknown(why) => complain(format!("job completion: {why}")),
                },
                Err(e) => complain(format!(
                    "job completion: API server sent unparsable JSON: {e}"
                )),
            },
            Ok((code @ (401 | 403), _)) => {
                complain(format!(
                    "job completion: API server said {code} for GET {path}: grant the pod's service account `get` on `pods` in namespace {} (see tandem-shim README, \"Job completion\"); retrying",
                    w.namespace
                ));
                wait = wait.max(Duration::from_secs(10));
            }
            Ok((code, body)) => complain(format!(
                "job completion: GET {path}: HTTP {code}: {}",
                body.chars().take(200).collect::<String>()
            )),
            Err(e) => complain(format!("job completion: GET {path}: {e}")),
        }
        std::thread::sleep(wait);
    }
}

/// A one-request-per-connection HTTP/1.1 client, TLS via rustls (ring).
struct Client {
    api: Api,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Client {
    fn new(api: &Api) -> Result<Client, String> {
        let tls = if api.tls {
            use rustls_pki_types::CertificateDer;
            use rustls_pki_types::pem::PemObject;
            let ca = api.sa_dir.join("ca.crt");
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(&ca)
                .map_err(|e| format!("cannot read the cluster CA {}: {e}", ca.display()))?;
            for c in certs {
                let c = c.map_err(|e| format!("bad certificate in {}: {e}", ca.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("bad certificate in {}: {e}", ca.display()))?;
            }
            // TLS 1.3 only, AES-GCM suites, P-256 key exchange, and the certificate
            // signatures cluster CAs use (RSA PKCS#1/PSS, ECDSA P-256/P-384): what
            // every kube-apiserver (Go crypto/tls) offers, and the least code in a
            // binary that must stay small. No Ed25519/X25519 (their tables cost ~40 KiB).
            use rustls::SignatureScheme as S;
            use rustls::crypto::WebPkiSupportedAlgorithms;
            use rustls::crypto::ring as rp;
            use webpki::ring as w;
            static SIG_ALGS: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
                all: &[
                    w::ECDSA_P256_SHA256,
                    w::ECDSA_P384_SHA384,
                    w::RSA_PKCS1_2048_8192_SHA256,
                    w::RSA_PKCS1_2048_8192_SHA384,
                    w::RSA_PKCS1_2048_8192_SHA512,
                    w::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
                    w::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
                    w::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
                ],
                mapping: &[
                    (S::ECDSA_NISTP256_SHA256, &[w::ECDSA_P256_SHA256]),
                    (S::ECDSA_NISTP384_SHA384, &[w::ECDSA_P384_SHA384]),
                    (S::RSA_PSS_SHA256, &[w::RSA_PSS_2048_8192_SHA256_LEGACY_KEY]),
                    (S::RSA_PSS_SHA384, &[w::RSA_PSS_2048_8192_SHA384_LEGACY_KEY]),
                    (S::RSA_PSS_SHA512, &[w::RSA_PSS_2048_8192_SHA512_LEGACY_KEY]),
                    (S::RSA_PKCS1_SHA256, &[w::RSA_PKCS1_2048_8192_SHA256]),
                    (S::RSA_PKCS1_SHA384, &[w::RSA_PKCS1_2048_8192_SHA384]),
                    (S::RSA_PKCS1_SHA512, &[w::RSA_PKCS1_2048_8192_SHA512]),
                ],
            };
            let provider = Arc::new(rustls::crypto::CryptoProvider {
                cipher_suites: vec![
                    rp::cipher_suite::TLS13_AES_128_GCM_SHA256,
                    rp::cipher_suite::TLS13_AES_256_GCM_SHA384,
                ],
                kx_groups: vec![rp::kx_group::SECP256R1],
                signature_verification_algorithms: SIG_ALGS,
                secure_random: &OsRandom,
                key_provider: &NoClientKeys,
            });
            let cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(|e| format!("TLS setup: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(Arc::new(cfg))
        } else {
            None
        };
        Ok(Client {
            api: api.clone(),
            tls,
        })
    }

    fn get(&self, path: &str) -> Result<(u16, String), String> {
        let token = std::fs::read_to_string(self.api.sa_dir.join("token")).ok();
        let host_hdr = if self.api.host.contains(':') {
            format!("[{}]:{}", self.api.host, self.api.port)
        } else {
            format!("{}:{}", self.api.host, self.api.port)
        };
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host_hdr}\r\nUser-Agent: tandem-shim\r\nAccept: application/json\r\nConnection: close\r\n"
        );
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {}\r\n", t.trim()));
        }
        req.push_str("\r\n");
        // An IP address only (KUBERNETES_SERVICE_HOST is one): no name
        // resolution, so no NSS in the static binary.
        let ip: std::net::IpAddr = self.api.host.parse().map_err(|_| {
            format!(
                "{} is not an IP address (names are not resolved)",
                self.api.host
            )
        })?;
        let addr = std::net::SocketAddr::new(ip, self.api.port);
        let timeout = Duration::from_secs(10);
        let sock = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| format!("connect {addr}: {e}"))?;
        sock.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        sock.set_write_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let raw = match &self.tls {
            Some(cfg) => {
                let name = rustls_pki_types::ServerName::try_from(self.api.host.clone())
                    .map_err(|e| format!("bad server name {}: {e}", self.api.host))?;
                let conn =
                    rustls::ClientConnection::new(cfg.clone(), name).map_err(|e| e.to_string())?;
                let mut s = rustls::StreamOwned::new(conn, sock);
                exchange(&mut s, req.as_bytes())
            }
            None => {
                let mut s = sock;
                exchange(&mut s, req.as_bytes())
            }
        }
        .map_err(|e| format!("{host_hdr}: {e}"))?;
        parse_response(&raw)
    }
}

/// Randomness for TLS from the OS (ring's getrandom wrapper). Spelled out instead of
/// `ring::default_provider()`, which would link every suite and group.
#[derive(Debug)]
struct OsRandom;

impl rustls::crypto::SecureRandom for OsRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), rustls::crypto::GetRandomFailed> {
        use ring::rand::SecureRandom as _;
        ring::rand::SystemRandom::new()
            .fill(buf)
            .map_err(|_| rustls::crypto::GetRandomFailed)
    }
}

/// The client never authenticates with a key (it sends a bearer token).
#[derive(Debug)]
struct NoClientKeys;

impl rustls::crypto::KeyProvider for NoClientKeys {
    fn load_private_key(
        &self,
        _key: rustls_pki_types::PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        Err(rustls::Error::General(
            "client certificates are not supported".into(),
        ))
    }
}

fn exchange<S: Read + Write>(s: &mut S, req: &[u8]) -> io::Result<Vec<u8>> {
    s.write_all(req)?;
    s.flush()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() > 16 << 20 {
                    return Err(io::Error::other("response larger than 16 MiB"));
                }
            }
            // Servers that close without TLS close_notify: keep what we have.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !out.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Parses an HTTP/1.1 response (Content-Length, chunked, or read-to-close).
fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("malformed HTTP response (no header end)")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "non-UTF-8 HTTP headers")?;
    let mut body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or("malformed HTTP status line")?;
    let mut chunked = false;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if k == "content-length"
            && let Ok(n) = v.parse::<usize>()
            && n <= body.len()
        {
            body = &body[..n];
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = vec![];
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk header")?;
        let size_s = std::str::from_utf8(&b[..eol]).map_err(|_| "bad chunk header")?;
        let size_s = size_s.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_s, 16).map_err(|_| "bad chunk size")?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(statuses: &str) -> Value {
        json::parse(&format!(
            r#"{{"spec":{{"containers":[{{"name":"log-legacy","command":["/usr/local/bin/tandem-shim","legacy","--","x"]}},{{"name":"app"}},{{"name":"db"}}]}},
               "status":{{"phase":"Running","containerStatuses":[{statuses}]}}}}"#
        ))
        .expect("json")
    }

    const RUN_APP: &str = r#"{"name":"app","state":{"running":{}}}"#;
    const OK_APP: &str = r#"{"name":"app","state":{"terminated":{"exitCode":0}}}"#;
    const BAD_APP: &str = r#"{"name":"app","state":{"terminated":{"exitCode":3}}}"#;
    const OK_DB: &str = r#"{"name":"db","state":{"terminated":{"exitCode":0}}}"#;

    #[test]
    fn completion_rules() {
        let mains = vec!["app".to_string(), "db".to_string()];
        use Completion::*;
        use RestartPolicy::*;
        assert_eq!(completion(&pod(RUN_APP), &mains, Never), NotYet);
        assert_eq!(
            completion(&pod(OK_APP), &mains, Never),
            NotYet,
            "db has no status"
        );
        assert_eq!(
            completion(&pod(&format!("{OK_APP},{OK_DB}")), &mains, Never),
            Done
        );
        assert_eq!(
            completion(&pod(&format!("{BAD_APP},{OK_DB}")), &mains, Never),
            Done
        );
        assert_eq!(
            completion(&pod(&format!("{BAD_APP},{OK_DB}")), &mains, OnFailure),
            NotYet
        );
        assert_eq!(
            completion(&pod(&format!("{OK_APP},{OK_DB}")), &mains, OnFailure),
            Done
        );
        // derived mains: app and db (the legacy copy is recognised by its command)
        assert_eq!(
            completion(&pod(&format!("{OK_APP},{OK_DB}")), &[], Never),
            Done
        );
        assert_eq!(completion(&pod(OK_APP), &[], Never), NotYet);
        let finished = json::parse(r#"{"status":{"phase":"Succeeded"}}"#).expect("json");
        assert_eq!(completion(&finished, &mains, Never), Done);
        let empty = json::parse(r#"{"spec":{"containers":[]}}"#).expect("json");
        assert!(matches!(completion(&empty, &[], Never), Unknown(_)));
    }

    #[test]
    fn http_responses() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}garbage";
        assert_eq!(parse_response(r), Ok((200, "{}".into())));
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(parse_response(r), Ok((200, "{\"a\":1}".into())));
        let r = b"HTTP/1.1 403 Forbidden\r\n\r\nno";
        assert_eq!(parse_response(r), Ok((403, "no".into())));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
