//! Kubernetes Events on the pod's owner, sent off the admission path through a bounded
//! queue: when it is full, events are dropped and counted
//! (`tandem_webhook_events_total{result="dropped"}`), never waited for.
//!
//! Every Event is worded as what tandem decided at admission, because nothing is stored
//! yet when the webhook answers (a later webhook or validation may still reject the pod):
//! `PatchedAtAdmission` (Normal: sidecars added to a pod being created), `Skipped`,
//! `InjectionFailed` (Warning: denied), and for a pod that came back to tandem without
//! what it injected (another webhook stripped it): `SidecarRepaired`, `SidecarFellBack`
//! and `SidecarStripped` (Warning: repaired, moved to legacy, denied). Each of those is
//! also counted in `tandem_webhook_requests_total{outcome="repaired"|"fell_back"|"denied_stripped"}`.

use std::sync::Arc;

use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;

use crate::admission::EventRequest;
use crate::metrics::Metrics;

/// Where the request path drops events; cheap to clone.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: Option<mpsc::Sender<EventRequest>>,
    metrics: Arc<Metrics>,
}

impl EventSink {
    /// A sink that records nothing (no cluster, or `--events=false`).
    pub fn disabled(metrics: Arc<Metrics>) -> Self {
        Self { tx: None, metrics }
    }

    /// Starts the sender task with a queue of `capacity` events. The task ends when every
    /// sink is dropped.
    pub fn spawn(
        client: Client,
        instance: Option<String>,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<EventRequest>(capacity.max(1));
        let recorder = Recorder::new(
            client,
            Reporter {
                controller: "tandem-webhook".into(),
                instance,
            },
        );
        let m = metrics.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let event = Event {
                    type_: if ev.warning {
                        EventType::Warning
                    } else {
                        EventType::Normal
                    },
                    reason: ev.reason.into(),
                    note: Some(ev.note),
                    action: "Admit".into(),
                    secondary: None,
                };
                match recorder.publish(&event, &ev.regarding).await {
                    Ok(()) => {
                        m.events.get_or_create(&[("result", "sent")]).inc();
                    }
                    Err(e) => {
                        m.events.get_or_create(&[("result", "failed")]).inc();
                        tracing::debug!(error = %e, "sending an event failed");
                    }
                }
            }
        });
        Self {
            tx: Some(tx),
            metrics,
        }
    }

    /// Queues an event without waiting; drops it (and counts it) when the queue is full.
    pub fn send(&self, ev: EventRequest) {
        let Some(tx) = &self.tx else { return };
        if tx.try_send(ev).is_err() {
            self.metrics
                .events
                .get_or_create(&[("result", "dropped")])
                .inc();
        }
    }
}
