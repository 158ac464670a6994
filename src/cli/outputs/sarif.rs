//! `sarif`: SARIF 2.1.0 as GitHub code scanning takes it. Each denial
//! reason and each counted vulnerability is a result; rule ids are stable
//! (`portcullis/vulnerability/CVE-…`, `portcullis/tests/failed`, …); rules
//! carry `security-severity` and help saying how to fix; the image is the
//! location, and `partialFingerprints` (repository, tier, rule, package)
//! keep an alert the same one from build to build.
//!
//! Written with `serde_json` rather than a SARIF crate: the few objects
//! used are plain JSON, and the test validates them against the official
//! schema (tests/fixtures/sarif-2.1.0).

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use portcullis::evidence::Severity;
use portcullis::policy::{Counted, EvidenceKind, Failure, Reason, Verdict};

use super::{failures, repository, standing, Checked, Standing};

/// A rule: its id, a short name, what it means, and how to fix it.
struct Rule {
    id: String,
    name: String,
    short: String,
    help: String,
    severity: f64,
    tags: Vec<&'static str>,
}

pub(super) fn sarif(c: &Checked) -> Vec<u8> {
    let mut rules: BTreeMap<String, Rule> = BTreeMap::new();
    let mut results = Vec::new();
    for t in &c.tiers {
        for v in &t.decision.verdicts {
            let level = match standing(v) {
                Standing::Denied | Standing::Error => "error",
                _ => "warning",
            };
            for f in failures(v) {
                let rule = failure_rule(&f);
                let message = match v.remedies.first() {
                    Some(fix) if f.reason != Reason::Vulnerabilities => {
                        format!("{} in tier {}: {}\nTo fix: {fix}", super::judged(v), v.tier, f.problem)
                    }
                    _ => format!("{} in tier {}: {}", super::judged(v), v.tier, f.problem),
                };
                results.push(result(&rule.id, level, &message, v, "", rule.severity));
                rules.entry(rule.id.clone()).or_insert(rule);
            }
            for counted in &v.counted {
                let rule = finding_rule(counted);
                // Over a limit: as the verdict stands; counted within the limits: a note.
                let level = if counted.over_limit { level } else { "note" };
                let message = finding_message(v, counted);
                results.push(result(&rule.id, level, &message, v, &counted.finding.package, rule.severity));
                match rules.get_mut(&rule.id) {
                    Some(r) => r.severity = r.severity.max(rule.severity),
                    None => {
                        rules.insert(rule.id.clone(), rule);
                    }
                }
            }
        }
    }
    let index: BTreeMap<&str, usize> = rules.keys().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    for r in &mut results {
        let i = index.get(r["ruleId"].as_str().unwrap_or_default()).copied().unwrap_or_default();
        r["ruleIndex"] = json!(i);
    }
    let rules: Vec<Value> = rules.values().map(rule_json).collect();
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "portcullis",
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "automationDetails": {"id": format!("portcullis/{}/", c.tiers.iter().map(|t| t.tier.as_str()).collect::<Vec<_>>().join(","))},
            "invocations": [{
                "executionSuccessful": c.exit_code() != 2,
                "endTimeUtc": c.evaluated_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            }],
            "results": results,
            "properties": {
                "policyDigest": c.policy_digest,
                "tiers": c.tiers.iter().map(|t| json!({"tier": t.tier, "allowed": t.decision.allowed})).collect::<Vec<_>>(),
            },
        }],
    });
    let mut bytes = serde_json::to_vec_pretty(&log).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

fn result(rule: &str, level: &str, message: &str, v: &Verdict, package: &str, severity: f64) -> Value {
    let repo = repository(v);
    // The same alert from one build to the next: not the digest, which changes.
    let fingerprint = hex::encode(Sha256::digest(format!("{repo}\n{}\n{rule}\n{package}", v.tier)));
    json!({
        "ruleId": rule,
        "level": level,
        "message": {"text": message},
        "locations": [{
            "physicalLocation": {
                // A relative reference: `localhost:5000/shop` would read as a scheme.
                "artifactLocation": {"uri": repo.replace('%', "%25").replace(':', "%3A")},
                "region": {"startLine": 1, "startColumn": 1, "endLine": 1, "endColumn": 1},
            },
            "message": {"text": super::judged(v)},
        }],
        "partialFingerprints": {"portcullisImageFinding/v1": fingerprint},
        "properties": {"tier": v.tier, "image": super::judged(v), "security-severity": score(severity)},
    })
}

fn rule_json(r: &Rule) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "shortDescription": {"text": r.short},
        "fullDescription": {"text": r.short},
        "help": {"text": r.help, "markdown": r.help},
        "defaultConfiguration": {"level": "error"},
        "properties": {"security-severity": score(r.severity), "tags": r.tags, "precision": "very-high"},
    })
}

/// `security-severity` as GitHub reads it: a number in a string, 0.0–10.0.
fn score(s: f64) -> String {
    format!("{:.1}", s.clamp(0.0, 10.0))
}

/// Trivy's bands for a severity without a CVSS score.
fn band(s: Severity) -> f64 {
    match s {
        Severity::Critical => 9.5,
        Severity::High => 8.0,
        Severity::Medium => 5.5,
        Severity::Low => 2.0,
        Severity::Unknown => 0.0,
    }
}

fn kind_word(kind: Option<EvidenceKind>) -> &'static str {
    match kind {
        Some(EvidenceKind::Vulnerabilities) => "vulnerabilities",
        Some(EvidenceKind::Tests) => "tests",
        Some(EvidenceKind::Provenance) => "provenance",
        Some(EvidenceKind::Vex) => "vex",
        Some(EvidenceKind::Licenses) => "licenses",
        Some(EvidenceKind::BaseImage) => "base-image",
        Some(EvidenceKind::Attestation) | None => "attestations",
    }
}

/// The rule a denial reason breaks.
fn failure_rule(f: &Failure) -> Rule {
    let what = kind_word(f.kind);
    let (id, name, short, help, severity): (String, &str, String, String, f64) = if f.signers {
        (
            format!("portcullis/{what}/signer"),
            "UntrustedSigner",
            format!("The {what} evidence is signed by no signer the tier accepts"),
            "Sign the attestation with a key or keyless identity the tier's signedBy names (the message says which), \
             or add the signer to the policy's spec.signers and the tier's signedBy."
                .into(),
            8.0,
        )
    } else {
        match (f.reason, f.kind) {
            (Reason::Vulnerabilities, _) => (
                "portcullis/vulnerabilities/limit".into(),
                "VulnerabilitiesOverLimit",
                "More vulnerabilities of a severity than the tier allows".into(),
                "Upgrade the packages named to their fixed versions, rebuild, rescan and attest the new scan \
                 (cosign attest --type vuln); where no fix exists, ask for a policy exception (spec.exceptions)."
                    .into(),
                9.0,
            ),
            (Reason::Tests, _) => (
                "portcullis/tests/failed".into(),
                "TestsFailed",
                "The attested test result does not meet the tier's requirement".into(),
                "Fix the failing tests, rerun them on this image and attest the result \
                 (cosign attest --type https://in-toto.io/attestation/test-result/v0.1)."
                    .into(),
                7.0,
            ),
            (Reason::Provenance, _) => (
                "portcullis/provenance/source".into(),
                "ProvenanceMismatch",
                "The build provenance does not name the source or builder the tier requires".into(),
                "Build the image from the repository and with the builder the tier's provenance rule names, \
                 and attest its provenance."
                    .into(),
                8.0,
            ),
            (Reason::Conditions, _) => (
                format!("portcullis/{what}/conditions"),
                "ConditionsUnmet",
                format!("The {what} evidence does not meet the tier's conditions"),
                "Do what the message says (each condition's message names the fix), then attest the new predicate; \
                 a condition that cannot be evaluated names its expression and the error."
                    .into(),
                7.0,
            ),
            (Reason::Licenses, _) => (
                "portcullis/licenses/denied".into(),
                "LicenseNotAccepted",
                "Packages in the SBOM are licensed in a way the tier does not accept".into(),
                "Replace or remove the packages named, or ask for a licence exception (spec.licenseExceptions: a purl \
                 pattern and the licence, with expires, reason and approvedBy); a package of unknown licence needs \
                 its licence stated in the SBOM."
                    .into(),
                6.0,
            ),
            (Reason::BaseImage, _) => (
                "portcullis/base-image/behind".into(),
                "BaseImageBehind",
                "The image is built on a base image that has moved on for longer than the tier allows, or whose base is not known".into(),
                "Rebuild the image on the current base (docker buildx build --pull), push and attest it; an image \
                 whose base is not known needs the base annotations (org.opencontainers.image.base.name and \
                 .base.digest), which buildah, podman and ko write, and docker buildx with --annotation."
                    .into(),
                6.0,
            ),
            (Reason::StaleEvidence, _) => (
                format!("portcullis/{what}/stale"),
                "StaleEvidence",
                format!("The {what} evidence is older than the tier's maxAge, undated, or from the future"),
                "Run the scan or tests again on this image and attest the new result.".into(),
                5.0,
            ),
            (Reason::MissingEvidence, _) | (Reason::NoAttestations, _) => (
                format!("portcullis/{what}/missing"),
                "MissingEvidence",
                format!("No acceptable {what} attestation for the image"),
                "Attach the evidence the tier requires as a signed attestation (the message names the command); \
                 `portcullis inspect` shows what an attestation file holds and who signed it."
                    .into(),
                7.0,
            ),
            (Reason::Digest, _) => (
                "portcullis/image/digest".into(),
                "NotPinned",
                "The image is not pinned by digest, and the tier requires digests".into(),
                "Write the image as name@sha256:<digest> (crane digest prints it).".into(),
                4.0,
            ),
            (Reason::Unverifiable, _) => (
                "portcullis/image/unverifiable".into(),
                "Unverifiable",
                "The image's evidence could not be gathered".into(),
                "Make the registry reachable for Portcullis (credentials, network), then check again.".into(),
                5.0,
            ),
            (Reason::Platforms, _) => (
                "portcullis/image/platforms".into(),
                "Platforms",
                "A multi-arch image's platforms do not pass".into(),
                "Attest each platform image the tier judges, or attest the index itself.".into(),
                7.0,
            ),
            (Reason::Tier, _) => (
                "portcullis/tier/undefined".into(),
                "UndefinedTier",
                "The tier is not defined in the policy".into(),
                "Name a tier the policy defines.".into(),
                5.0,
            ),
        }
    };
    Rule { id, name: name.into(), short, help, severity, tags: vec!["security", "supply-chain"] }
}

/// The rule of one vulnerability: its id, its worst score.
fn finding_rule(c: &Counted) -> Rule {
    let f = &c.finding;
    let fix = if f.fixed_versions.is_empty() {
        format!("No fix is published for {}: ask for a policy exception (spec.exceptions) until one is.", f.id)
    } else {
        format!(
            "Upgrade {} to {}, rebuild, rescan and attest the new scan (cosign attest --type vuln).",
            f.package,
            f.fixed_versions.join(" or ")
        )
    };
    Rule {
        id: format!("portcullis/vulnerability/{}", f.id),
        name: "Vulnerability".into(),
        short: format!("{} ({})", f.id, f.severity.as_str()),
        help: fix,
        severity: f.cvss.unwrap_or_else(|| band(f.severity)),
        tags: vec!["security", "vulnerability", f.severity.as_str()],
    }
}

/// A finding, in `Key: value` lines SARIF readers (ours among them) take.
fn finding_message(v: &Verdict, c: &Counted) -> String {
    let f = &c.finding;
    let limit = match (c.limit, c.over_limit) {
        (Some(max), true) => format!("over the limit {max} of tier {}", v.tier),
        (Some(max), false) => format!("within the limit {max} of tier {}", v.tier),
        (None, _) => format!("tier {} sets no limit for {}", v.tier, f.severity.as_str()),
    };
    let mut m = format!(
        "{} in {} {} ({}, {limit}) in {}\nPackage: {}\nInstalled Version: {}\nSeverity: {}",
        f.id,
        f.package,
        f.installed_version,
        f.severity.as_str(),
        super::judged(v),
        f.package,
        f.installed_version,
        f.severity.as_str()
    );
    if !f.fixed_versions.is_empty() {
        m.push_str(&format!("\nFixed Version: {}", f.fixed_versions.join(", ")));
    }
    m
}
