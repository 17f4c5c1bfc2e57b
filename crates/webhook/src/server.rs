//! The HTTPS server: `/mutate`, `/healthz`, `/readyz`, `/metrics`, TLS (generated or
//! files reloaded on change), graceful shutdown, and `tandem webhook`'s flags.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::tls_rustls::RustlsConfig;
use tandem_core::{ClusterKnowledge, Config, Mode, NamespaceOptIn};

use crate::admission::{self, Context, PatchEncoding};
use crate::events::EventSink;
use crate::live::LiveKnowledge;
use crate::metrics::Metrics;
use crate::tls::{self, CertFiles, Pki};

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
    /// On SIGTERM: how long to keep serving while readyz fails (so endpoints drop us).
    #[arg(long, default_value = "0s", value_parser = parse_duration, value_name = "DURATION")]
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
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    tandem_core::config::duration_text::parse(s)
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
        }
    }
}

struct AppState {
    config: Arc<Config>,
    mode_override: Option<Mode>,
    needs_sync: bool,
    knowledge: LiveKnowledge,
    events: EventSink,
    metrics: Arc<Metrics>,
    encoding: PatchEncoding,
    shutting_down: AtomicBool,
}

/// A running webhook server.
pub struct Webhook {
    addr: SocketAddr,
    ca_pem: Option<String>,
    handle: axum_server::Handle<SocketAddr>,
    state: Arc<AppState>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
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
        let (rustls_config, ca_pem, reload) = match &opts.tls {
            TlsSource::Generate { dns, ips } => {
                let pki = Pki::generate("tandem-webhook-ca", dns, ips, 365)?;
                let (cfg, _) = tls::server_config(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes())?;
                metrics.cert_expiry.set(pki.not_after);
                (RustlsConfig::from_config(cfg), Some(pki.ca_pem), None)
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
                (
                    RustlsConfig::from_config(cfg),
                    None,
                    Some((files.clone(), *every, cert, key)),
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
            events,
            metrics: metrics.clone(),
            encoding: opts.encoding,
            shutting_down: AtomicBool::new(false),
        });
        let app = router(state.clone(), opts.max_body_bytes, opts.request_timeout);

        let listener = std::net::TcpListener::bind(opts.listen)
            .with_context(|| format!("listening on {}", opts.listen))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let handle = axum_server::Handle::new();
        let mut server =
            axum_server::from_tcp_rustls(listener, rustls_config.clone())?.handle(handle.clone());
        server.http_builder().http1().keep_alive(true);
        let server = tokio::spawn(server.serve(app.into_make_service()));
        let reloader = reload.map(|(files, every, cert, key)| {
            tokio::spawn(reload_loop(
                files,
                every,
                rustls_config,
                cert,
                key,
                metrics.clone(),
            ))
        });
        Ok(Self {
            addr,
            ca_pem,
            handle,
            state,
            server,
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

    /// Marks the server not ready (readyz 503) ahead of a shutdown.
    pub fn begin_shutdown(&self) {
        self.state.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Stops accepting connections and waits up to `grace` for requests in flight.
    pub async fn shutdown(self, grace: Duration) -> anyhow::Result<()> {
        self.begin_shutdown();
        if let Some(r) = &self.reloader {
            r.abort();
        }
        self.handle.graceful_shutdown(Some(grace));
        self.server
            .await
            .context("server task")?
            .context("server")?;
        Ok(())
    }
}

fn router(state: Arc<AppState>, max_body: usize, timeout: Duration) -> Router {
    let mutate_routes = Router::new()
        .route("/mutate", post(mutate_enabled))
        .route("/mutate/labelled", post(mutate_labelled))
        .route("/adopt", post(adopt_enabled))
        .route("/adopt/labelled", post(adopt_labelled))
        .layer(DefaultBodyLimit::max(max_body))
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
        .with_state(state)
}

async fn mutate_enabled(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    mutate(&state, &body, NamespaceOptIn::Enabled)
}

async fn mutate_labelled(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    mutate(&state, &body, NamespaceOptIn::NotEnabled)
}

async fn adopt_enabled(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    serve(
        &state,
        &body,
        NamespaceOptIn::Enabled,
        admission::review_adopt,
    )
}

async fn adopt_labelled(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    serve(
        &state,
        &body,
        NamespaceOptIn::NotEnabled,
        admission::review_adopt,
    )
}

fn mutate(state: &AppState, body: &[u8], namespace: NamespaceOptIn) -> Response {
    serve(state, body, namespace, admission::review)
}

fn serve(
    state: &AppState,
    body: &[u8],
    namespace: NamespaceOptIn,
    review: fn(&[u8], &Context<'_>) -> admission::Answer,
) -> Response {
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
    let answer = match std::panic::catch_unwind(AssertUnwindSafe(|| review(body, &ctx))) {
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
        | admission::Outcome::Denied => tracing::info!(
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
    if state.needs_sync && !state.knowledge.current().synced {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "node knowledge not synced yet (auto mode uses the safe mode until then)",
        )
            .into_response();
    }
    "ok".into_response()
}

fn render_metrics(state: &AppState) -> String {
    let m = &state.metrics;
    let snap = state.knowledge.current();
    m.synced.set(i64::from(snap.synced));
    m.nodes.set(snap.knowledge.nodes.len() as i64);
    m.knowledge_age
        .set(state.knowledge.node_age().unwrap_or(-1.0));
    m.apiserver_age
        .set(state.knowledge.apiserver_age().unwrap_or(-1.0));
    m.render()
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
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
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
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let docs = tandem_core::manifest::parse_stream(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let values: Vec<serde_json::Value> = docs.into_iter().map(|d| d.value).collect();
            let mut nodes = Vec::new();
            for v in &values {
                match v.get("items").and_then(serde_json::Value::as_array) {
                    Some(items) => nodes.extend(items.iter().map(crate::live::node_facts)),
                    None => nodes.push(crate::live::node_facts(v)),
                }
            }
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
    let tls = match (&args.tls_cert, &args.tls_key) {
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
    };
    let hook = Webhook::start(opts).await?;
    if let Some(ca) = hook.ca_pem() {
        // The CA of the generated certificate: the caBundle to register the webhook with.
        print!("{ca}");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    }
    tracing::info!(addr = %hook.addr(), "tandem webhook serving");
    shutdown_signal().await;
    tracing::info!("shutting down: draining requests in flight");
    hook.begin_shutdown();
    tokio::time::sleep(args.shutdown_delay).await;
    hook.shutdown(args.shutdown_grace).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
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
