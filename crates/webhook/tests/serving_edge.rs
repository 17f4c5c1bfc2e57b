//! The serving edge over real HTTPS on loopback, in process: the header-read and idle
//! timeouts, the connection cap, the work bounds (413 and 429 quickly), and a drain that
//! answers every request sent on HTTP/1.1 keep-alive and HTTP/2 connections.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use serde_json::json;
use support::{Tls, connect, exchange, realistic_pod, request, review, tls};
use tandem_core::{Config, Mode};
use tandem_webhook::{ServeOptions, Webhook};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn options() -> ServeOptions {
    ServeOptions::standalone(Config::builtin(), Some(Mode::Native))
}

/// Reads until the peer closes (Ok(true)) or `limit` passes (Ok(false)).
async fn closed_within(s: &mut Tls, limit: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let end = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(end.into(), s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn half_sent_headers_and_silent_connections_are_closed() {
    init();
    let mut opts = options();
    opts.edge.header_read_timeout = Duration::from_millis(600);
    let hook = Webhook::start(opts).await.unwrap();
    let ca = hook.ca_pem().unwrap().to_string();
    // A request head that never ends.
    let mut half = tls(hook.addr(), &ca).await.unwrap();
    half.write_all(b"POST /mutate HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    half.flush().await.unwrap();
    // A connection that never sends a request, and a TCP connection that never starts TLS.
    let mut silent = tls(hook.addr(), &ca).await.unwrap();
    let mut raw = tokio::net::TcpStream::connect(hook.addr()).await.unwrap();
    let t = Instant::now();
    assert!(closed_within(&mut half, Duration::from_secs(5)).await);
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
    let mut b = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut b))
        .await
        .expect("the TLS handshake timed out")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    // A request between the two halves of a slow-but-in-time head is served.
    let mut ok = tls(hook.addr(), &ca).await.unwrap();
    let (status, _) = exchange(&mut ok, &review(realistic_pod(), false))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(hook.edge_stats().header_timeouts.load(Ordering::Relaxed) >= 3);
    hook.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn idle_keep_alive_is_closed_after_the_idle_timeout() {
    init();
    let mut opts = options();
    opts.edge.idle_timeout = Duration::from_millis(800);
    opts.edge.header_read_timeout = Duration::from_secs(5);
    let hook = Webhook::start(opts).await.unwrap();
    let ca = hook.ca_pem().unwrap().to_string();
    let body = review(realistic_pod(), false);
    // Busy connections stay open past the idle timeout.
    let mut busy = tls(hook.addr(), &ca).await.unwrap();
    for _ in 0..6 {
        assert_eq!(exchange(&mut busy, &body).await.unwrap().0, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // An idle one is closed.
    let t = Instant::now();
    assert!(closed_within(&mut busy, Duration::from_secs(5)).await);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(hook.edge_stats().idle_timeouts.load(Ordering::Relaxed), 1);
    hook.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn at_the_connection_cap_the_oldest_idle_connection_makes_room() {
    init();
    let mut opts = options();
    opts.edge.max_connections = 3;
    let hook = Webhook::start(opts).await.unwrap();
    let ca = hook.ca_pem().unwrap().to_string();
    let body = review(realistic_pod(), false);
    let mut conns = Vec::new();
    for _ in 0..3 {
        let mut c = tls(hook.addr(), &ca).await.unwrap();
        assert_eq!(exchange(&mut c, &body).await.unwrap().0, 200);
        conns.push(c);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A fourth (a probe) gets in; the oldest idle connection was closed for it.
    let mut probe = connect(hook.addr(), &ca).await.unwrap();
    assert_eq!(
        request(&mut probe, "GET", "/healthz", vec![])
            .await
            .unwrap()
            .0,
        200
    );
    assert!(closed_within(&mut conns[0], Duration::from_secs(2)).await);
    assert_eq!(exchange(&mut conns[2], &body).await.unwrap().0, 200);
    assert_eq!(hook.edge_stats().evicted.load(Ordering::Relaxed), 1);
    hook.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn bodies_beyond_the_bounds_are_refused_quickly() {
    init();
    let mut opts = options();
    opts.work.max_work_bytes = 8 << 20;
    opts.work.max_inflight_bytes = 8 << 20;
    opts.work.queue_timeout = Duration::from_millis(300);
    let hook = Webhook::start(opts).await.unwrap();
    let ca = hook.ca_pem().unwrap().to_string();
    // Dense objects: far more memory decoded than bytes sent; refused before decoding.
    let mut pod = realistic_pod();
    pod["spec"]["x-dense"] =
        serde_json::Value::Array((0..60_000).map(|_| json!({"a": 1})).collect());
    let mut c = connect(hook.addr(), &ca).await.unwrap();
    let t = Instant::now();
    let (status, text) = request(&mut c, "POST", "/mutate", review(pod, false))
        .await
        .unwrap();
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&text));
    assert!(String::from_utf8_lossy(&text).contains("--max-work-bytes"));
    assert!(t.elapsed() < Duration::from_secs(2));
    // A body announced over the limit is refused before it is read.
    let mut s = tls(hook.addr(), &ca).await.unwrap();
    s.write_all(b"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-length: 5000000\r\n\r\n{")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"));
    // Room held by a slow body: the next large one waits briefly, then gets 429.
    let mut slow = tls(hook.addr(), &ca).await.unwrap();
    slow.write_all(b"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-length: 4000000\r\n\r\n{")
        .await
        .unwrap();
    slow.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut big = realistic_pod();
    big["metadata"]["annotations"]["big"] = json!("x".repeat(1 << 20));
    let t = Instant::now();
    let (status, _) = request(&mut c, "POST", "/mutate", review(big.clone(), false))
        .await
        .unwrap();
    assert_eq!(status, 429);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // Small reviews still fit beside it (on a new connection: the refused body was not
    // read, so that connection closes).
    let mut c = connect(hook.addr(), &ca).await.unwrap();
    let (status, _) = request(&mut c, "POST", "/mutate", review(realistic_pod(), false))
        .await
        .unwrap();
    assert_eq!(status, 200);
    drop(slow);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _) = request(&mut c, "POST", "/mutate", review(big, false))
        .await
        .unwrap();
    assert_eq!(status, 200);
    hook.shutdown(Duration::from_secs(1)).await.unwrap();
}

/// Keep-alive clients sending back to back through a drain: every request written gets
/// a whole answer (a refused connection is fine: nothing was sent on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_answers_every_request_on_http1_keep_alive() {
    init();
    let hook = Webhook::start(options()).await.unwrap();
    let addr = hook.addr();
    let ca = hook.ca_pem().unwrap().to_string();
    let body = Arc::new(review(realistic_pod(), false));
    let answered = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (ca, body, answered, stop) = (ca.clone(), body.clone(), answered.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut lost = Vec::new();
            let Ok(mut s) = tls(addr, &ca).await else {
                return lost;
            };
            while !stop.load(Ordering::Relaxed) {
                match exchange(&mut s, &body).await {
                    Ok((200, close)) => {
                        answered.fetch_add(1, Ordering::Relaxed);
                        if close {
                            match tls(addr, &ca).await {
                                Ok(n) => s = n,
                                Err(_) => break, // refused: nothing sent
                            }
                        }
                    }
                    Ok((status, _)) => lost.push(format!("status {status}")),
                    Err(e) => {
                        lost.push(e);
                        break;
                    }
                }
            }
            lost
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = answered.load(Ordering::Relaxed);
    assert!(before > 0);
    hook.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    hook.shutdown(Duration::from_secs(5)).await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut lost = Vec::new();
    for c in clients {
        lost.extend(c.await.unwrap());
    }
    assert!(lost.is_empty(), "requests lost at drain: {lost:?}");
    assert!(
        answered.load(Ordering::Relaxed) > before,
        "served while draining"
    );
}

async fn h2_client(
    addr: SocketAddr,
    ca: &str,
) -> std::io::Result<
    hyper::client::conn::http2::SendRequest<http_body_util::Full<hyper::body::Bytes>>,
> {
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject as _;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c.expect("CA")).expect("CA");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let s = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            ServerName::try_from("localhost").expect("name").to_owned(),
            tcp,
        )
        .await?;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(s),
    )
    .await
    .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok(send)
}

/// HTTP/2 clients through a drain: a GOAWAY moves them to new connections; every stream
/// sent is answered or refused before processing (safe to retry), none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_answers_every_request_on_http2() {
    use http_body_util::{BodyExt as _, Full};
    init();
    let hook = Webhook::start(options()).await.unwrap();
    let addr = hook.addr();
    let ca = hook.ca_pem().unwrap().to_string();
    let body = hyper::body::Bytes::from(review(realistic_pod(), false));
    let answered = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (ca, body, answered, stop) = (ca.clone(), body.clone(), answered.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut lost = Vec::new();
            let Ok(mut send) = h2_client(addr, &ca).await else {
                return lost;
            };
            'outer: while !stop.load(Ordering::Relaxed) {
                if send.ready().await.is_err() {
                    match h2_client(addr, &ca).await {
                        Ok(s) => {
                            send = s;
                            continue;
                        }
                        Err(_) => break,
                    }
                }
                // Four streams at once on the connection.
                let mut streams = Vec::new();
                for _ in 0..4 {
                    let req =
                        hyper::Request::post(format!("https://localhost:{}/mutate", addr.port()))
                            .header("content-type", "application/json")
                            .body(Full::new(body.clone()))
                            .expect("request");
                    streams.push(send.send_request(req));
                }
                for s in streams {
                    match s.await {
                        Ok(resp) => {
                            let status = resp.status();
                            match resp.into_body().collect().await {
                                Ok(_) if status == 200 => {
                                    answered.fetch_add(1, Ordering::Relaxed);
                                }
                                Ok(_) => lost.push(format!("status {status}")),
                                Err(e) => lost.push(format!("body: {e}")),
                            }
                        }
                        // Refused before processing (GOAWAY, REFUSED_STREAM): retryable.
                        Err(e) if is_retryable(&e) => {}
                        Err(e) => {
                            lost.push(format!("{e:?}"));
                            break 'outer;
                        }
                    }
                }
            }
            lost
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = answered.load(Ordering::Relaxed);
    assert!(before > 0);
    hook.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    hook.shutdown(Duration::from_secs(5)).await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut lost = Vec::new();
    for c in clients {
        lost.extend(c.await.unwrap());
    }
    assert!(lost.is_empty(), "requests lost at drain: {lost:?}");
    assert!(
        answered.load(Ordering::Relaxed) > before,
        "served while draining"
    );
}

fn is_retryable(e: &hyper::Error) -> bool {
    // hyper reports a stream the server refused (GOAWAY past its id, REFUSED_STREAM) or a
    // request it never sent because the connection was closing.
    let text = format!("{e:?}");
    e.is_canceled() || text.contains("REFUSED_STREAM") || text.contains("GoAway")
}
