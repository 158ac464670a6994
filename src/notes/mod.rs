//! Release notes from evidence (`portcullis notes`): what a promotion
//! brings, read from verified attestations only. Both digests; the source,
//! commit and builder from the provenance; the vulnerabilities new, fixed
//! and still open since the previous image, with the exceptions and VEX
//! statements that apply, each named; the test suites and what newly fails
//! or passes; who signed; the verdict per tier. An attestation that did not
//! verify (or could not be read) is never quoted: it is listed as left out,
//! with why.
//!
//! Pure: the evidence and verdicts are gathered by the caller (the same
//! engine and gate as `check`), and the time is an argument.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::attest::SignerIdentity;
use crate::evidence::{
    vex, Attestation, Claim, Finding, ImageEvidence, Outcome, Provenance, Severity, TestOutcome, TestReport, VulnReport,
};
use crate::policy::{Policy, Verdict};

/// One image as the notes see it: how it was named, its evidence, and its
/// verdict in each tier judged.
pub struct Side<'a> {
    /// The image as given (`registry/repo:tag`, or pinned).
    pub reference: String,
    /// `registry/repository`, what exceptions match.
    pub name: String,
    pub evidence: &'a ImageEvidence,
    /// One per tier judged, in the order asked.
    pub verdicts: &'a [Verdict],
}

/// The notes of one promotion.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notes {
    pub image: Subject,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<Subject>,
    pub policy_digest: String,
    pub generated_at: DateTime<Utc>,
    /// What the evidence says: one part for an image, one per platform for
    /// a multi-arch image whose index carries no attestations of its own.
    pub parts: Vec<Part>,
    /// The verdict in each tier judged.
    pub verdicts: Vec<TierVerdict>,
    /// Who signed the attestations quoted.
    pub signers: Vec<SignerNote>,
    /// Attestations not quoted, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<LeftOut>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    pub reference: String,
    pub digest: String,
}

/// What one image (or one platform of it) is, next to its previous one.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    /// `linux/arm64` for a platform of a multi-arch image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    pub digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<ProvenanceNote>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_provenance: Option<ProvenanceNote>,
    /// `None` when no verified scan is attached.
    pub vulnerabilities: Option<VulnNotes>,
    pub tests: Vec<SuiteNote>,
}

/// Where the image was built from, as its verified provenance says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvenanceNote {
    /// The attestation quoted (its envelope's digest).
    pub attestation: String,
    pub predicate_type: String,
    pub builder_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub build_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_repository: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_commit: Option<String>,
    pub signers: Vec<String>,
}

/// The vulnerabilities, compared with the previous image's scan.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VulnNotes {
    pub scan: ScanNote,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_scan: Option<ScanNote>,
    /// False when there is no previous image or it has no verified scan:
    /// `new` and `fixed` are then empty, and `open` holds every finding.
    pub compared: bool,
    /// Found now, not in the previous scan.
    pub new: Vec<FindingNote>,
    /// In the previous scan, not found now.
    pub fixed: Vec<FindingNote>,
    /// In both.
    pub open: Vec<FindingNote>,
}

/// The scan quoted: which attestation, by which scanner, when, signed by whom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanNote {
    pub attestation: String,
    pub scanner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_on: Option<DateTime<Utc>>,
    pub signers: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingNote {
    pub id: String,
    pub severity: Severity,
    pub package: String,
    pub installed_version: String,
    /// For a finding still open: the version the previous image had, when
    /// it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fixed_versions: Vec<String>,
    /// The exceptions and VEX statements that take it out of a tier's
    /// count (for findings of the image, not fixed ones).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub applied: Vec<Applied>,
}

/// What takes a finding out of a tier's count.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    pub tier: String,
    #[serde(flatten)]
    pub how: How,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "by", rename_all = "camelCase")]
pub enum How {
    /// A policy exception (`spec.exceptions`).
    #[serde(rename_all = "camelCase")]
    Exception { id: String, approved_by: String, expires: NaiveDate, reason: String },
    /// A VEX statement from a signer the tier trusts.
    #[serde(rename_all = "camelCase")]
    Vex {
        status: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        justification: Option<String>,
        author: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        signer: Option<String>,
        document: String,
    },
}

/// One test suite: its newest verified result, next to the previous image's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SuiteNote {
    /// The suite's configuration name or URI; `tests` when it names none.
    pub suite: String,
    pub attestation: String,
    pub result: TestOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_result: Option<TestOutcome>,
    pub passed: usize,
    pub warned: usize,
    pub failed: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_tests: Vec<String>,
    /// False when the previous image has no result of this suite.
    pub compared: bool,
    /// Failing now, not failing before.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub newly_failing: Vec<String>,
    /// Passing now, failing before.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub newly_passing: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub signers: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TierVerdict {
    pub tier: String,
    pub admitted: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A signer of what is quoted, and what it signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignerNote {
    /// The policy's name for it.
    pub name: String,
    /// For a keyless signature: the certificate's identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<SignerIdentity>,
    /// `provenance`, `vulnerabilities`, `tests`.
    pub signed: Vec<&'static str>,
}

/// An attestation not quoted, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeftOut {
    /// `image` or `previous`.
    pub of: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// The envelope's digest; `None` for what was never read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestation: Option<String>,
    /// What it claims to be (unauthenticated when it did not verify).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicate_type: Option<String>,
    pub why: String,
}

/// A verified attestation, with what it says and who signed it.
struct Quoted<'e, T> {
    att: &'e Attestation,
    claim: &'e T,
    signers: &'e [String],
    identity: Option<&'e SignerIdentity>,
    finished_on: Option<DateTime<Utc>>,
}

/// The evidence of one image or platform.
struct Piece<'e> {
    platform: Option<String>,
    ev: &'e ImageEvidence,
}

/// Writes the notes of `image`, next to `previous` when given, under
/// `policy`, as of `now`.
pub fn build(policy: &Policy, image: &Side<'_>, previous: Option<&Side<'_>>, now: DateTime<Utc>) -> Notes {
    let mut left_out = LeftOuts {
        list: vec![],
        given: std::iter::once(image).chain(previous).map(|s| s.evidence.digest.to_string()).collect(),
    };
    let now_pieces = pieces(image.evidence, "image", &mut left_out);
    let before = previous.map(|p| pieces(p.evidence, "previous", &mut left_out)).unwrap_or_default();
    let cited: BTreeSet<&str> = image
        .verdicts
        .iter()
        .chain(previous.map(|p| p.verdicts).unwrap_or_default())
        .flat_map(|v| v.attestations.iter().map(|c| c.digest.as_str()))
        .collect();
    let mut signers = Signers::default();
    let parts = now_pieces
        .iter()
        .map(|piece| {
            // The previous image's part: the same platform, else its only part.
            let prev = before
                .iter()
                .find(|b| b.platform == piece.platform)
                .or_else(|| (before.len() == 1).then(|| &before[0]));
            part(policy, image, piece, prev, &cited, &mut signers, now.date_naive())
        })
        .collect();
    Notes {
        image: Subject { reference: image.reference.clone(), digest: image.evidence.digest.to_string() },
        previous: previous.map(|p| Subject { reference: p.reference.clone(), digest: p.evidence.digest.to_string() }),
        policy_digest: policy.digest.to_string(),
        generated_at: now,
        parts,
        verdicts: image
            .verdicts
            .iter()
            .map(|v| TierVerdict {
                tier: v.tier.clone(),
                admitted: v.admitted,
                problems: v.problems.clone(),
                notes: v.notes.clone(),
                exceptions: v.exceptions.clone(),
                error: v.error.clone(),
            })
            .collect(),
        signers: signers.0,
        left_out: left_out.list,
    }
}

/// The pieces of an image's evidence: itself, or, for an index without
/// attestations of its own, each platform whose evidence was gathered.
/// What was not verified or not read goes to `left_out`.
fn pieces<'e>(ev: &'e ImageEvidence, of: &'static str, left_out: &mut LeftOuts) -> Vec<Piece<'e>> {
    let mut out = Vec::new();
    if ev.attestations.is_empty() && !ev.platforms.is_empty() {
        for p in &ev.platforms {
            match &p.evidence {
                Ok(e) => {
                    note_left_out(e, of, Some(&p.platform), left_out);
                    out.push(Piece { platform: Some(p.platform.clone()), ev: e });
                }
                Err(e) => left_out.list.push(LeftOut {
                    of,
                    platform: Some(p.platform.clone()),
                    attestation: None,
                    predicate_type: None,
                    why: format!("its evidence could not be gathered: {e}"),
                }),
            }
        }
    } else {
        note_left_out(ev, of, None, left_out);
        out.push(Piece { platform: None, ev });
    }
    out
}

/// What the notes leave out, and the digests of the images they are of.
struct LeftOuts {
    list: Vec<LeftOut>,
    given: Vec<String>,
}

fn note_left_out(ev: &ImageEvidence, of: &'static str, platform: Option<&String>, left_out: &mut LeftOuts) {
    for a in &ev.attestations {
        let why = match &a.outcome {
            Outcome::Verified { .. } => continue,
            // From files, every attestation is offered for every image: one
            // about the other image given is that image's, not left out.
            Outcome::Rejected(crate::attest::Problem::SubjectMismatch { subjects })
                if subjects.iter().any(|s| left_out.given.iter().any(|d| s.len() > 7 && d.starts_with(s.as_str()))) =>
            {
                continue
            }
            Outcome::Rejected(p) => format!("not verified: {p}"),
            Outcome::Unreadable { why, .. } => format!("signed, but its predicate could not be read: {why}"),
        };
        // An envelope offered for both images is said once.
        let envelope = a.envelope.to_string();
        if left_out.list.iter().any(|l| l.attestation.as_deref() == Some(envelope.as_str())) {
            continue;
        }
        left_out.list.push(LeftOut {
            of,
            platform: platform.cloned(),
            attestation: Some(envelope),
            predicate_type: a.claimed_type.clone(),
            why,
        });
    }
    let unread = ev.skipped.total();
    if unread > 0 {
        left_out.list.push(LeftOut {
            of,
            platform: platform.cloned(),
            attestation: None,
            predicate_type: None,
            why: format!("{unread} more attestation(s) listed but not read (past the per-image limits)"),
        });
    }
}

fn part(
    policy: &Policy,
    image: &Side<'_>,
    piece: &Piece<'_>,
    prev: Option<&Piece<'_>>,
    cited: &BTreeSet<&str>,
    signers: &mut Signers,
    today: NaiveDate,
) -> Part {
    let now_prov = provenance_of(piece.ev, cited);
    if let Some(q) = &now_prov {
        signers.add(q.signers, q.identity, "provenance");
    }
    let now_scan = scan_of(piece.ev, cited);
    if let Some(q) = &now_scan {
        signers.add(q.signers, q.identity, "vulnerabilities");
    }
    let prev_scan = prev.and_then(|p| scan_of(p.ev, cited));
    let vulnerabilities = now_scan.map(|q| {
        let prev_scan = prev_scan.as_ref();
        let v = compare_scans(q.claim, prev_scan.map(|p| p.claim), |f| applied(policy, image, f, today));
        VulnNotes { scan: scan_note(&q), previous_scan: prev_scan.map(scan_note), ..v }
    });
    let suites = suites_of(piece.ev, cited);
    for q in suites.values() {
        signers.add(q.signers, q.identity, "tests");
    }
    let before = prev.map(|p| suites_of(p.ev, cited)).unwrap_or_default();
    let tests = suites.iter().map(|(name, q)| suite_note(name, q, before.get(name).map(|p| p.claim))).collect();
    Part {
        platform: piece.platform.clone(),
        digest: piece.ev.digest.to_string(),
        previous_digest: prev.map(|p| p.ev.digest.to_string()),
        provenance: now_prov.map(|q| provenance_note(&q)),
        previous_provenance: prev.and_then(|p| provenance_of(p.ev, cited)).map(|q| provenance_note(&q)),
        vulnerabilities,
        tests,
    }
}

/// The provenance to quote of `ev`.
fn provenance_of<'e>(ev: &'e ImageEvidence, cited: &BTreeSet<&str>) -> Option<Quoted<'e, Provenance>> {
    let found = verified(ev, |c| match c {
        Claim::Provenance(x) => Some((x, None)),
        _ => None,
    });
    newest(found, cited)
}

/// The vulnerability scan to quote of `ev`.
fn scan_of<'e>(ev: &'e ImageEvidence, cited: &BTreeSet<&str>) -> Option<Quoted<'e, VulnReport>> {
    let found = verified(ev, |c| match c {
        Claim::Vulnerabilities(x) => Some((x, x.finished_on)),
        _ => None,
    });
    newest(found, cited)
}

/// The verified attestations whose claim `pick` selects, with the time
/// the claim says it finished.
fn verified<'e, T>(
    ev: &'e ImageEvidence,
    pick: impl Fn(&'e Claim) -> Option<(&'e T, Option<DateTime<Utc>>)>,
) -> Vec<Quoted<'e, T>> {
    ev.attestations
        .iter()
        .filter_map(|a| match &a.outcome {
            Outcome::Verified { signers, claim, identity, .. } => pick(claim).map(|(claim, finished_on)| Quoted {
                att: a,
                claim,
                signers,
                identity: identity.as_deref(),
                finished_on,
            }),
            _ => None,
        })
        .collect()
}

/// The one to quote: among those a verdict rests on, if any, else among
/// all; the newest by the time it says it finished, then by the
/// registry's order (later is newer).
fn newest<'e, T>(found: Vec<Quoted<'e, T>>, cited: &BTreeSet<&str>) -> Option<Quoted<'e, T>> {
    let any_cited = found.iter().any(|q| cited.contains(q.att.envelope.to_string().as_str()));
    found
        .into_iter()
        .filter(|q| !any_cited || cited.contains(q.att.envelope.to_string().as_str()))
        .max_by_key(|q| (q.finished_on, q.att.index))
}

/// The newest verified result of each test suite, by suite name.
fn suites_of<'e>(ev: &'e ImageEvidence, cited: &BTreeSet<&str>) -> BTreeMap<String, Quoted<'e, TestReport>> {
    let mut by_suite: BTreeMap<String, Vec<Quoted<'e, TestReport>>> = BTreeMap::new();
    for q in verified(ev, |c| match c {
        Claim::Tests(t) => Some((t, t.finished_on)),
        _ => None,
    }) {
        by_suite.entry(suite_name(q.claim)).or_default().push(q);
    }
    by_suite.into_iter().filter_map(|(name, found)| newest(found, cited).map(|q| (name, q))).collect()
}

/// A test run's suite: its first configuration's name, else its URI.
fn suite_name(t: &TestReport) -> String {
    t.configuration
        .iter()
        .find_map(|c| c.name.clone().or_else(|| c.uri.clone()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "tests".to_string())
}

fn suite_note(suite: &str, q: &Quoted<'_, TestReport>, before: Option<&TestReport>) -> SuiteNote {
    let t = q.claim;
    let set = |l: &[String]| l.iter().cloned().collect::<BTreeSet<String>>();
    let (failing, passing) = (set(&t.failed_tests), set(&t.passed_tests));
    let (newly_failing, newly_passing) = match before {
        Some(b) => {
            let was_failing = set(&b.failed_tests);
            (failing.difference(&was_failing).cloned().collect(), passing.intersection(&was_failing).cloned().collect())
        }
        None => (vec![], vec![]),
    };
    SuiteNote {
        suite: suite.to_string(),
        attestation: q.att.envelope.to_string(),
        result: t.result,
        previous_result: before.map(|b| b.result),
        passed: t.passed_tests.len(),
        warned: t.warned_tests.len(),
        failed: t.failed_tests.len(),
        failed_tests: failing.into_iter().collect(),
        compared: before.is_some(),
        newly_failing,
        newly_passing,
        url: t.url.clone(),
        signers: q.signers.to_vec(),
    }
}

fn scan_note(q: &Quoted<'_, VulnReport>) -> ScanNote {
    ScanNote {
        attestation: q.att.envelope.to_string(),
        scanner: q.claim.scanner.clone(),
        finished_on: q.claim.finished_on,
        signers: q.signers.to_vec(),
    }
}

fn provenance_note(q: &Quoted<'_, Provenance>) -> ProvenanceNote {
    let p = q.claim;
    ProvenanceNote {
        attestation: q.att.envelope.to_string(),
        predicate_type: p.predicate_type.clone(),
        builder_id: p.builder_id.clone(),
        build_type: p.build_type.clone(),
        source_repository: p.source_repository.clone(),
        source_commit: p.source_commit.clone(),
        signers: q.signers.to_vec(),
    }
}

/// A finding's key across two scans: its id and package (the version
/// changes when a package is upgraded without fixing it).
fn key(f: &Finding) -> (String, String) {
    (f.id.to_ascii_uppercase(), f.package.clone())
}

/// New, fixed and still-open findings of `now` against `before` (every
/// finding open when there is nothing to compare with), most severe first.
/// `applied` says what takes a finding of `now` out of each tier's count.
fn compare_scans(
    now: &VulnReport,
    before: Option<&VulnReport>,
    applied: impl Fn(&Finding) -> Vec<Applied>,
) -> VulnNotes {
    let note = |f: &Finding| FindingNote {
        id: f.id.clone(),
        severity: f.severity,
        package: f.package.clone(),
        installed_version: f.installed_version.clone(),
        previous_version: None,
        fixed_versions: f.fixed_versions.clone(),
        applied: vec![],
    };
    let (mut new, mut fixed, mut open) = (vec![], vec![], vec![]);
    match before {
        None => open = now.findings.iter().map(|f| FindingNote { applied: applied(f), ..note(f) }).collect(),
        Some(b) => {
            let was: BTreeMap<(String, String), &Finding> = b.findings.iter().map(|f| (key(f), f)).collect();
            let is: BTreeSet<(String, String)> = now.findings.iter().map(key).collect();
            for f in &now.findings {
                match was.get(&key(f)) {
                    Some(old) => open.push(FindingNote {
                        previous_version: (old.installed_version != f.installed_version)
                            .then(|| old.installed_version.clone()),
                        applied: applied(f),
                        ..note(f)
                    }),
                    None => new.push(FindingNote { applied: applied(f), ..note(f) }),
                }
            }
            fixed = b.findings.iter().filter(|f| !is.contains(&key(f))).map(note).collect();
        }
    }
    for list in [&mut new, &mut fixed, &mut open] {
        list.sort_by(|a, b| (a.severity, &a.id, &a.package).cmp(&(b.severity, &b.id, &b.package)));
        list.dedup_by(|a, b| a.id == b.id && a.package == b.package && a.installed_version == b.installed_version);
    }
    let empty = ScanNote { attestation: String::new(), scanner: String::new(), finished_on: None, signers: vec![] };
    VulnNotes { scan: empty, previous_scan: None, compared: before.is_some(), new, fixed, open }
}

/// The exceptions (unexpired on `today`) and VEX statements that take the
/// finding out of each tier's count.
fn applied(policy: &Policy, image: &Side<'_>, f: &Finding, today: NaiveDate) -> Vec<Applied> {
    let mut out = Vec::new();
    for v in image.verdicts {
        let vexed = v.vex_suppressed.iter().find(|s| {
            s.finding.id.eq_ignore_ascii_case(&f.id)
                && s.finding.package == f.package
                && s.finding.installed_version == f.installed_version
        });
        if let Some(s) = vexed {
            out.push(Applied { tier: v.tier.clone(), how: vex_how(s) });
            continue;
        }
        if let Some(e) = policy.exceptions_for(&v.tier, &image.name, f).into_iter().find(|e| e.expires >= today) {
            out.push(Applied {
                tier: v.tier.clone(),
                how: How::Exception {
                    id: e.id.clone(),
                    approved_by: e.approved_by.clone(),
                    expires: e.expires,
                    reason: e.reason.clone(),
                },
            });
        }
    }
    out
}

fn vex_how(s: &vex::Suppressed) -> How {
    How::Vex {
        status: s.status.as_str().to_string(),
        justification: s.justification.clone().or_else(|| s.impact_statement.clone()),
        author: s.author.clone(),
        signer: s.signer.clone(),
        document: s.document.clone(),
    }
}

/// The signers of what is quoted, each once, with what each signed.
#[derive(Default)]
struct Signers(Vec<SignerNote>);

impl Signers {
    fn add(&mut self, names: &[String], identity: Option<&SignerIdentity>, what: &'static str) {
        for name in names {
            let id = identity.cloned();
            match self.0.iter_mut().find(|s| &s.name == name && s.identity == id) {
                Some(s) if !s.signed.contains(&what) => s.signed.push(what),
                Some(_) => {}
                None => self.0.push(SignerNote { name: name.clone(), identity: id, signed: vec![what] }),
            }
        }
    }
}

#[cfg(test)]
mod tests;
