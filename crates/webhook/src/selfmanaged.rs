//! Self-managed serving certificates (`tandem webhook --tls-secret NAME`), the way Vault's
//! injector, Kyverno and istiod do it: the webhook keeps a CA and a serving certificate in a
//! Secret of its own namespace (created if missing, reused if valid), patches the CA bundle
//! into its own MutatingWebhookConfiguration, and renews both before they expire.
//!
//! Replicas agree through optimistic concurrency on the Secret: every write is an update
//! carrying the `resourceVersion` it read, so of two replicas renewing at once one wins and
//! the other re-reads and finds nothing left to do. The webhook configuration is patched
//! with a JSON Patch whose first operation tests its `resourceVersion`, and only by a
//! replica whose bundle generation is not older than the one recorded on it.
//!
//! Rotation with overlap. A serving certificate is renewed from the same CA (the bundle
//! doesn't change). A CA is renewed in two steps: *stage* (the new CA joins `ca-bundle.crt`
//! and the webhook configuration's `caBundle`; every replica keeps serving the old
//! certificate), then, once the webhook configuration carries the new CA and at least
//! [`Settings::settle`] has passed, *promote* (a serving certificate signed by the new CA).
//! The old CA stays in the bundle until it expires. So the API server always trusts the
//! certificate any replica serves.
//!
//! The decisions ([`decide`], [`apply`]) are plain functions over [`Stored`]; [`Manager`]
//! does the I/O.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

use crate::tls::{self, CaPair, CertInfo, LeafPair, TlsError, unix_now};

/// Secret key: the serving certificate.
pub const KEY_TLS_CRT: &str = "tls.crt";
/// Secret key: the serving key.
pub const KEY_TLS_KEY: &str = "tls.key";
/// Secret key: the CA that signed `tls.crt`.
pub const KEY_CA_CRT: &str = "ca.crt";
/// Secret key: that CA's key.
pub const KEY_CA_KEY: &str = "ca.key";
/// Secret key: every CA the API server should trust (what goes into `caBundle`).
pub const KEY_BUNDLE: &str = "ca-bundle.crt";
/// Secret key: a staged CA (in the bundle, not yet signing).
pub const KEY_NEXT_CA_CRT: &str = "next-ca.crt";
/// Secret key: the staged CA's key.
pub const KEY_NEXT_CA_KEY: &str = "next-ca.key";
/// Annotation (Secret): when the staged CA joined the bundle (Unix seconds).
pub const ANN_STAGED_AT: &str = "tandem.dev/ca-staged-at";
/// Annotation (Secret and webhook configuration): the bundle's generation, bumped on every
/// change of `ca-bundle.crt`.
pub const ANN_GENERATION: &str = "tandem.dev/ca-bundle-generation";

/// Default `--cert-validity`.
pub const DEFAULT_CERT_VALIDITY: &str = "365d";
/// Default `--ca-validity`.
pub const DEFAULT_CA_VALIDITY: &str = "1825d";
/// Default `--cert-renew-before`.
pub const DEFAULT_RENEW_BEFORE: &str = "60d";

/// Self-managed TLS flags of `tandem webhook`.
#[derive(Debug, Clone, clap::Args)]
pub struct SelfManagedArgs {
    /// Manage the serving certificate in this Secret (of --namespace): create it when
    /// missing, reuse it when valid, renew before expiry, and patch its CA bundle into
    /// --webhook-configuration. Needs a cluster.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_secret: Option<String>,
    /// The webhook's own namespace (default: $POD_NAMESPACE, then the in-cluster service
    /// account's namespace).
    #[arg(long, value_name = "NS", env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// The MutatingWebhookConfiguration whose webhooks' caBundle is kept current.
    #[arg(long, value_name = "NAME", default_value = "tandem")]
    pub webhook_configuration: String,
    /// The Service in front of the webhook: the certificate's DNS names are NAME, NAME.NS,
    /// NAME.NS.svc and NAME.NS.svc.cluster.local (plus every --tls-san).
    #[arg(long, value_name = "NAME", default_value = "tandem-webhook")]
    pub tls_service: String,
    /// Lifetime of a serving certificate.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_CERT_VALIDITY, value_parser = parse_duration)]
    pub cert_validity: Duration,
    /// Lifetime of a CA.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_CA_VALIDITY, value_parser = parse_duration)]
    pub ca_validity: Duration,
    /// Renew a serving certificate this long before it expires; a CA is replaced twice
    /// this long before it expires.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_RENEW_BEFORE, value_parser = parse_duration)]
    pub cert_renew_before: Duration,
}

/// A duration as the other flags take it (`90s`, `10m`, `1h30m`), or whole days (`365d`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Some(days) = s.strip_suffix('d') {
        return days
            .parse::<u64>()
            .ok()
            .and_then(|d| d.checked_mul(86_400))
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{s:?} is not a duration (e.g. 365d, 12h, 90s)"));
    }
    tandem_core::config::duration_text::parse(s)
}

/// What is wrong with self-managed TLS.
#[derive(Debug, thiserror::Error)]
pub enum SelfManagedError {
    /// The flags don't make sense together.
    #[error("{0}")]
    Settings(String),
    /// Generating or reading certificates failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// An API request failed.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done (with the permission it needs).
        what: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> SelfManagedError {
    let what = what.into();
    move |source| SelfManagedError::Kube { what, source }
}

/// What the manager works with, from the flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Namespace of the Secret.
    pub namespace: String,
    /// The Secret.
    pub secret: String,
    /// The MutatingWebhookConfiguration.
    pub webhook_configuration: String,
    /// DNS names of the serving certificate (the first is its CN).
    pub dns: Vec<String>,
    /// IP addresses of the serving certificate.
    pub ips: Vec<IpAddr>,
    /// Serving certificate lifetime.
    pub cert_validity: Duration,
    /// CA lifetime.
    pub ca_validity: Duration,
    /// Renew this long before expiry (CAs: twice this long).
    pub renew_before: Duration,
    /// How long a staged CA stays in the bundle before it signs: the API servers need to
    /// have seen the new caBundle. `min(10 s, renew_before / 4)`.
    pub settle: Duration,
    /// How often the Secret and the webhook configuration are re-checked (besides the
    /// Secret watch): `renew_before / 10`, between 1 s and 60 s.
    pub resync: Duration,
}

impl Settings {
    /// Settings from the flags; `sans` are the extra `--tls-san` values.
    pub fn from_args(args: &SelfManagedArgs, sans: &[String]) -> Result<Self, SelfManagedError> {
        let secret = args.tls_secret.clone().ok_or_else(|| {
            SelfManagedError::Settings("self-managed TLS needs --tls-secret NAME".into())
        })?;
        let namespace = match &args.namespace {
            Some(ns) if !ns.is_empty() => ns.clone(),
            _ => std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .map(|s| s.trim().to_string())
                .ok()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    SelfManagedError::Settings(
                        "--tls-secret needs the webhook's namespace: pass --namespace or set \
                     POD_NAMESPACE (the downward API's metadata.namespace)"
                            .into(),
                    )
                })?,
        };
        let svc = &args.tls_service;
        let mut dns = vec![
            format!("{svc}.{namespace}.svc"),
            svc.clone(),
            format!("{svc}.{namespace}"),
            format!("{svc}.{namespace}.svc.cluster.local"),
        ];
        let mut ips = Vec::new();
        for san in sans {
            match san.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => dns.push(san.clone()),
            }
        }
        Self::new(
            namespace,
            secret,
            args.webhook_configuration.clone(),
            dns,
            ips,
            args.cert_validity,
            args.ca_validity,
            args.cert_renew_before,
        )
    }

    /// Checks the lifetimes and derives `settle` and `resync`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        namespace: String,
        secret: String,
        webhook_configuration: String,
        dns: Vec<String>,
        ips: Vec<IpAddr>,
        cert_validity: Duration,
        ca_validity: Duration,
        renew_before: Duration,
    ) -> Result<Self, SelfManagedError> {
        if renew_before.is_zero() || renew_before >= cert_validity {
            return Err(SelfManagedError::Settings(format!(
                "--cert-renew-before ({}s) must be above zero and shorter than --cert-validity ({}s)",
                renew_before.as_secs(),
                cert_validity.as_secs()
            )));
        }
        if ca_validity < cert_validity + renew_before * 2 {
            return Err(SelfManagedError::Settings(format!(
                "--ca-validity ({}s) must be at least --cert-validity plus twice \
                 --cert-renew-before ({}s)",
                ca_validity.as_secs(),
                (cert_validity + renew_before * 2).as_secs()
            )));
        }
        let settle = (renew_before / 4).min(Duration::from_secs(10));
        let resync = (renew_before / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
        Ok(Self {
            namespace,
            secret,
            webhook_configuration,
            dns,
            ips,
            cert_validity,
            ca_validity,
            renew_before,
            settle,
            resync,
        })
    }

    /// The name the API server checks the certificate against (`svc.ns.svc`).
    pub fn server_name(&self) -> &str {
        self.dns.first().map_or("localhost", String::as_str)
    }
}

/// The Secret's contents, as the manager reads and writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The CA that signs.
    pub ca: CaPair,
    /// The serving certificate.
    pub leaf: LeafPair,
    /// Every CA to trust, PEM, in order.
    pub bundle: Vec<String>,
    /// A staged CA.
    pub next: Option<CaPair>,
    /// When it was staged (Unix seconds).
    pub staged_at: Option<i64>,
    /// Bundle generation.
    pub generation: u64,
}

impl Stored {
    /// Reads a Secret's data and annotations; `None` when something needed is missing.
    pub fn from_secret(secret: &Secret) -> Option<Self> {
        let data = secret.data.as_ref()?;
        let text = |k: &str| -> Option<String> {
            data.get(k)
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
                .filter(|s| !s.trim().is_empty())
        };
        let ann = secret.metadata.annotations.clone().unwrap_or_default();
        let bundle_text = text(KEY_BUNDLE).unwrap_or_default();
        let bundle = CertInfo::all_from_pem(bundle_text.as_bytes())
            .map(|cs| cs.iter().map(CertInfo::to_pem).collect())
            .unwrap_or_default();
        let next = match (text(KEY_NEXT_CA_CRT), text(KEY_NEXT_CA_KEY)) {
            (Some(cert_pem), Some(key_pem)) => Some(CaPair { cert_pem, key_pem }),
            _ => None,
        };
        Some(Self {
            ca: CaPair {
                cert_pem: text(KEY_CA_CRT)?,
                key_pem: text(KEY_CA_KEY)?,
            },
            leaf: LeafPair {
                cert_pem: text(KEY_TLS_CRT)?,
                key_pem: text(KEY_TLS_KEY)?,
            },
            bundle,
            next,
            staged_at: ann.get(ANN_STAGED_AT).and_then(|s| s.parse().ok()),
            generation: ann
                .get(ANN_GENERATION)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
        })
    }

    /// The Secret's data.
    pub fn data(&self) -> BTreeMap<String, ByteString> {
        let b = |s: &str| ByteString(s.as_bytes().to_vec());
        let mut d = BTreeMap::from([
            (KEY_TLS_CRT.to_string(), b(&self.leaf.cert_pem)),
            (KEY_TLS_KEY.to_string(), b(&self.leaf.key_pem)),
            (KEY_CA_CRT.to_string(), b(&self.ca.cert_pem)),
            (KEY_CA_KEY.to_string(), b(&self.ca.key_pem)),
            (KEY_BUNDLE.to_string(), b(&self.bundle_pem())),
        ]);
        if let Some(n) = &self.next {
            d.insert(KEY_NEXT_CA_CRT.into(), b(&n.cert_pem));
            d.insert(KEY_NEXT_CA_KEY.into(), b(&n.key_pem));
        }
        d
    }

    /// The annotations the manager owns.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let mut a = BTreeMap::from([(ANN_GENERATION.to_string(), self.generation.to_string())]);
        if let Some(t) = self.staged_at {
            a.insert(ANN_STAGED_AT.into(), t.to_string());
        }
        a
    }

    /// `ca-bundle.crt`: the bundle's certificates, concatenated.
    pub fn bundle_pem(&self) -> String {
        self.bundle.concat()
    }
}

/// What to do with the Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing: it is valid and not due.
    Keep,
    /// A new CA and serving certificate (no Secret, or an unusable one).
    Create(String),
    /// A new serving certificate from the current CA.
    Reissue(String),
    /// A new CA joins the bundle (not signing yet).
    Stage,
    /// The staged CA signs a new serving certificate.
    Promote,
    /// Expired CAs leave the bundle (or the signing CA rejoins it).
    FixBundle,
    /// The staged CA waits for the webhook configuration or for `settle`.
    Wait(String),
}

/// Decides what to do with what the Secret holds at `now`. `configuration_has_next`: the
/// webhook configuration's caBundle holds the staged CA (or there is no configuration).
pub fn decide(
    now: i64,
    stored: Option<&Stored>,
    settings: &Settings,
    configuration_has_next: bool,
) -> Step {
    let Some(s) = stored else {
        return Step::Create("no certificate stored yet".into());
    };
    let ca = match CertInfo::first_from_pem(s.ca.cert_pem.as_bytes()) {
        Ok(c) => c,
        Err(e) => return Step::Create(format!("the stored CA is unreadable: {e}")),
    };
    if ca.not_after <= now {
        return Step::Create("the stored CA has expired".into());
    }
    let renew = settings.renew_before.as_secs() as i64;
    if let Some(next) = &s.next {
        let settled = s
            .staged_at
            .is_some_and(|t| now >= t + settings.settle.as_secs() as i64);
        if CertInfo::first_from_pem(next.cert_pem.as_bytes()).is_err() {
            return Step::Stage; // unreadable staged CA: stage a fresh one
        }
        return if settled && configuration_has_next {
            Step::Promote
        } else if !configuration_has_next {
            Step::Wait("the webhook configuration's caBundle lacks the staged CA".into())
        } else {
            Step::Wait("the staged CA is settling".into())
        };
    }
    if ca.not_after - now < 2 * renew {
        return Step::Stage;
    }
    let leaf = match CertInfo::first_from_pem(s.leaf.cert_pem.as_bytes()) {
        Ok(l) => l,
        Err(e) => return Step::Reissue(format!("the stored certificate is unreadable: {e}")),
    };
    if let Err(e) = tls::verify_leaf(
        s.ca.cert_pem.as_bytes(),
        s.leaf.cert_pem.as_bytes(),
        settings.server_name(),
        now,
    ) {
        return Step::Reissue(format!("the stored certificate does not verify: {e}"));
    }
    if leaf.not_after - now < renew {
        return Step::Reissue("the certificate is due for renewal".into());
    }
    let want_dns: std::collections::BTreeSet<&String> = settings.dns.iter().collect();
    let have_dns: std::collections::BTreeSet<&String> = leaf.dns_names.iter().collect();
    let want_ip: std::collections::BTreeSet<&IpAddr> = settings.ips.iter().collect();
    let have_ip: std::collections::BTreeSet<&IpAddr> = leaf.ips.iter().collect();
    if want_dns != have_dns || want_ip != have_ip {
        return Step::Reissue("the certificate's names differ from the flags".into());
    }
    if bundle_after_prune(s, now) != s.bundle {
        return Step::FixBundle;
    }
    Step::Keep
}

/// The bundle without expired CAs, the signing CA (and the staged one) always in.
fn bundle_after_prune(s: &Stored, now: i64) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |pem: &str| {
        let norm = CertInfo::first_from_pem(pem.as_bytes())
            .ok()
            .filter(|c| c.not_after > now);
        if let Some(c) = norm {
            let p = c.to_pem();
            if !out.contains(&p) {
                out.push(p);
            }
        }
    };
    push(&s.ca.cert_pem);
    if let Some(n) = &s.next {
        push(&n.cert_pem);
    }
    for p in &s.bundle {
        push(p);
    }
    out
}

fn new_ca(now: i64, settings: &Settings) -> Result<CaPair, TlsError> {
    tls::generate_ca(
        &format!("tandem-webhook-ca-{now}"),
        now,
        settings.ca_validity,
    )
}

fn leaf_from(ca: &CaPair, now: i64, settings: &Settings) -> Result<LeafPair, TlsError> {
    let ca_end = CertInfo::first_from_pem(ca.cert_pem.as_bytes())?.not_after;
    tls::issue_leaf(
        ca,
        &settings.dns,
        &settings.ips,
        now,
        settings.cert_validity,
        ca_end,
    )
}

/// Carries out `step` (generating keys), giving the new contents; `None` for
/// [`Step::Keep`] and [`Step::Wait`].
pub fn apply(
    step: &Step,
    stored: Option<&Stored>,
    settings: &Settings,
    now: i64,
) -> Result<Option<Stored>, TlsError> {
    let generation = stored.map_or(0, |s| s.generation);
    let out = match (step, stored) {
        (Step::Keep | Step::Wait(_), _) => return Ok(None),
        (Step::Create(_), _) | (_, None) => {
            let ca = new_ca(now, settings)?;
            let leaf = leaf_from(&ca, now, settings)?;
            let mut s = Stored {
                bundle: Vec::new(),
                ca,
                leaf,
                next: None,
                staged_at: None,
                generation: generation + 1,
            };
            s.bundle = bundle_after_prune(&s, now);
            s
        }
        (Step::Reissue(_), Some(old)) => Stored {
            leaf: leaf_from(&old.ca, now, settings)?,
            ..old.clone()
        },
        (Step::Stage, Some(old)) => {
            let mut s = Stored {
                next: Some(new_ca(now, settings)?),
                staged_at: Some(now),
                generation: generation + 1,
                ..old.clone()
            };
            s.bundle = bundle_after_prune(&s, now);
            s
        }
        (Step::Promote, Some(old)) => {
            let Some(next) = old.next.clone() else {
                return Ok(None);
            };
            let mut s = Stored {
                leaf: leaf_from(&next, now, settings)?,
                ca: next,
                next: None,
                staged_at: None,
                ..old.clone()
            };
            // The old CA stays: replicas still serving the old certificate must verify.
            let mut bundle = bundle_after_prune(&s, now);
            for p in bundle_after_prune(old, now) {
                if !bundle.contains(&p) {
                    bundle.push(p);
                }
            }
            s.bundle = bundle;
            if s.bundle != old.bundle {
                s.generation += 1;
            }
            s
        }
        (Step::FixBundle, Some(old)) => {
            let mut s = old.clone();
            s.bundle = bundle_after_prune(old, now);
            s.generation += 1;
            s
        }
    };
    Ok(Some(out))
}

/// The CA certificates (DER) in every webhook's `caBundle` of a webhook configuration: the
/// intersection, since the API server uses each webhook's own.
pub fn configuration_cas(mwc: &MutatingWebhookConfiguration) -> Vec<Vec<u8>> {
    let hooks = mwc.webhooks.clone().unwrap_or_default();
    let mut common: Option<Vec<Vec<u8>>> = None;
    for h in &hooks {
        let cas: Vec<Vec<u8>> = h
            .client_config
            .ca_bundle
            .as_ref()
            .and_then(|b| CertInfo::all_from_pem(&b.0).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.der)
            .collect();
        common = Some(match common {
            None => cas,
            Some(prev) => prev.into_iter().filter(|d| cas.contains(d)).collect(),
        });
    }
    common.unwrap_or_default()
}

/// Whether every webhook of the configuration trusts the CA `ca_pem`.
pub fn configuration_trusts(mwc: &MutatingWebhookConfiguration, ca_pem: &str) -> bool {
    match CertInfo::first_from_pem(ca_pem.as_bytes()) {
        Ok(ca) => {
            !mwc.webhooks.as_deref().unwrap_or_default().is_empty()
                && configuration_cas(mwc).contains(&ca.der)
        }
        Err(_) => false,
    }
}

/// The JSON Patch that sets every webhook's caBundle to `bundle_pem`, guarded by the
/// configuration's resourceVersion; `None` when nothing would change or when the
/// configuration records a newer bundle generation than `generation`.
pub fn configuration_patch(
    mwc: &MutatingWebhookConfiguration,
    bundle_pem: &str,
    generation: u64,
) -> Option<serde_json::Value> {
    let hooks = mwc.webhooks.as_deref().unwrap_or_default();
    let annotations = mwc.metadata.annotations.clone().unwrap_or_default();
    let recorded: u64 = annotations
        .get(ANN_GENERATION)
        .and_then(|g| g.parse().ok())
        .unwrap_or(0);
    let same = hooks.iter().all(|h| {
        h.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) == Some(bundle_pem.as_bytes())
    });
    if hooks.is_empty() || recorded > generation || (same && recorded == generation) {
        return None;
    }
    let rv = mwc.metadata.resource_version.clone().unwrap_or_default();
    let mut annotations = annotations;
    annotations.insert(ANN_GENERATION.into(), generation.to_string());
    let b64 = base64::engine::general_purpose::STANDARD.encode(bundle_pem);
    let mut ops = vec![
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}),
        json!({"op": "add", "path": "/metadata/annotations", "value": annotations}),
    ];
    for i in 0..hooks.len() {
        ops.push(json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": b64}));
    }
    Some(serde_json::Value::Array(ops))
}

/// What the server serves and whether the API server trusts it, shared with `/readyz`,
/// `/version` and the metrics.
#[derive(Debug, Default)]
pub struct TlsStatus {
    cert_pem: RwLock<String>,
    gated: AtomicBool,
    trusted: AtomicBool,
}

impl TlsStatus {
    /// A status for a server whose certificate needs no bundle check (files, generated).
    pub fn ungated(cert_pem: &str) -> Arc<Self> {
        let s = Self::default();
        s.set_cert(cert_pem);
        Arc::new(s)
    }

    /// A status that keeps `/readyz` failing until [`TlsStatus::set_trusted`] says so.
    pub fn gated(cert_pem: &str) -> Arc<Self> {
        let s = Self::default();
        s.set_cert(cert_pem);
        s.gated.store(true, Ordering::SeqCst);
        Arc::new(s)
    }

    /// Records the certificate now served.
    pub fn set_cert(&self, pem: &str) {
        if let Ok(mut c) = self.cert_pem.write() {
            *c = pem.to_string();
        }
    }

    /// The certificate served (PEM).
    pub fn cert_pem(&self) -> String {
        self.cert_pem.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// Records whether the webhook configuration trusts the served certificate's CA.
    pub fn set_trusted(&self, trusted: bool) {
        self.trusted.store(trusted, Ordering::SeqCst);
    }

    /// `None` when ready; otherwise why not.
    pub fn not_ready(&self) -> Option<&'static str> {
        (self.gated.load(Ordering::SeqCst) && !self.trusted.load(Ordering::SeqCst)).then_some(
            "the webhook configuration's caBundle does not (yet) hold the CA of the served certificate",
        )
    }
}

/// The I/O side: reads and writes the Secret and the webhook configuration.
#[derive(Clone)]
pub struct Manager {
    settings: Settings,
    secrets: Api<Secret>,
    configs: Api<MutatingWebhookConfiguration>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What a reconcile pass ended with.
#[derive(Debug, Clone)]
pub struct Current {
    /// The Secret's contents after the pass.
    pub stored: Stored,
    /// Whether the webhook configuration trusts `stored.ca`.
    pub trusted: bool,
    /// What was done.
    pub step: Step,
}

impl Manager {
    /// A manager for `settings` over `client`.
    pub fn new(client: kube::Client, settings: Settings) -> Self {
        Self {
            secrets: Api::namespaced(client.clone(), &settings.namespace),
            configs: Api::all(client),
            settings,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn secret_what(&self, verb: &str) -> String {
        format!(
            "{verb} secret {}/{} (RBAC: {verb} secrets)",
            self.settings.namespace, self.settings.secret
        )
    }

    async fn read_config(&self) -> Result<Option<MutatingWebhookConfiguration>, SelfManagedError> {
        self.configs
            .get_opt(&self.settings.webhook_configuration)
            .await
            .map_err(kube_err(format!(
                "get mutatingwebhookconfiguration {} (RBAC: get mutatingwebhookconfigurations)",
                self.settings.webhook_configuration
            )))
    }

    /// One pass: read the Secret, decide, write it (retrying on conflicts), bring the
    /// webhook configuration's caBundle up to date, and say whether it trusts the CA.
    pub async fn reconcile(&self) -> Result<Current, SelfManagedError> {
        for _attempt in 0..5 {
            let now = unix_now();
            let secret = self
                .secrets
                .get_opt(&self.settings.secret)
                .await
                .map_err(kube_err(self.secret_what("get")))?;
            let stored = secret.as_ref().and_then(Stored::from_secret);
            let config = self.read_config().await?;
            let has_next = match (&stored, &config) {
                (Some(Stored { next: Some(n), .. }), Some(c)) => {
                    configuration_trusts(c, &n.cert_pem)
                }
                _ => true,
            };
            let step = decide(now, stored.as_ref(), &self.settings, has_next);
            let new = apply(&step, stored.as_ref(), &self.settings, now)?;
            let stored = match new {
                None => match stored {
                    Some(s) => s,
                    None => continue,
                },
                Some(new) => match self.write(secret, &new).await {
                    Ok(true) => {
                        tracing::info!(step = ?step, secret = %self.settings.secret, generation = new.generation, "self-managed TLS: Secret updated");
                        new
                    }
                    // Another replica wrote first: read again.
                    Ok(false) => continue,
                    Err(e) => return Err(e),
                },
            };
            let trusted = self.sync_configuration(config, &stored).await?;
            return Ok(Current {
                stored,
                trusted,
                step,
            });
        }
        Err(SelfManagedError::Settings(format!(
            "secret {}/{} kept changing under five attempts in a row; will try again",
            self.settings.namespace, self.settings.secret
        )))
    }

    /// Creates or updates the Secret; `Ok(false)` on a conflict.
    async fn write(&self, old: Option<Secret>, new: &Stored) -> Result<bool, SelfManagedError> {
        let result = match old {
            None => {
                let s = Secret {
                    metadata: kube::api::ObjectMeta {
                        name: Some(self.settings.secret.clone()),
                        namespace: Some(self.settings.namespace.clone()),
                        annotations: Some(new.annotations()),
                        labels: Some(BTreeMap::from([
                            ("app.kubernetes.io/name".into(), "tandem-webhook".into()),
                            ("app.kubernetes.io/part-of".into(), "tandem".into()),
                            (
                                "app.kubernetes.io/managed-by".into(),
                                "tandem-webhook".into(),
                            ),
                        ])),
                        ..Default::default()
                    },
                    type_: Some("kubernetes.io/tls".into()),
                    data: Some(new.data()),
                    ..Default::default()
                };
                self.secrets
                    .create(&PostParams::default(), &s)
                    .await
                    .map_err(kube_err(self.secret_what("create")))
            }
            Some(mut s) => {
                let mut ann = s.metadata.annotations.take().unwrap_or_default();
                ann.remove(ANN_STAGED_AT);
                ann.extend(new.annotations());
                s.metadata.annotations = Some(ann);
                s.data = Some(new.data());
                s.string_data = None;
                s.metadata.managed_fields = None; // kept as they are by the server
                // `replace` sends the resourceVersion we read: a conflict if it changed.
                self.secrets
                    .replace(&self.settings.secret, &PostParams::default(), &s)
                    .await
                    .map_err(kube_err(self.secret_what("update")))
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(SelfManagedError::Kube {
                source: kube::Error::Api(ref s),
                ..
            }) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Patches the caBundle when it differs; returns whether the configuration trusts the
    /// signing CA of `stored`.
    async fn sync_configuration(
        &self,
        config: Option<MutatingWebhookConfiguration>,
        stored: &Stored,
    ) -> Result<bool, SelfManagedError> {
        let Some(mut config) = config else {
            return Ok(false);
        };
        let bundle = stored.bundle_pem();
        for _ in 0..3 {
            let Some(patch) = configuration_patch(&config, &bundle, stored.generation) else {
                break;
            };
            let patch: json_patch::Patch = serde_json::from_value(patch)
                .map_err(|e| SelfManagedError::Settings(format!("building a JSON Patch: {e}")))?;
            match self
                .configs
                .patch(
                    &self.settings.webhook_configuration,
                    &PatchParams::default(),
                    &Patch::Json::<()>(patch),
                )
                .await
            {
                Ok(c) => {
                    tracing::info!(configuration = %self.settings.webhook_configuration, generation = stored.generation, "self-managed TLS: caBundle patched");
                    config = c;
                    break;
                }
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 422 => {
                    // Changed under us (the resourceVersion test failed): read again.
                    match self.read_config().await? {
                        Some(c) => config = c,
                        None => return Ok(false),
                    }
                }
                Err(e) => {
                    return Err(kube_err(format!(
                        "patch mutatingwebhookconfiguration {} (RBAC: patch mutatingwebhookconfigurations)",
                        self.settings.webhook_configuration
                    ))(e));
                }
            }
        }
        Ok(configuration_trusts(&config, &stored.ca.cert_pem))
    }

    /// Reconciles until the Secret holds a usable certificate (retrying API errors every
    /// few seconds, up to `timeout`).
    pub async fn bootstrap(&self, timeout: Duration) -> Result<Current, SelfManagedError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.reconcile().await {
                Ok(c) => return Ok(c),
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %e, "self-managed TLS: not ready yet; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Keeps reconciling: on every change of the Secret (a watch) and every
    /// [`Settings::resync`]. Calls `serve` with each new serving certificate and key.
    pub async fn run<F>(self, mut current: Current, status: Arc<TlsStatus>, mut serve: F)
    where
        F: FnMut(&LeafPair) + Send,
    {
        use kube::runtime::WatchStreamExt as _;
        status.set_trusted(current.trusted);
        let watch = || {
            let cfg = watcher::Config::default()
                .fields(&format!("metadata.name={}", self.settings.secret));
            watcher::watcher(self.secrets.clone(), cfg)
                .default_backoff()
                .boxed()
        };
        let mut events = watch();
        let mut tick = tokio::time::interval(self.settings.resync);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                ev = events.next() => match ev {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        // Backed off by the stream; the ticks keep reconciling meanwhile.
                        tracing::debug!(error = %e, "self-managed TLS: Secret watch (needs list and watch on the Secret)");
                        continue;
                    }
                    None => {
                        events = watch();
                        continue;
                    }
                }
            }
            match self.reconcile().await {
                Ok(next) => {
                    if next.stored.leaf != current.stored.leaf {
                        serve(&next.stored.leaf);
                        status.set_cert(&next.stored.leaf.cert_pem);
                        tracing::info!("self-managed TLS: serving the certificate from the Secret");
                    }
                    // Trust is about the CA of what is served now.
                    status.set_trusted(next.trusted);
                    current = next;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "self-managed TLS: reconcile failed; will retry")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(cert: u64, ca: u64, renew: u64) -> Settings {
        Settings::new(
            "tandem".into(),
            "tandem-webhook-tls".into(),
            "tandem".into(),
            vec!["tandem-webhook.tandem.svc".into(), "tandem-webhook".into()],
            vec!["127.0.0.1".parse().unwrap()],
            Duration::from_secs(cert),
            Duration::from_secs(ca),
            Duration::from_secs(renew),
        )
        .unwrap()
    }

    fn created(s: &Settings, now: i64) -> Stored {
        apply(&Step::Create("test".into()), None, s, now)
            .unwrap()
            .unwrap()
    }

    fn mwc(bundles: &[&str], generation: Option<u64>) -> MutatingWebhookConfiguration {
        let hooks: Vec<serde_json::Value> = bundles
            .iter()
            .enumerate()
            .map(|(i, b)| json!({"name": format!("h{i}.tandem.dev"), "admissionReviewVersions": ["v1"], "sideEffects": "None",
                "clientConfig": {"url": "https://127.0.0.1/mutate", "caBundle": base64::engine::general_purpose::STANDARD.encode(b)}}))
            .collect();
        let mut meta = json!({"name": "tandem", "resourceVersion": "42"});
        if let Some(g) = generation {
            meta["annotations"] = json!({ANN_GENERATION: g.to_string()});
        }
        serde_json::from_value(json!({"metadata": meta, "webhooks": hooks})).unwrap()
    }

    #[test]
    fn durations_in_days() {
        assert_eq!(
            parse_duration("365d"),
            Ok(Duration::from_secs(365 * 86_400))
        );
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("xd").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn flags_are_checked() {
        assert!(
            Settings::new(
                "n".into(),
                "s".into(),
                "c".into(),
                vec![],
                vec![],
                Duration::from_secs(10),
                Duration::from_secs(100),
                Duration::from_secs(10)
            )
            .is_err()
        );
        let err = Settings::new(
            "n".into(),
            "s".into(),
            "c".into(),
            vec![],
            vec![],
            Duration::from_secs(100),
            Duration::from_secs(110),
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert!(err.to_string().contains("--ca-validity"), "{err}");
        let s = settings(365 * 86400, 1825 * 86400, 60 * 86400);
        assert_eq!(s.settle, Duration::from_secs(10));
        assert_eq!(s.resync, Duration::from_secs(60));
        let s = settings(20, 100, 8);
        assert_eq!(s.settle, Duration::from_secs(2));
        assert_eq!(s.resync, Duration::from_secs(1));
    }

    #[test]
    fn fresh_secret_is_created_valid_and_then_kept() {
        let s = settings(3600, 36000, 600);
        let now = unix_now();
        assert!(matches!(decide(now, None, &s, true), Step::Create(_)));
        let st = created(&s, now);
        assert_eq!(st.generation, 1);
        assert_eq!(st.bundle.len(), 1);
        tls::verify_leaf(
            st.bundle_pem().as_bytes(),
            st.leaf.cert_pem.as_bytes(),
            "tandem-webhook.tandem.svc",
            now,
        )
        .unwrap();
        let leaf = CertInfo::first_from_pem(st.leaf.cert_pem.as_bytes()).unwrap();
        assert!((leaf.not_after - (now + 3600)).abs() <= 1);
        assert_eq!(leaf.ips, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(decide(now + 10, Some(&st), &s, true), Step::Keep);
        // Round trip through a Secret.
        let secret = Secret {
            data: Some(st.data()),
            metadata: kube::api::ObjectMeta {
                annotations: Some(st.annotations()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(Stored::from_secret(&secret), Some(st));
    }

    #[test]
    fn leaf_renewal_keeps_the_ca_and_bundle() {
        let s = settings(3600, 36000, 600);
        let now = unix_now();
        let st = created(&s, now);
        let later = now + 3100;
        let step = decide(later, Some(&st), &s, true);
        assert!(matches!(step, Step::Reissue(_)), "{step:?}");
        let st2 = apply(&step, Some(&st), &s, later).unwrap().unwrap();
        assert_eq!(st2.ca, st.ca);
        assert_eq!(st2.bundle, st.bundle);
        assert_eq!(st2.generation, st.generation);
        assert_ne!(st2.leaf, st.leaf);
        assert_eq!(decide(later, Some(&st2), &s, true), Step::Keep);
    }

    #[test]
    fn ca_rotation_stages_before_it_signs() {
        let s = settings(3600, 3600 + 1200 + 100, 600);
        let now = unix_now();
        let st0 = created(&s, now);
        let st = apply(&Step::Reissue("due".into()), Some(&st0), &s, now + 3100)
            .unwrap()
            .unwrap();
        // Clipped to the CA's end.
        let leaf = CertInfo::first_from_pem(st.leaf.cert_pem.as_bytes()).unwrap();
        assert!((leaf.not_after - (now + 4900)).abs() <= 1);
        // CA has 4900 s; stage when fewer than 1200 s remain.
        let t = now + 3800;
        assert_eq!(decide(t, Some(&st), &s, true), Step::Stage);
        let staged = apply(&Step::Stage, Some(&st), &s, t).unwrap().unwrap();
        assert_eq!(staged.ca, st.ca, "old CA still signs");
        assert_eq!(staged.leaf, st.leaf, "old certificate still served");
        assert_eq!(staged.bundle.len(), 2, "both CAs trusted");
        assert_eq!(staged.generation, st.generation + 1);
        // Not before the configuration has it, nor before `settle`.
        assert!(matches!(
            decide(t + 60, Some(&staged), &s, false),
            Step::Wait(_)
        ));
        assert!(matches!(
            decide(t + 1, Some(&staged), &s, true),
            Step::Wait(_)
        ));
        assert_eq!(decide(t + 60, Some(&staged), &s, true), Step::Promote);
        let promoted = apply(&Step::Promote, Some(&staged), &s, t + 60)
            .unwrap()
            .unwrap();
        assert_eq!(Some(promoted.ca.clone()), staged.next);
        assert!(promoted.next.is_none());
        // The old CA stays trusted (replicas still serving the old certificate).
        assert_eq!(promoted.bundle.len(), 2);
        for leaf in [&st.leaf, &promoted.leaf] {
            tls::verify_leaf(
                promoted.bundle_pem().as_bytes(),
                leaf.cert_pem.as_bytes(),
                "tandem-webhook",
                t + 60,
            )
            .unwrap();
        }
        // Once the old CA has expired it leaves the bundle.
        let after = now + 4900 + 10;
        assert_eq!(
            decide(after, Some(&promoted), &s, true),
            Step::FixBundle,
            "expired CA pruned"
        );
        let pruned = apply(&Step::FixBundle, Some(&promoted), &s, after)
            .unwrap()
            .unwrap();
        assert_eq!(pruned.bundle.len(), 1);
        assert_eq!(pruned.generation, promoted.generation + 1);
    }

    #[test]
    fn names_changed_or_garbage_reissue_or_recreate() {
        let s = settings(3600, 36000, 600);
        let now = unix_now();
        let st = created(&s, now);
        let mut s2 = s.clone();
        s2.dns.push("extra.example".into());
        assert!(matches!(
            decide(now, Some(&st), &s2, true),
            Step::Reissue(_)
        ));
        let mut bad = st.clone();
        bad.ca.cert_pem = "garbage".into();
        assert!(matches!(decide(now, Some(&bad), &s, true), Step::Create(_)));
        // A certificate from another CA does not verify: reissued.
        let other = created(&s, now);
        let mut mixed = st.clone();
        mixed.leaf = other.leaf;
        assert!(matches!(
            decide(now, Some(&mixed), &s, true),
            Step::Reissue(_)
        ));
        assert!(Stored::from_secret(&Secret::default()).is_none());
    }

    #[test]
    fn configuration_patch_only_moves_forward() {
        let s = settings(3600, 36000, 600);
        let st = created(&s, unix_now());
        let bundle = st.bundle_pem();
        // Empty caBundles: patched, guarded by resourceVersion.
        let p = configuration_patch(&mwc(&["", ""], None), &bundle, 1).unwrap();
        assert_eq!(p[0]["op"], "test");
        assert_eq!(p[0]["value"], "42");
        assert_eq!(p.as_array().unwrap().len(), 4);
        // Up to date: nothing. Newer generation recorded: nothing.
        assert!(configuration_patch(&mwc(&[&bundle], Some(1)), &bundle, 1).is_none());
        assert!(configuration_patch(&mwc(&["x"], Some(5)), &bundle, 1).is_none());
        assert!(configuration_trusts(
            &mwc(&[&bundle, &bundle], Some(1)),
            &st.ca.cert_pem
        ));
        assert!(!configuration_trusts(
            &mwc(&[&bundle, ""], Some(1)),
            &st.ca.cert_pem
        ));
        assert!(!configuration_trusts(&mwc(&[], None), &st.ca.cert_pem));
    }

    #[test]
    fn status_gates_readiness() {
        let st = TlsStatus::gated("pem");
        assert!(st.not_ready().is_some());
        st.set_trusted(true);
        assert!(st.not_ready().is_none());
        assert!(TlsStatus::ungated("pem").not_ready().is_none());
        assert_eq!(st.cert_pem(), "pem");
    }
}
