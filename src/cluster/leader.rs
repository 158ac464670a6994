//! One replica at a time does background work: a `coordination.k8s.io`
//! Lease, held by renewing it and taken over only once it has expired, with
//! the API server's optimistic concurrency (resourceVersion) settling races.
//! The rule for taking a lease is a pure function, tested on its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};

/// How long a lease lasts without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(30);
/// How often the holder renews it (and others look at it).
pub const RENEW_EVERY: Duration = Duration::from_secs(10);

/// Whether `me` may hold `spec` at `now`: it is free, it is already mine, or
/// its holder let it expire.
pub fn may_hold(spec: Option<&LeaseSpec>, me: &str, now: jiff::Timestamp) -> bool {
    let Some(spec) = spec else { return true };
    match spec.holder_identity.as_deref() {
        None | Some("") => true,
        Some(holder) if holder == me => true,
        Some(_) => {
            let Some(MicroTime(renewed)) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
                return true;
            };
            let lasts = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_DURATION.as_secs() as i32).max(1));
            now.as_second() > renewed.as_second() + lasts
        }
    }
}

/// Whether this replica leads; kept up to date by [`Leader::start`].
#[derive(Clone, Default)]
pub struct Leader(Arc<AtomicBool>);

impl Leader {
    pub fn is_leader(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Holds the Lease `namespace/name` as `me` whenever it can, renewing
    /// it every [`RENEW_EVERY`]; a replica that cannot renew in time stops
    /// leading before its lease could pass to another.
    pub fn start(client: Client, namespace: &str, name: &str, me: String) -> Leader {
        let leader = Leader::default();
        let flag = leader.0.clone();
        let api: Api<Lease> = Api::namespaced(client, namespace);
        let name = name.to_string();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RENEW_EVERY);
            loop {
                tick.tick().await;
                let held = tokio::time::timeout(RENEW_EVERY, hold(&api, &name, &me)).await;
                let now = matches!(held, Ok(Ok(true)));
                if let Ok(Err(e)) = &held {
                    tracing::warn!(error = %e, lease = %name, "could not hold the lease");
                }
                if flag.swap(now, Ordering::AcqRel) != now {
                    tracing::info!(lease = %name, holder = %me, leading = now, "leadership changed");
                }
            }
        });
        leader
    }
}

/// One attempt to take or renew the lease; true when `me` holds it after.
async fn hold(api: &Api<Lease>, name: &str, me: &str) -> Result<bool, kube::Error> {
    let now = jiff::Timestamp::now();
    let current = api.get_opt(name).await?;
    let spec = current.as_ref().and_then(|l| l.spec.as_ref());
    if !may_hold(spec, me, now) {
        return Ok(false);
    }
    let mine = spec.and_then(|s| s.holder_identity.as_deref()) == Some(me);
    let transitions = spec.and_then(|s| s.lease_transitions).unwrap_or(0);
    let wanted = LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
        acquire_time: if mine { spec.and_then(|s| s.acquire_time.clone()) } else { Some(MicroTime(now)) },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if mine || current.is_none() { transitions } else { transitions + 1 }),
        ..Default::default()
    };
    let result = match current {
        None => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(name.to_string()), ..Default::default() },
                spec: Some(wanted),
            };
            api.create(&PostParams::default(), &lease).await
        }
        // The resourceVersion read above: if another replica took it since, this fails.
        Some(mut lease) => {
            lease.spec = Some(wanted);
            api.replace(name, &PostParams::default(), &lease).await
        }
    };
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn lease(holder: Option<&str>, renewed: Option<i64>, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(String::from),
            renew_time: renewed.map(|s| MicroTime(at(s))),
            lease_duration_seconds: Some(seconds),
            ..Default::default()
        }
    }

    #[test]
    fn who_may_hold_a_lease() {
        let rows: Vec<(&str, Option<LeaseSpec>, i64, bool)> = vec![
            ("no lease yet", None, 0, true),
            ("a lease nobody holds", Some(lease(None, Some(0), 30)), 1, true),
            ("mine", Some(lease(Some("me"), Some(0), 30)), 10, true),
            ("mine, even expired", Some(lease(Some("me"), Some(0), 30)), 100, true),
            ("another's, renewed 10s ago", Some(lease(Some("other"), Some(0), 30)), 10, false),
            ("another's, at its very end", Some(lease(Some("other"), Some(0), 30)), 30, false),
            ("another's, expired", Some(lease(Some("other"), Some(0), 30)), 31, true),
            ("another's, never renewed", Some(lease(Some("other"), None, 30)), 0, true),
        ];
        for (case, spec, now, want) in rows {
            assert_eq!(may_hold(spec.as_ref(), "me", at(now)), want, "{case}");
        }
    }
}
