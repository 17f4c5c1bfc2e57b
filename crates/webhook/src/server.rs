//! The HTTPS server: `/mutate`, `/healthz`, `/readyz`, `/metrics`, TLS (generated or
//! files reloaded on change), graceful shutdown, and `tandem webhook`'s flags.
//! Connections are served by [`crate::edge`] (timeouts, connection cap, drain); the
//! admission work is bounded by [`crate::work`] and runs off the async workers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::tls_rustls::RustlsConfig;
use tandem_core::{ClusterKnowledge, Config, Mode, NamespaceOptIn};

use crate::admission::{self, Context, PatchEncoding};
use crate::edge::{Edge, EdgeLimits};
use crate::events::EventSink;
use crate::live::LiveKnowledge;
use crate::metrics::Metrics;
use crate::sidecars::SidecarIndex;
use crate::tls::{self, CertFiles, Pki};
use crate::work::{Gate, Refusal, WorkLimits};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Whether to use a cluster for live knowledge and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ClusterUse {
    /// Use in-cluster or kubeconfig credentials when found; serve without them otherwise.
    #[default]
    Auto,
    /// Require a cluster: fail at start without credentials.
    Required,
    /// Never contact a cluster (fixed modes, `--nodes`, tests, benchmarks).
    Never,
}

/// `tandem webhook`: serve the mutating admission webhook.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookArgs {
    /// Address and port to listen on.
    #[arg(long, default_value = "0.0.0.0:8443", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    /// Configuration file (YAML); the built-in configuration when not given.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Mode for pods without a `tandem.dev/mode` annotation (overrides the config's `mode`).
    #[arg(long)]
    pub mode: Option<Mode>,
    /// Serving certificate (PEM chain); reloaded when it changes. Without it, a CA and a
    /// certificate are generated at start and the CA is printed on stdout.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Serving key (PEM), reloaded with the certificate.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// How often to check the certificate files for changes.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub tls_reload_interval: Duration,
    /// Extra DNS names or IPs for a generated certificate (localhost and 127.0.0.1 are always in).
    #[arg(long = "tls-san", value_name = "NAME")]
    pub tls_sans: Vec<String>,
    /// Whether to use a cluster (kubeconfig or in-cluster) for live node knowledge and events.
    #[arg(long, value_enum, default_value_t = ClusterUse::Auto)]
    pub cluster: ClusterUse,
    /// Node objects (YAML/JSON, a List or several documents) used as fixed knowledge
    /// instead of watching the cluster.
    #[arg(long, value_name = "FILE")]
    pub nodes: Option<PathBuf>,
    /// How the JSON Patch is encoded in the AdmissionResponse.
    #[arg(long, value_enum, default_value_t = PatchEncoding::Base64)]
    pub patch_encoding: PatchEncoding,
    /// Largest request body accepted (bytes); larger bodies get 413.
    #[arg(long, default_value_t = 4 << 20, value_name = "BYTES")]
    pub max_body_bytes: usize,
    /// Time limit for one request, body included; slower requests get 503.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub request_timeout: Duration,
    /// Time from accepting a connection to the end of its first request's head (TLS
    /// handshake included), and from a request's first byte to the end of its head;
    /// slower connections are closed.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed (longer than the
    /// API server's own 90 s, so that it closes first and never races a close).
    #[arg(long, default_value = "120s", value_parser = parse_duration, value_name = "DURATION")]
    pub idle_timeout: Duration,
    /// Connections open at once; at the cap the one idle the longest is closed to make
    /// room (a probe still gets in), and a new one is refused when none is idle.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_connections: usize,
    /// Request bodies being received or decoded at once, counted twice (bytes, or with
    /// Ki/Mi/Gi); a request waits for room up to --queue-timeout, then gets 429.
    #[arg(long, default_value = "16Mi", value_parser = parse_bytes, value_name = "BYTES")]
    pub max_inflight_bytes: usize,
    /// Memory that decoding the reviews in flight may take, as bounded from each body's
    /// JSON structure (bytes, or with Ki/Mi/Gi); a review whose bound alone is larger gets
    /// 413, others wait for room up to --queue-timeout, then get 429.
    #[arg(long, default_value = "48Mi", value_parser = parse_bytes, value_name = "BYTES")]
    pub max_work_bytes: usize,
    /// Reviews decoded at once, each on its own thread off the async workers
    /// (0: one per CPU the process may use).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub workers: usize,
    /// Longest wait for room (body, memory, worker) before a request gets 429.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub queue_timeout: Duration,
    /// On SIGTERM: how long to keep serving while readyz fails (so endpoints drop us);
    /// responses ask clients to close their connections meanwhile.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub shutdown_delay: Duration,
    /// On SIGTERM: how long requests in flight may take to finish.
    #[arg(long, default_value = "20s", value_parser = parse_duration, value_name = "DURATION")]
    pub shutdown_grace: Duration,
    /// Send Kubernetes Events on the pod's owner (Injected, Skipped, InjectionFailed).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub events: bool,
    /// Events waiting to be sent; more are dropped (and counted).
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub event_queue: usize,
    /// How often the API server's version and feature gate are re-read.
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    pub apiserver_refresh: Duration,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Self-managed TLS (`--tls-secret` and its companions).
    #[command(flatten)]
    pub self_managed: crate::selfmanaged::SelfManagedArgs,
    /// With a cluster: watch Sidecar and ClusterSidecar objects (tandem.dev/v1alpha1) and
    /// inject them into the pods that select them, besides the config's sidecars; set
    /// their status. Without the CRDs installed, there are simply none.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub sidecar_objects: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    tandem_core::config::duration_text::parse(s)
}

/// A byte count: a plain number, or with a `Ki`, `Mi` or `Gi` suffix.
fn parse_bytes(s: &str) -> Result<usize, String> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count (e.g. 16Mi, 1048576)"))?;
    let shift = match unit {
        "" => 0,
        "Ki" => 10,
        "Mi" => 20,
        "Gi" => 30,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use Ki, Mi or Gi)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// Generate a CA and a certificate for these DNS names and IPs.
    Generate {
        /// DNS names.
        dns: Vec<String>,
        /// IP addresses.
        ips: Vec<IpAddr>,
    },
    /// Files, reloaded when they change.
    Files {
        /// The files.
        files: CertFiles,
        /// How often to look.
        every: Duration,
    },
    /// A Secret kept by the webhook itself ([`crate::selfmanaged`]); `current` is what
    /// [`crate::selfmanaged::Manager::bootstrap`] found.
    SelfManaged {
        /// The manager.
        manager: Box<crate::selfmanaged::Manager>,
        /// Its first reconcile.
        current: Box<crate::selfmanaged::Current>,
    },
}

/// Everything [`Webhook::start`] needs (what the flags become).
#[derive(Clone)]
pub struct ServeOptions {
    /// Listen address (port 0: any free port).
    pub listen: SocketAddr,
    /// The configuration.
    pub config: Arc<Config>,
    /// `--mode`.
    pub mode_override: Option<Mode>,
    /// TLS material.
    pub tls: TlsSource,
    /// Node and API server knowledge.
    pub knowledge: LiveKnowledge,
    /// A client for events (`None`: no events).
    pub events_client: Option<kube::Client>,
    /// Event queue capacity.
    pub event_queue: usize,
    /// Patch encoding.
    pub encoding: PatchEncoding,
    /// Body limit.
    pub max_body_bytes: usize,
    /// Per-request time limit.
    pub request_timeout: Duration,
    /// Connection limits (timeouts, cap); `request_timeout` is copied in at start.
    pub edge: EdgeLimits,
    /// Admission work limits; `max_body_bytes` is copied in at start.
    pub work: WorkLimits,
    /// Sidecar objects (disabled: the config's sidecars only).
    pub sidecars: SidecarIndex,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("listen", &self.listen)
            .field("mode_override", &self.mode_override)
            .field("tls", &self.tls)
            .field("events", &self.events_client.is_some())
            .finish_non_exhaustive()
    }
}

impl ServeOptions {
    /// Options for a server with no cluster: fixed empty knowledge, generated TLS for
    /// localhost, no events (tests, benchmarks).
    pub fn standalone(config: Config, mode_override: Option<Mode>) -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            config: Arc::new(config),
            mode_override,
            tls: TlsSource::Generate {
                dns: vec!["localhost".into()],
                ips: vec![Ipv4Addr::LOCALHOST.into()],
            },
            knowledge: LiveKnowledge::fixed(ClusterKnowledge::default(), true),
            events_client: None,
            event_queue: 1024,
            encoding: PatchEncoding::Base64,
            max_body_bytes: 4 << 20,
            request_timeout: Duration::from_secs(10),
            edge: EdgeLimits::default(),
            work: WorkLimits::default(),
            sidecars: SidecarIndex::disabled(),
        }
    }
}

struct AppState {
    config: Arc<Config>,
    mode_override: Option<Mode>,
    needs_sync: bool,
    knowledge: LiveKnowledge,
    sidecars: SidecarIndex,
    events: EventSink,
    metrics: Arc<Metrics>,
    encoding: PatchEncoding,
    shutting_down: AtomicBool,
    gate: Gate,
    tls_status: Arc<crate::selfmanaged::TlsStatus>,
}

/// A running webhook server.
pub struct Webhook {
    addr: SocketAddr,
    ca_pem: Option<String>,
    edge: Edge,
    state: Arc<AppState>,
    reloader: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Binds, loads or generates TLS material, and starts serving in the background.
    pub async fn start(opts: ServeOptions) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let mut managed = None;
        let (rustls_config, ca_pem, reload, tls_status) = match &opts.tls {
            TlsSource::Generate { dns, ips } => {
                let pki = Pki::generate("tandem-webhook-ca", dns, ips, 365)?;
                let (cfg, _) = tls::server_config(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes())?;
                metrics.cert_expiry.set(pki.not_after);
                let status = crate::selfmanaged::TlsStatus::ungated(&pki.cert_pem);
                (
                    RustlsConfig::from_config(cfg),
                    Some(pki.ca_pem),
                    None,
                    status,
                )
            }
            TlsSource::SelfManaged { manager, current } => {
                let leaf = &current.stored.leaf;
                let (cfg, expiry) =
                    tls::server_config(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes())?;
                metrics.cert_expiry.set(expiry.unwrap_or(0));
                let status = crate::selfmanaged::TlsStatus::gated(&leaf.cert_pem);
                managed = Some((
                    manager.as_ref().clone(),
                    current.as_ref().clone(),
                    status.clone(),
                ));
                (RustlsConfig::from_config(cfg), None, None, status)
            }
            TlsSource::Files { files, every } => {
                let (cert, key) = files.read().await?;
                let (cfg, expiry) = tls::server_config(&cert, &key).with_context(|| {
                    format!(
                        "loading {} and {}",
                        files.cert.display(),
                        files.key.display()
                    )
                })?;
                metrics.cert_expiry.set(expiry.unwrap_or(0));
                let status =
                    crate::selfmanaged::TlsStatus::ungated(&String::from_utf8_lossy(&cert));
                (
                    RustlsConfig::from_config(cfg),
                    None,
                    Some((files.clone(), *every, cert, key)),
                    status,
                )
            }
        };
        let events = match &opts.events_client {
            Some(client) => EventSink::spawn(
                client.clone(),
                std::env::var("POD_NAME").ok(),
                opts.event_queue,
                metrics.clone(),
            ),
            None => EventSink::disabled(metrics.clone()),
        };
        let needs_sync = opts.mode_override.unwrap_or(opts.config.mode) == Mode::Auto;
        let state = Arc::new(AppState {
            config: opts.config.clone(),
            mode_override: opts.mode_override,
            needs_sync,
            knowledge: opts.knowledge.clone(),
            sidecars: opts.sidecars.clone(),
            events,
            metrics: metrics.clone(),
            encoding: opts.encoding,
            shutting_down: AtomicBool::new(false),
            gate: Gate::new(WorkLimits {
                max_body_bytes: opts.max_body_bytes,
                ..opts.work
            }),
            tls_status: tls_status.clone(),
        });
        let app = router(state.clone(), opts.request_timeout);

        let listener = std::net::TcpListener::bind(opts.listen)
            .with_context(|| format!("listening on {}", opts.listen))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let edge = Edge::start(
            listener,
            rustls_config.clone(),
            app,
            EdgeLimits {
                request_timeout: opts.request_timeout,
                ..opts.edge
            },
        );
        let reloader = reload.map(|(files, every, cert, key)| {
            tokio::spawn(reload_loop(
                files,
                every,
                rustls_config.clone(),
                cert,
                key,
                metrics.clone(),
                tls_status.clone(),
            ))
        });
        let reloader =
            match managed {
                Some((manager, current, status)) => {
                    let (config, metrics) = (rustls_config, metrics.clone());
                    Some(tokio::spawn(manager.run(current, status, move |leaf| {
                    match tls::server_config(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes()) {
                        Ok((cfg, expiry)) => {
                            config.reload_from_config(cfg);
                            metrics.cert_expiry.set(expiry.unwrap_or(0));
                            metrics.cert_reloads.get_or_create(&[("result", "ok")]).inc();
                        }
                        Err(e) => {
                            metrics.cert_reloads.get_or_create(&[("result", "error")]).inc();
                            tracing::warn!(error = %e, "certificate from the Secret not usable");
                        }
                    }
                })))
                }
                None => reloader,
            };
        Ok(Self {
            addr,
            ca_pem,
            edge,
            state,
            reloader,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The generated CA (PEM), when the certificate was generated.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The metrics, as `/metrics` shows them.
    pub fn metrics_text(&self) -> String {
        render_metrics(&self.state)
    }

    /// What the connection edge has done (accepted, refused, timed out).
    pub fn edge_stats(&self) -> Arc<crate::edge::EdgeStats> {
        self.edge.stats()
    }

    /// Marks the server not ready (readyz 503) ahead of a shutdown; it keeps serving, and
    /// asks clients to close their connections after each response.
    pub fn begin_shutdown(&self) {
        self.state.shutting_down.store(true, Ordering::SeqCst);
        self.edge.drain();
    }

    /// Stops accepting connections and waits up to `grace` for what was accepted.
    pub async fn shutdown(self, grace: Duration) -> anyhow::Result<()> {
        self.begin_shutdown();
        if let Some(r) = &self.reloader {
            r.abort();
        }
        self.edge.shutdown(grace).await;
        Ok(())
    }
}

fn router(state: Arc<AppState>, timeout: Duration) -> Router {
    let mutate_routes = Router::new()
        .route("/mutate", post(mutate_enabled))
        .route("/mutate/labelled", post(mutate_labelled))
        .route("/adopt", post(adopt_enabled))
        .route("/adopt/labelled", post(adopt_labelled))
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| async move {
                match tokio::time::timeout(timeout, next.run(req)).await {
                    Ok(resp) => resp,
                    Err(_) => {
                        (StatusCode::SERVICE_UNAVAILABLE, "request timed out").into_response()
                    }
                }
            },
        ));
    Router::new()
        .merge(mutate_routes)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .route("/version", get(version_handler))
        .with_state(state)
}

async fn mutate_enabled(State(state): State<Arc<AppState>>, req: Request) -> Response {
    admit_and_mutate(state, req, NamespaceOptIn::Enabled, admission::review_with).await
}

async fn mutate_labelled(State(state): State<Arc<AppState>>, req: Request) -> Response {
    admit_and_mutate(
        state,
        req,
        NamespaceOptIn::NotEnabled,
        admission::review_with,
    )
    .await
}

async fn adopt_enabled(State(state): State<Arc<AppState>>, req: Request) -> Response {
    admit_and_mutate(state, req, NamespaceOptIn::Enabled, admission::review_adopt).await
}

async fn adopt_labelled(State(state): State<Arc<AppState>>, req: Request) -> Response {
    admit_and_mutate(
        state,
        req,
        NamespaceOptIn::NotEnabled,
        admission::review_adopt,
    )
    .await
}

/// How one route answers a review body: injection ([`admission::review_with`]) or adopt
/// mode ([`admission::review_adopt`]), both with the sidecar objects.
type ReviewFn = fn(&[u8], &Context<'_>, Option<admission::Objects<'_>>) -> admission::Answer;

/// Reserves room for the body, reads it, reserves room to decode it, and decodes and
/// answers it on a blocking thread. The room is held until the work is done, even when
/// the request itself times out first.
async fn admit_and_mutate(
    state: Arc<AppState>,
    req: Request,
    namespace: NamespaceOptIn,
    review: ReviewFn,
) -> Response {
    let start = Instant::now();
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut held = match state.gate.admit_body(length).await {
        Ok(h) => h,
        Err(r) => return refuse(&state, r, start),
    };
    let max = state.gate.limits().max_body_bytes;
    let body = match axum::body::to_bytes(req.into_body(), max).await {
        Ok(b) => b,
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                return refuse(
                    &state,
                    Refusal::TooLarge(format!(
                        "request body is over the limit of {max} bytes (--max-body-bytes)"
                    )),
                    start,
                );
            }
            return (
                StatusCode::BAD_REQUEST,
                format!("reading the request body: {e}"),
            )
                .into_response();
        }
    };
    if let Err(r) = state.gate.admit_work(&mut held, &body).await {
        return refuse(&state, r, start);
    }
    let worker_state = state.clone();
    let work = tokio::task::spawn_blocking(move || {
        let resp = mutate(&worker_state, &body, namespace, review);
        drop(body);
        let large = held.work_bytes > 8 << 20;
        drop(held);
        if large {
            crate::work::release_memory();
        }
        resp
    });
    match work.await {
        Ok(resp) => resp,
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response(),
    }
}

fn refuse(state: &AppState, refusal: Refusal, start: Instant) -> Response {
    state
        .metrics
        .observe("refused", "none", start.elapsed().as_secs_f64());
    match refusal {
        Refusal::TooLarge(why) => {
            tracing::warn!(reason = %why, "request refused");
            (StatusCode::PAYLOAD_TOO_LARGE, why).into_response()
        }
        Refusal::Busy(why) => {
            tracing::warn!(reason = %why, "request refused");
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "1")],
                why,
            )
                .into_response()
        }
    }
}

fn mutate(state: &AppState, body: &[u8], namespace: NamespaceOptIn, review: ReviewFn) -> Response {
    let start = Instant::now();
    let snap = state.knowledge.current();
    let ctx = Context {
        config: &state.config,
        knowledge: &snap.knowledge,
        synced: snap.synced,
        mode_override: state.mode_override,
        namespace,
        encoding: state.encoding,
    };
    let objects = state.sidecars.current();
    let objects = objects.as_deref().map(|o| admission::Objects {
        catalog: &o.catalog,
        synced: o.synced,
    });
    let answer = match std::panic::catch_unwind(AssertUnwindSafe(|| review(body, &ctx, objects))) {
        Ok(a) => a,
        Err(_) => {
            state.metrics.panics.inc();
            state
                .metrics
                .observe("panic", "none", start.elapsed().as_secs_f64());
            tracing::error!("handling a request panicked");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
        }
    };
    let outcome = answer.outcome;
    if answer.patch_bytes > 0 {
        state.metrics.patch_bytes.observe(answer.patch_bytes as f64);
    }
    if let Some(ev) = answer.event {
        state.events.send(ev);
    }
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_REQUEST);
    let content_type = if answer.status == 200 {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let resp = ([(header::CONTENT_TYPE, content_type)], answer.body);
    let elapsed = start.elapsed();
    state
        .metrics
        .observe(outcome.label(), outcome.mode_label(), elapsed.as_secs_f64());
    match outcome {
        admission::Outcome::Injected(_)
        | admission::Outcome::Adopted
        | admission::Outcome::Denied
        | admission::Outcome::Repaired(_)
        | admission::Outcome::FellBack(_)
        | admission::Outcome::StripDenied(_) => tracing::info!(
            pod = %answer.pod,
            outcome = outcome.label(),
            mode = outcome.mode_label(),
            dry_run = answer.dry_run,
            micros = elapsed.as_micros() as u64,
            "{}",
            answer.detail
        ),
        _ => tracing::debug!(
            pod = %answer.pod,
            outcome = outcome.label(),
            dry_run = answer.dry_run,
            micros = elapsed.as_micros() as u64,
            "{}",
            answer.detail
        ),
    }
    (status, resp).into_response()
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.shutting_down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    if let Some(why) = state.tls_status.not_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, why).into_response();
    }
    if state.needs_sync && !state.knowledge.current().synced {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "node knowledge not synced yet (auto mode uses the safe mode until then)",
        )
            .into_response();
    }
    if state.sidecars.current().is_some_and(|s| !s.synced) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "sidecar objects not synced yet",
        )
            .into_response();
    }
    "ok".into_response()
}

fn render_metrics(state: &AppState) -> String {
    let m = &state.metrics;
    let snap = state.knowledge.current();
    m.set_knowledge(
        snap.synced,
        snap.knowledge.nodes.len(),
        state.knowledge.node_age(),
        state.knowledge.apiserver_age(),
    );
    m.render()
}

async fn version_handler(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(crate::metrics::version_document(
        &state.tls_status.cert_pem(),
    ))
    .into_response()
}

async fn metrics_handler(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        render_metrics(&state),
    )
        .into_response()
}

async fn reload_loop(
    files: CertFiles,
    every: Duration,
    config: RustlsConfig,
    mut cert: Vec<u8>,
    mut key: Vec<u8>,
    metrics: Arc<Metrics>,
    tls_status: Arc<crate::selfmanaged::TlsStatus>,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.tick().await;
    loop {
        tick.tick().await;
        let Ok((c, k)) = files.read().await else {
            // Mid-rotation (a missing file, a half-written one): try again next tick.
            continue;
        };
        if c == cert && k == key {
            continue;
        }
        match tls::server_config(&c, &k) {
            Ok((cfg, expiry)) => {
                // New handshakes use the new config; connections open now keep theirs.
                config.reload_from_config(cfg);
                metrics.cert_expiry.set(expiry.unwrap_or(0));
                tls_status.set_cert(&String::from_utf8_lossy(&c));
                metrics
                    .cert_reloads
                    .get_or_create(&[("result", "ok")])
                    .inc();
                tracing::info!(cert = %files.cert.display(), "serving certificate reloaded");
                cert = c;
                key = k;
            }
            Err(e) => {
                metrics
                    .cert_reloads
                    .get_or_create(&[("result", "error")])
                    .inc();
                tracing::warn!(error = %e, "new certificate files not usable; keeping the current ones");
                // Don't retry the same bad pair every tick.
                cert = c;
                key = k;
            }
        }
    }
}

/// Initializes logging on stderr (`RUST_LOG` filters; `info` by default). Does nothing if
/// a global subscriber is already set.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(stderr_wants_colour())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// True when log lines on stderr may carry ANSI colours: stderr is a terminal and
/// `NO_COLOR` is not set (<https://no-color.org>). Anything else (a pipe, a file, a
/// container log) gets plain text.
pub fn stderr_wants_colour() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The facts of the Nodes in `--nodes FILE`. JSON (a `List` or one Node) is read one
/// Node at a time, so that a large file never exists as a whole parsed tree; anything
/// else is read as YAML documents.
fn read_node_file(
    path: &std::path::Path,
) -> anyhow::Result<Vec<tandem_core::knowledge::NodeFacts>> {
    use tandem_core::knowledge::NodeFacts;
    /// One Node, turned into its facts as soon as it is read.
    struct Facts(NodeFacts);
    impl<'de> serde::Deserialize<'de> for Facts {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let v = serde_json::Value::deserialize(d)?;
            Ok(Self(crate::live::node_facts(&v)))
        }
    }
    #[derive(serde::Deserialize)]
    struct ListIn {
        items: Option<Vec<Facts>>,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if text.trim_start().starts_with('{')
        && let Ok(list) = serde_json::from_str::<ListIn>(&text)
    {
        match list.items {
            Some(items) => return Ok(items.into_iter().map(|f| f.0).collect()),
            // One Node (small): read it whole.
            None => {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    return Ok(vec![crate::live::node_facts(&v)]);
                }
            }
        }
    }
    let docs = tandem_core::manifest::parse_stream(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut nodes = Vec::new();
    for d in &docs {
        match d.value.get("items").and_then(serde_json::Value::as_array) {
            Some(items) => nodes.extend(items.iter().map(crate::live::node_facts)),
            None => nodes.push(crate::live::node_facts(&d.value)),
        }
    }
    Ok(nodes)
}

/// Reads `--config`, or the built-in configuration.
pub fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    match path {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Config::from_yaml(&text).with_context(|| format!("{}", p.display()))
        }
        None => Ok(Config::builtin()),
    }
}

/// Runs `tandem webhook` until SIGTERM or Ctrl-C.
pub async fn run(args: WebhookArgs) -> anyhow::Result<()> {
    let stop = StopSignal::install();
    init_logging(args.log_format);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = load_config(args.config.as_deref())?;

    let client = match args.cluster {
        ClusterUse::Never => None,
        ClusterUse::Auto | ClusterUse::Required => match kube::Client::try_default().await {
            Ok(c) => Some(c),
            Err(e) if args.cluster == ClusterUse::Auto => {
                tracing::warn!(error = %e, "no cluster credentials: serving without live knowledge or events");
                None
            }
            Err(e) => return Err(e).context("connecting to the cluster (--cluster required)"),
        },
    };
    let knowledge = match (&args.nodes, &client) {
        (Some(path), _) => {
            let nodes = read_node_file(path)?;
            // The file's text and parsed objects are gone: hand their memory back.
            crate::work::release_memory();
            tracing::info!(nodes = nodes.len(), file = %path.display(), "fixed node knowledge");
            LiveKnowledge::fixed(
                ClusterKnowledge {
                    nodes,
                    nodes_have_labels: true,
                    ..Default::default()
                },
                true,
            )
        }
        (None, Some(c)) => LiveKnowledge::watch(c.clone(), args.apiserver_refresh),
        // No cluster: whatever the mode, serve; auto decides with no knowledge (safe mode).
        (None, None) => LiveKnowledge::fixed(ClusterKnowledge::default(), true),
    };
    let sidecars = match &client {
        Some(c) if args.sidecar_objects => {
            SidecarIndex::watch(c.clone(), std::env::var("POD_NAME").ok())
        }
        _ => SidecarIndex::disabled(),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        _ if args.self_managed.tls_secret.is_some() => {
            let settings =
                crate::selfmanaged::Settings::from_args(&args.self_managed, &args.tls_sans)?;
            let Some(client) = &client else {
                anyhow::bail!(
                    "--tls-secret needs a cluster: no in-cluster or kubeconfig credentials found"
                );
            };
            let manager = crate::selfmanaged::Manager::new(client.clone(), settings);
            let current = manager
                .bootstrap(Duration::from_secs(120))
                .await
                .context("self-managed TLS (--tls-secret)")?;
            tracing::info!(step = ?current.step, trusted = current.trusted, "self-managed TLS: certificate ready");
            TlsSource::SelfManaged {
                manager: Box::new(manager),
                current: Box::new(current),
            }
        }
        (Some(cert), Some(key)) => TlsSource::Files {
            files: CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            },
            every: args.tls_reload_interval,
        },
        _ => {
            let mut dns = vec!["localhost".to_string()];
            let mut ips: Vec<IpAddr> = vec![Ipv4Addr::LOCALHOST.into()];
            for san in &args.tls_sans {
                match san.parse::<IpAddr>() {
                    Ok(ip) => ips.push(ip),
                    Err(_) => dns.push(san.clone()),
                }
            }
            if !args.listen.ip().is_unspecified() && !ips.contains(&args.listen.ip()) {
                ips.push(args.listen.ip());
            }
            TlsSource::Generate { dns, ips }
        }
    };
    let opts = ServeOptions {
        listen: args.listen,
        config: Arc::new(config),
        mode_override: args.mode,
        tls,
        knowledge,
        events_client: if args.events { client } else { None },
        event_queue: args.event_queue,
        encoding: args.patch_encoding,
        max_body_bytes: args.max_body_bytes,
        request_timeout: args.request_timeout,
        edge: EdgeLimits {
            header_read_timeout: args.header_read_timeout,
            idle_timeout: args.idle_timeout,
            max_connections: args.max_connections,
            request_timeout: args.request_timeout,
        },
        work: WorkLimits {
            max_body_bytes: args.max_body_bytes,
            max_inflight_bytes: args.max_inflight_bytes,
            max_work_bytes: args.max_work_bytes,
            workers: if args.workers == 0 {
                crate::work::default_workers()
            } else {
                args.workers
            },
            queue_timeout: args.queue_timeout,
        },
        sidecars,
    };
    if args.max_inflight_bytes < args.max_body_bytes.saturating_mul(2) {
        anyhow::bail!(
            "--max-inflight-bytes ({}) must be at least twice --max-body-bytes ({}): a body counts twice while it is read",
            args.max_inflight_bytes,
            args.max_body_bytes
        );
    }
    let hook = Webhook::start(opts).await?;
    if let Some(ca) = hook.ca_pem() {
        // The CA of the generated certificate: the caBundle to register the webhook with.
        print!("{ca}");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    }
    tracing::info!(addr = %hook.addr(), "tandem webhook serving");
    stop.recv().await;
    tracing::info!("shutting down: draining requests in flight");
    hook.begin_shutdown();
    tokio::time::sleep(args.shutdown_delay).await;
    hook.shutdown(args.shutdown_grace).await?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and Ctrl-C, listened for from the start (a SIGTERM that arrives while the
/// server is still starting drains it too, instead of killing the process).
struct StopSignal {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl StopSignal {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    async fn recv(self) {
        #[cfg(unix)]
        {
            let (Some(mut term), Some(mut int)) = (self.term, self.int) else {
                let _ = tokio::signal::ctrl_c().await;
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// [`run`] on a new multi-threaded tokio runtime (one worker per available core), for
/// callers without one (the CLI).
pub fn run_blocking(args: WebhookArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tandem-webhook")
        .build()
        .context("starting the tokio runtime")?
        .block_on(run(args))
}
