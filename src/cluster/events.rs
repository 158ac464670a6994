//! Kubernetes Events for what everybody should see: every break-glass
//! granted, and every one refused, as an `events.k8s.io/v1` Event on the
//! object (`kubectl describe` and `kubectl events` show it).
//!
//! Events are sent off the request path, by one task, through a bounded
//! queue: a slow API server never delays an admission, and when the queue is
//! full the Event is dropped and counted (the audit trail, not the Event, is
//! the record). Creating Events needs `create` on `events` in the
//! `events.k8s.io` group, and nothing else.
//!
//! The copies a controller makes of a granted workload (a ReplicaSet's
//! Pods) make one Event series, not one Event per copy: the first copy's
//! Event is sent at once; the copies after it within the window
//! (`--event-series-window`, [`SERIES_WINDOW`] by default) are counted, and one Event with `series` (`count`, `lastObservedTime`) is
//! created for them all when the window closes. Client-go keeps a series by
//! patching one Event; creating the summary instead needs no verb beyond
//! `create`.

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
/// How long the copies of one grant gather into one Event series, unless
/// `--event-series-window` says otherwise.
pub const SERIES_WINDOW: Duration = Duration::from_secs(60);
/// How often open series are looked at, at most (a shorter window is looked
/// at every tenth of it).
const SERIES_TICK: Duration = Duration::from_secs(5);

/// One Event to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub regarding: ObjectReference,
    /// `BreakGlass` or `BreakGlassRefused`.
    pub reason: &'static str,
    /// `Admitted` or `Denied`.
    pub action: &'static str,
    pub note: String,
    /// For a copy admitted through a grant: what its series is (the kind of
    /// copy, the object the grant was made on, the reason); copies with the
    /// same one gather into one Event series.
    pub series: Option<String>,
}

impl Notice {
    /// An Event on `regarding`; the note is cut to what the API server takes.
    pub fn new(regarding: ObjectReference, reason: &'static str, action: &'static str, note: String) -> Notice {
        Notice { regarding, reason, action, note: crate::policy::decide::truncate(&note, MAX_NOTE), series: None }
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
        let mut series = None;
        let (reason, note) = match bg {
            BreakGlass::NotRequested => return None,
            BreakGlass::Granted { user, justification, ticket, expires, carried } => {
                let via = match carried {
                    Some(c) => {
                        let kind = regarding.kind.as_deref().unwrap_or_default();
                        let ns = regarding.namespace.as_deref().unwrap_or_default();
                        series = Some(format!("{ns}/{kind} copies of {}", c.granted_on));
                        format!(" (grant made on {}, presented by {})", c.granted_on, c.presented_by)
                    }
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
        Some(Notice { regarding, reason, action, note: crate::policy::decide::truncate(&note, MAX_NOTE), series })
    }

    /// The Event, as one of a series of `count` seen last at `last` when given.
    fn event_in_series(
        &self,
        instance: &str,
        now: chrono::DateTime<chrono::Utc>,
        series: Option<(u64, chrono::DateTime<chrono::Utc>)>,
    ) -> Event {
        let micro = |t: chrono::DateTime<chrono::Utc>| {
            MicroTime(jiff::Timestamp::from_microsecond(t.timestamp_micros()).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
        };
        let mut ev = self.single(instance, now);
        if let Some((count, last)) = series {
            ev.series = Some(k8s_openapi::api::events::v1::EventSeries {
                count: i32::try_from(count).unwrap_or(i32::MAX),
                last_observed_time: micro(last),
            });
        }
        ev
    }

    fn single(&self, instance: &str, now: chrono::DateTime<chrono::Utc>) -> Event {
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

/// The copies of one grant gathering into an Event series.
struct Open {
    started: tokio::time::Instant,
    /// Copies seen, the first (already sent) included.
    count: u64,
    /// The latest copy, which the series' Event is about.
    last: Notice,
    last_at: chrono::DateTime<chrono::Utc>,
}

/// What to send, as notices come and windows close: pure, so that the
/// series rule has fast tests.
pub struct Series {
    open: std::collections::HashMap<String, Open>,
    window: Duration,
}

impl Default for Series {
    fn default() -> Self {
        Series::new(SERIES_WINDOW)
    }
}

/// One Event to create: a notice, and, for a series, its count and when its
/// last copy was seen.
pub type Outgoing = (Notice, Option<(u64, chrono::DateTime<chrono::Utc>)>);

impl Series {
    /// Series that gather the copies of one grant for `window`.
    pub fn new(window: Duration) -> Self {
        Series { open: Default::default(), window }
    }

    /// A notice arrives: what to send now (the first of a series, or a
    /// notice of no series), or nothing (a later copy, counted).
    pub fn offer(
        &mut self,
        n: Notice,
        at: tokio::time::Instant,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<Outgoing> {
        let Some(key) = n.series.clone() else { return Some((n, None)) };
        match self.open.get_mut(&key) {
            Some(o) => {
                o.count += 1;
                o.last = n;
                o.last_at = now;
                None
            }
            None => {
                self.open.insert(key, Open { started: at, count: 1, last: n.clone(), last_at: now });
                Some((n, None))
            }
        }
    }

    /// The series whose window has closed by `at` (all of them when
    /// `all`), as one Event each for the copies after the first.
    pub fn due(&mut self, at: tokio::time::Instant, all: bool) -> Vec<Outgoing> {
        let closed: Vec<String> = self
            .open
            .iter()
            .filter(|(_, o)| all || at.duration_since(o.started) >= self.window)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for k in closed {
            let Some(o) = self.open.remove(&k) else { continue };
            if o.count > 1 {
                let mut n = o.last;
                n.note = crate::policy::decide::truncate(
                    &format!("{} copies in {}; the last: {}", o.count, humantime::format_duration(self.window), n.note),
                    MAX_NOTE,
                );
                out.push((n, Some((o.count, o.last_at))));
            }
        }
        out
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
    /// (`reportingInstance`, the Pod's name); the copies of one grant
    /// gather into one Event series for `window`.
    pub fn start(client: Client, instance: String, window: Duration) -> Events {
        let (tx, mut rx) = mpsc::channel::<Notice>(QUEUE);
        let failed = Arc::new(AtomicU64::new(0));
        let f = failed.clone();
        tokio::spawn(async move {
            let send = |(n, series): Outgoing| {
                let (client, instance, f) = (client.clone(), instance.clone(), f.clone());
                async move {
                    let Some(ns) = n.regarding.namespace.clone() else { return };
                    let api: Api<Event> = Api::namespaced(client, &ns);
                    let ev = n.event_in_series(&instance, chrono::Utc::now(), series);
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
            };
            let mut series = Series::new(window);
            let mut tick = tokio::time::interval((window / 10).clamp(Duration::from_millis(100), SERIES_TICK));
            loop {
                tokio::select! {
                    n = rx.recv() => match n {
                        Some(n) => {
                            if let Some(out) = series.offer(n, tokio::time::Instant::now(), chrono::Utc::now()) {
                                send(out).await;
                            }
                        }
                        None => break,
                    },
                    _ = tick.tick() => {
                        for out in series.due(tokio::time::Instant::now(), false) {
                            send(out).await;
                        }
                    }
                }
            }
            for out in series.due(tokio::time::Instant::now(), true) {
                send(out).await;
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
        let ev = n.event_in_series("portcullis-0", chrono::Utc::now(), None);
        let name = ev.metadata.name.unwrap();
        assert!(name.starts_with("shop-5d9c-x2.") && name.len() == "shop-5d9c-x2.".len() + 19, "{name}");
        assert_eq!(ev.metadata.namespace.as_deref(), Some("prod"));
        assert_eq!(ev.regarding.unwrap().uid.as_deref(), Some("0b9c"));
        assert_eq!(ev.reporting_controller.as_deref(), Some(REPORTING_CONTROLLER));
    }

    /// A copy of Deployment/shop admitted through alice's grant.
    fn copy(kind: &str, name: &str, granted_on: &str) -> Notice {
        let granted = BreakGlass::Granted {
            user: "alice".into(),
            justification: "checkout outage".into(),
            ticket: Some("INC-7".into()),
            expires: "2026-06-02T12:00:00Z".into(),
            carried: Some(Carried {
                granted_on: granted_on.into(),
                issued_at: "2026-06-01T12:00:00Z".into(),
                presented_by: "system:serviceaccount:kube-system:replicaset-controller".into(),
            }),
        };
        let regarding = ObjectReference { kind: Some(kind.into()), name: Some(name.into()), ..pod() };
        Notice::of_break_glass(regarding, &granted, "rs", true, &[]).unwrap()
    }

    #[test]
    fn the_copies_of_one_grant_make_one_event_series() {
        let start = tokio::time::Instant::now();
        let now = chrono::Utc::now();
        let later = |s: u64| start + Duration::from_secs(s);
        let mut series = Series::default();
        // The ReplicaSet, then five Pods, all copies of Deployment/shop.
        let sent_now: Vec<Option<String>> = [
            copy("ReplicaSet", "shop-5d9c", "Deployment/shop"),
            copy("Pod", "shop-5d9c-a", "Deployment/shop"),
            copy("Pod", "shop-5d9c-b", "Deployment/shop"),
            copy("Pod", "shop-5d9c-c", "Deployment/shop"),
            copy("Pod", "shop-5d9c-d", "Deployment/shop"),
            copy("Pod", "shop-5d9c-e", "Deployment/shop"),
            // Another grant's copy is a series of its own.
            copy("Pod", "api-7f-a", "Deployment/api"),
            // An Event of no series is always sent at once.
            Notice::new(pod(), "BreakGlassRefused", "Denied", "refused".into()),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, n)| series.offer(n, later(i as u64), now).map(|(n, _)| n.regarding.name.unwrap()))
        .collect();
        assert_eq!(
            sent_now,
            [Some("shop-5d9c"), Some("shop-5d9c-a"), None, None, None, None, Some("api-7f-a"), Some("shop-5d9c-x2")]
                .map(|n| n.map(String::from))
        );
        // Before the window closes, nothing more.
        assert!(series.due(later(30), false).is_empty());
        // Then one Event for the Pods after the first, with the series' count.
        let closed = series.due(later(61), false);
        assert_eq!(closed.len(), 1, "one series had copies after its first");
        let (n, counted) = &closed[0];
        assert_eq!(n.regarding.name.as_deref(), Some("shop-5d9c-e"));
        assert_eq!(counted.map(|(c, _)| c), Some(5));
        assert!(n.note.starts_with("5 copies in 1m; the last: break-glass by alice"), "{}", n.note);
        let ev = n.event_in_series("portcullis-0", now, *counted);
        let s = ev.series.expect("an Event series");
        assert_eq!(s.count, 5);
        // A copy after the window starts a new series, sent at once.
        assert!(series.offer(copy("Pod", "shop-5d9c-f", "Deployment/shop"), later(70), now).is_some());
        // At shutdown every open series is closed (one copy: nothing more to say).
        assert!(series.due(later(71), true).is_empty());
    }
}
