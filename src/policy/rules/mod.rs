//! One rule per kind of evidence a tier can require: vulnerability scans,
//! test results, build provenance, attestations of any predicate type, and
//! the licences an SBOM lists.
//! Each says what it judges, how that evidence is attached, and judges an
//! image's verified attestations; [`super::evaluate`] loops over a tier's.

use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, Utc};

use super::duration::Duration;
use super::eval::{EvidenceKind, ExpiringException, Reason, Verdict, EXCEPTION_WARNING_DAYS};
use super::model::{Policy, TierName, TierSpec};
use crate::attest::{Problem, SignerIdentity};
use crate::evidence::{Attestation, Claim, ImageEvidence, Outcome};
use crate::image::ImageRef;

mod attestation;
pub(super) mod base_image;
pub(super) mod licenses;
mod provenance;
mod tests;
pub(super) mod vulnerabilities;

/// Clock skew tolerated for scan times in the future.
const MAX_SKEW_SECS: i64 = 300;
/// How many findings a message lists before summarising the rest.
const LIST_FINDINGS: usize = 5;

/// A tier's rule for one kind of evidence.
pub(super) trait Rule {
    /// What the evidence it judges is, for the attestations a verdict cites.
    fn kind(&self) -> EvidenceKind;
    /// The signers any one of whom must have signed the evidence.
    fn signed_by(&self) -> &[String];
    /// How the evidence is attached, in words for a denial that finds no
    /// attestations at all (`a signed vulnerability scan (…)`).
    fn how(&self) -> String;
    /// The step that attaches it, `{image}` standing for the image.
    fn attach(&self) -> String;
    /// Judges the image's verified attestations: records in the verdict the
    /// problems, the attestations cited, notes and remedies.
    fn judge(&self, cx: &Ctx<'_>, v: &mut Verdict);
}

/// The tier's rules, in the order their problems are reported.
pub(super) fn of(tier: &TierSpec) -> Vec<&dyn Rule> {
    placed(tier).into_iter().map(|(_, r)| r).collect()
}

/// The tier's rules, each with where it is in the tier (for the policy's
/// own checks), in the order their problems are reported.
pub(super) fn placed(tier: &TierSpec) -> Vec<(Place, &dyn Rule)> {
    let mut rules: Vec<(Place, &dyn Rule)> = Vec::new();
    if let Some(r) = &tier.vulnerabilities {
        rules.push((Place::Field("vulnerabilities"), r));
    }
    if let Some(r) = &tier.tests {
        rules.push((Place::Field("tests"), r));
    }
    if let Some(r) = &tier.provenance {
        rules.push((Place::Field("provenance"), r));
    }
    rules.extend(tier.attestations.iter().enumerate().map(|(i, r)| (Place::Attestation(i), r as &dyn Rule)));
    if let Some(r) = &tier.licenses {
        rules.push((Place::Field("licenses"), r));
    }
    rules
}

/// Where a rule is in its tier: `vulnerabilities`, `attestations[0]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Place {
    Field(&'static str),
    Attestation(usize),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Field(name) => f.write_str(name),
            Place::Attestation(i) => write!(f, "attestations[{i}]"),
        }
    }
}

/// What every rule judges with: the image, its evidence, the tier, the time.
pub(super) struct Ctx<'a> {
    pub(super) tier: &'a TierName,
    pub(super) image: &'a ImageRef,
    pub(super) ev: &'a ImageEvidence,
    pub(super) now: DateTime<Utc>,
    pub(super) policy: &'a Policy,
    /// VEX given for the image outside its attestations (`check --vex`).
    pub(super) vex_given: &'a [crate::evidence::vex::Source],
}

/// How an age problem is worded for one kind of evidence.
struct Age {
    what: &'static str,
    limit: &'static str,
    field: &'static str,
    redo: &'static str,
}

/// A verified attestation: where it is, who signed it, what it says.
pub(super) struct Found<'a, T> {
    pub(super) att: &'a Attestation,
    pub(super) signers: &'a [String],
    pub(super) identity: Option<&'a SignerIdentity>,
    pub(super) claim: &'a T,
    /// The Statement whole, when the policy sets conditions on its type.
    pub(super) statement: Option<&'a crate::evidence::Statement>,
}

impl<'e> Ctx<'e> {
    /// The verified attestations whose claim `pick` selects.
    fn verified<T>(&self, pick: impl Fn(&'e Attestation, &'e Claim) -> Option<&'e T>) -> Vec<Found<'e, T>> {
        self.ev
            .attestations
            .iter()
            .filter_map(|a| match &a.outcome {
                Outcome::Verified { signers, claim, identity, statement } => pick(a, claim).map(|c| Found {
                    att: a,
                    signers: signers.as_slice(),
                    identity: identity.as_deref(),
                    claim: c,
                    statement: statement.as_deref(),
                }),
                _ => None,
            })
            .collect()
    }

    /// The remedy for evidence of a kind that is missing: signed by a
    /// signer the tier does not accept, or not attached at all (`attach`).
    fn fix_missing<T>(&self, attach: &str, found: &[Found<'_, T>], wanted: &[String], v: &Verdict) -> String {
        match found.first() {
            Some(_) => format!("sign it as {} (the attestation found is signed by another)", self.expected(wanted)),
            None => attach.replace("{image}", &v.pinned()),
        }
    }

    /// What is wrong with the age of a piece of evidence, if anything: from
    /// the future (beyond clock skew), older than the limit, or of no known age
    /// when the tier sets a limit.
    fn age_problem(&self, age: &Age, finished: Option<DateTime<Utc>>, max: Option<Duration>) -> Option<String> {
        let Age { what, limit, field, redo } = age;
        match (finished, max) {
            (Some(t), _) if (t - self.now).num_seconds() > MAX_SKEW_SECS => Some(format!(
                "the {what} claims to finish in the future ({}); check the producer's clock and {redo}",
                rfc3339(t)
            )),
            (Some(t), Some(max)) if max.delta() < self.now - t => Some(format!(
                "the newest {what} finished {} ({} ago), older than the {limit} {max} of tier {}; {redo}",
                rfc3339(t),
                human(self.now - t),
                self.tier
            )),
            (None, Some(max)) => Some(format!(
                "the {what} records no finish time ({field}), so its age cannot be checked against the {limit} {max} of tier {}; {redo} with its time",
                self.tier
            )),
            _ => None,
        }
    }

    /// `ci (subject … from issuer …)` for each wanted signer: what the tier
    /// expects, for a denial that names who signed.
    fn expected(&self, wanted: &[String]) -> String {
        wanted
            .iter()
            .map(|s| {
                let ids = self.policy.keyless_identities(s);
                if ids.is_empty() {
                    s.clone()
                } else {
                    format!("{s} ({})", ids.join(", or "))
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Records that no acceptable attestation of a kind was found, in the
    /// most useful words, and whether it is there signed by another signer.
    fn fail_missing<T>(
        &self,
        v: &mut Verdict,
        what: &str,
        how: &str,
        predicate_types: &[&str],
        others: &[Found<'_, T>],
        wanted: &[String],
    ) {
        let (problem, signers) = self.missing(what, how, predicate_types, others, wanted);
        v.fail(Reason::MissingEvidence, problem);
        if let Some(f) = v.failures.last_mut() {
            f.signers = signers;
        }
    }

    /// Why no acceptable attestation of a kind was found, in the most useful
    /// words; true when the reason is who signed it.
    fn missing<T>(
        &self,
        what: &str,
        how: &str,
        predicate_types: &[&str],
        others: &[Found<'_, T>],
        wanted: &[String],
    ) -> (String, bool) {
        if let Some(f) = others.first() {
            let by = match f.identity {
                Some(id) => format!("{} ({id})", f.signers.join(", ")),
                None => f.signers.join(", "),
            };
            return (
                format!("the {what} is signed by {by}, but tier {} accepts only {}", self.tier, self.expected(wanted)),
                true,
            );
        }
        let mut why: Vec<String> = Vec::new();
        let mut identity_problem = false;
        for a in &self.ev.attestations {
            if !a.claimed_type.as_deref().is_none_or(|t| predicate_types.contains(&t)) {
                continue;
            }
            let reason = match &a.outcome {
                Outcome::Rejected(p) => {
                    identity_problem |= matches!(
                        p,
                        Problem::UnknownIdentity { .. }
                            | Problem::KeylessButOnlyKeys { .. }
                            | Problem::KeyedButOnlyKeyless
                    );
                    p.to_string()
                }
                Outcome::Unreadable { why, .. } => why.clone(),
                Outcome::Verified { .. } => continue,
            };
            if !why.contains(&reason) {
                why.push(reason);
            }
        }
        if !why.is_empty() {
            let expects = if identity_problem {
                format!("; tier {} expects {}", self.tier, self.expected(wanted))
            } else {
                String::new()
            };
            return (format!("no valid {what}: {}{expects}", why.join("; ")), identity_problem);
        }
        let problem = if self.ev.attestations.is_empty() {
            format!("no attestations found (looked for {}); attach a signed {what} with {how}", self.ev.location)
        } else {
            format!(
                "no {what} among the {} attestations at {}; attach one with {how}",
                self.ev.attestations.len(),
                self.ev.location
            )
        };
        (problem, false)
    }
}

/// Records in the verdict that something the policy forgives until `expires`
/// (an exception, a quarantined test) expires soon, when it is within
/// [`EXCEPTION_WARNING_DAYS`] of `today`: the note `note`, once, and the
/// fact (for `report`'s status).
fn expiring_soon(v: &mut Verdict, today: NaiveDate, id: &str, expires: NaiveDate, note: String) {
    if (expires - today).num_days() > EXCEPTION_WARNING_DAYS {
        return;
    }
    if !v.notes.contains(&note) {
        v.notes.push(note);
    }
    let expiring = ExpiringException { id: id.to_string(), expires };
    if !v.expiring_exceptions.contains(&expiring) {
        v.expiring_exceptions.push(expiring);
    }
}

fn signed_by_any(signers: &[String], wanted: &[String]) -> bool {
    signers.iter().any(|s| wanted.contains(s))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `3d 4h`, `5h 12m`, `40m`: a rounded age for messages.
fn human(d: ChronoDuration) -> String {
    let m = d.num_minutes().max(0);
    let (days, hours, mins) = (m / 1440, (m / 60) % 24, m % 60);
    match (days, hours) {
        (0, 0) => format!("{mins}m"),
        (0, _) => format!("{hours}h {mins}m"),
        _ => format!("{days}d {hours}h"),
    }
}

// Not `tests`: that is the test-result rule.
#[cfg(test)]
mod placement {
    use super::*;

    #[test]
    fn a_tier_s_rules_in_order_with_their_places() {
        let tier: TierSpec = serde_yaml_ng::from_str(
            "attestations:\n  - { predicateType: https://cyclonedx.org/bom, signedBy: [sbom] }\n  - { predicateType: r, signedBy: [review] }\n\
             provenance: { signedBy: [ci] }\ntests: { signedBy: [qa] }\nvulnerabilities: { signedBy: [scanner, other] }\n",
        )
        .unwrap();
        // (place, kind, signers, what the denial asks for)
        let want: [(&str, EvidenceKind, &[&str], &str); 5] = [
            ("vulnerabilities", EvidenceKind::Vulnerabilities, &["scanner", "other"], "a signed vulnerability scan"),
            ("tests", EvidenceKind::Tests, &["qa"], "a signed test result"),
            ("provenance", EvidenceKind::Provenance, &["ci"], "signed build provenance"),
            ("attestations[0]", EvidenceKind::Attestation, &["sbom"], "a signed https://cyclonedx.org/bom attestation"),
            ("attestations[1]", EvidenceKind::Attestation, &["review"], "a signed r attestation"),
        ];
        let got = placed(&tier);
        assert_eq!(got.len(), want.len());
        for ((place, rule), (at, kind, signers, how)) in got.iter().zip(want) {
            assert_eq!(place.to_string(), at);
            assert_eq!(rule.kind(), kind, "{at}");
            assert_eq!(rule.signed_by(), signers, "{at}");
            assert!(rule.how().starts_with(how), "{at}: {}", rule.how());
            assert!(rule.attach().contains("{image}"), "{at}: {}", rule.attach());
        }
        assert_eq!(of(&tier).len(), 5);
        let none: TierSpec = serde_yaml_ng::from_str("mode: warn").unwrap();
        assert!(of(&none).is_empty());
    }
}
