//! A tiny emulated API server on loopback (plain HTTP): answers
//! `GET /api/v1/namespaces/NS/pods/NAME` with the pod's container statuses, so
//! tandem-shim's Job-completion poller can be tested. Checks the bearer token
//! and can answer 403 to emulate a service account without RBAC.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::kubelet::CState;

/// The pod as the API server shows it.
pub struct PodState {
    /// metadata.name
    pub name: String,
    /// metadata.namespace
    pub namespace: String,
    /// Answer 403.
    pub forbidden: bool,
    /// status.phase
    pub phase: String,
    /// (name, command, state) of each regular container.
    pub containers: Vec<(String, Vec<String>, CState)>,
}

/// Produces the current pod state.
pub type PodSource = Box<dyn Fn() -> PodState + Send>;

/// Serves until `stop` turns true.
pub fn serve(listener: TcpListener, pod: PodSource, stop: Arc<AtomicBool>) {
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((sock, _)) => {
                let _ = sock.set_nonblocking(false);
                let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
                handle(sock, &pod);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn handle(sock: std::net::TcpStream, pod: &PodSource) {
    let mut r = BufReader::new(match sock.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut first = String::new();
    if r.read_line(&mut first).is_err() {
        return;
    }
    let mut auth = None;
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).is_err() || l == "\r\n" || l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            auth = Some(v.trim().to_string());
        }
    }
    let p = pod();
    let path = first.split(' ').nth(1).unwrap_or("");
    let want = format!("/api/v1/namespaces/{}/pods/{}", p.namespace, p.name);
    let (code, body) = if auth.as_deref() != Some("Bearer emu-token") {
        (
            401,
            json!({"kind":"Status","code":401,"reason":"Unauthorized"}),
        )
    } else if p.forbidden {
        (
            403,
            json!({"kind":"Status","code":403,"reason":"Forbidden",
                "message": format!("pods \"{}\" is forbidden: User \"system:serviceaccount:{}:default\" cannot get resource \"pods\"", p.name, p.namespace)}),
        )
    } else if path != want {
        (404, json!({"kind":"Status","code":404,"reason":"NotFound"}))
    } else {
        let statuses: Vec<_> = p
            .containers
            .iter()
            .map(|(n, _, st)| {
                let state = match st {
                    CState::Waiting => json!({"waiting": {"reason": "ContainerCreating"}}),
                    CState::Running => json!({"running": {}}),
                    CState::Terminated(c) => json!({"terminated": {"exitCode": c}}),
                };
                json!({"name": n, "state": state})
            })
            .collect();
        let specs: Vec<_> = p
            .containers
            .iter()
            .map(|(n, cmd, _)| json!({"name": n, "command": cmd}))
            .collect();
        (
            200,
            json!({"apiVersion":"v1","kind":"Pod",
                "metadata":{"name":p.name,"namespace":p.namespace},
                "spec":{"containers":specs},
                "status":{"phase":p.phase,"containerStatuses":statuses}}),
        )
    };
    let body = body.to_string();
    // Chunked on purpose: the API server streams large objects this way.
    let mid = body.len() / 2;
    let resp = format!(
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        mid,
        &body[..mid],
        body.len() - mid,
        &body[mid..]
    );
    let mut w = sock;
    let _ = w.write_all(resp.as_bytes());
}
