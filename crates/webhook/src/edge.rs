//! The serving edge: accepts TCP connections, runs TLS and HTTP/1.1 or HTTP/2 on each, and
//! enforces the connection-level limits: a cap on open connections (the oldest idle one
//! is closed to make room), a header-read timeout (TLS handshake and each request's head),
//! an idle keep-alive timeout, and a drain that loses no request at shutdown.
//!
//! Shutdown goes through [`Phase`]s:
//! - `Draining` (SIGTERM): `/readyz` fails; everything is still served, but every
//!   HTTP/1.1 response carries `Connection: close` and HTTP/2 connections get a GOAWAY
//!   after their next request, so clients move to new connections (which the endpoints
//!   update sends to other replicas);
//! - `Stopping` (after `--shutdown-delay`): the listener closes; idle connections that
//!   already had a request are closed, requests in flight finish, and connections
//!   accepted but not yet used get their first request served (with `Connection: close`)
//!   within the header-read timeout;
//! - `Abort` (after `--shutdown-grace`): whatever is left is dropped.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderValue, Request, header};
use axum_server::tls_rustls::RustlsConfig;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tower::ServiceExt as _;

/// Where the server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Normal service.
    Serving,
    /// Shutdown announced: still serving, clients told to close their connections.
    Draining,
    /// No new connections; finishing what was accepted.
    Stopping,
    /// The grace is over: drop everything.
    Abort,
}

/// The connection-level limits.
#[derive(Debug, Clone, Copy)]
pub struct EdgeLimits {
    /// Time from accepting a connection to the end of its first request's head (TLS
    /// handshake included), and from a request's first byte to the end of its head.
    pub header_read_timeout: Duration,
    /// An open connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once; at the cap the oldest idle one is closed to make room,
    /// and a new connection is refused when none is idle.
    pub max_connections: usize,
    /// The per-request time limit (bounds how long a connection asked to close may take).
    pub request_timeout: Duration,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_connections: 256,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Counters of what the edge did (for tests and logs).
#[derive(Debug, Default)]
pub struct EdgeStats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections refused at the cap (none idle to close).
    pub refused: AtomicU64,
    /// Idle connections closed to make room for a new one.
    pub evicted: AtomicU64,
    /// Connections closed by the header-read timeout (TLS handshake or request head).
    pub header_timeouts: AtomicU64,
    /// Connections closed by the idle timeout.
    pub idle_timeouts: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
}

/// Per-connection activity, shared by the connection's task, its I/O and its requests.
/// Times are milliseconds since the edge started, plus one (0 means "not set").
#[derive(Debug, Default)]
struct Activity {
    h2: AtomicBool,
    /// When the connection last became idle (accepted, or its last response done).
    idle_since: AtomicU64,
    /// HTTP/1: first byte of a request head seen while idle (0: none).
    head_since: AtomicU64,
    in_flight: AtomicU32,
    requests: AtomicU64,
    /// Set to ask the connection to close (eviction).
    evict: AtomicBool,
    wake: Notify,
}

struct Shared {
    epoch: Instant,
    limits: EdgeLimits,
    phase: watch::Receiver<Phase>,
    conns: Mutex<HashMap<u64, Arc<Activity>>>,
    stats: Arc<EdgeStats>,
}

impl Shared {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn at(&self, millis: u64) -> Instant {
        self.epoch + Duration::from_millis(millis.saturating_sub(1))
    }

    /// Asks the connection idle the longest to close; false when none is idle.
    fn evict_one(&self) -> bool {
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let victim = conns
            .values()
            .filter(|a| {
                a.in_flight.load(Ordering::Relaxed) == 0 && !a.evict.load(Ordering::Relaxed)
            })
            .min_by_key(|a| {
                let head = a.head_since.load(Ordering::Relaxed);
                if head != 0 {
                    head
                } else {
                    a.idle_since.load(Ordering::Relaxed)
                }
            });
        match victim {
            Some(a) => {
                a.evict.store(true, Ordering::Relaxed);
                a.wake.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A running edge: the accept loop and its connections.
pub struct Edge {
    phase: watch::Sender<Phase>,
    done: tokio::task::JoinHandle<()>,
    stats: Arc<EdgeStats>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge").finish_non_exhaustive()
    }
}

impl Edge {
    /// Starts accepting on `listener` (already bound), serving `app` over TLS.
    pub fn start(
        listener: TcpListener,
        tls: RustlsConfig,
        app: Router,
        limits: EdgeLimits,
    ) -> Self {
        let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
        let stats = Arc::new(EdgeStats::default());
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            limits,
            phase: phase_rx,
            conns: Mutex::new(HashMap::new()),
            stats: stats.clone(),
        });
        let done = tokio::spawn(accept_loop(listener, tls, app, shared));
        Self {
            phase: phase_tx,
            done,
            stats,
        }
    }

    /// What the edge has done so far.
    pub fn stats(&self) -> Arc<EdgeStats> {
        self.stats.clone()
    }

    /// Enters `Draining`: responses ask clients to close their connections.
    pub fn drain(&self) {
        self.phase.send_if_modified(|p| {
            let change = *p < Phase::Draining;
            if change {
                *p = Phase::Draining;
            }
            change
        });
    }

    /// Stops accepting, finishes what was accepted, and returns when every connection is
    /// closed or `grace` has passed (then the rest are dropped).
    pub async fn shutdown(self, grace: Duration) {
        self.phase.send_replace(Phase::Stopping);
        let mut done = self.done;
        if tokio::time::timeout(grace, &mut done).await.is_err() {
            self.phase.send_replace(Phase::Abort);
            let _ = tokio::time::timeout(Duration::from_secs(1), done).await;
        }
    }
}

async fn accept_loop(listener: TcpListener, tls: RustlsConfig, app: Router, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(shared.limits.max_connections.max(1)));
    // Every connection task holds a sender; `recv` returns None once all are gone.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let mut phase = shared.phase.clone();
    let mut next_id = 0u64;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = phase.wait_for(|p| *p >= Phase::Stopping) => break,
            r = listener.accept() => r,
        };
        let (tcp, _peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: don't spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // At the cap: close the connection idle the longest and wait briefly for
                // its slot; refuse this one when nothing is idle.
                if shared.evict_one() {
                    shared.stats.evicted.fetch_add(1, Ordering::Relaxed);
                    match tokio::time::timeout(
                        Duration::from_millis(500),
                        slots.clone().acquire_owned(),
                    )
                    .await
                    {
                        Ok(Ok(p)) => p,
                        _ => {
                            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    }
                } else {
                    shared.stats.refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        };
        let _ = tcp.set_nodelay(true);
        shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
        next_id += 1;
        let activity = Arc::new(Activity::default());
        activity.idle_since.store(shared.now(), Ordering::Relaxed);
        shared
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(next_id, activity.clone());
        let shared2 = shared.clone();
        let tls = tls.clone();
        let app = app.clone();
        let alive = alive_tx.clone();
        let id = next_id;
        tokio::spawn(async move {
            shared2.stats.open.fetch_add(1, Ordering::Relaxed);
            serve_connection(tcp, tls, app, shared2.clone(), activity).await;
            shared2.stats.open.fetch_sub(1, Ordering::Relaxed);
            shared2
                .conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            drop(permit);
            drop(alive);
        });
    }
    drop(listener);
    drop(alive_tx);
    // Wait for the connections (they end themselves; `Abort` drops them).
    let _ = alive_rx.recv().await;
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    tls: RustlsConfig,
    app: Router,
    shared: Arc<Shared>,
    activity: Arc<Activity>,
) {
    let limits = shared.limits;
    let mut phase = shared.phase.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.get_inner());
    let handshake = tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tcp));
    let stream = tokio::select! {
        _ = activity.wake.notified() => return, // evicted while handshaking
        r = handshake => match r {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => return,
            Err(_) => {
                shared.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                return;
            }
        },
        _ = phase.wait_for(|p| *p >= Phase::Abort) => return,
    };
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    activity.h2.store(h2, Ordering::Relaxed);
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
        shared: shared.clone(),
    });

    let svc_activity = activity.clone();
    let svc_shared = shared.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let activity = svc_activity.clone();
        let shared = svc_shared.clone();
        let app = app.clone();
        activity.head_since.store(0, Ordering::Relaxed);
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.requests.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight { activity, shared };
        async move {
            let mut resp = match app.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            if !guard.activity.h2.load(Ordering::Relaxed)
                && *guard.shared.phase.borrow() >= Phase::Draining
            {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            drop(guard);
            Ok::<_, Infallible>(resp)
        }
    });

    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true);
    // Small receive windows: a client can't park more than this per connection in our
    // buffers while its request waits for room (the default would be 1 MiB per stream).
    builder
        .http2()
        .max_concurrent_streams(64)
        .initial_stream_window_size(256 << 10)
        .initial_connection_window_size(256 << 10);
    let builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);

    // The deadline after which the connection is closed for a timeout, if it is idle.
    let mut closing = false; // graceful shutdown asked of hyper
    let mut close_deadline: Option<Instant> = None; // hard stop after a graceful close
    loop {
        let wake_at = match close_deadline {
            Some(d) => d,
            None => next_deadline(&shared, &activity, limits, shared.now()).0,
        };
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = tokio::time::sleep_until(wake_at.into()) => {
                if close_deadline.is_some() {
                    // A graceful close that didn't finish in time.
                    return;
                }
                let now_ms = shared.now();
                let (deadline, reason) = next_deadline(&shared, &activity, limits, now_ms);
                if Instant::now() >= deadline {
                    match reason {
                        Deadline::Head => {
                            shared.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        Deadline::Idle => {
                            shared.stats.idle_timeouts.fetch_add(1, Ordering::Relaxed);
                            if !closing {
                                closing = true;
                                conn.as_mut().graceful_shutdown();
                                close_deadline = Some(Instant::now() + limits.header_read_timeout + limits.request_timeout);
                            }
                        }
                        Deadline::None => {}
                    }
                }
            }
            _ = activity.wake.notified() => {}
            r = phase.changed() => {
                if r.is_err() {
                    return;
                }
            }
        }
        // Eviction, drain and stop decisions.
        let p = *phase.borrow();
        if p >= Phase::Abort {
            return;
        }
        if closing {
            continue;
        }
        let idle = activity.in_flight.load(Ordering::Relaxed) == 0
            && activity.head_since.load(Ordering::Relaxed) == 0;
        let used = activity.requests.load(Ordering::Relaxed) > 0;
        let close = activity.evict.load(Ordering::Relaxed)
            // HTTP/2: GOAWAY once the connection has served a request since draining began
            // (a fresh one gets its first request served); in-flight streams finish.
            || (h2 && p >= Phase::Draining && used)
            // HTTP/1.1 while stopping: idle connections that had requests close now (they
            // were told `Connection: close` on any response since draining); a connection
            // not used yet gets its first request served, bounded by the header timeout.
            || (!h2 && p >= Phase::Stopping && used && idle);
        if close {
            closing = true;
            conn.as_mut().graceful_shutdown();
            close_deadline =
                Some(Instant::now() + limits.header_read_timeout + limits.request_timeout);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    None,
    Head,
    Idle,
}

/// When this connection should next be looked at, and for what.
fn next_deadline(
    shared: &Shared,
    activity: &Activity,
    limits: EdgeLimits,
    now_ms: u64,
) -> (Instant, Deadline) {
    let far = shared.at(now_ms) + Duration::from_secs(3600);
    if activity.in_flight.load(Ordering::Relaxed) > 0 {
        // A request in flight is bounded by the request timeout; look again later.
        return (
            shared.at(now_ms) + limits.header_read_timeout.max(Duration::from_secs(1)),
            Deadline::None,
        );
    }
    let head = activity.head_since.load(Ordering::Relaxed);
    if head != 0 {
        return (shared.at(head) + limits.header_read_timeout, Deadline::Head);
    }
    let idle = activity.idle_since.load(Ordering::Relaxed);
    if activity.requests.load(Ordering::Relaxed) == 0 {
        // A new connection must send its first request head in time.
        return (shared.at(idle) + limits.header_read_timeout, Deadline::Head);
    }
    let d = shared.at(idle) + limits.idle_timeout;
    // A head that starts while we sleep moves the deadline earlier: look again within
    // the header timeout.
    let check = (shared.at(now_ms) + limits.header_read_timeout).min(far);
    if activity.h2.load(Ordering::Relaxed) || d <= check {
        (d, Deadline::Idle)
    } else {
        (check, Deadline::None)
    }
}

/// Marks a request done when its handling ends (answered or cancelled).
struct InFlight {
    activity: Arc<Activity>,
    shared: Arc<Shared>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity
            .idle_since
            .store(self.shared.now(), Ordering::Relaxed);
        self.activity.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.activity.wake.notify_one();
    }
}

/// The connection's byte stream, noting when a request head starts (HTTP/1).
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    shared: Arc<Shared>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && !self.activity.h2.load(Ordering::Relaxed)
            && self.activity.in_flight.load(Ordering::Relaxed) == 0
            && self.activity.head_since.load(Ordering::Relaxed) == 0
        {
            let now = self.shared.now();
            self.activity.head_since.store(now, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
