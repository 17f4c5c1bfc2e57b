//! The doctor's checks of tandem itself (a category of its own, like `linkerd check`'s
//! control-plane checks): the webhook configuration is there with a caBundle, the
//! Deployment is available, the Service has ready endpoints, the caBundle verifies the
//! certificate the webhook serves, that certificate is valid for 30 more days, and the
//! webhook's version matches the CLI's.
//!
//! Facts are gathered by [`gather`]; [`verdicts`] turns them into checks without I/O.
//! [`webhook_info`] (the webhook's `/version`, through the API server's service proxy, or
//! straight to a URL-registered webhook) also serves `tandem version --server`.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, ListParams};
use serde::{Deserialize, Serialize};
use tandem_kube::{Access, KubeError};
use tandem_webhook::tls::{self, CertInfo};

use crate::report::{Check, Status};

/// Minimum remaining validity of the serving certificate.
pub const MIN_CERT_DAYS: i64 = 30;

/// Where tandem is installed (flags of `tandem doctor` and `tandem version`).
#[derive(Debug, Clone, clap::Args)]
pub struct TandemTarget {
    /// Namespace tandem is installed in.
    #[arg(
        long = "tandem-namespace",
        value_name = "NS",
        default_value = "tandem-system"
    )]
    pub tandem_namespace: String,
    /// tandem's MutatingWebhookConfiguration.
    #[arg(long, value_name = "NAME", default_value = "tandem")]
    pub webhook_configuration: String,
    /// tandem's Service, when the webhook configuration doesn't name one (registered by URL).
    #[arg(long, value_name = "NAME", default_value = "tandem-webhook")]
    pub tandem_service: String,
}

/// Flags of the doctor's tandem category.
#[derive(Debug, Clone, clap::Args)]
pub struct TandemCheckArgs {
    /// Where tandem is installed.
    #[command(flatten)]
    pub target: TandemTarget,
    /// Wait up to DURATION for tandem to become healthy (every tandem check passing)
    /// before reporting; for install scripts.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Option<Duration>,
    /// Run only the tandem checks (not the cluster's readiness checks).
    #[arg(long)]
    pub tandem_only: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    tandem_core::config::duration_text::parse(s)
}

/// What the webhook's `/version` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookInfo {
    /// Its version.
    pub version: String,
    /// The commit it was built from.
    #[serde(default)]
    pub git_commit: String,
    /// The certificate it serves (PEM).
    #[serde(default)]
    pub serving_certificate: String,
    /// How it was reached (filled in by [`webhook_info`]).
    #[serde(default)]
    pub via: String,
}

/// How the API server reaches the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Service (the usual install).
    Service {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Its port.
        port: i32,
    },
    /// A URL.
    Url(String),
}

impl Endpoint {
    /// The endpoint of the first webhook of a configuration.
    pub fn of(mwc: &MutatingWebhookConfiguration) -> Option<Self> {
        let hook = mwc.webhooks.as_ref()?.first()?;
        let cc = &hook.client_config;
        if let Some(s) = &cc.service {
            return Some(Endpoint::Service {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                port: s.port.unwrap_or(443),
            });
        }
        cc.url.clone().map(Endpoint::Url)
    }

    /// The name the API server checks the certificate against.
    pub fn server_name(&self) -> String {
        match self {
            Endpoint::Service {
                namespace, name, ..
            } => format!("{name}.{namespace}.svc"),
            Endpoint::Url(u) => url_host(u).unwrap_or_default(),
        }
    }
}

fn url_base(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://")?;
    let end = rest.find('/').unwrap_or(rest.len());
    url.get(..8 + end)
}

fn url_host(url: &str) -> Option<String> {
    let base = url_base(url)?.strip_prefix("https://")?;
    let host = if let Some(v6) = base.strip_prefix('[') {
        v6.split(']').next()?.to_string()
    } else {
        base.rsplit_once(':').map_or(base, |(h, _)| h).to_string()
    };
    Some(host)
}

/// Reads the webhook's `/version`: through the API server's service proxy (which does not
/// check the certificate: tandem checks it against the caBundle itself), or straight from
/// a URL-registered webhook (certificate not checked here either, for the same reason).
pub async fn webhook_info(client: &Client, endpoint: &Endpoint) -> Result<WebhookInfo, String> {
    let (text, via) = match endpoint {
        Endpoint::Service {
            namespace,
            name,
            port,
        } => {
            let path = format!(
                "/api/v1/namespaces/{namespace}/services/https:{name}:{port}/proxy/version"
            );
            let req = http::Request::get(&path)
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            let text = client.request_text(req).await.map_err(|e| {
                format!(
                    "GET {path}: {} (needs get services/proxy in {namespace})",
                    tandem_kube::error::error_chain(&e)
                )
            })?;
            (
                text,
                format!("service {namespace}/{name} (API server proxy)"),
            )
        }
        Endpoint::Url(url) => {
            let base = url_base(url).ok_or_else(|| format!("{url:?} is not an https URL"))?;
            let uri: http::Uri = base.parse().map_err(|e| format!("{base}: {e}"))?;
            let mut config = kube::Config::new(uri);
            config.accept_invalid_certs = true;
            config.read_timeout = Some(Duration::from_secs(10));
            config.connect_timeout = Some(Duration::from_secs(5));
            tandem_kube::connect::without_retries(&mut config);
            let direct = Client::try_from(config).map_err(|e| e.to_string())?;
            let req = http::Request::get("/version")
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            let text = direct.request_text(req).await.map_err(|e| {
                format!(
                    "GET {base}/version: {}",
                    tandem_kube::error::error_chain(&e)
                )
            })?;
            (text, format!("url {base}"))
        }
    };
    let mut info: WebhookInfo = serde_json::from_str(&text)
        .map_err(|e| format!("the webhook's /version is not what tandem serves: {e}"))?;
    info.via = via;
    Ok(info)
}

/// Everything the tandem checks look at.
#[derive(Debug)]
pub struct TandemFacts {
    /// The target.
    pub target: TandemTarget,
    /// The webhook configuration (`None`: not found).
    pub configuration: Result<Option<MutatingWebhookConfiguration>, KubeError>,
    /// The Service the checks look at (namespace, name), and whether the configuration
    /// names it.
    pub service: (String, String, bool),
    /// The Service, if it exists.
    pub service_object: Result<Option<Service>, KubeError>,
    /// The Deployments behind the Service (or labelled app.kubernetes.io/name=tandem-webhook).
    pub deployments: Result<Vec<Deployment>, KubeError>,
    /// The Service's EndpointSlices.
    pub endpoints: Result<Vec<EndpointSlice>, KubeError>,
    /// The webhook's `/version` (`None`: not tried, no configuration).
    pub served: Option<Result<WebhookInfo, String>>,
    /// Now, Unix seconds.
    pub now: i64,
    /// The CLI's version.
    pub cli_version: String,
}

/// Reads the facts.
pub async fn gather(client: &Client, target: &TandemTarget) -> TandemFacts {
    let mwcs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let configuration = mwcs
        .get_opt(&target.webhook_configuration)
        .await
        .map_err(|e| {
            KubeError::from_kube(
                Access::new(
                    "get",
                    "mutatingwebhookconfigurations.admissionregistration.k8s.io",
                ),
                e,
            )
        });
    let endpoint = configuration
        .as_ref()
        .ok()
        .and_then(|c| c.as_ref())
        .and_then(Endpoint::of);
    let service = match &endpoint {
        Some(Endpoint::Service {
            namespace, name, ..
        }) => (namespace.clone(), name.clone(), true),
        _ => (
            target.tandem_namespace.clone(),
            target.tandem_service.clone(),
            false,
        ),
    };
    let (ns, svc_name) = (service.0.clone(), service.1.clone());
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let service_object = services
        .get_opt(&svc_name)
        .await
        .map_err(|e| KubeError::from_kube(Access::new("get", "services").in_namespace(&ns), e));
    let deployments_api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let selector = service_object
        .as_ref()
        .ok()
        .and_then(|s| s.as_ref())
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.selector.clone());
    let deployments = deployments_api
        .list(&ListParams::default())
        .await
        .map_err(|e| {
            KubeError::from_kube(Access::new("list", "deployments.apps").in_namespace(&ns), e)
        })
        .map(|l| {
            let by_label = |d: &&Deployment| {
                d.spec
                    .template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.as_ref())
                    .and_then(|l| l.get("app.kubernetes.io/name"))
                    .map(String::as_str)
                    == Some("tandem-webhook")
            };
            let selected: Vec<Deployment> = l
                .items
                .iter()
                .filter(|d| {
                    let template = d
                        .spec
                        .template
                        .metadata
                        .as_ref()
                        .and_then(|m| m.labels.clone())
                        .unwrap_or_default();
                    match &selector {
                        Some(sel) if !sel.is_empty() => {
                            sel.iter().all(|(k, v)| template.get(k) == Some(v))
                        }
                        _ => by_label(d),
                    }
                })
                .cloned()
                .collect();
            // A Service whose selector matches nothing is the endpoints check's finding;
            // the Deployment is still judged on its own.
            if selected.is_empty() {
                l.items.iter().filter(by_label).cloned().collect()
            } else {
                selected
            }
        });
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    let endpoints = slices
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={svc_name}")))
        .await
        .map(|l| l.items)
        .map_err(|e| {
            KubeError::from_kube(
                Access::new("list", "endpointslices.discovery.k8s.io").in_namespace(&ns),
                e,
            )
        });
    let served = match &endpoint {
        Some(e) => Some(webhook_info(client, e).await),
        None => None,
    };
    TandemFacts {
        target: target.clone(),
        configuration,
        service,
        service_object,
        deployments,
        endpoints,
        served,
        now: tls::unix_now(),
        cli_version: tandem_webhook::metrics::VERSION.to_string(),
    }
}

/// Runs [`gather`] and [`verdicts`].
pub async fn checks(client: &Client, target: &TandemTarget) -> Vec<Check> {
    verdicts(&gather(client, target).await)
}

/// Waits until every tandem check passes or `timeout` runs out; returns the last checks.
/// `tick` is called with the failing check ids after each round.
pub async fn wait_healthy(
    client: &Client,
    target: &TandemTarget,
    timeout: Duration,
    mut tick: impl FnMut(&[&str]),
) -> Vec<Check> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let cs = checks(client, target).await;
        let failing: Vec<&str> = cs
            .iter()
            .filter(|c| !matches!(c.status, Status::Pass | Status::Warn))
            .map(|c| c.id)
            .collect();
        if failing.is_empty() || tokio::time::Instant::now() >= deadline {
            return cs;
        }
        tick(&failing);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

const T_CONFIG: &str = "tandem: the webhook configuration is registered with a caBundle";
const T_DEPLOY: &str = "tandem: the webhook Deployment is available";
const T_ENDPOINTS: &str = "tandem: the webhook Service has ready endpoints";
const T_BUNDLE: &str = "tandem: the caBundle verifies the certificate the webhook serves";
const T_CERT: &str = "tandem: the serving certificate is valid for 30 more days";
const T_VERSION: &str = "tandem: the webhook runs the CLI's version";

/// The tandem checks from the facts (pure).
pub fn verdicts(f: &TandemFacts) -> Vec<Check> {
    let t = &f.target;
    let (ns, svc, named) = (&f.service.0, &f.service.1, f.service.2);
    let config = match &f.configuration {
        Err(e) => {
            return vec![Check::from_error(
                "tandem-webhook-configuration",
                T_CONFIG,
                e,
            )];
        }
        Ok(c) => c.as_ref(),
    };
    let deployments = f.deployments.as_deref().unwrap_or_default();
    if config.is_none() && deployments.is_empty() {
        return vec![
            Check::new(
                "tandem",
                "tandem: installed",
                Status::Skip,
                format!(
                    "tandem is not installed here (no MutatingWebhookConfiguration {}, no \
                     webhook Deployment in {})",
                    t.webhook_configuration, t.tandem_namespace
                ),
            )
            .hint(
                "install it with `tandem install | kubectl apply -f -` or `helm install tandem \
                 charts/tandem -n tandem-system --create-namespace`; pass --tandem-namespace / \
                 --webhook-configuration if it lives elsewhere",
            ),
        ];
    }
    let mut out = Vec::new();

    // Webhook configuration.
    out.push(match config {
        None => Check::new(
            "tandem-webhook-configuration",
            T_CONFIG,
            Status::Fail,
            format!(
                "MutatingWebhookConfiguration {} not found",
                t.webhook_configuration
            ),
        )
        .hint("re-apply `tandem install` (or `helm upgrade`): without it no pod is injected"),
        Some(c) => {
            let hooks = c.webhooks.as_deref().unwrap_or_default();
            let empty: Vec<&str> = hooks
                .iter()
                .filter(|h| {
                    h.client_config
                        .ca_bundle
                        .as_ref()
                        .is_none_or(|b| b.0.is_empty())
                })
                .map(|h| h.name.as_str())
                .collect();
            if hooks.is_empty() {
                Check::new(
                    "tandem-webhook-configuration",
                    T_CONFIG,
                    Status::Fail,
                    format!(
                        "MutatingWebhookConfiguration {} has no webhooks",
                        t.webhook_configuration
                    ),
                )
                .hint("re-apply `tandem install` (or `helm upgrade`)")
            } else if !empty.is_empty() {
                Check::new(
                    "tandem-webhook-configuration",
                    T_CONFIG,
                    Status::Fail,
                    format!("webhooks without a caBundle: {}", empty.join(", ")),
                )
                .hint(format!(
                    "with self-managed TLS the webhook patches it at start: check its logs \
                     (`kubectl -n {ns} logs deploy/tandem-webhook`) and its RBAC (patch \
                     mutatingwebhookconfigurations {}); with cert-manager, check the \
                     cainjector",
                    t.webhook_configuration
                ))
            } else {
                Check::new(
                    "tandem-webhook-configuration",
                    T_CONFIG,
                    Status::Pass,
                    format!("{} webhook(s), each with a caBundle", hooks.len()),
                )
                .evidence(format!(
                    "MutatingWebhookConfiguration {}",
                    t.webhook_configuration
                ))
            }
        }
    });

    // Deployment.
    out.push(match &f.deployments {
        Err(e) => Check::from_error("tandem-deployment", T_DEPLOY, e),
        Ok(ds) if ds.is_empty() => Check::new(
            "tandem-deployment",
            T_DEPLOY,
            Status::Fail,
            format!("no Deployment in {ns} runs the pods behind Service {svc}"),
        )
        .hint("re-apply `tandem install` (or `helm upgrade`)"),
        Ok(ds) => {
            let mut bad = Vec::new();
            let mut evidence = Vec::new();
            for d in ds {
                let name = d.metadata.name.clone().unwrap_or_default();
                let want = d.spec.replicas.unwrap_or(1);
                let st = d.status.clone().unwrap_or_default();
                let avail = st.available_replicas.unwrap_or(0);
                let condition = st
                    .conditions
                    .unwrap_or_default()
                    .into_iter()
                    .find(|c| c.type_.as_deref() == Some("Available"))
                    .map(|c| c.status.as_deref() == Some("True"))
                    .unwrap_or(false);
                evidence.push(format!("deployment {ns}/{name}: {avail}/{want} available"));
                if !(condition && avail >= 1) {
                    bad.push(name);
                }
            }
            let c = if bad.is_empty() {
                Check::new("tandem-deployment", T_DEPLOY, Status::Pass, "available")
            } else {
                Check::new(
                    "tandem-deployment",
                    T_DEPLOY,
                    Status::Fail,
                    format!("not available: {}", bad.join(", ")),
                )
                .hint(format!(
                    "look at `kubectl -n {ns} describe deployment {}` and the pods' events and \
                     logs; a pod stays unready until its certificate's CA is in the caBundle",
                    bad.join(" ")
                ))
            };
            evidence.into_iter().fold(c, Check::evidence)
        }
    });

    // Endpoints.
    out.push(match (&f.service_object, &f.endpoints) {
        (Err(e), _) | (_, Err(e)) => Check::from_error("tandem-endpoints", T_ENDPOINTS, e),
        (Ok(None), _) if !named => Check::new(
            "tandem-endpoints",
            T_ENDPOINTS,
            Status::Skip,
            format!("the webhook is registered by URL and there is no Service {ns}/{svc}"),
        ),
        (Ok(None), _) => Check::new(
            "tandem-endpoints",
            T_ENDPOINTS,
            Status::Fail,
            format!("Service {ns}/{svc}, which the webhook configuration names, does not exist"),
        )
        .hint("re-apply `tandem install` (or `helm upgrade`): every matching pod create fails meanwhile if failurePolicy is Fail"),
        (Ok(Some(_)), Ok(slices)) => {
            let (mut ready, mut total) = (0, 0);
            for s in slices {
                for e in s.endpoints.iter().flatten() {
                    total += e.addresses.len();
                    if e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true) {
                        ready += e.addresses.len();
                    }
                }
            }
            let ev = format!("service {ns}/{svc}: {ready} ready of {total} endpoint address(es)");
            if ready > 0 {
                Check::new("tandem-endpoints", T_ENDPOINTS, Status::Pass, format!("{ready} ready")).evidence(ev)
            } else {
                Check::new(
                    "tandem-endpoints",
                    T_ENDPOINTS,
                    Status::Fail,
                    format!("Service {ns}/{svc} has no ready endpoints: the API server cannot reach the webhook"),
                )
                .evidence(ev)
                .hint(format!(
                    "check that the webhook pods run and pass /readyz (`kubectl -n {ns} get pods,endpointslices -l app.kubernetes.io/name=tandem-webhook`) and that the Service's selector matches them; with failurePolicy Fail every matching pod create fails until then"
                ))
            }
        }
    });

    // The served certificate against the caBundle, its validity, the version.
    match (&f.served, config) {
        (None, _) | (_, None) => {
            for (id, title) in [
                ("tandem-ca-bundle", T_BUNDLE),
                ("tandem-certificate", T_CERT),
                ("tandem-version", T_VERSION),
            ] {
                out.push(Check::new(
                    id,
                    title,
                    Status::Skip,
                    "no webhook configuration to reach the webhook through",
                ));
            }
        }
        (Some(Err(e)), Some(_)) => {
            for (id, title) in [
                ("tandem-ca-bundle", T_BUNDLE),
                ("tandem-certificate", T_CERT),
                ("tandem-version", T_VERSION),
            ] {
                out.push(
                    Check::new(id, title, Status::Fail, format!("could not read the webhook's /version: {e}"))
                        .hint(format!("the webhook must be reachable: check the endpoints above and `kubectl -n {ns} logs deploy/tandem-webhook`")),
                );
            }
        }
        (Some(Ok(info)), Some(c)) => {
            let endpoint = Endpoint::of(c);
            let name = endpoint
                .as_ref()
                .map(Endpoint::server_name)
                .unwrap_or_default();
            let mut failures = Vec::new();
            for h in c.webhooks.as_deref().unwrap_or_default() {
                let bundle = h
                    .client_config
                    .ca_bundle
                    .as_ref()
                    .map(|b| b.0.clone())
                    .unwrap_or_default();
                if let Err(e) =
                    tls::verify_leaf(&bundle, info.serving_certificate.as_bytes(), &name, f.now)
                {
                    failures.push(format!("{}: {e}", h.name));
                }
            }
            let via = format!("served certificate read from {}", info.via);
            out.push(if failures.is_empty() {
                Check::new("tandem-ca-bundle", T_BUNDLE, Status::Pass, format!("verifies for {name}")).evidence(via)
            } else {
                failures.into_iter().fold(
                    Check::new(
                        "tandem-ca-bundle",
                        T_BUNDLE,
                        Status::Fail,
                        "the caBundle does not verify the certificate the webhook serves: the API server refuses to call it (x509 errors)",
                    )
                    .evidence(via)
                    .hint(format!(
                        "self-managed TLS repairs the caBundle within a minute (check the webhook's logs and its patch permission on mutatingwebhookconfigurations {}); with cert-manager check the cainjector; with your own Secret put its CA in the caBundle",
                        t.webhook_configuration
                    )),
                    Check::evidence,
                )
            });
            out.push(match CertInfo::first_from_pem(info.serving_certificate.as_bytes()) {
                Err(e) => Check::new("tandem-certificate", T_CERT, Status::Fail, format!("the served certificate is unreadable: {e}")),
                Ok(cert) => {
                    let days = (cert.not_after - f.now).div_euclid(86_400);
                    let ev = format!("{}: notAfter {} (Unix), {days} day(s) left", cert.subject, cert.not_after);
                    if days >= MIN_CERT_DAYS {
                        Check::new("tandem-certificate", T_CERT, Status::Pass, format!("{days} days left")).evidence(ev)
                    } else {
                        Check::new(
                            "tandem-certificate",
                            T_CERT,
                            Status::Fail,
                            format!("the serving certificate expires in {days} day(s)"),
                        )
                        .evidence(ev)
                        .hint("self-managed TLS renews it --cert-renew-before ahead (60d by default): check the webhook's logs and its RBAC on its Secret; with cert-manager, `kubectl describe certificate`; with your own Secret, renew it")
                    }
                }
            });
            out.push(if info.version == f.cli_version {
                Check::new("tandem-version", T_VERSION, Status::Pass, format!("both {}", info.version))
            } else {
                Check::new(
                    "tandem-version",
                    T_VERSION,
                    Status::Warn,
                    format!("the webhook runs {}, this CLI is {}", info.version, f.cli_version),
                )
                .hint("upgrade the install (`tandem install | kubectl apply -f -` or `helm upgrade`) or use the CLI that matches it")
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tandem_webhook::tls::Pki;

    fn target() -> TandemTarget {
        TandemTarget {
            tandem_namespace: "tandem-system".into(),
            webhook_configuration: "tandem".into(),
            tandem_service: "tandem-webhook".into(),
        }
    }

    fn mwc(ca: &str) -> MutatingWebhookConfiguration {
        use base64::Engine as _;
        serde_json::from_value(json!({"metadata": {"name": "tandem"}, "webhooks": [{
            "name": "pods.tandem.dev", "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "clientConfig": {"service": {"namespace": "tandem-system", "name": "tandem-webhook", "port": 443},
                             "caBundle": base64::engine::general_purpose::STANDARD.encode(ca)}}]}))
        .unwrap()
    }

    fn deployment(available: i32) -> Deployment {
        serde_json::from_value(json!({"metadata": {"name": "tandem-webhook"},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"availableReplicas": available, "conditions": [
                {"type": "Available", "status": if available > 0 {"True"} else {"False"}}]}}))
        .unwrap()
    }

    fn slice(ready: bool) -> EndpointSlice {
        serde_json::from_value(json!({"addressType": "IPv4", "metadata": {"name": "s"},
            "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": ready}}]}))
        .unwrap()
    }

    fn facts(pki: &Pki, bundle: &str, available: i32, ready: bool, version: &str) -> TandemFacts {
        TandemFacts {
            target: target(),
            configuration: Ok(Some(mwc(bundle))),
            service: ("tandem-system".into(), "tandem-webhook".into(), true),
            service_object: Ok(Some(Service::default())),
            deployments: Ok(vec![deployment(available)]),
            endpoints: Ok(vec![slice(ready)]),
            served: Some(Ok(WebhookInfo {
                version: version.into(),
                git_commit: String::new(),
                serving_certificate: pki.cert_pem.clone(),
                via: "test".into(),
            })),
            now: tls::unix_now(),
            cli_version: "0.1.0".into(),
        }
    }

    fn status(cs: &[Check], id: &str) -> Status {
        cs.iter().find(|c| c.id == id).map(|c| c.status).unwrap()
    }

    fn pki(days: u32) -> Pki {
        Pki::generate(
            "ca",
            &["tandem-webhook.tandem-system.svc".into()],
            &[],
            days,
        )
        .unwrap()
    }

    #[test]
    fn healthy_passes() {
        let p = pki(365);
        let cs = verdicts(&facts(&p, &p.ca_pem, 2, true, "0.1.0"));
        assert_eq!(cs.len(), 6);
        for c in &cs {
            assert_eq!(c.status, Status::Pass, "{c:?}");
        }
    }

    #[test]
    fn each_problem_is_named_with_a_hint() {
        let p = pki(365);
        let other = pki(365);
        let cs = verdicts(&facts(&p, &other.ca_pem, 2, true, "0.1.0"));
        assert_eq!(status(&cs, "tandem-ca-bundle"), Status::Fail);
        assert!(
            cs.iter()
                .all(|c| c.status != Status::Fail || c.hint.is_some())
        );
        let cs = verdicts(&facts(&p, &p.ca_pem, 0, false, "0.1.0"));
        assert_eq!(status(&cs, "tandem-deployment"), Status::Fail);
        assert_eq!(status(&cs, "tandem-endpoints"), Status::Fail);
        let short = pki(10);
        let cs = verdicts(&facts(&short, &short.ca_pem, 2, true, "0.1.0"));
        assert_eq!(status(&cs, "tandem-certificate"), Status::Fail);
        assert_eq!(status(&cs, "tandem-ca-bundle"), Status::Pass);
        let cs = verdicts(&facts(&p, &p.ca_pem, 2, true, "0.0.9"));
        assert_eq!(status(&cs, "tandem-version"), Status::Warn);
        let mut f = facts(&p, "", 2, true, "0.1.0");
        f.configuration = Ok(Some(mwc("")));
        let cs = verdicts(&f);
        assert_eq!(status(&cs, "tandem-webhook-configuration"), Status::Fail);
        assert!(
            cs.iter()
                .all(|c| c.status != Status::Fail || c.hint.is_some())
        );
    }

    #[test]
    fn not_installed_is_a_skip() {
        let p = pki(365);
        let mut f = facts(&p, &p.ca_pem, 2, true, "0.1.0");
        f.configuration = Ok(None);
        f.deployments = Ok(vec![]);
        let cs = verdicts(&f);
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].status, Status::Skip);
    }

    #[test]
    fn urls_and_names() {
        assert_eq!(
            url_base("https://127.0.0.1:8443/mutate"),
            Some("https://127.0.0.1:8443")
        );
        assert_eq!(
            url_host("https://127.0.0.1:8443/mutate").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(url_host("https://[::1]:8443/x").as_deref(), Some("::1"));
        assert_eq!(
            url_host("https://web.example/x").as_deref(),
            Some("web.example")
        );
        assert_eq!(url_base("http://x/"), None);
        assert_eq!(
            Endpoint::of(&mwc("")).unwrap().server_name(),
            "tandem-webhook.tandem-system.svc"
        );
    }
}
