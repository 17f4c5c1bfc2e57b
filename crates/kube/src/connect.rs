//! Finding the cluster the way kubectl does: `--kubeconfig`, else `KUBECONFIG` or
//! `~/.kube/config` (with `--context`), else the in-cluster service account.

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::error::{KubeError, error_chain};

/// The flags that choose a cluster, shared by every command that talks to one.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClusterArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then
    /// the in-cluster service account).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Give up on any single API request after this long, in kubectl's form (`30s`,
    /// `1m`; a bare number is seconds; `0` means no timeout).
    #[arg(long, value_name = "DURATION", default_value = "30s",
          value_parser = tandem_core::config::duration_text::parse_flag)]
    pub request_timeout: Duration,
}

/// Builds a client from the flags, as kubectl would pick the cluster.
pub async fn connect(args: &ClusterArgs) -> Result<Client, KubeError> {
    install_crypto_provider();
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let mut config = match (&args.kubeconfig, &args.context) {
        (Some(path), _) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| {
                KubeError::NoCluster(format!(
                    "kubeconfig {}: {}",
                    path.display(),
                    error_chain(&e)
                ))
            })?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| {
                    KubeError::NoCluster(format!(
                        "kubeconfig {}: {}",
                        path.display(),
                        error_chain(&e)
                    ))
                })?
        }
        (None, Some(ctx)) => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| KubeError::NoCluster(format!("context {ctx:?}: {}", error_chain(&e))))?,
        (None, None) => Config::infer().await.map_err(|e| {
            KubeError::NoCluster(format!(
                "no usable kubeconfig ($KUBECONFIG, ~/.kube/config) and not running in a pod: {}",
                error_chain(&e)
            ))
        })?,
    };
    if !args.request_timeout.is_zero() {
        config.read_timeout = Some(args.request_timeout);
        config.connect_timeout = Some(args.request_timeout.min(Duration::from_secs(10)));
    }
    without_retries(&mut config);
    Client::try_from(config).map_err(|e| KubeError::NoCluster(error_chain(&e)))
}

/// Turns off kube's default retrying of 429, 503 and 504 answers (up to 15 times with a
/// backoff that grows to minutes): a command reports the API server's answer at once,
/// as kubectl does. Seen in the in-cluster journey: with every webhook pod gone, each
/// `services/proxy` request of `tandem doctor` got 503 "no endpoints available" and the
/// doctor took 4.4 minutes to say so.
pub fn without_retries(config: &mut Config) {
    config.default_retry = false;
}

/// Installs rustls' ring provider as the process default (a no-op when one is set).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn missing_kubeconfig_is_no_cluster() {
        let args = ClusterArgs {
            kubeconfig: Some("/nonexistent/kubeconfig".into()),
            ..Default::default()
        };
        let Err(err) = connect(&args).await else {
            panic!("expected an error")
        };
        assert!(matches!(err, KubeError::NoCluster(_)), "{err}");
        assert!(err.is_fatal());
        assert!(err.to_string().contains("/nonexistent/kubeconfig"), "{err}");
    }

    #[tokio::test]
    async fn unknown_context_is_named() {
        let dir = std::env::temp_dir().join(format!("tandem-kube-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n\
             users:\n- name: u\n  user: {}\ncontexts:\n- name: a\n  context: {cluster: c, user: u}\n\
             current-context: a\n",
        )
        .unwrap();
        let ok = ClusterArgs {
            kubeconfig: Some(path.clone()),
            ..Default::default()
        };
        assert!(connect(&ok).await.is_ok());
        let bad = ClusterArgs {
            kubeconfig: Some(path),
            context: Some("nope".into()),
            ..Default::default()
        };
        let Err(err) = connect(&bad).await else {
            panic!("expected an error")
        };
        assert!(err.to_string().contains("nope"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A server that answers every request with 503, counting them.
    fn unavailable_server() -> (String, Arc<AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                seen.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
                      content-length: 2\r\nconnection: close\r\n\r\n{}",
                );
            }
        });
        (url, count)
    }

    #[tokio::test]
    async fn a_503_is_reported_at_once_not_retried() {
        let (url, count) = unavailable_server();
        let dir = std::env::temp_dir().join(format!("tandem-kc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let kc = dir.join("kubeconfig");
        std::fs::write(
            &kc,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{url}\"}}}}]\n\
                 users: [{{name: u, user: {{}}}}]\n\
                 contexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n"
            ),
        )
        .expect("write kubeconfig");
        let args = ClusterArgs {
            kubeconfig: Some(kc),
            request_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let client = connect(&args).await.expect("client");
        let started = std::time::Instant::now();
        let req = http::Request::get("/version")
            .body(Vec::new())
            .expect("request");
        assert!(client.request_text(req).await.is_err(), "503 is an error");
        assert_eq!(count.load(Ordering::SeqCst), 1, "one request, no retries");
        assert!(started.elapsed() < Duration::from_secs(2));
        let _ = std::fs::remove_dir_all(dir);
    }
}
