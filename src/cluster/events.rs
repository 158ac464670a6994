//! Kubernetes Events for what everybody should see: every break-glass
//! granted, and every one refused, as an `events.k8s.io/v1` Event on the
//! object (`kubectl describe` and `kubectl events` show it).
//!
//! Events are sent off the request path, by one task, through a bounded
//! queue: a slow API server never delays an admission, and when the queue is
//! full the Event is dropped and counted (the audit trail, not the Event, is
//! the record). Creating Events needs `create` on `events` in the
//! `events.k8s.io` group, and nothing else.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::mpsc;

use crate::policy::BreakGlass;

/// The controller named in every Event.
pub const REPORTING_CONTROLLER: &str = "portcullis.dev/admission";
/// Events waiting to be sent; past it, new ones are dropped and counted.
const QUEUE: usize = 1024;
/// Longest wait for the API server to take one Event.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// The API server refuses notes longer than 1 kB.
const MAX_NOTE: usize = 1024;

/// One Event to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub regarding: ObjectReference,
    /// `BreakGlass` or `BreakGlassRefused`.
    pub reason: &'static str,
    /// `Admitted` or `Denied`.
    pub action: &'static str,
    pub note: String,
}

impl Notice {
    /// An Event on `regarding`; the note is cut to what the API server takes.
    pub fn new(regarding: ObjectReference, reason: &'static str, action: &'static str, note: String) -> Notice {
        Notice { regarding, reason, action, note: crate::policy::decide::truncate(&note, MAX_NOTE) }
    }

    /// The Event a break-glass outcome deserves, if any: one for every
    /// grant (who, justification, ticket, what it overrode), one for every
    /// refusal (who, and why).
    pub fn of_break_glass(
        regarding: ObjectReference,
        bg: &BreakGlass,
        requested_by: &str,
        allowed: bool,
        overrode: &[String],
    ) -> Option<Notice> {
        let action = if allowed { "Admitted" } else { "Denied" };
        let (reason, note) = match bg {
            BreakGlass::NotRequested => return None,
            BreakGlass::Granted { user, justification, ticket, expires, carried } => {
                let via = match carried {
                    Some(c) => format!(" (grant made on {}, presented by {})", c.granted_on, c.presented_by),
                    None => String::new(),
                };
                let over = if overrode.is_empty() {
                    "nothing failed the policy".to_string()
                } else {
                    format!("overrode: {}", overrode.join(" | "))
                };
                (
                    "BreakGlass",
                    format!(
                        "break-glass by {user}{via}, ticket {}, until {expires}: {justification:?}; {over}",
                        ticket.as_deref().unwrap_or("(none)")
                    ),
                )
            }
            BreakGlass::Refused { why } => {
                ("BreakGlassRefused", format!("break-glass asked by {requested_by} refused: {why}"))
            }
        };
        Some(Notice { regarding, reason, action, note: crate::policy::decide::truncate(&note, MAX_NOTE) })
    }

    fn event(&self, instance: &str, now: chrono::DateTime<chrono::Utc>) -> Event {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = self.regarding.name.as_deref().unwrap_or("object");
        // As client-go names them: the object's name, then the time in hex
        // (and a sequence number, so two in the same instant differ); within
        // the 253 characters of a name.
        let prefix: String = name.chars().take(200).collect();
        let nanos = now.timestamp_nanos_opt().unwrap_or_default();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed) % 4096;
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{prefix}.{nanos:x}{seq:03x}")),
                namespace: self.regarding.namespace.clone(),
                ..Default::default()
            },
            event_time: Some(MicroTime(
                jiff::Timestamp::from_microsecond(now.timestamp_micros()).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            )),
            action: Some(self.action.to_string()),
            reason: Some(self.reason.to_string()),
            note: Some(self.note.clone()),
            type_: Some("Warning".to_string()),
            regarding: Some(self.regarding.clone()),
            reporting_controller: Some(REPORTING_CONTROLLER.to_string()),
            reporting_instance: Some(instance.to_string()),
            ..Default::default()
        }
    }
}

/// Sends Events in the background.
#[derive(Clone)]
pub struct Events {
    tx: mpsc::Sender<Notice>,
    dropped: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl Events {
    /// Starts the sender on `client`; `instance` names this replica
    /// (`reportingInstance`, the Pod's name).
    pub fn start(client: Client, instance: String) -> Events {
        let (tx, mut rx) = mpsc::channel::<Notice>(QUEUE);
        let failed = Arc::new(AtomicU64::new(0));
        let f = failed.clone();
        tokio::spawn(async move {
            while let Some(n) = rx.recv().await {
                let Some(ns) = n.regarding.namespace.clone() else { continue };
                let api: Api<Event> = Api::namespaced(client.clone(), &ns);
                let ev = n.event(&instance, chrono::Utc::now());
                match tokio::time::timeout(SEND_TIMEOUT, api.create(&PostParams::default(), &ev)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        f.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, reason = n.reason, ns = %ns, "could not create the Event");
                    }
                    Err(_) => {
                        f.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(reason = n.reason, ns = %ns, "the API server did not take the Event in time");
                    }
                }
            }
        });
        Events { tx, dropped: Arc::new(AtomicU64::new(0)), failed }
    }

    /// Queues `n`; never waits. A full queue drops it (counted).
    pub fn publish(&self, n: Notice) {
        if self.tx.try_send(n).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("Event queue full: an Event was dropped (the audit trail has the decision)");
        }
    }

    /// Events not sent: dropped on a full queue, or refused by the API server.
    pub fn lost(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Carried;

    fn pod() -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some("shop-5d9c-x2".into()),
            namespace: Some("prod".into()),
            uid: Some("0b9c".into()),
            ..Default::default()
        }
    }

    #[test]
    fn break_glass_outcomes_become_events() {
        let granted = BreakGlass::Granted {
            user: "alice".into(),
            justification: "checkout outage".into(),
            ticket: Some("INC-7".into()),
            expires: "2026-06-02T12:00:00Z".into(),
            carried: Some(Carried {
                granted_on: "Deployment/shop".into(),
                issued_at: "2026-06-01T12:00:00Z".into(),
                presented_by: "system:serviceaccount:kube-system:replicaset-controller".into(),
            }),
        };
        let n = Notice::of_break_glass(
            pod(),
            &granted,
            "rs",
            true,
            &["r/app@sha256:1 denied for tier prod: 1 critical".into()],
        )
        .unwrap();
        assert_eq!((n.reason, n.action), ("BreakGlass", "Admitted"));
        assert_eq!(
            n.note,
            "break-glass by alice (grant made on Deployment/shop, presented by system:serviceaccount:kube-system:replicaset-controller), \
             ticket INC-7, until 2026-06-02T12:00:00Z: \"checkout outage\"; overrode: r/app@sha256:1 denied for tier prod: 1 critical"
        );
        let refused = BreakGlass::Refused { why: "user eve is not in a group allowed to break glass".into() };
        let n = Notice::of_break_glass(pod(), &refused, "eve", false, &[]).unwrap();
        assert_eq!((n.reason, n.action), ("BreakGlassRefused", "Denied"));
        assert_eq!(n.note, "break-glass asked by eve refused: user eve is not in a group allowed to break glass");
        assert!(Notice::of_break_glass(pod(), &BreakGlass::NotRequested, "dev", true, &[]).is_none());

        let long = BreakGlass::Refused { why: "x".repeat(5000) };
        let n = Notice::of_break_glass(pod(), &long, "eve", false, &[]).unwrap();
        assert!(n.note.len() <= MAX_NOTE);
        let ev = n.event("portcullis-0", chrono::Utc::now());
        let name = ev.metadata.name.unwrap();
        assert!(name.starts_with("shop-5d9c-x2.") && name.len() == "shop-5d9c-x2.".len() + 19, "{name}");
        assert_eq!(ev.metadata.namespace.as_deref(), Some("prod"));
        assert_eq!(ev.regarding.unwrap().uid.as_deref(), Some("0b9c"));
        assert_eq!(ev.reporting_controller.as_deref(), Some(REPORTING_CONTROLLER));
    }
}
