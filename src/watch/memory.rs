//! What one replica remembers between re-evaluation passes: each running
//! image's last status and since when it has been failing, the namespaces
//! given a PolicyReport, and the workloads acted on. Pure: rows and a time
//! in, changes out.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::kinds::ObjectId;
use crate::watch::report::{Row, Status};
use crate::watch::running::RunningImage;

/// What one replica remembers between passes: each running image's last
/// status, and since when it has been failing.
#[derive(Default)]
pub struct Memory {
    last: HashMap<Key, (Status, Option<DateTime<Utc>>)>,
    /// Namespaces given a report, so that one whose workloads are gone is emptied.
    pub(super) reported: BTreeSet<String>,
    /// Workloads acted on (annotated, rolled back, or found with no revision
    /// to roll back to) for their ongoing violation: acted on once.
    pub(super) acted: BTreeSet<(String, ObjectId)>,
}

type Key = (String, ObjectId, String, Option<String>);

pub(super) fn key(r: &RunningImage) -> Key {
    (r.namespace.clone(), r.workload.clone(), r.image.clone(), r.digest.as_ref().map(|d| d.to_string()))
}

/// What a pass changed.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    /// Workload images whose status changed since the last pass (not those
    /// seen for the first time).
    pub changed: Vec<(RunningImage, Status, Status)>,
    /// Per tier: the oldest ongoing failure's start.
    pub failing_since: BTreeMap<String, DateTime<Utc>>,
}

impl Memory {
    /// Remembers this pass's rows; answers what changed.
    pub fn update(&mut self, rows: &[Row], now: DateTime<Utc>) -> Changes {
        let mut out = Changes::default();
        let mut next = HashMap::new();
        for r in rows {
            let k = key(&r.running);
            let before = self.last.get(&k);
            let since = match (r.status.passes(), before) {
                (true, _) => None,
                (false, Some((_, Some(since)))) => Some(*since),
                (false, _) => Some(now),
            };
            if let Some((was, _)) = before {
                if *was != r.status {
                    out.changed.push((r.running.clone(), *was, r.status));
                }
            }
            if let (Some(since), Some(tier)) = (since, &r.tier) {
                let oldest = out.failing_since.entry(tier.clone()).or_insert(since);
                *oldest = (*oldest).min(since);
            }
            next.insert(k, (r.status, since));
        }
        self.last = next;
        let failing: BTreeSet<(String, ObjectId)> = rows
            .iter()
            .filter(|r| !r.status.passes())
            .map(|r| (r.running.namespace.clone(), r.running.workload.clone()))
            .collect();
        self.acted.retain(|w| failing.contains(w));
        out
    }

    /// Since when `r` has been failing, as last remembered.
    pub fn since(&self, r: &Row) -> Option<DateTime<Utc>> {
        self.last.get(&key(&r.running)).and_then(|(_, since)| *since)
    }

    /// The workloads whose violation, in a tier that acts on it
    /// (`onViolation` other than `report`), has lasted its grace and has
    /// not been acted on; with their tier and failing rows. Registry errors
    /// are no violation.
    pub fn due<'r>(
        &self,
        rows: &'r [Row],
        policy: &crate::policy::Policy,
        now: DateTime<Utc>,
    ) -> BTreeMap<(String, ObjectId), (String, crate::policy::OnViolation, Vec<&'r Row>)> {
        let mut out: BTreeMap<(String, ObjectId), (String, crate::policy::OnViolation, Vec<&'r Row>)> = BTreeMap::new();
        for r in rows.iter().filter(|r| !r.status.passes() && r.status != Status::Error) {
            let Some(tier) = &r.tier else { continue };
            let Some(spec) = policy.tier(tier) else { continue };
            if spec.on_violation == crate::policy::OnViolation::Report {
                continue;
            }
            let grace = spec.violation_grace.map(|g| g.delta()).unwrap_or_default();
            let Some(since) = self.since(r) else { continue };
            let workload = (r.running.namespace.clone(), r.running.workload.clone());
            if now - since < grace || self.acted.contains(&workload) {
                continue;
            }
            out.entry(workload).or_insert_with(|| (tier.clone(), spec.on_violation, vec![])).2.push(r);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Reason;
    use crate::watch::testing::{at, row};

    #[test]
    fn memory_names_changes_and_how_long_failures_last() {
        let mut m = Memory::default();
        let ok = row("Deployment/api", &[], &[]);
        let bad = row("Deployment/api", &["2 critical"], &[Reason::Vulnerabilities]);
        // First sight: no change to report, even failing.
        let c = m.update(std::slice::from_ref(&ok), at(0));
        assert!(c.changed.is_empty() && c.failing_since.is_empty());
        // A new CVE: compliant -> violating, failing since now.
        let c = m.update(std::slice::from_ref(&bad), at(1));
        assert_eq!(c.changed.len(), 1);
        assert_eq!((c.changed[0].1, c.changed[0].2), (Status::Compliant, Status::Violating));
        assert_eq!(c.failing_since["production"], at(1));
        // Still failing: no change, and the start stays.
        let c = m.update(std::slice::from_ref(&bad), at(5));
        assert!(c.changed.is_empty());
        assert_eq!(c.failing_since["production"], at(1));
        // Fixed.
        let c = m.update(&[ok], at(6));
        assert_eq!((c.changed[0].1, c.changed[0].2), (Status::Violating, Status::Compliant));
        assert!(c.failing_since.is_empty());
        // Gone, then back failing: seen anew, no change reported.
        m.update(&[], at(7));
        let c = m.update(&[bad], at(8));
        assert!(c.changed.is_empty());
        assert_eq!(c.failing_since["production"], at(8));
    }

    #[test]
    fn violations_are_acted_on_once_after_their_grace() {
        let policy = crate::policy::Policy::from_yaml(
            "apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers: {}\n  tiers:\n    production: { onViolation: rollback, violationGrace: 2h }\n    staging: {}\n",
            "test",
        )
        .unwrap();
        let mut m = Memory::default();
        let bad = row("Deployment/api", &["2 critical"], &[Reason::Vulnerabilities]);
        let mut reported_only = bad.clone();
        reported_only.tier = Some("staging".into());
        reported_only.running.workload = ObjectId::new("Deployment", "web");
        let rows = [bad.clone(), reported_only];
        m.update(&rows, at(0));
        assert!(m.due(&rows, &policy, at(1)).is_empty(), "inside its grace");
        m.update(&rows, at(2));
        let due = m.due(&rows, &policy, at(2));
        let keys: Vec<_> = due.keys().cloned().collect();
        assert_eq!(keys, vec![("shop".to_string(), ObjectId::new("Deployment", "api"))], "staging only reports");
        let (tier, action, failing) = &due[&keys[0]];
        assert_eq!((tier.as_str(), *action, failing.len()), ("production", crate::policy::OnViolation::Rollback, 1));
        m.acted.insert(keys[0].clone());
        m.update(&rows, at(3));
        assert!(m.due(&rows, &policy, at(3)).is_empty(), "acted on once");
        // Fixed, then failing again: a new violation, with its own grace.
        let fixed = [row("Deployment/api", &[], &[])];
        m.update(&fixed, at(4));
        m.update(&rows, at(5));
        assert!(m.due(&rows, &policy, at(6)).is_empty());
        assert_eq!(m.due(&rows, &policy, at(7)).len(), 1);
        // A registry error is no violation.
        let mut error = bad;
        error.status = Status::Error;
        let errors = [error];
        m.update(&errors, at(8));
        assert!(m.due(&errors, &policy, at(20)).is_empty());
    }
}
