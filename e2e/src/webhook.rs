//! A minimal mutating admission webhook for the end-to-end tests (until tandem's own
//! webhook is wired in): AdmissionReview v1 on `POST /mutate`, HTTPS on 127.0.0.1 with a
//! serving certificate signed by a freshly generated CA (to be given to the API server as
//! the `caBundle`). It answers every request with a fixed JSON Patch and counts the calls.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Errors while setting up the test webhook.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Generating the CA or the serving certificate failed.
    #[error("certificate generation: {0}")]
    Cert(#[from] rcgen::Error),
    /// Building the TLS configuration failed.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// Binding or configuring the listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// A CA and a serving certificate for `127.0.0.1` / `localhost` signed by it.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate (PEM): the webhook configuration's `caBundle`.
    pub ca_pem: String,
    /// The serving certificate (DER).
    pub cert_der: Vec<u8>,
    /// The serving key (PKCS#8 DER).
    pub key_der: Vec<u8>,
}

impl TestPki {
    /// Generates a new CA and a serving certificate (IP SAN 127.0.0.1, DNS localhost).
    pub fn generate() -> Result<Self, Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca.distinguished_name
            .push(DnType::CommonName, "tandem-e2e-webhook-ca");
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate()?;
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()])?;
        leaf.subject_alt_names
            .push(SanType::IpAddress(Ipv4Addr::LOCALHOST.into()));
        leaf.distinguished_name
            .push(DnType::CommonName, "tandem-e2e-webhook");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = leaf.signed_by(&key, &issuer)?;
        Ok(TestPki {
            ca_pem: ca_cert.pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        })
    }
}

/// The patch the test webhook applies, as a function of the object under review.
pub type PatchFn = Arc<dyn Fn(&DynamicObject) -> json_patch::Patch + Send + Sync>;

#[derive(Clone)]
struct AppState {
    calls: Arc<AtomicUsize>,
    patch: PatchFn,
}

/// A running test webhook; it stops when dropped.
pub struct TestWebhook {
    addr: SocketAddr,
    pki: TestPki,
    calls: Arc<AtomicUsize>,
    handle: axum_server::Handle<SocketAddr>,
}

impl std::fmt::Debug for TestWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestWebhook")
            .field("addr", &self.addr)
            .finish()
    }
}

impl TestWebhook {
    /// Starts the webhook on `127.0.0.1:<free port>` with a fresh [`TestPki`]; every
    /// admitted object gets `patch(object)`. Must be called inside a tokio runtime.
    pub async fn start(patch: PatchFn) -> Result<Self, Error> {
        tandem_testcluster::install_crypto_provider();
        let pki = TestPki::generate()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![pki.cert_der.clone().into()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(pki.key_der.clone().into()),
            )?;
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls));

        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let calls = Arc::new(AtomicUsize::new(0));
        let state = AppState {
            calls: calls.clone(),
            patch,
        };
        let app = Router::new()
            .route("/mutate", post(mutate))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(state);
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(listener, config)?.handle(handle.clone());
        tokio::spawn(async move {
            if let Err(e) = server.serve(app.into_make_service()).await {
                tracing::error!("test webhook stopped: {e}");
            }
        });
        Ok(TestWebhook {
            addr,
            pki,
            calls,
            handle,
        })
    }

    /// `https://127.0.0.1:<port>/mutate`: the `clientConfig.url` to register.
    pub fn url(&self) -> String {
        format!("https://{}/mutate", self.addr)
    }

    /// The CA certificate (PEM) to give as `caBundle`.
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    /// How many AdmissionReviews the webhook has answered.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Drop for TestWebhook {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

async fn mutate(
    State(state): State<AppState>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let req: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => {
            return Json(AdmissionResponse::invalid(e.to_string()).into_review());
        }
    };
    let resp = AdmissionResponse::from(&req);
    let resp = match &req.object {
        Some(obj) => match resp.clone().with_patch((state.patch)(obj)) {
            Ok(r) => r,
            Err(e) => resp.deny(e.to_string()),
        },
        None => resp,
    };
    Json(resp.into_review())
}
