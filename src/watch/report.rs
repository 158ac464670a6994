//! What is running, judged as admission would judge it today: one row per
//! workload and image, with its status and the reasons. Pure: the running
//! images and their verdicts in, rows and text out (`portcullis report`).

use serde::Serialize;

use crate::policy::{Reason, Verdict};
use crate::watch::running::RunningImage;

/// Where a running image stands against its tier's policy today.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// It would be admitted, on verified evidence.
    Compliant,
    /// It would be admitted, but an exception it relies on expires soon.
    ExceptionExpiring,
    /// Its only problem is the age of its evidence: rescan, retest.
    ScanStale,
    /// No acceptable signed evidence: nothing says whether it is safe.
    Unverified,
    /// The evidence says it fails the policy (vulnerabilities, tests,
    /// provenance, …).
    Violating,
    /// Its evidence could not be gathered now (registry error).
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Compliant => "compliant",
            Status::ExceptionExpiring => "exception_expiring",
            Status::ScanStale => "scan_stale",
            Status::Unverified => "unverified",
            Status::Violating => "violating",
            Status::Error => "error",
        }
    }

    /// Whether it would pass admission today.
    pub fn passes(self) -> bool {
        matches!(self, Status::Compliant | Status::ExceptionExpiring)
    }

    /// The status a verdict amounts to. A tier in warn mode admits what
    /// fails, but the report says it fails.
    pub fn of(v: &Verdict) -> Status {
        if v.error.is_some() {
            return Status::Error;
        }
        if v.problems.is_empty() {
            // A fact of the verdict (on the image, or any platform of it).
            return if v.expiring_exceptions.is_empty() { Status::Compliant } else { Status::ExceptionExpiring };
        }
        let only = |allowed: &[Reason]| v.reasons.iter().all(|r| allowed.contains(r));
        if only(&[Reason::StaleEvidence]) {
            Status::ScanStale
        } else if only(&[Reason::NoAttestations, Reason::MissingEvidence, Reason::StaleEvidence]) {
            Status::Unverified
        } else {
            Status::Violating
        }
    }
}

/// One workload's image, judged.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    #[serde(flatten)]
    pub running: RunningImage,
    /// `None` when the namespace has no tier (the problem says why).
    pub tier: Option<String>,
    pub status: Status,
    pub verdict: Option<Verdict>,
    /// Why the namespace could not be judged, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl Row {
    pub fn judged(running: RunningImage, tier: String, verdict: Verdict) -> Row {
        Row { running, tier: Some(tier), status: Status::of(&verdict), verdict: Some(verdict), problem: None }
    }

    pub fn unjudged(running: RunningImage, why: String) -> Row {
        Row { running, tier: None, status: Status::Unverified, verdict: None, problem: Some(why) }
    }

    /// Why it does not pass, in the words of an admission denial.
    pub fn why(&self) -> String {
        match (&self.verdict, &self.problem) {
            (_, Some(p)) => p.clone(),
            (Some(v), None) if v.error.is_some() => v.error.clone().unwrap_or_default(),
            (Some(v), None) => v.problems.join("; "),
            (None, None) => String::new(),
        }
    }
}

/// Judges running images, each with its namespace's tier (or why it has
/// none), through the gate as admission would judge them now: one row each.
/// With `pull_secrets`, each is looked up with its Pods' pull secrets (and
/// their service account's), then Portcullis' own credentials, as at
/// admission; without, with Portcullis' own.
pub async fn judge(
    gate: &crate::gate::Gate,
    pull_secrets: Option<&crate::cluster::PullSecrets>,
    running: Vec<(RunningImage, Result<String, String>)>,
    deadline: tokio::time::Instant,
) -> Vec<Row> {
    use crate::gate::{Ask, Keys, Place, Written};
    use crate::watch::running::PodPull;
    let mut rows = Vec::new();
    // One ask per tier, and per namespace and pull secrets when they are read.
    type Logins = Option<(String, PodPull)>;
    let mut asks: std::collections::BTreeMap<(String, Logins), Vec<RunningImage>> = Default::default();
    for (r, tier) in running {
        match tier {
            Err(why) => rows.push(Row::unjudged(r, why)),
            Ok(tier) => {
                let logins = pull_secrets.map(|_| (r.namespace.clone(), r.pull.clone()));
                asks.entry((tier, logins)).or_default().push(r)
            }
        }
    }
    let policy = gate.policy();
    for ((tier, logins), judged) in asks {
        if let Err(why) = gate.tier(Place::Tier(&tier), &policy).await {
            rows.extend(judged.into_iter().map(|r| Row::unjudged(r, why.clone())));
            continue;
        }
        // Read once, when a lookup first needs it, for every batch.
        let keychain = match (pull_secrets, &logins) {
            (Some(ps), Some((namespace, pull))) => Some(futures::FutureExt::shared(Box::pin(async move {
                ps.keychain(namespace, &pull.secrets, &pull.service_account).await
            }))),
            _ => None,
        };
        // A few dozen at a time: thousands of never-seen images started at
        // once would be refused as saturating their registry.
        let at_once = gate.engine().lookups_at_once();
        let mut judged = judged.into_iter().peekable();
        while judged.peek().is_some() {
            let batch: Vec<RunningImage> = judged.by_ref().take(at_once).collect();
            let written: Vec<String> = batch.iter().map(RunningImage::reference).collect();
            let judgement = gate
                .judge(Ask {
                    place: Place::Tier(&tier),
                    what: format!("what runs in tier {tier}"),
                    images: written.iter().map(|w| Written::new(w, "the running image")).collect(),
                    max_images: None,
                    keychain: keychain.clone().map(Keys::later).unwrap_or_default(),
                    break_glass: Default::default(),
                    deadline,
                    vex: &[],
                })
                .await;
            for (r, w) in batch.into_iter().zip(&written) {
                match judgement.verdict(w) {
                    Some(v) => rows.push(Row::judged(r, tier.clone(), v.clone())),
                    None => rows.push(Row::unjudged(r, judgement.decision.message.clone().unwrap_or_default())),
                }
            }
        }
    }
    rows
}

/// The rows as a table for a person: what fails first, then what passes
/// (only with `all`).
pub fn table(rows: &[Row], all: bool) -> String {
    let mut shown: Vec<&Row> = rows.iter().filter(|r| all || !r.status.passes()).collect();
    shown.sort_by(|a, b| {
        (b.status, &a.running.namespace, &a.running.workload).cmp(&(
            a.status,
            &b.running.namespace,
            &b.running.workload,
        ))
    });
    let mut out = format!("{:<20} {:<32} {:<12} {:<18} {}\n", "NAMESPACE", "WORKLOAD", "TIER", "STATUS", "IMAGE");
    for r in &shown {
        let image = match &r.running.digest {
            Some(d) => format!("{} ({})", r.running.image, d.short()),
            None => r.running.image.clone(),
        };
        out.push_str(&format!(
            "{:<20} {:<32} {:<12} {:<18} {image}\n",
            r.running.namespace,
            r.running.workload.to_string(),
            r.tier.as_deref().unwrap_or("-"),
            r.status.as_str()
        ));
        if !r.status.passes() {
            out.push_str(&format!("    {}\n", r.why()));
        }
        for s in r.verdict.iter().flat_map(|v| &v.vex_suppressed) {
            out.push_str(&format!("    suppressed by VEX: {}\n", s.describe()));
        }
    }
    let failing = rows.iter().filter(|r| !r.status.passes()).count();
    out.push_str(&format!(
        "{failing} of {} running images would not be admitted today{}\n",
        rows.len(),
        if all || failing == rows.len() { "" } else { " (--all lists the others)" }
    ));
    for b in base_images(rows) {
        out.push_str(&format!(
            "tier {}: {} of {} running images on a current base image ({:.0}%){}\n",
            b.tier,
            b.current,
            b.known,
            100.0 * b.current as f64 / b.known.max(1) as f64,
            if b.unknown > 0 { format!("; {} more of unknown base", b.unknown) } else { String::new() }
        ));
    }
    out
}

/// How the running images of a tier that judges base images stand against
/// their bases.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BaseImages {
    pub tier: String,
    /// Built on the digest their base's tag points to now.
    pub current: u64,
    /// Whose base is known (named and resolved): `current` is a share of these.
    pub known: u64,
    /// Whose base is not known.
    pub unknown: u64,
}

/// Per tier that judged a base image, how many running images are on a
/// current one: the seed of `portcullis_running_base_image_current_ratio`.
pub fn base_images(rows: &[Row]) -> Vec<BaseImages> {
    use crate::policy::BaseState;
    let mut by_tier: std::collections::BTreeMap<&str, BaseImages> = Default::default();
    for r in rows {
        let (Some(tier), Some(b)) = (r.tier.as_deref(), r.verdict.as_ref().and_then(|v| v.base_image.as_ref())) else {
            continue;
        };
        let t = by_tier.entry(tier).or_insert_with(|| BaseImages {
            tier: tier.to_string(),
            current: 0,
            known: 0,
            unknown: 0,
        });
        match b.status {
            BaseState::Unknown => t.unknown += 1,
            BaseState::Current => {
                t.current += 1;
                t.known += 1
            }
            BaseState::Behind | BaseState::Outdated => t.known += 1,
        }
    }
    by_tier.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(problems: &[&str], reasons: &[Reason], notes: &[&str], error: Option<&str>) -> Verdict {
        Verdict {
            problems: problems.iter().map(|s| s.to_string()).collect(),
            reasons: reasons.to_vec(),
            notes: notes.iter().map(|s| s.to_string()).collect(),
            error: error.map(String::from),
            ..Default::default()
        }
    }

    /// The verdict's fact: an exception applied that expires soon.
    fn expiring(mut v: Verdict) -> Verdict {
        let expires = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        v.expiring_exceptions = vec![crate::policy::ExpiringException { id: "CVE-1".into(), expires }];
        v
    }

    #[test]
    fn status_table() {
        use Reason::*;
        let rows: Vec<(&str, Verdict, Status)> = vec![
            ("passes", v(&[], &[], &[], None), Status::Compliant),
            (
                "passes on an exception about to expire",
                expiring(v(&[], &[], &["exception for CVE-1 expires on 2026-12-01; fix openssl before then"], None)),
                Status::ExceptionExpiring,
            ),
            (
                "passes on an exception about to expire on one platform of a multi-arch image",
                expiring(v(
                    &[],
                    &[],
                    &["platform linux/arm64 (sha256:0123456789ab): exception for CVE-1 expires on 2026-12-01; fix openssl before then"],
                    None,
                )),
                Status::ExceptionExpiring,
            ),
            (
                "the words alone are not the fact",
                v(&[], &[], &["exception for CVE-1 expires on 2026-12-01 (quoted by someone)"], None),
                Status::Compliant,
            ),
            ("only its scan is too old", v(&["older than the maxAge"], &[StaleEvidence], &[], None), Status::ScanStale),
            ("no attestations", v(&["no attestations found"], &[NoAttestations], &[], None), Status::Unverified),
            ("signed by nobody accepted", v(&["signed by ci"], &[MissingEvidence], &[], None), Status::Unverified),
            ("criticals", v(&["2 critical"], &[Vulnerabilities], &[], None), Status::Violating),
            (
                "criticals in an old scan",
                v(&["old", "2 critical"], &[StaleEvidence, Vulnerabilities], &[], None),
                Status::Violating,
            ),
            ("failed tests", v(&["FAILED"], &[Tests], &[], None), Status::Violating),
            ("provenance from a fork", v(&["built from"], &[Provenance], &[], None), Status::Violating),
            ("registry down", v(&["could not verify"], &[Unverifiable], &[], Some("timeout")), Status::Error),
            ("registry down, tier fails open", v(&[], &[], &["could not verify"], Some("timeout")), Status::Error),
        ];
        for (case, verdict, want) in rows {
            assert_eq!(Status::of(&verdict), want, "{case}");
        }
        assert!(Status::Compliant.passes() && Status::ExceptionExpiring.passes());
        assert!(!Status::ScanStale.passes() && !Status::Unverified.passes() && !Status::Error.passes());
    }

    #[test]
    fn the_table_lists_what_fails_first() {
        let running = |ns: &str, w: &str| RunningImage {
            namespace: ns.into(),
            workload: w.parse().unwrap(),
            image: "r.example/app:1".into(),
            digest: None,
            pods: vec!["p".into()],
            pull: Default::default(),
        };
        let rows = vec![
            Row::judged(running("shop", "Deployment/ok"), "production".into(), v(&[], &[], &[], None)),
            Row::judged(
                running("shop", "Deployment/bad"),
                "production".into(),
                v(&["1 critical vulnerability exceeds the limit 0"], &[Reason::Vulnerabilities], &[], None),
            ),
            Row::unjudged(running("lost", "Pod/x"), "namespace lost has no portcullis.dev/tier label".into()),
        ];
        let t = table(&rows, false);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[1].contains("Deployment/bad") && lines[1].contains("violating"), "{t}");
        assert_eq!(lines[2].trim(), "1 critical vulnerability exceeds the limit 0");
        assert!(lines[3].contains("Pod/x") && lines[3].contains("unverified"), "{t}");
        assert!(!t.contains("Deployment/ok"), "{t}");
        assert!(t.ends_with("2 of 3 running images would not be admitted today (--all lists the others)\n"), "{t}");
        assert!(table(&rows, true).contains("Deployment/ok"));

        // What VEX suppressed is listed under the image it was suppressed in.
        let mut ok = v(&[], &[], &[], None);
        ok.vex_suppressed.push(crate::evidence::vex::Suppressed {
            finding: crate::evidence::Finding {
                id: "CVE-1".into(),
                aliases: vec![],
                severity: crate::evidence::Severity::Critical,
                package: "openssl".into(),
                installed_version: "3.0.1".into(),
                fixed_versions: vec![],
                fix_state: crate::evidence::FixState::Unknown,
                published: None,
                cvss: None,
                target: String::new(),
                purl: None,
            },
            status: crate::evidence::vex::Status::NotAffected,
            justification: Some("vulnerable_code_not_in_execute_path".into()),
            impact_statement: None,
            author: "Acme Security".into(),
            signer: Some("security".into()),
            document: "sha256:d0c".into(),
        });
        let rows = vec![Row::judged(running("shop", "Deployment/ok"), "production".into(), ok)];
        let t = table(&rows, true);
        assert!(
            t.contains("    suppressed by VEX: CVE-1 in openssl 3.0.1: not_affected (vulnerable_code_not_in_execute_path), by Acme Security, signed by security\n"),
            "{t}"
        );
    }

    #[test]
    fn the_share_of_images_on_a_current_base_is_counted_per_tier() {
        use crate::policy::{BaseImageStatus, BaseState};
        let running = |w: &str| RunningImage {
            namespace: "shop".into(),
            workload: w.parse().unwrap(),
            image: "r.example/app:1".into(),
            digest: None,
            pods: vec!["p".into()],
            pull: Default::default(),
        };
        let on = |state: Option<BaseState>| {
            let mut verdict = v(&[], &[], &[], None);
            verdict.base_image = state.map(|status| BaseImageStatus {
                name: "alpine:3.20".into(),
                built_on: None,
                current: None,
                since: None,
                status,
            });
            verdict
        };
        let rows = vec![
            Row::judged(running("Deployment/a"), "production".into(), on(Some(BaseState::Current))),
            Row::judged(running("Deployment/b"), "production".into(), on(Some(BaseState::Current))),
            Row::judged(running("Deployment/c"), "production".into(), on(Some(BaseState::Behind))),
            Row::judged(running("Deployment/d"), "production".into(), on(Some(BaseState::Outdated))),
            Row::judged(running("Deployment/e"), "production".into(), on(Some(BaseState::Unknown))),
            // A tier that does not judge base images has no share.
            Row::judged(running("Deployment/f"), "development".into(), on(None)),
            Row::unjudged(running("Pod/x"), "no tier".into()),
        ];
        let b = base_images(&rows);
        assert_eq!(
            b,
            vec![BaseImages { tier: "production".into(), current: 2, known: 4, unknown: 1 }],
            "development judges no base"
        );
        let t = table(&rows, true);
        assert!(
            t.contains(
                "tier production: 2 of 4 running images on a current base image (50%); 1 more of unknown base\n"
            ),
            "{t}"
        );
    }
}
