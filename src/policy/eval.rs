//! Pure evaluation: (policy, tier, image evidence, now) -> verdict with reasons.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::model::{Mode, OnError, Policy, TierName, TierSpec, PLATFORMS_INDEX};
use super::rules::{self, vulnerabilities::VULN_FIX, Ctx, Found};
use crate::attest::SignerIdentity;
use crate::evidence::{ImageEvidence, LookupError};
use crate::image::ImageRef;
use crate::platform::{Content, Platform};

/// An exception expiring within this many days is flagged in a warning.
pub const EXCEPTION_WARNING_DAYS: i64 = 14;

/// Why an image fails a tier, as a word for metrics, reports and tooling
/// (the problems say it in full).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The tier is not defined in the policy.
    Tier,
    /// The tier requires digests and the image is named by tag.
    Digest,
    /// Evidence could not be gathered (registry error, deadline).
    Unverifiable,
    /// No attestations at all.
    NoAttestations,
    /// No acceptable attestation of a kind the tier needs: missing, not
    /// verified, or signed by a signer the tier does not accept.
    MissingEvidence,
    /// Evidence older than the tier's maxAge, from the future, or undated.
    StaleEvidence,
    Vulnerabilities,
    Tests,
    Provenance,
    /// An attestation's conditions (CEL) are false, or cannot be evaluated.
    Conditions,
    /// Packages licensed in a way the tier does not accept.
    Licenses,
    /// A multi-arch image none of whose platforms the tier judges.
    Platforms,
    /// Built on a base image that has moved on for longer than the tier
    /// allows, or whose base is not known (`baseImage`).
    BaseImage,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Tier => "tier",
            Reason::Digest => "digest",
            Reason::Unverifiable => "unverifiable",
            Reason::NoAttestations => "no_attestations",
            Reason::MissingEvidence => "missing_evidence",
            Reason::StaleEvidence => "stale_evidence",
            Reason::Vulnerabilities => "vulnerabilities",
            Reason::Tests => "tests",
            Reason::Provenance => "provenance",
            Reason::Conditions => "conditions",
            Reason::Licenses => "licenses",
            Reason::Platforms => "platforms",
            Reason::BaseImage => "base_image",
        }
    }
}

/// What an attestation a verdict rests on was evidence of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum EvidenceKind {
    Vulnerabilities,
    Tests,
    Provenance,
    Attestation,
    /// A VEX document a tier trusts, considered for the scan's findings.
    Vex,
    /// An SBOM whose packages' licences a tier judges.
    Licenses,
    /// The base image the image's manifest names, and where its tag is now.
    BaseImage,
}

impl EvidenceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::Vulnerabilities => "vulnerabilities",
            EvidenceKind::Tests => "tests",
            EvidenceKind::Provenance => "provenance",
            EvidenceKind::Attestation => "attestation",
            EvidenceKind::Vex => "vex",
            EvidenceKind::Licenses => "licenses",
            EvidenceKind::BaseImage => "baseImage",
        }
    }
}

/// An attestation a verdict rests on: which, of what, and who signed it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cited {
    /// Digest of the envelope or bundle as stored.
    pub digest: String,
    pub kind: EvidenceKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicate_type: Option<String>,
    /// The policy's signers whose keys or identities verified it.
    pub signers: Vec<String>,
    /// For a keyless signature: the certificate's identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<SignerIdentity>,
    /// When the scan or test run it reports finished, if it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_on: Option<DateTime<Utc>>,
}

/// The verdict for one image in one tier.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// The image as written in the object.
    pub image: String,
    /// `registry/repository`, normalised (empty when the reference did not parse).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The digest evaluated, when it could be resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub tier: String,
    pub admitted: bool,
    /// Why the image fails the tier's policy (in warn mode it is admitted anyway).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Things to know that do not block: exceptions about to expire, findings
    /// inside their remediation window, errors tolerated by `onError: allow`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Exceptions applied, by id.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<String>,
    /// Digests of the attestation envelopes the verdict rests on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// The same attestations, with what each is evidence of and who signed it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<Cited>,
    /// Why it fails, one word per kind of problem (empty when it passes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
    /// Set when evidence could not be gathered (registry error, deadline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What to do about the problems, most useful first: one short step or
    /// command per kind of problem (the image written out in full, ready to
    /// copy).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remedies: Vec<String>,
    /// For a multi-arch image judged by its platforms: each one judged,
    /// `linux/arm64@sha256:…`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// Exceptions applied that expire within `EXCEPTION_WARNING_DAYS` (14)
    /// days (a note says so in words), on the image or any platform judged, for
    /// code that classifies verdicts (`report`'s status). Not serialised:
    /// the outputs keep their fields.
    #[serde(skip)]
    pub expiring_exceptions: Vec<ExpiringException>,
    /// Findings a trusted VEX statement took out of the count: each with
    /// its status, justification, the document's author, its signer and
    /// the document's digest.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vex_suppressed: Vec<crate::evidence::vex::Suppressed>,
    /// The base image judged, when the tier judges base images
    /// (`baseImage`): the name, the digest built on, the digest its name
    /// points to now, since when, and the status. For an index judged by
    /// its platforms, its worst platform's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_image: Option<super::rules::base_image::BaseImageStatus>,
    /// Each problem with what it concerns, in the order of `problems`, for
    /// outputs that file problems by check (JUnit's testcases, SARIF's
    /// rules). Not serialised: the outputs keep their fields.
    #[serde(skip)]
    pub failures: Vec<Failure>,
    /// The vulnerability findings that count against the tier's limits (not
    /// ignored, excepted or inside a remediation window), for outputs that
    /// list them one by one. Not serialised.
    #[serde(skip)]
    pub counted: Vec<Counted>,
}

/// One problem of a verdict, filed by what it concerns.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub reason: Reason,
    /// The kind of evidence whose rule found it; `None` for a problem of the
    /// image itself (tier, digest, unverifiable, no attestations, platforms).
    pub kind: Option<EvidenceKind>,
    /// The evidence is there, but no signer the tier accepts signed it.
    pub signers: bool,
    /// The problem, as in `problems`.
    pub problem: String,
}

/// A finding that counts against a tier's limits.
#[derive(Clone, Debug, PartialEq)]
pub struct Counted {
    pub finding: crate::evidence::Finding,
    /// The tier's limit for its severity, if it sets one.
    pub limit: Option<u32>,
    /// Its severity has more counted findings than the limit.
    pub over_limit: bool,
}

/// An exception that applied to a verdict and expires soon.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExpiringException {
    /// The exception's id (`CVE-2024-0001`).
    pub id: String,
    /// Its last day.
    pub expires: NaiveDate,
}

impl Verdict {
    /// `registry/repo@sha256:… denied for tier production: reason; reason`.
    pub fn denial_message(&self) -> String {
        format!("{} denied for tier {}: {}", self.judged(), self.tier, self.problems.join("; "))
    }

    /// The warning a tier in warn mode gives for an image it admits despite
    /// problems, short and remedy first, as Kubernetes shows warnings (each
    /// cut at 256 bytes): the image shortened, the one step that fixes it,
    /// then what fails. [`Verdict::warn_message`] is the whole text.
    pub fn warning(&self) -> String {
        let what = self.problems.first().map(|p| brief(p)).unwrap_or_default();
        match self.remedies.first() {
            Some(fix) => format!("{} would be denied in {}: {fix} ({what})", self.short(), self.tier),
            None => format!("{} would be denied in {}: {what}", self.short(), self.tier),
        }
    }

    /// `shop/api@sha256:8b34c1d2e3f4`: the repository (its registry left
    /// out) and a short digest; the reference as written when unresolved.
    fn short(&self) -> String {
        let repository = match self.name.split_once('/') {
            Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => rest,
            _ => self.name.as_str(),
        };
        match &self.digest {
            Some(d) if !repository.is_empty() => {
                format!("{repository}@{}", &d[..d.len().min("sha256:".len() + 12)])
            }
            _ => self.image.clone(),
        }
    }

    /// Records a remedy, once.
    pub(super) fn fix(&mut self, remedy: String) {
        if !self.remedies.contains(&remedy) {
            self.remedies.push(remedy);
        }
    }

    /// The image as a command should name it: pinned when resolved.
    pub(super) fn pinned(&self) -> String {
        match &self.digest {
            Some(d) if !self.name.is_empty() => format!("{}@{d}", self.name),
            _ => self.image.clone(),
        }
    }

    /// What a tier in warn mode says of an image it admits despite problems.
    pub fn warn_message(&self) -> String {
        format!(
            "{} would be denied for tier {}: {} (mode warn: admitted)",
            self.judged(),
            self.tier,
            self.problems.join("; ")
        )
    }

    /// The image as judged: `registry/repo@sha256:…` once resolved, else as written.
    fn judged(&self) -> String {
        match &self.digest {
            Some(d) if !self.name.is_empty() => format!("{}@{d}", self.name),
            _ => self.image.clone(),
        }
    }

    /// The first reason it fails, if it does.
    pub fn reason(&self) -> Option<Reason> {
        self.reasons.first().copied()
    }

    /// Records a problem of kind `reason`.
    pub(super) fn fail(&mut self, reason: Reason, problem: String) {
        self.failures.push(Failure { reason, kind: None, signers: false, problem: problem.clone() });
        self.problems.push(problem);
        if !self.reasons.contains(&reason) {
            self.reasons.push(reason);
        }
    }

    /// Records problems of kind `reason`.
    pub(super) fn fail_all(&mut self, reason: Reason, problems: impl IntoIterator<Item = String>) {
        for p in problems {
            self.fail(reason, p);
        }
    }

    /// Takes in the verdict on one platform of a multi-arch image
    /// (`label`: `platform linux/arm64 (sha256:…)`): its problems, notes
    /// and first error labelled, its remedies by platform, the rest merged.
    fn absorb(&mut self, label: &str, platform: &str, pv: Verdict) {
        self.problems.extend(pv.problems.iter().map(|x| format!("{label}: {x}")));
        self.failures
            .extend(pv.failures.iter().map(|f| Failure { problem: format!("{label}: {}", f.problem), ..f.clone() }));
        for c in &pv.counted {
            if !self.counted.iter().any(|o| o.finding.id == c.finding.id && o.finding.package == c.finding.package) {
                self.counted.push(c.clone());
            }
        }
        for r in &pv.reasons {
            if !self.reasons.contains(r) {
                self.reasons.push(*r);
            }
        }
        self.attestations.extend(pv.attestations.iter().cloned());
        self.notes.extend(pv.notes.iter().map(|x| format!("{label}: {x}")));
        for r in pv.remedies {
            self.fix(format!("{platform}: {r}"));
        }
        for (from, into) in [(pv.evidence, &mut self.evidence), (pv.exceptions, &mut self.exceptions)] {
            for e in from {
                if !into.contains(&e) {
                    into.push(e);
                }
            }
        }
        for e in pv.expiring_exceptions {
            if !self.expiring_exceptions.contains(&e) {
                self.expiring_exceptions.push(e);
            }
        }
        if self.error.is_none() {
            self.error = pv.error.map(|e| format!("{label}: {e}"));
        }
        if let Some(b) = pv.base_image {
            if self.base_image.as_ref().is_none_or(|mine| mine.status < b.status) {
                self.base_image = Some(b);
            }
        }
    }

    /// Cites an attestation the verdict rests on.
    pub(super) fn cite(&mut self, kind: EvidenceKind, f: &Found<'_, impl Sized>, finished_on: Option<DateTime<Utc>>) {
        let digest = f.att.envelope.to_string();
        if !self.evidence.contains(&digest) {
            self.evidence.push(digest.clone());
        }
        self.attestations.push(Cited {
            digest,
            kind,
            predicate_type: f.att.claimed_type.clone(),
            signers: f.signers.to_vec(),
            identity: f.identity.cloned(),
            finished_on,
        });
    }
}

/// Evaluates one image. `gathered` is the evidence found for it, or the error
/// that prevented finding it.
pub fn evaluate(
    policy: &Policy,
    tier_name: &TierName,
    image: &ImageRef,
    gathered: Result<&ImageEvidence, &LookupError>,
    now: DateTime<Utc>,
) -> Verdict {
    evaluate_with_vex(policy, tier_name, image, gathered, now, &[])
}

/// [`evaluate`], with VEX documents given for the image outside its
/// attestations (`check --vex`): applied where the tier trusts VEX at all,
/// and said to be unsigned.
pub fn evaluate_with_vex(
    policy: &Policy,
    tier_name: &TierName,
    image: &ImageRef,
    gathered: Result<&ImageEvidence, &LookupError>,
    now: DateTime<Utc>,
    vex: &[crate::evidence::vex::Source],
) -> Verdict {
    let mut v = Verdict {
        image: image.original.clone(),
        name: image.name(),
        digest: gathered.ok().map(|e| e.digest.to_string()),
        tier: tier_name.to_string(),
        ..Verdict::default()
    };
    let Some(tier) = policy.tier(tier_name) else {
        v.fail(
            Reason::Tier,
            format!("tier {tier_name:?} is not defined in the policy (defined: {})", policy.tier_names().join(", ")),
        );
        return v;
    };
    if tier.require_digest && image.digest.is_none() {
        not_pinned(tier_name, image, &mut v);
    }
    let ev = match gathered {
        Ok(ev) => ev,
        Err(error) => {
            unverifiable(tier_name, tier, image, error, &mut v);
            return v;
        }
    };
    v.notes.extend(unread_notes(ev));
    let index_only = tier.platforms.iter().any(|p| p == PLATFORMS_INDEX);
    if ev.index && ev.attestations.is_empty() {
        if !index_only {
            return by_platform(policy, tier_name, tier, image, ev, now, vex, v);
        }
        v.notes.push(format!(
            "{} is a multi-arch image (an index); tier {tier_name} judges only the index's own attestations (platforms: [index])",
            image.original
        ));
    }
    let cx = Ctx { tier: tier_name, image, ev, now, policy, vex_given: vex };
    let rules = rules::of(tier);
    if ev.attestations.is_empty() && !rules.is_empty() {
        // One reason, naming everything the tier needs.
        let how: Vec<String> = rules.iter().map(|r| r.how()).collect();
        v.fail(
            Reason::NoAttestations,
            format!("no attestations found (looked for {}); attach {}", ev.location, how.join(" and ")),
        );
        let pinned = v.pinned();
        v.fix(rules[0].attach().replace("{image}", &pinned));
    } else {
        for rule in &rules {
            let before = v.failures.len();
            rule.judge(&cx, &mut v);
            for f in &mut v.failures[before..] {
                f.kind = Some(rule.kind());
            }
        }
    }
    if let Some(rule) = &tier.base_image {
        let before = v.failures.len();
        rules::base_image::judge(rule, tier_name, image, ev, now, &mut v);
        for f in &mut v.failures[before..] {
            f.kind = Some(EvidenceKind::BaseImage);
        }
    }
    v.admitted = v.problems.is_empty() || tier.mode == Mode::Warn;
    v
}

/// The tier requires digests and the image is named by tag.
fn not_pinned(tier_name: &TierName, image: &ImageRef, v: &mut Verdict) {
    v.fail(Reason::Digest, format!(
        "{} is not pinned by digest, and tier {tier_name} requires digests (requireDigest); write it as {}:{}@sha256:<digest> \
         (`crane digest {}` or `docker buildx imagetools inspect` prints the digest), or install Portcullis' mutating webhook, \
         which pins tags in tiers that require digests",
        image.original,
        image.name(),
        image.tag.as_deref().unwrap_or("latest"),
        image.original
    ));
    v.fix(match &v.digest {
        Some(d) => format!("pin it: {}@{d}", image.original),
        None => format!("pin it by digest (crane digest {} prints it)", image.original),
    });
}

/// Evidence could not be gathered: a note and admitted where the tier
/// tolerates errors (`onError: allow`), else a problem.
fn unverifiable(tier_name: &TierName, tier: &TierSpec, image: &ImageRef, error: &LookupError, v: &mut Verdict) {
    v.error = Some(error.to_string());
    match tier.on_error {
        OnError::Allow => {
            v.admitted = v.problems.is_empty() || tier.mode == Mode::Warn;
            v.notes.push(format!(
                "could not verify {}: {error}; admitted because tier {tier_name} has onError: allow",
                image.original
            ));
        }
        OnError::Deny => {
            v.fail(
                Reason::Unverifiable,
                format!("could not verify the image: {error}; tier {tier_name} fails closed (onError: deny)"),
            );
            v.fix(format!(
                "retry once the registry answers Portcullis (portcullis check {} --tier {tier_name} shows the error)",
                image.original
            ));
        }
    }
}

/// What was listed for an image and not read, and why, one note per reason.
fn unread_notes(ev: &ImageEvidence) -> Vec<String> {
    let u = &ev.skipped;
    let d = ev.digest.short();
    let plural = |n: usize| if n == 1 { ("", "was") } else { ("s", "were") };
    let mut out = Vec::new();
    if u.past_count > 0 {
        let (s, was) = plural(u.past_count);
        out.push(format!(
            "{} older attestation{s} of {d} {was} not read: only the newest {} are (the per-image limit)",
            u.past_count, u.count_limit
        ));
    }
    if u.over_budget > 0 {
        let (s, was) = plural(u.over_budget);
        out.push(format!(
            "{} attestation{s} of {d} {was} not read: past the {} read per image (the newest of each predicate type are read first)",
            u.over_budget,
            bytes(u.byte_budget)
        ));
    }
    if u.too_large > 0 {
        let (s, was) = plural(u.too_large);
        out.push(format!(
            "{} attestation{s} of {d} {was} not read: larger than the limit of {} per attestation",
            u.too_large,
            bytes(u.size_limit)
        ));
    }
    out
}

/// `16 MiB`, or `1000 bytes`.
fn bytes(n: u64) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{} MiB", n >> 20)
    } else {
        format!("{n} bytes")
    }
}

/// The gist of a problem, for a short warning: up to its first aside
/// (`(…)`, `;`), at most 100 bytes.
fn brief(problem: &str) -> String {
    let cut = [" (", "; "].iter().filter_map(|sep| problem.find(sep)).min().unwrap_or(problem.len());
    super::decide::truncate(&problem[..cut], 100)
}

/// A multi-arch image without attestations of its own: every entry of the
/// index that the tier's nodes could run must pass, each by its own
/// manifest's attestations ([`crate::platform::judged`]: every entry but
/// attestation manifests, or with `platforms`, those a node of one could
/// run, as containerd chooses). An index inside the index passes only by
/// attestations of its own. The verdict names each failing entry, and notes
/// the runnable ones the tier leaves unjudged.
// The VEX given for the image (`check --vex`) is one more input.
#[allow(clippy::too_many_arguments)]
fn by_platform(
    policy: &Policy,
    tier_name: &TierName,
    tier: &TierSpec,
    image: &ImageRef,
    ev: &ImageEvidence,
    now: DateTime<Utc>,
    vex: &[crate::evidence::vex::Source],
    mut v: Verdict,
) -> Verdict {
    let nodes: Vec<Platform> = tier.platforms.iter().filter_map(|p| Platform::parse(p)).collect();
    let judged = crate::platform::judged(&ev.entries, &nodes);
    let is_judged = |p: &&crate::evidence::PlatformEvidence| judged.get(p.entry).copied().unwrap_or(true);
    let (platforms, unjudged): (Vec<_>, Vec<_>) = ev.platforms.iter().partition(is_judged);
    if platforms.is_empty() {
        let listed: Vec<&str> = ev.platforms.iter().map(|p| p.platform.as_str()).collect();
        v.fail(Reason::Platforms, if listed.is_empty() {
            format!("{} is an index with no platform manifests and no attestations of its own", image.original)
        } else {
            format!(
                "{} is a multi-arch image with no attestations of its own, and none of its platforms ({}) is one tier {tier_name} judges ({})",
                image.original,
                listed.join(", "),
                tier.platforms.join(", ")
            )
        });
        let pinned = v.pinned();
        v.fix(format!(
            "attest the index itself: {}",
            VULN_FIX.replace("{image}", &pinned).replace("attest a scan: ", "")
        ));
        v.admitted = tier.mode == Mode::Warn;
        return v;
    }
    if !unjudged.is_empty() {
        let listed: Vec<String> = unjudged.iter().map(|p| format!("{} ({})", p.platform, p.digest.short())).collect();
        v.notes.push(format!(
            "not judged, tier {tier_name} judging only what {} nodes run: {}",
            tier.platforms.join(", "),
            listed.join(", ")
        ));
    }
    for p in platforms {
        let pinned = ImageRef { digest: Some(p.digest.clone()), ..image.clone() };
        let label = format!("platform {} ({})", p.platform, p.digest.short());
        let nested = ev.entries.get(p.entry).is_some_and(|e| e.content == Content::Index);
        if let (true, Ok(child)) = (nested, &p.evidence) {
            if child.attestations.is_empty() {
                v.fail(
                    Reason::Platforms,
                    format!(
                        "{label}: an index inside the index, without attestations of its own; Portcullis does not \
                         judge the images inside it: attest it by its digest, or list its images in the outer index"
                    ),
                );
                v.fix(format!("attest the inner index by its digest ({})", p.digest.short()));
                v.platforms.push(format!("{}@{}", p.platform, p.digest));
                continue;
            }
        }
        let pv = evaluate_with_vex(policy, tier_name, &pinned, p.evidence.as_deref(), now, vex);
        v.absorb(&label, &p.platform, pv);
        v.platforms.push(format!("{}@{}", p.platform, p.digest));
    }
    v.admitted = v.problems.is_empty() || tier.mode == Mode::Warn;
    v
}

#[cfg(test)]
pub(super) mod tests {
    //! The policy as a table: one row per rule and boundary.
    use super::*;
    use crate::attest::Problem;
    use crate::evidence::{Claim, Outcome, Provenance, Severity, TestOutcome};
    use crate::evidence::{Finding, ImageEvidence, TestReport, VulnReport};
    use crate::image::Digest;
    use chrono::Duration as ChronoDuration;

    /// A tier name, as the policy would make it.
    pub(in crate::policy) fn name(tier: &str) -> TierName {
        TierName(tier.into())
    }

    const KEY: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE7QtNpX/PTPA4pOkBdBOmWT3S3HhP\nhVxygajXbNEXKMRxbQMUMhUF/8RAIKvGJDujIcIveyrBAUZ07McENQdDrw==\n-----END PUBLIC KEY-----";

    pub(in crate::policy) fn now() -> DateTime<Utc> {
        "2026-06-15T12:00:00Z".parse().unwrap()
    }

    pub(in crate::policy) fn policy(tier_yaml: &str, exceptions: &str) -> Policy {
        let key = KEY.lines().map(|l| format!("        {l}")).collect::<Vec<_>>().join("\n");
        let y = format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers:\n    scanner:\n      publicKey: |\n{key}\n    ci:\n      publicKey: |\n{key}\n{RELEASE}\n  tiers:\n    t:\n{}\n{exceptions}",
            tier_yaml.lines().map(|l| format!("      {l}")).collect::<Vec<_>>().join("\n")
        );
        Policy::from_yaml(&y, "table").unwrap_or_else(|e| panic!("{e}\n{y}"))
    }

    /// A keyless signer: GitHub Actions' release workflow of acme/shop.
    const RELEASE: &str = "    release:\n      keyless:\n        trustedRoot: github\n        identities:\n          - issuer: https://token.actions.githubusercontent.com\n            subject: https://github.com/acme/shop/.github/workflows/release.yml@refs/heads/main";
    pub(in crate::policy) const ACTIONS: &str = "https://token.actions.githubusercontent.com";
    pub(in crate::policy) const RELEASE_WORKFLOW: &str =
        "https://github.com/acme/shop/.github/workflows/release.yml@refs/heads/main";
    const HOSTED: &str = "https://github.com/actions/runner/github-hosted";

    pub(in crate::policy) fn identity(subject: &str, source: Option<&str>) -> SignerIdentity {
        SignerIdentity {
            issuer: ACTIONS.into(),
            subject: subject.into(),
            source_repository: source.map(str::to_string),
            ..Default::default()
        }
    }

    /// SLSA v1 provenance by `signer`, built by `builder` from `source`;
    /// signed keyless with a certificate naming `cert_source` when given.
    fn prov(signer: &str, builder: &str, source: Option<&str>, cert_source: Option<&str>) -> Outcome {
        Outcome::Verified {
            statement: None,
            identity: cert_source.map(|s| std::sync::Arc::new(identity(RELEASE_WORKFLOW, Some(s)))),
            signers: vec![signer.into()],
            claim: Claim::Provenance(Provenance {
                predicate_type: crate::evidence::SLSA_PROVENANCE_V1.into(),
                builder_id: builder.into(),
                build_type: String::new(),
                source_repository: source.map(str::to_string),
                source_commit: None,
            }),
        }
    }

    fn other(signer: &str, predicate_type: &str) -> Outcome {
        Outcome::Verified {
            statement: None,
            identity: None,
            signers: vec![signer.into()],
            claim: Claim::Other { predicate_type: predicate_type.into() },
        }
    }

    fn finding(id: &str, sev: Severity, fixed: &str, published: Option<&str>) -> Finding {
        Finding {
            id: id.into(),
            aliases: vec![],
            severity: sev,
            package: "openssl".into(),
            installed_version: "3.0.1".into(),
            fixed_versions: if fixed.is_empty() { vec![] } else { vec![fixed.into()] },
            fix_state: crate::evidence::FixState::parse("", !fixed.is_empty()),
            published: published.map(|p| p.parse().unwrap()),
            cvss: None,
            target: String::new(),
            purl: None,
        }
    }

    fn scan(signer: &str, age: ChronoDuration, findings: Vec<Finding>) -> Outcome {
        Outcome::Verified {
            statement: None,
            identity: None,
            signers: vec![signer.into()],
            claim: Claim::Vulnerabilities(VulnReport {
                scanner: "trivy".into(),
                finished_on: Some(now() - age),
                findings,
                vex: None,
                sbom: None,
            }),
        }
    }

    pub(in crate::policy) fn tests(signer: &str, result: TestOutcome, failed: &[&str]) -> Outcome {
        Outcome::Verified {
            statement: None,
            identity: None,
            signers: vec![signer.into()],
            claim: Claim::Tests(TestReport {
                result,
                configuration: vec![],
                url: None,
                passed_tests: vec![],
                warned_tests: vec![],
                failed_tests: failed.iter().map(|s| s.to_string()).collect(),
                finished_on: None,
            }),
        }
    }

    /// A PASSED result with these passed tests and configurations, finished `age` ago.
    fn run(passed: &[&str], configs: &[&str], age: Option<ChronoDuration>) -> Outcome {
        Outcome::Verified {
            statement: None,
            identity: None,
            signers: vec!["ci".into()],
            claim: Claim::Tests(TestReport {
                result: TestOutcome::Passed,
                configuration: configs
                    .iter()
                    .map(|c| crate::evidence::ResourceDescriptor { name: Some(c.to_string()), uri: None })
                    .collect(),
                url: None,
                passed_tests: passed.iter().map(|s| s.to_string()).collect(),
                warned_tests: vec![],
                failed_tests: vec![],
                finished_on: age.map(|a| now() - a),
            }),
        }
    }

    pub(in crate::policy) fn evidence(outcomes: Vec<Outcome>) -> ImageEvidence {
        ImageEvidence {
            digest: Digest::of(b"image"),
            location: "r.example/app:sha256-x.att".into(),
            attestations: outcomes
                .into_iter()
                .enumerate()
                .map(|(index, outcome)| crate::evidence::Attestation {
                    envelope: Digest::of(index.to_string().as_bytes()),
                    index,
                    claimed_type: match &outcome {
                        Outcome::Verified { claim: Claim::Other { predicate_type }, .. } => {
                            Some(predicate_type.clone())
                        }
                        Outcome::Verified { claim: Claim::Provenance(p), .. } => Some(p.predicate_type.clone()),
                        _ => None,
                    },
                    outcome,
                })
                .collect(),
            skipped: Default::default(),
            index: false,
            entries: vec![],
            platforms: vec![],
            base: None,
        }
    }

    /// A multi-arch image: an index with `own` attestations and these
    /// platforms (each an image).
    pub(in crate::policy) fn index(
        own: Vec<Outcome>,
        platforms: Vec<(&str, Result<Vec<Outcome>, &str>)>,
    ) -> ImageEvidence {
        let entries = platforms.into_iter().map(|(p, e)| (p, crate::platform::Content::Image, e)).collect();
        index_of(own, entries)
    }

    /// An index with `own` attestations and these entries: platform, what
    /// it holds, and its evidence (an index inside: its own attestations).
    type Listed<'a> = (&'a str, crate::platform::Content, Result<Vec<Outcome>, &'a str>);

    fn index_of(own: Vec<Outcome>, entries: Vec<Listed<'_>>) -> ImageEvidence {
        use crate::platform::{Content, Entry, Platform};
        let mut ev = ImageEvidence { index: true, ..evidence(own) };
        for (i, (p, content, e)) in entries.into_iter().enumerate() {
            let digest = Digest::of(format!("{p} {i}").as_bytes());
            let written = p.split_once('/').map(|(os, rest)| {
                let (architecture, variant) = rest.split_once('/').unwrap_or((rest, ""));
                Platform {
                    os: os.into(),
                    architecture: architecture.into(),
                    variant: variant.into(),
                    ..Platform::default()
                }
            });
            let entry = Entry { digest: digest.clone(), platform: Platform::parse(p), written, config: None, content };
            if content != Content::Attestation {
                ev.platforms.push(crate::evidence::PlatformEvidence {
                    platform: entry.label(),
                    digest,
                    entry: i,
                    evidence: e
                        .map(|o| {
                            let child = ImageEvidence { index: content == Content::Index, ..evidence(o) };
                            std::sync::Arc::new(child)
                        })
                        .map_err(|e| LookupError::Source(e.to_string())),
                });
            }
            ev.entries.push(entry);
        }
        ev
    }

    #[test]
    fn multi_arch_images_are_judged_per_platform() {
        use crate::platform::Content;
        let clean = || vec![scan("scanner", h(1), vec![])];
        let crit = || vec![scan("scanner", h(1), vec![finding("CVE-1", Severity::Critical, "2", None)])];
        let two = |arm: Vec<Outcome>| index(vec![], vec![("linux/amd64", Ok(clean())), ("linux/arm64/v8", Ok(arm))]);
        // (case, tier yaml, evidence, admitted, text in problems or notes, platforms judged)
        #[rustfmt::skip]
        let rows: Vec<(&str, String, ImageEvidence, bool, &str, usize)> = vec![
            ("every platform passes", VULNS.into(), two(clean()), true, "", 2),
            ("a failing platform is named", VULNS.into(), two(crit()), false, "platform linux/arm64/v8 (sha256:", 2),
            ("and what fails on it", VULNS.into(), two(crit()), false, "1 critical vulnerability exceeds the limit 0", 2),
            ("narrowed to amd64", format!("{VULNS}\nplatforms: [linux/amd64]"), two(crit()), true, "", 1),
            ("linux/arm64 covers its variants", format!("{VULNS}\nplatforms: [linux/arm64]"), two(crit()), false, "platform linux/arm64/v8", 1),
            ("none of the tier's platforms", format!("{VULNS}\nplatforms: [windows/amd64]"), two(clean()), false, "none of its platforms (linux/amd64, linux/arm64/v8) is one tier t judges (windows/amd64)", 0),
            ("index only: platforms do not count", format!("{VULNS}\nplatforms: [index]"), two(clean()), false, "judges only the index's own attestations", 0),
            ("the index's own attestations judge it", VULNS.into(), index(clean(), vec![("linux/arm64", Ok(crit()))]), true, "", 0),
            ("a platform that could not be looked up fails closed", VULNS.into(), index(vec![], vec![("linux/amd64", Ok(clean())), ("linux/arm64", Err("registry r.example unreachable"))]), false, "platform linux/arm64 (sha256:", 2),
            ("an index without platforms", VULNS.into(), index(vec![], vec![]), false, "an index with no platform manifests", 0),
            ("a Windows-only index", VULNS.into(), index(vec![], vec![("windows/amd64", Ok(clean()))]), true, "", 1),
            ("x86_64 is amd64", format!("{VULNS}\nplatforms: [linux/amd64]"), index(vec![], vec![("linux/x86_64", Ok(crit())), ("linux/amd64", Ok(clean()))]), false, "platform linux/x86_64, read as linux/amd64 (sha256:", 2),
            ("the tier's platform in another case", format!("{VULNS}\nplatforms: [Linux/X86_64]"), two(crit()), true, "", 1),
            ("what a narrowed tier leaves is said", format!("{VULNS}\nplatforms: [linux/amd64]"), two(crit()), true, "not judged, tier t judging only what linux/amd64 nodes run: linux/arm64/v8 (sha256:", 1),
            ("386 where amd64 nodes run it", format!("{VULNS}\nplatforms: [linux/amd64]"), index(vec![], vec![("linux/386", Ok(crit())), ("linux/arm64", Ok(clean()))]), false, "platform linux/386 (sha256:", 1),
            ("attestation manifests are not platforms", VULNS.into(), index_of(vec![], vec![("linux/amd64", Content::Image, Ok(clean())), ("linux/amd64", Content::Attestation, Err("not looked up"))]), true, "", 1),
            ("a nested index without attestations of its own", VULNS.into(), index_of(vec![], vec![("linux/amd64", Content::Image, Ok(clean())), ("linux/arm64", Content::Index, Ok(vec![]))]), false, "platform linux/arm64, an index (sha256:", 2),
            ("is denied, saying why", VULNS.into(), index_of(vec![], vec![("linux/arm64", Content::Index, Ok(vec![]))]), false, "an index inside the index, without attestations of its own", 1),
            ("a nested index is judged by its own attestations", VULNS.into(), index_of(vec![], vec![("linux/arm64", Content::Index, Ok(crit()))]), false, "1 critical vulnerability exceeds the limit 0", 1),
            ("and passes by them", VULNS.into(), index_of(vec![], vec![("linux/arm64", Content::Index, Ok(clean()))]), true, "", 1),
        ];
        let img = ImageRef::parse("r.example/app:v1").unwrap();
        for (case, tier, ev, admitted, text, judged) in rows {
            let p = policy(&tier, "");
            let v = evaluate(&p, &name("t"), &img, Ok(&ev), now());
            let said = format!("{} | {}", v.problems.join("; "), v.notes.join("; "));
            assert_eq!(v.admitted, admitted, "{case}: {said}");
            assert!(said.contains(text), "{case}: want {text:?} in {said:?}");
            assert_eq!(v.platforms.len(), judged, "{case}: {:?}", v.platforms);
        }
    }

    /// Each problem filed by reason, kind of evidence and whether the signer
    /// is the trouble (what the CI outputs file checks by), in the order of
    /// `problems`; and the findings that count, each with its limit.
    #[test]
    fn problems_are_filed_and_counted_findings_kept() {
        use EvidenceKind as K;
        let tier = format!("{VULNS}\n{TESTS}");
        let crit = || finding("CVE-1", Severity::Critical, "2", None);
        let low = || finding("CVE-2", Severity::Low, "", None);
        // (case, exceptions, evidence, filed (reason, kind, signers), counted (id, limit, over))
        #[rustfmt::skip]
        type Filed = (Reason, Option<K>, bool);
        type Kept<'a> = (&'a str, Option<u32>, bool);
        type Row<'a> = (&'a str, &'a str, Vec<Outcome>, Vec<Filed>, Vec<Kept<'a>>);
        let rows: Vec<Row<'_>> = vec![
            ("clean", "", vec![scan("scanner", h(1), vec![]), tests("ci", TestOutcome::Passed, &[])], vec![], vec![]),
            (
                "over a limit, and one with none",
                "",
                vec![scan("scanner", h(1), vec![crit(), low()]), tests("ci", TestOutcome::Passed, &[])],
                vec![(Reason::Vulnerabilities, Some(K::Vulnerabilities), false)],
                vec![("CVE-1", Some(0), true), ("CVE-2", None, false)],
            ),
            (
                "excepted: not counted",
                EXC_ACTIVE,
                vec![scan("scanner", h(1), vec![crit()]), tests("ci", TestOutcome::Passed, &[])],
                vec![],
                vec![],
            ),
            (
                "stale, failed tests",
                "",
                vec![scan("scanner", h(48), vec![]), tests("ci", TestOutcome::Failed, &["t1"])],
                vec![(Reason::StaleEvidence, Some(K::Vulnerabilities), false), (Reason::Tests, Some(K::Tests), false)],
                vec![],
            ),
            (
                "tests signed by another",
                "",
                vec![scan("scanner", h(1), vec![]), tests("scanner", TestOutcome::Passed, &[])],
                vec![(Reason::MissingEvidence, Some(K::Tests), true)],
                vec![],
            ),
            (
                "no tests at all",
                "",
                vec![scan("scanner", h(1), vec![])],
                vec![(Reason::MissingEvidence, Some(K::Tests), false)],
                vec![],
            ),
            ("no attestations", "", vec![], vec![(Reason::NoAttestations, None, false)], vec![]),
        ];
        let img =
            ImageRef::parse("r.example/app@sha256:0000000000000000000000000000000000000000000000000000000000000000")
                .unwrap();
        for (case, exceptions, outcomes, filed, counted) in rows {
            let p = policy(&tier, exceptions);
            let v = evaluate(&p, &name("t"), &img, Ok(&evidence(outcomes)), now());
            let got: Vec<(Reason, Option<K>, bool)> =
                v.failures.iter().map(|f| (f.reason, f.kind, f.signers)).collect();
            assert_eq!(got, filed, "{case}: {:?}", v.problems);
            assert_eq!(
                v.failures.iter().map(|f| &f.problem).collect::<Vec<_>>(),
                v.problems.iter().collect::<Vec<_>>(),
                "{case}"
            );
            let got: Vec<Kept<'_>> = v.counted.iter().map(|c| (c.finding.id.as_str(), c.limit, c.over_limit)).collect();
            assert_eq!(got, counted, "{case}");
        }
    }

    const VULNS: &str = "vulnerabilities: { signedBy: [scanner], maxAge: 24h, max: { critical: 0, high: 2 } }";
    const VULNS_UNKNOWN: &str = "vulnerabilities: { signedBy: [scanner], max: { unknown: 1 } }";
    const VULNS_UNFIXED: &str = "vulnerabilities: { signedBy: [scanner], ignoreUnfixed: true, max: { critical: 0 } }";
    const VULNS_GRACE: &str = "vulnerabilities: { signedBy: [scanner], max: { high: 0 }, gracePeriod: { high: 72h } }";
    const TESTS: &str = "tests: { signedBy: [ci], require: PASSED }";
    const TESTS_WARNED: &str = "tests: { signedBy: [ci], require: WARNED }";
    const TESTS_GATES: &str = "tests: { signedBy: [ci], requireConfigurations: [integration], requireTests: [checkout], minPassed: 2, maxAge: 48h }";
    const EXC_ACTIVE: &str = "  exceptions:\n    - { id: CVE-1, images: [\"r.example/*\"], tiers: [t], expires: 2026-12-31, reason: unreachable, approvedBy: sec@example.com }";
    const EXC_SOON: &str =
        "  exceptions:\n    - { id: CVE-1, expires: 2026-06-20, reason: unreachable, approvedBy: sec@example.com }";
    const EXC_EXPIRED: &str =
        "  exceptions:\n    - { id: CVE-1, expires: 2026-06-14, reason: unreachable, approvedBy: sec@example.com }";
    const EXC_TODAY: &str =
        "  exceptions:\n    - { id: CVE-1, expires: 2026-06-15, reason: unreachable, approvedBy: sec@example.com }";
    const EXC_OTHER_IMAGE: &str = "  exceptions:\n    - { id: CVE-1, images: [\"other.example/*\"], expires: 2026-12-31, reason: unreachable, approvedBy: sec@example.com }";

    const PROV: &str = "provenance: { signedBy: [release], sourceRepositories: [\"https://github.com/acme/*\"], builderIds: [\"https://github.com/actions/runner/github-hosted\"] }";
    const SBOM: &str = "attestations: [ { predicateType: \"https://cyclonedx.org/bom\", signedBy: [release] } ]";

    pub(in crate::policy) fn h(n: i64) -> ChronoDuration {
        ChronoDuration::hours(n)
    }

    /// (case, tier yaml, exceptions, attestations, admitted, text expected in problems or notes)
    type Row = (&'static str, String, &'static str, Vec<Outcome>, bool, &'static str);

    #[test]
    fn policy_table() {
        use Severity::*;
        let crit = || finding("CVE-1", Critical, "3.0.13", None);
        let high = |id: &str| finding(id, High, "3.0.13", None);
        // (case, tier yaml, exceptions, evidence, admitted, text in problems/notes)
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            ("no findings", VULNS.into(), "", vec![scan("scanner", h(1), vec![])], true, ""),
            ("critical: one over the limit 0", VULNS.into(), "", vec![scan("scanner", h(1), vec![crit()])], false, "1 critical vulnerability exceeds the limit 0 (CVE-1 in openssl 3.0.1, fixed in 3.0.13)"),
            ("high: exactly at the limit 2", VULNS.into(), "", vec![scan("scanner", h(1), vec![high("H1"), high("H2")])], true, ""),
            ("high: one over the limit 2", VULNS.into(), "", vec![scan("scanner", h(1), vec![high("H1"), high("H2"), high("H3")])], false, "3 high vulnerabilities exceed the limit 2"),
            ("unknown bucket: at its limit 1", VULNS_UNKNOWN.into(), "", vec![scan("scanner", h(1), vec![finding("U1", Unknown, "", None)])], true, ""),
            ("unknown bucket: one over its limit 1", VULNS_UNKNOWN.into(), "", vec![scan("scanner", h(1), vec![finding("U1", Unknown, "", None), finding("U2", Unknown, "", None)])], false, "2 unknown vulnerabilities exceed the limit 1"),
            ("unlimited severity is not counted", VULNS.into(), "", vec![scan("scanner", h(1), vec![finding("L", Low, "", None)])], true, ""),
            ("maxAge: exactly 24h old", VULNS.into(), "", vec![scan("scanner", h(24), vec![])], true, ""),
            ("maxAge: a second older", VULNS.into(), "", vec![scan("scanner", h(24) + ChronoDuration::seconds(1), vec![])], false, "older than the maxAge 24h of tier t"),
            ("scan from the future", VULNS.into(), "", vec![scan("scanner", -h(2), vec![])], false, "in the future"),
            ("newest scan wins", VULNS.into(), "", vec![scan("scanner", h(3), vec![crit()]), scan("scanner", h(1), vec![])], true, ""),
            ("newest scan wins, whatever the order", VULNS.into(), "", vec![scan("scanner", h(1), vec![crit()]), scan("scanner", h(3), vec![])], false, "critical"),
            ("scan by the wrong signer", VULNS.into(), "", vec![scan("ci", h(1), vec![])], false, "signed by ci, but tier t accepts only scanner"),
            ("no scan among attestations", VULNS.into(), "", vec![tests("ci", TestOutcome::Passed, &[])], false, "no vulnerability scan among the 1 attestations"),
            ("rejected scan explains itself", VULNS.into(), "", vec![Outcome::Rejected(Problem::UntrustedSignature)], false, "does not verify with any trusted key"),
            ("nothing attested", format!("{VULNS}\n{TESTS}"), "", vec![], false, "no attestations found (looked for r.example/app:sha256-x.att); attach a signed vulnerability scan"),
            ("ignoreUnfixed: unfixed critical ignored", VULNS_UNFIXED.into(), "", vec![scan("scanner", h(1), vec![finding("C", Critical, "", None)])], true, ""),
            ("ignoreUnfixed: fixable critical counts", VULNS_UNFIXED.into(), "", vec![scan("scanner", h(1), vec![crit()])], false, "1 critical"),
            ("grace: published a minute inside the window", VULNS_GRACE.into(), "", vec![scan("scanner", h(1), vec![finding("H", High, "2", Some("2026-06-12T12:01:00Z"))])], true, "inside its 72h remediation window"),
            ("grace: published a minute past the window", VULNS_GRACE.into(), "", vec![scan("scanner", h(1), vec![finding("H", High, "2", Some("2026-06-12T11:59:00Z"))])], false, "1 high vulnerability exceeds the limit 0"),
            ("grace: no published date counts at once", VULNS_GRACE.into(), "", vec![scan("scanner", h(1), vec![finding("H", High, "2", None)])], false, "1 high"),
            ("exception applies", VULNS.into(), EXC_ACTIVE, vec![scan("scanner", h(1), vec![crit()])], true, ""),
            ("exception expiring within 14 days warns", VULNS.into(), EXC_SOON, vec![scan("scanner", h(1), vec![crit()])], true, "exception for CVE-1 expires on 2026-06-20"),
            ("exception on its last day applies", VULNS.into(), EXC_TODAY, vec![scan("scanner", h(1), vec![crit()])], true, ""),
            ("exception the day after expiry", VULNS.into(), EXC_EXPIRED, vec![scan("scanner", h(1), vec![crit()])], false, "exception for CVE-1 expired on 2026-06-14"),
            ("exception for other images", VULNS.into(), EXC_OTHER_IMAGE, vec![scan("scanner", h(1), vec![crit()])], false, "1 critical"),
            ("tests PASSED", TESTS.into(), "", vec![tests("ci", TestOutcome::Passed, &[])], true, ""),
            ("tests WARNED, PASSED required", TESTS.into(), "", vec![tests("ci", TestOutcome::Warned, &[])], false, "test result is WARNED, tier t requires PASSED"),
            ("tests WARNED, WARNED accepted", TESTS_WARNED.into(), "", vec![tests("ci", TestOutcome::Warned, &[])], true, ""),
            ("tests FAILED", TESTS_WARNED.into(), "", vec![tests("ci", TestOutcome::Failed, &["a"])], false, "test result is FAILED (1 failed: a), tier t requires PASSED or WARNED"),
            ("tests PASSED yet listing failures", TESTS.into(), "", vec![tests("ci", TestOutcome::Passed, &["flaky"])], false, "lists failed tests"),
            ("last test result wins", TESTS.into(), "", vec![tests("ci", TestOutcome::Failed, &["a"]), tests("ci", TestOutcome::Passed, &[])], true, ""),
            ("tests signed by the scanner key", TESTS.into(), "", vec![tests("scanner", TestOutcome::Passed, &[])], false, "signed by scanner, but tier t accepts only ci"),
            ("test gates all met", TESTS_GATES.into(), "", vec![run(&["checkout", "refunds"], &["integration"], Some(h(48)))], true, ""),
            ("required configuration did not run", TESTS_GATES.into(), "", vec![run(&["checkout", "refunds"], &["unit"], Some(h(1)))], false, "required test configuration integration did not run"),
            ("required test not passed", TESTS_GATES.into(), "", vec![run(&["refunds", "search"], &["integration"], Some(h(1)))], false, "required tests not passed: checkout"),
            ("one passed test short of minPassed", TESTS_GATES.into(), "", vec![run(&["checkout"], &["integration"], Some(h(1)))], false, "only 1 passed tests, tier t requires at least 2"),
            ("tests a second past maxAge", TESTS_GATES.into(), "", vec![run(&["checkout", "refunds"], &["integration"], Some(h(48) + ChronoDuration::seconds(1)))], false, "older than the tests maxAge 48h"),
            ("test result from the future", TESTS_GATES.into(), "", vec![run(&["checkout", "refunds"], &["integration"], Some(-h(2)))], false, "the test result claims to finish in the future"),
            ("tests maxAge without finishedOn", TESTS_GATES.into(), "", vec![run(&["checkout", "refunds"], &["integration"], None)], false, "records no finish time (finishedOn)"),
            ("newest test result by finishedOn wins", TESTS_GATES.into(), "", vec![run(&["checkout", "refunds"], &["integration"], Some(h(1))), run(&["checkout"], &["integration"], Some(h(5)))], true, ""),
            ("warn mode admits, keeping the reason", format!("mode: warn\n{VULNS}"), "", vec![scan("scanner", h(1), vec![crit()])], true, "1 critical"),
            ("provenance from an accepted repository and builder", PROV.into(), "", vec![prov("release", HOSTED, Some("https://github.com/acme/shop"), Some("https://github.com/acme/shop"))], true, ""),
            ("provenance from another organisation", PROV.into(), "", vec![prov("release", HOSTED, Some("https://github.com/evil/shop"), None)], false, "built from https://github.com/evil/shop (per the provenance), but tier t accepts source repositories https://github.com/acme/*"),
            ("certificate names another repository than the provenance", PROV.into(), "", vec![prov("release", HOSTED, Some("https://github.com/acme/shop"), Some("https://github.com/evil/shop"))], false, "built from https://github.com/evil/shop (per the signing certificate)"),
            ("* stays within one path segment", PROV.into(), "", vec![prov("release", HOSTED, Some("https://github.com/acme/shop/sub"), None)], false, "built from https://github.com/acme/shop/sub"),
            ("provenance names no source", PROV.into(), "", vec![prov("release", HOSTED, None, None)], false, "names no source repository"),
            ("provenance from a self-hosted builder", PROV.into(), "", vec![prov("release", "https://github.com/actions/runner/self-hosted", Some("https://github.com/acme/shop"), None)], false, "built by https://github.com/actions/runner/self-hosted, but tier t accepts builders https://github.com/actions/runner/github-hosted"),
            ("a matching provenance among others passes", PROV.into(), "", vec![prov("release", HOSTED, Some("https://github.com/acme/shop"), None), prov("release", HOSTED, Some("https://github.com/evil/shop"), None)], true, ""),
            ("provenance by a key signer names the keyless identity expected", PROV.into(), "", vec![prov("ci", HOSTED, Some("https://github.com/acme/shop"), None)], false, "signed by ci, but tier t accepts only release (subject https://github.com/acme/shop/.github/workflows/release.yml@refs/heads/main from issuer https://token.actions.githubusercontent.com)"),
            ("no provenance at all", format!("{PROV}\n{TESTS}"), "", vec![tests("ci", TestOutcome::Passed, &[])], false, "no build provenance among the 1 attestations"),
            ("nothing attested names provenance", PROV.into(), "", vec![], false, "attach signed build provenance"),
            ("unknown identity names who signed and who is expected", PROV.into(), "", vec![Outcome::Rejected(Problem::UnknownIdentity { identity: Box::new(identity("https://github.com/evil/shop/.github/workflows/x.yml@refs/heads/main", None)) })], false, "attestation is signed keyless by subject https://github.com/evil/shop/.github/workflows/x.yml@refs/heads/main from issuer https://token.actions.githubusercontent.com, an identity no signer of the policy accepts; tier t expects release (subject https://github.com/acme/shop/.github/workflows/release.yml@refs/heads/main from issuer https://token.actions.githubusercontent.com)"),
            ("keyless bundle where only keys are trusted says so", TESTS.into(), "", vec![Outcome::Rejected(Problem::KeylessButOnlyKeys { identity: Box::new(identity(RELEASE_WORKFLOW, None)) })], false, "signed keyless by subject https://github.com/acme/shop/.github/workflows/release.yml@refs/heads/main from issuer https://token.actions.githubusercontent.com, but the policy's signers are public keys"),
            ("keyed envelope where only keyless is trusted says so", PROV.into(), "", vec![Outcome::Rejected(Problem::KeyedButOnlyKeyless)], false, "signed with a key, but the policy's signers are keyless"),
            ("required SBOM present", SBOM.into(), "", vec![other("release", "https://cyclonedx.org/bom")], true, ""),
            ("required SBOM signed by the wrong signer", SBOM.into(), "", vec![other("scanner", "https://cyclonedx.org/bom")], false, "the https://cyclonedx.org/bom attestation is signed by scanner, but tier t accepts only release"),
            ("required SBOM missing", SBOM.into(), "", vec![other("release", "https://spdx.dev/Document")], false, "no https://cyclonedx.org/bom attestation among the 1 attestations"),
        ];
        let mut failures = Vec::new();
        for (case, tier, exc, outcomes, admitted, text) in rows {
            let p = policy(&tier, exc);
            let ev = evidence(outcomes);
            let img = ImageRef::parse("r.example/app:v1").unwrap();
            let v = evaluate(&p, &name("t"), &img, Ok(&ev), now());
            let said = format!("{} | {}", v.problems.join("; "), v.notes.join("; "));
            if v.admitted != admitted || !said.contains(text) {
                failures.push(format!("{case}: admitted={} want {admitted}; want {text:?} in {said:?}", v.admitted));
            }
            // Deterministic: the same inputs give the same verdict.
            assert_eq!(v, evaluate(&p, &name("t"), &img, Ok(&ev), now()), "{case}");
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn require_digest_denies_tags_even_where_errors_are_tolerated() {
        let tagged = ImageRef::parse("r.example/app:v1").unwrap();
        let pinned = ImageRef::parse(&format!("r.example/app:v1@{}", Digest::of(b"image"))).unwrap();
        let ev = evidence(vec![scan("scanner", h(1), vec![])]);
        let down = LookupError::Source("down".into());
        // (case, tier, image, gathered, admitted)
        type DigestRow<'a> = (&'a str, &'a str, &'a ImageRef, Result<&'a ImageEvidence, &'a LookupError>, bool);
        let rows: Vec<DigestRow<'_>> = vec![
            (
                "tag, requireDigest",
                "requireDigest: true\nvulnerabilities: { signedBy: [scanner] }",
                &tagged,
                Ok(&ev),
                false,
            ),
            (
                "digest, requireDigest",
                "requireDigest: true\nvulnerabilities: { signedBy: [scanner] }",
                &pinned,
                Ok(&ev),
                true,
            ),
            ("tag, no requireDigest", "vulnerabilities: { signedBy: [scanner] }", &tagged, Ok(&ev), true),
            (
                "tag, requireDigest, registry down, onError allow",
                "requireDigest: true\nonError: allow\nvulnerabilities: { signedBy: [scanner] }",
                &tagged,
                Err(&down),
                false,
            ),
            (
                "tag, requireDigest, warn mode",
                "requireDigest: true\nmode: warn\nvulnerabilities: { signedBy: [scanner] }",
                &tagged,
                Ok(&ev),
                true,
            ),
        ];
        for (case, tier, image, gathered, admitted) in rows {
            let v = evaluate(&policy(tier, ""), &name("t"), image, gathered, now());
            assert_eq!(v.admitted, admitted, "{case}: {v:?}");
            let said = v.problems.join("; ");
            assert_eq!(
                said.contains("is not pinned by digest, and tier t requires digests"),
                image.digest.is_none() && tier.contains("requireDigest"),
                "{case}: {said}"
            );
        }
        let v = evaluate(
            &policy("requireDigest: true\nvulnerabilities: { signedBy: [scanner] }", ""),
            &name("t"),
            &tagged,
            Ok(&ev),
            now(),
        );
        assert!(v.problems[0].contains("write it as r.example/app:v1@sha256:<digest>"), "{}", v.problems[0]);
    }

    #[test]
    fn attestations_not_read_are_noted() {
        use crate::evidence::Unread;
        let u = Unread { count_limit: 32, byte_budget: 64 << 20, size_limit: 16 << 20, ..Unread::default() };
        // (what was not read, the note)
        let rows = [
            (Unread { past_count: 3, ..u.clone() }, "3 older attestations of sha256:6105d6cc76af were not read: only the newest 32 are (the per-image limit)"),
            (Unread { past_count: 1, ..u.clone() }, "1 older attestation of sha256:6105d6cc76af was not read: only the newest 32 are"),
            (Unread { over_budget: 1, ..u.clone() }, "1 attestation of sha256:6105d6cc76af was not read: past the 64 MiB read per image (the newest of each predicate type are read first)"),
            (Unread { too_large: 2, ..u.clone() }, "2 attestations of sha256:6105d6cc76af were not read: larger than the limit of 16 MiB per attestation"),
        ];
        for (unread, note) in rows {
            let mut ev = evidence(vec![scan("scanner", h(1), vec![])]);
            ev.skipped = unread;
            let v =
                evaluate(&policy(VULNS, ""), &name("t"), &ImageRef::parse("r.example/app:v1").unwrap(), Ok(&ev), now());
            assert!(v.admitted, "{v:?}");
            assert!(v.notes.iter().any(|n| n.contains(note)), "{note}: {:?}", v.notes);
        }
    }

    #[test]
    fn applied_exceptions_are_named() {
        let p = policy(VULNS, EXC_ACTIVE);
        let ev = evidence(vec![scan("scanner", h(1), vec![finding("CVE-1", Severity::Critical, "2", None)])]);
        let v = evaluate(&p, &name("t"), &ImageRef::parse("r.example/app:v1").unwrap(), Ok(&ev), now());
        assert!(v.admitted);
        assert_eq!(v.exceptions, ["CVE-1 (approved by sec@example.com, expires 2026-12-31: unreachable)"]);
    }

    #[test]
    fn a_grace_period_past_the_end_of_time_does_not_panic() {
        let p = policy(
            "vulnerabilities: { signedBy: [scanner], max: { high: 0 }, gracePeriod: { high: 100000000years } }",
            "",
        );
        let high = finding("H", Severity::High, "2", Some("2026-06-12T12:01:00Z"));
        let ev = evidence(vec![scan("scanner", h(1), vec![high])]);
        let v = evaluate(&p, &name("t"), &ImageRef::parse("r.example/app:v1").unwrap(), Ok(&ev), now());
        assert!(v.admitted, "{v:?}");
        assert_eq!(v.notes, ["H in openssl 3.0.1, fixed in 2 (high) is inside its 876600000000h remediation window"]);
    }

    #[test]
    fn exceptions_expiring_soon_are_facts_of_the_verdict() {
        let crit = || vec![scan("scanner", h(1), vec![finding("CVE-1", Severity::Critical, "2", None)])];
        let soon = |day: u32| {
            vec![ExpiringException { id: "CVE-1".into(), expires: NaiveDate::from_ymd_opt(2026, 6, day).unwrap() }]
        };
        // (case, exceptions, evidence, expiring exceptions)
        let rows: Vec<(&str, &str, ImageEvidence, Vec<ExpiringException>)> = vec![
            ("none", "", evidence(crit()), vec![]),
            ("far off", EXC_ACTIVE, evidence(crit()), vec![]),
            ("within 14 days", EXC_SOON, evidence(crit()), soon(20)),
            ("on its last day", EXC_TODAY, evidence(crit()), soon(15)),
            ("expired: no longer applies", EXC_EXPIRED, evidence(crit()), vec![]),
            (
                "on a platform of a multi-arch image",
                EXC_SOON,
                index(vec![], vec![("linux/amd64", Ok(crit())), ("linux/arm64", Ok(crit()))]),
                soon(20),
            ),
        ];
        let img = ImageRef::parse("r.example/app:v1").unwrap();
        for (case, exc, ev, want) in rows {
            let v = evaluate(&policy(VULNS, exc), &name("t"), &img, Ok(&ev), now());
            assert_eq!(v.expiring_exceptions, want, "{case}");
            // The words say the same.
            let said = v.notes.iter().any(|n| n.contains("exception for CVE-1 expires on "));
            assert_eq!(said, !want.is_empty(), "{case}: {:?}", v.notes);
        }
        // Not an output field.
        let v = evaluate(&policy(VULNS, EXC_SOON), &name("t"), &img, Ok(&evidence(crit())), now());
        assert!(serde_json::to_value(&v).unwrap().get("expiringExceptions").is_none());
    }

    #[test]
    fn errors_follow_on_error() {
        let img = ImageRef::parse("r.example/app:v1").unwrap();
        for (tier, admitted) in [
            ("onError: allow\nvulnerabilities: { signedBy: [scanner] }", true),
            ("onError: deny\nvulnerabilities: { signedBy: [scanner] }", false),
            ("vulnerabilities: { signedBy: [scanner] }", false),
        ] {
            let v = evaluate(
                &policy(tier, ""),
                &name("t"),
                &img,
                Err(&LookupError::Source("registry r.example unreachable".into())),
                now(),
            );
            assert_eq!(v.admitted, admitted, "{tier}");
            assert_eq!(v.error.as_deref(), Some("registry r.example unreachable"));
        }
        let v = evaluate(&policy(VULNS, ""), &name("nope"), &img, Err(&LookupError::Source("x".into())), now());
        assert!(!v.admitted && v.problems[0].contains("tier \"nope\" is not defined"), "{v:?}");
    }

    /// A VEX document signed by `signer`: `statements` of (vulnerability,
    /// status) about the image `evidence` builds (`r.example/app`).
    fn vex_doc(signer: &str, statements: &[(&str, crate::evidence::vex::Status)]) -> Outcome {
        use crate::evidence::vex::{Document, Format, Product, Statement};
        let product = format!("pkg:oci/app@sha256%3A{}", Digest::of(b"image").hex());
        Outcome::Verified {
            statement: None,
            identity: None,
            signers: vec![signer.into()],
            claim: Claim::Vex(std::sync::Arc::new(Document {
                format: Format::OpenVex,
                id: String::new(),
                author: "Acme Security".into(),
                timestamp: Some(now() - h(1)),
                statements: statements
                    .iter()
                    .map(|(id, status)| Statement {
                        vulnerability: vec![id.to_string()],
                        products: vec![Product { id: product.clone(), subcomponents: vec![] }],
                        status: *status,
                        justification: Some("vulnerable_code_not_in_execute_path".into()),
                        impact_statement: None,
                        timestamp: None,
                    })
                    .collect(),
                ignored: vec![],
            })),
        }
    }

    /// (case, tier, exceptions, attestations, admitted, text in problems or
    /// notes, findings suppressed)
    type VexRow = (&'static str, &'static str, &'static str, Vec<Outcome>, bool, &'static str, usize);

    #[test]
    fn vex_in_the_decision() {
        use crate::evidence::vex::Status::{Affected, Fixed, NotAffected, UnderInvestigation};
        const TRUSTING: &str =
            "vulnerabilities: { signedBy: [scanner], maxAge: 24h, max: { critical: 0 }, vex: { signedBy: [ci] } }";
        const NO_VEX: &str = "vulnerabilities: { signedBy: [scanner], maxAge: 24h, max: { critical: 0 } }";
        let crit = |id: &str| finding(id, Severity::Critical, "2", None);
        // (case, tier, exceptions, attestations, admitted, text in problems or notes, findings suppressed)
        #[rustfmt::skip]
        let rows: Vec<VexRow> = vec![
            ("trusted not_affected suppresses", TRUSTING, "", vec![scan("scanner", h(1), vec![crit("CVE-1")]), vex_doc("ci", &[("CVE-1", NotAffected)])], true, "1 finding suppressed by VEX: CVE-1 in openssl 3.0.1: not_affected (vulnerable_code_not_in_execute_path), by Acme Security, signed by ci", 1),
            ("trusted fixed suppresses", TRUSTING, "", vec![scan("scanner", h(1), vec![crit("CVE-1")]), vex_doc("ci", &[("CVE-1", Fixed)])], true, "fixed", 1),
            ("affected is shown, not suppressed", TRUSTING, "", vec![scan("scanner", h(1), vec![crit("CVE-1")]), vex_doc("ci", &[("CVE-1", Affected)])], false, "1 critical vulnerability exceeds the limit 0", 0),
            ("under_investigation does not suppress", TRUSTING, "", vec![scan("scanner", h(1), vec![crit("CVE-1")]), vex_doc("ci", &[("CVE-1", UnderInvestigation)])], false, "1 critical vulnerability exceeds the limit 0", 0),
            ("a tier without vex ignores VEX, and says so", NO_VEX, "", vec![scan("scanner", h(1), vec![crit("CVE-1")]), vex_doc("ci", &[("CVE-1", NotAffected)])], false, "1 VEX document ignored: this tier trusts no VEX (name its signers in vulnerabilities.vex.signedBy)", 0),
            ("an untrusted signer's VEX suppresses nothing", TRUSTING, "", vec![scan("scanner", h(1), vec![crit("CVE-1")]), vex_doc("scanner", &[("CVE-1", NotAffected)])], false, "signed by scanner is ignored: vulnerabilities.vex.signedBy trusts ci", 0),
            ("only the findings it names", TRUSTING, "", vec![scan("scanner", h(1), vec![crit("CVE-1"), crit("CVE-2")]), vex_doc("ci", &[("CVE-1", NotAffected)])], false, "1 critical vulnerability exceeds the limit 0 (CVE-2", 1),
            ("VEX never stands in for a missing scan", TRUSTING, "", vec![vex_doc("ci", &[("CVE-1", NotAffected)])], false, "no vulnerability scan", 0),
            ("nor for a stale one", TRUSTING, "", vec![scan("scanner", h(48), vec![crit("CVE-1")]), vex_doc("ci", &[("CVE-1", NotAffected)])], false, "vulnerability scan finished", 1),
            ("exceptions apply after VEX", TRUSTING, EXC_ACTIVE, vec![scan("scanner", h(1), vec![crit("CVE-1"), crit("CVE-2")]), vex_doc("ci", &[("CVE-2", NotAffected)])], true, "suppressed by VEX: CVE-2", 1),
        ];
        let img = ImageRef::parse("r.example/app:v1").unwrap();
        for (case, tier, exc, outcomes, admitted, text, suppressed) in rows {
            let v = evaluate(&policy(tier, exc), &name("t"), &img, Ok(&evidence(outcomes)), now());
            assert_eq!(v.admitted, admitted, "{case}: {:?} {:?}", v.problems, v.notes);
            let said = v.problems.iter().chain(&v.notes).any(|p| p.contains(text));
            assert!(said, "{case}: {text:?} not in {:?} {:?}", v.problems, v.notes);
            assert_eq!(v.vex_suppressed.len(), suppressed, "{case}");
        }
        // The scan's own analysis (CycloneDX) counts as the scan does, with
        // or without vex in the tier; not in another image's scan.
        let own = |id: &str| {
            let text = format!(
                r#"{{"bomFormat": "CycloneDX", "metadata": {{"timestamp": "{}"}},
                    "components": [{{"bom-ref": "c", "name": "openssl", "version": "3.0.1", "purl": "pkg:deb/debian/openssl@3.0.1"}}],
                    "vulnerabilities": [{{"id": "CVE-1", "ratings": [{{"severity": "critical"}}], "affects": [{{"ref": "c"}}],
                                          "analysis": {{"state": "{id}", "justification": "code_not_reachable"}}}}]}}"#,
                (now() - h(1)).to_rfc3339()
            );
            let report = crate::evidence::scanner_report(&text).unwrap();
            Outcome::Verified {
                identity: None,
                signers: vec!["scanner".into()],
                claim: Claim::Vulnerabilities(report),
                statement: None,
            }
        };
        for (tier, state, admitted) in
            [(NO_VEX, "not_affected", true), (TRUSTING, "not_affected", true), (NO_VEX, "exploitable", false)]
        {
            let v = evaluate(&policy(tier, ""), &name("t"), &img, Ok(&evidence(vec![own(state)])), now());
            assert_eq!(v.admitted, admitted, "{state}: {:?} {:?}", v.problems, v.notes);
            if admitted {
                assert_eq!(v.vex_suppressed[0].signer.as_deref(), Some("scanner"));
                assert_eq!(v.vex_suppressed[0].author, "cyclonedx (the scan's own analysis)");
            }
        }
        // A CycloneDX VEX attested as its own predicate (`--type cyclonedx`)
        // counts as VEX from its signer.
        let cdx_vex = crate::evidence::scanner_report(
            r#"{"bomFormat": "CycloneDX", "specVersion": "1.6",
                "components": [{"bom-ref": "c", "name": "openssl", "purl": "pkg:deb/debian/openssl@3.0.1"}],
                "vulnerabilities": [{"id": "CVE-1", "affects": [{"ref": "c"}],
                                     "analysis": {"state": "not_affected", "justification": "code_not_reachable"}}]}"#,
        )
        .unwrap();
        let with_purl = Finding { purl: Some("pkg:deb/debian/openssl@3.0.1".into()), ..crit("CVE-1") };
        for (tier, signer, admitted) in [(TRUSTING, "ci", true), (TRUSTING, "scanner", false), (NO_VEX, "ci", false)] {
            let mut ev = evidence(vec![
                scan("scanner", h(1), vec![with_purl.clone()]),
                Outcome::Verified {
                    statement: None,
                    identity: None,
                    signers: vec![signer.into()],
                    claim: Claim::Vulnerabilities(cdx_vex.clone()),
                },
            ]);
            ev.attestations[1].claimed_type = Some(crate::evidence::CYCLONEDX_BOM.into());
            let v = evaluate(&policy(tier, ""), &name("t"), &img, Ok(&ev), now());
            assert_eq!(v.admitted, admitted, "{signer}: {:?} {:?}", v.problems, v.notes);
        }
        // A VEX attestation that verified but cannot be read suppresses
        // nothing, and the verdict says why.
        let mut ev = evidence(vec![
            scan("scanner", h(1), vec![crit("CVE-1")]),
            Outcome::Unreadable {
                signers: vec!["ci".into()],
                why: "https://openvex.dev/ns predicate is invalid: VEX document: not JSON: EOF".into(),
            },
        ]);
        ev.attestations[1].claimed_type = Some(crate::evidence::vex::OPENVEX.into());
        let v = evaluate(&policy(TRUSTING, ""), &name("t"), &img, Ok(&ev), now());
        assert!(!v.admitted);
        let digest = ev.attestations[1].envelope.to_string();
        let note = format!(
            "VEX {digest} suppresses nothing: https://openvex.dev/ns predicate is invalid: VEX document: not JSON"
        );
        assert!(v.notes.iter().any(|n| n.starts_with(&note)), "{:?}", v.notes);
        // The policy's own VEX files count in every tier, for the images
        // their statements name.
        for (tier, image, admitted) in [(NO_VEX, "r.example/app:v1", true), (NO_VEX, "r.example/web:v1", false)] {
            let mut p = policy(tier, "");
            let central = crate::evidence::vex::parse(
                br#"{"@context": "https://openvex.dev/ns/v0.2.0", "author": "Acme Security", "statements": [
                    {"vulnerability": {"name": "CVE-1"}, "products": [{"@id": "pkg:oci/app?repository_url=r.example/app"}],
                     "status": "not_affected", "impact_statement": "the parser is not linked"}]}"#,
            )
            .unwrap();
            p.vex.push(crate::evidence::vex::Source {
                document: std::sync::Arc::new(central),
                digest: "sha256:central".into(),
                signer: Some(crate::policy::POLICY_VEX_SIGNER.into()),
                bound: false,
            });
            let img = ImageRef::parse(image).unwrap();
            let ev = evidence(vec![scan("scanner", h(1), vec![crit("CVE-1")])]);
            let v = evaluate(&p, &name("t"), &img, Ok(&ev), now());
            assert_eq!(v.admitted, admitted, "{image}: {:?} {:?}", v.problems, v.notes);
            if admitted {
                assert!(
                    v.notes
                        .iter()
                        .any(|n| n.contains("(the parser is not linked), by Acme Security, signed by the policy")),
                    "{:?}",
                    v.notes
                );
            }
        }
        // The document used is cited by its digest, as evidence of kind vex;
        // the suppressed finding is in the verdict's output.
        let ev = evidence(vec![scan("scanner", h(1), vec![crit("CVE-1")]), vex_doc("ci", &[("CVE-1", NotAffected)])]);
        let v = evaluate(&policy(TRUSTING, ""), &name("t"), &img, Ok(&ev), now());
        let vex_digest = ev.attestations[1].envelope.to_string();
        assert!(v.evidence.contains(&vex_digest));
        assert!(v.attestations.iter().any(|c| c.kind == EvidenceKind::Vex && c.signers == ["ci"]));
        let out = serde_json::to_value(&v).unwrap();
        assert_eq!(out["vexSuppressed"][0]["status"], "not_affected");
        assert_eq!(out["vexSuppressed"][0]["signer"], "ci");
        assert_eq!(out["vexSuppressed"][0]["document"], vex_digest.as_str());
        assert_eq!(out["vexSuppressed"][0]["finding"]["id"], "CVE-1");
        // With exceptions after VEX: the exception applied to CVE-1 only.
        let ev = evidence(vec![
            scan("scanner", h(1), vec![crit("CVE-1"), crit("CVE-2")]),
            vex_doc("ci", &[("CVE-1", NotAffected)]),
        ]);
        let v = evaluate(&policy(TRUSTING, EXC_ACTIVE), &name("t"), &img, Ok(&ev), now());
        assert!(v.exceptions.is_empty(), "{:?}", v.exceptions);
        assert!(!v.admitted);
    }

    /// Evidence is cached under the policy's evidence scope: whatever
    /// changes what a lookup verifies or keeps (the trust, the predicate
    /// types kept whole for conditions, base images) must change it, or
    /// evidence verified under one trust would be served under another.
    #[test]
    fn evidence_is_cached_apart_for_whatever_changes_it() {
        let plain = policy("mode: enforce", "");
        assert_eq!(
            plain.evidence_scope(),
            policy("mode: enforce", "").evidence_scope(),
            "the same policy, the same scope"
        );
        let cond = "attestations: [ { predicateType: x, signedBy: [ci], conditions: [ { expression: \"true\", message: m } ] } ]";
        let other_trust = Policy::from_yaml(
            "apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers: {}\n  tiers:\n    t:\n      mode: enforce\n",
            "table",
        )
        .unwrap();
        let changed = [
            ("another trust", other_trust),
            ("conditions on a predicate type", policy(cond, "")),
            ("base images judged", policy("baseImage: {maxBehind: 14d}", "")),
        ];
        for (what, p) in &changed {
            assert_ne!(p.evidence_scope(), plain.evidence_scope(), "{what}");
        }
        assert!(changed[1].1.evidence_scope().ends_with("\nx"));
        assert!(changed[2].1.evidence_scope().ends_with("\n#base"));
    }
}
