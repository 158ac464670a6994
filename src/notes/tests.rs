//! The notes as tables: what is new, fixed and open; what newly fails or
//! passes; what is quoted (verified, cited first) and what is left out.

use super::*;
use crate::attest::Problem;
use crate::evidence::{FixState, ResourceDescriptor};
use crate::image::{Digest, ImageRef};
use crate::policy::evaluate;

const KEY: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE7QtNpX/PTPA4pOkBdBOmWT3S3HhP\nhVxygajXbNEXKMRxbQMUMhUF/8RAIKvGJDujIcIveyrBAUZ07McENQdDrw==\n-----END PUBLIC KEY-----";

fn now() -> DateTime<Utc> {
    "2026-06-15T12:00:00Z".parse().unwrap()
}

/// Production denies any high; CVE-3 is excepted in production until the
/// 30th, CVE-9 was until the 1st (expired).
fn policy() -> Policy {
    let key = KEY.lines().map(|l| format!("        {l}")).collect::<Vec<_>>().join("\n");
    let y = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers:\n    scanner:\n      publicKey: |\n{key}\n    ci:\n      publicKey: |\n{key}\n  tiers:\n    staging:\n      vulnerabilities: {{ signedBy: [scanner], max: {{ critical: 0 }} }}\n    production:\n      vulnerabilities: {{ signedBy: [scanner], max: {{ critical: 0, high: 0 }} }}\n      tests: {{ signedBy: [ci], require: PASSED }}\n  exceptions:\n    - {{ id: CVE-3, images: [\"r.example/shop/*\"], tiers: [production], expires: 2026-06-30, reason: not reachable, approvedBy: sec@example.com }}\n    - {{ id: CVE-9, tiers: [production], expires: 2026-06-01, reason: old, approvedBy: sec@example.com }}\n"
    );
    Policy::from_yaml(&y, "notes").unwrap_or_else(|e| panic!("{e}\n{y}"))
}

fn finding(id: &str, severity: Severity, package: &str, installed: &str, fixed: &str) -> Finding {
    Finding {
        id: id.into(),
        aliases: vec![],
        severity,
        package: package.into(),
        installed_version: installed.into(),
        fixed_versions: if fixed.is_empty() { vec![] } else { vec![fixed.into()] },
        fix_state: FixState::parse("", !fixed.is_empty()),
        published: None,
        cvss: None,
        target: String::new(),
        purl: None,
    }
}

fn scan(hours_ago: i64, findings: Vec<Finding>) -> Outcome {
    Outcome::Verified {
        statement: None,
        signers: vec!["scanner".into()],
        identity: None,
        claim: Claim::Vulnerabilities(VulnReport {
            scanner: "trivy 0.58.1".into(),
            finished_on: Some(now() - chrono::Duration::hours(hours_ago)),
            findings,
            vex: None,
            sbom: None,
        }),
    }
}

fn tests(suite: &str, passed: &[&str], failed: &[&str]) -> Outcome {
    let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Outcome::Verified {
        statement: None,
        signers: vec!["ci".into()],
        identity: None,
        claim: Claim::Tests(TestReport {
            result: if failed.is_empty() { TestOutcome::Passed } else { TestOutcome::Failed },
            configuration: vec![ResourceDescriptor { name: Some(suite.into()), uri: None }],
            url: Some("https://ci.example/runs/1".into()),
            passed_tests: list(passed),
            warned_tests: vec![],
            failed_tests: list(failed),
            finished_on: Some(now() - chrono::Duration::hours(1)),
        }),
    }
}

fn provenance(commit: &str) -> Outcome {
    Outcome::Verified {
        statement: None,
        signers: vec!["ci".into()],
        identity: Some(std::sync::Arc::new(SignerIdentity {
            issuer: "https://token.actions.githubusercontent.com".into(),
            subject: "https://github.com/acme/shop/.github/workflows/release.yml@refs/heads/main".into(),
            ..Default::default()
        })),
        claim: Claim::Provenance(Provenance {
            predicate_type: crate::evidence::SLSA_PROVENANCE_V1.into(),
            builder_id: "https://github.com/actions/runner/github-hosted".into(),
            build_type: String::new(),
            source_repository: Some("https://github.com/acme/shop".into()),
            source_commit: Some(commit.into()),
        }),
    }
}

fn evidence(seed: &str, outcomes: Vec<Outcome>) -> ImageEvidence {
    ImageEvidence {
        digest: Digest::of(seed.as_bytes()),
        location: "r.example/shop/api".into(),
        attestations: outcomes
            .into_iter()
            .enumerate()
            .map(|(index, outcome)| Attestation {
                envelope: Digest::of(format!("{seed}/{index}").as_bytes()),
                index,
                claimed_type: None,
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

/// Judges `ev` in both tiers, as the gate would, and writes the notes.
fn notes_of(ev: &ImageEvidence, before: Option<&ImageEvidence>) -> Notes {
    let policy = policy();
    let verdicts = |ev: &ImageEvidence| -> Vec<Verdict> {
        let image = ImageRef::parse(&format!("r.example/shop/api@{}", ev.digest)).unwrap();
        ["staging", "production"]
            .iter()
            .map(|t| evaluate(&policy, &policy.tier_name(t).unwrap(), &image, Ok(ev), now()))
            .collect()
    };
    let (now_v, before_v) = (verdicts(ev), before.map(verdicts).unwrap_or_default());
    let side = |ev, verdicts| Side {
        reference: "r.example/shop/api:2.0".into(),
        name: "r.example/shop/api".into(),
        evidence: ev,
        verdicts,
    };
    let previous = before.map(|b| side(b, &before_v));
    build(&policy, &side(ev, &now_v), previous.as_ref(), now())
}

fn ids(list: &[FindingNote]) -> Vec<(&str, &str)> {
    list.iter().map(|f| (f.id.as_str(), f.package.as_str())).collect()
}

#[test]
fn vulnerabilities_new_fixed_and_open_most_severe_first() {
    use Severity::*;
    let before = evidence(
        "v1",
        vec![scan(
            30,
            vec![
                finding("CVE-1", Critical, "openssl", "3.0.1", "3.0.13"),
                finding("CVE-2", Medium, "zlib", "1.2.11", ""),
                finding("CVE-3", High, "curl", "8.0", "8.5"),
            ],
        )],
    );
    let now_ev = evidence(
        "v2",
        vec![scan(
            2,
            vec![
                finding("CVE-2", Medium, "zlib", "1.2.12", ""),
                finding("CVE-4", Low, "bash", "5.2", ""),
                finding("CVE-3", High, "curl", "8.0", "8.5"),
                finding("CVE-5", High, "libxml2", "2.9", "2.10"),
            ],
        )],
    );
    let n = notes_of(&now_ev, Some(&before));
    let v = n.parts[0].vulnerabilities.as_ref().unwrap();
    assert!(v.compared);
    assert_eq!(ids(&v.new), [("CVE-5", "libxml2"), ("CVE-4", "bash")]);
    assert_eq!(ids(&v.fixed), [("CVE-1", "openssl")]);
    assert_eq!(v.fixed[0].fixed_versions, ["3.0.13"]);
    assert_eq!(ids(&v.open), [("CVE-3", "curl"), ("CVE-2", "zlib")]);
    // A package upgraded without fixing its finding: the version it had.
    assert_eq!(v.open[1].previous_version.as_deref(), Some("1.2.11"));
    assert_eq!(v.open[0].previous_version, None);
    // The scans quoted, by attestation.
    assert_eq!(v.scan.attestation, Digest::of(b"v2/0").to_string());
    assert_eq!(v.previous_scan.as_ref().unwrap().attestation, Digest::of(b"v1/0").to_string());
    assert_eq!(n.previous.as_ref().unwrap().digest, Digest::of(b"v1").to_string());
    assert_eq!(n.parts[0].previous_digest, Some(Digest::of(b"v1").to_string()));
}

#[test]
fn without_a_previous_image_everything_is_open() {
    let ev = evidence("v2", vec![scan(2, vec![finding("CVE-5", Severity::High, "libxml2", "2.9", "2.10")])]);
    let n = notes_of(&ev, None);
    let v = n.parts[0].vulnerabilities.as_ref().unwrap();
    assert!(!v.compared);
    assert!(v.new.is_empty() && v.fixed.is_empty());
    assert_eq!(ids(&v.open), [("CVE-5", "libxml2")]);
    assert_eq!(n.previous, None);
    // A previous image with no verified scan: nothing compared either.
    let bare = evidence("v1", vec![]);
    let n = notes_of(&ev, Some(&bare));
    let v = n.parts[0].vulnerabilities.as_ref().unwrap();
    assert!(!v.compared && v.previous_scan.is_none());
    assert_eq!(ids(&v.open), [("CVE-5", "libxml2")]);
}

#[test]
fn exceptions_that_apply_are_named_per_tier_expired_ones_are_not() {
    use Severity::*;
    let ev = evidence(
        "v2",
        vec![scan(2, vec![finding("CVE-3", High, "curl", "8.0", "8.5"), finding("CVE-9", High, "git", "2.0", "2.1")])],
    );
    let n = notes_of(&ev, None);
    let v = n.parts[0].vulnerabilities.as_ref().unwrap();
    let f = |id: &str| v.open.iter().find(|f| f.id == id).unwrap();
    assert_eq!(
        f("CVE-3").applied,
        [Applied {
            tier: "production".into(),
            how: How::Exception {
                id: "CVE-3".into(),
                approved_by: "sec@example.com".into(),
                expires: "2026-06-30".parse().unwrap(),
                reason: "not reachable".into(),
            },
        }]
    );
    assert!(f("CVE-9").applied.is_empty(), "expired on the 1st: {:?}", f("CVE-9").applied);
    // The verdicts agree: production denies on CVE-9 alone.
    let prod = n.verdicts.iter().find(|v| v.tier == "production").unwrap();
    assert!(!prod.admitted);
    assert!(prod.problems.iter().any(|p| p.contains("CVE-9")) && !prod.problems.iter().any(|p| p.contains("CVE-3")));
    assert!(prod.exceptions.iter().any(|e| e.starts_with("CVE-3")));
}

#[test]
fn a_vex_statement_that_applies_is_named() {
    let f = finding("CVE-7", Severity::High, "curl", "8.0", "");
    let ev = evidence("v2", vec![scan(2, vec![f.clone()])]);
    let mut verdict = Verdict { tier: "production".into(), ..Verdict::default() };
    verdict.vex_suppressed.push(vex::Suppressed {
        finding: f,
        status: vex::Status::NotAffected,
        justification: Some("vulnerable_code_not_in_execute_path".into()),
        impact_statement: None,
        author: "Acme security".into(),
        signer: Some("scanner".into()),
        document: "sha256:feed".into(),
    });
    let verdicts = [verdict];
    let side = Side { reference: "x".into(), name: "r.example/shop/api".into(), evidence: &ev, verdicts: &verdicts };
    let n = build(&policy(), &side, None, now());
    let applied = &n.parts[0].vulnerabilities.as_ref().unwrap().open[0].applied;
    assert_eq!(
        applied,
        &[Applied {
            tier: "production".into(),
            how: How::Vex {
                status: "not_affected".into(),
                justification: Some("vulnerable_code_not_in_execute_path".into()),
                author: "Acme security".into(),
                signer: Some("scanner".into()),
                document: "sha256:feed".into(),
            },
        }]
    );
}

#[test]
fn tests_newly_failing_and_newly_passing_per_suite() {
    let before = evidence(
        "v1",
        vec![tests("integration", &["checkout", "search"], &["payments"]), tests("e2e", &["login"], &[])],
    );
    let now_ev = evidence(
        "v2",
        vec![
            tests("integration", &["checkout", "payments"], &["search"]),
            tests("load", &["p95"], &[]),
            tests("e2e", &["login"], &[]),
        ],
    );
    let n = notes_of(&now_ev, Some(&before));
    let suites: Vec<&str> = n.parts[0].tests.iter().map(|t| t.suite.as_str()).collect();
    assert_eq!(suites, ["e2e", "integration", "load"]);
    let integration = &n.parts[0].tests[1];
    assert_eq!((integration.passed, integration.failed), (2, 1));
    assert_eq!(integration.result, TestOutcome::Failed);
    assert_eq!(integration.previous_result, Some(TestOutcome::Failed));
    assert_eq!(integration.newly_failing, ["search"]);
    assert_eq!(integration.newly_passing, ["payments"]);
    let load = &n.parts[0].tests[2];
    assert!(!load.compared && load.previous_result.is_none() && load.newly_failing.is_empty());
    let e2e = &n.parts[0].tests[0];
    assert!(e2e.compared && e2e.newly_failing.is_empty() && e2e.newly_passing.is_empty());
}

#[test]
fn only_verified_attestations_are_quoted_the_rest_is_left_out_with_why() {
    let mut ev = evidence(
        "v2",
        vec![
            provenance("1111111111111111111111111111111111111111"),
            Outcome::Rejected(Problem::UntrustedSignature),
            Outcome::Unreadable { signers: vec!["scanner".into()], why: "not JSON".into() },
            scan(2, vec![]),
        ],
    );
    ev.attestations[1].claimed_type = Some(crate::evidence::SLSA_PROVENANCE_V1.into());
    ev.skipped.past_count = 3;
    let n = notes_of(&ev, None);
    let p = n.parts[0].provenance.as_ref().unwrap();
    assert_eq!(p.source_commit.as_deref(), Some("1111111111111111111111111111111111111111"));
    assert_eq!(p.attestation, Digest::of(b"v2/0").to_string());
    let left: Vec<(Option<String>, &str)> =
        n.left_out.iter().map(|l| (l.attestation.clone(), l.why.split(':').next().unwrap())).collect();
    assert_eq!(
        left,
        [
            (Some(Digest::of(b"v2/1").to_string()), "not verified"),
            (Some(Digest::of(b"v2/2").to_string()), "signed, but its predicate could not be read"),
            (None, "3 more attestation(s) listed but not read (past the per-image limits)"),
        ]
    );
    assert_eq!(n.left_out[0].predicate_type.as_deref(), Some(crate::evidence::SLSA_PROVENANCE_V1));
    // Signers: each once, keyless with its identity, with what it signed.
    let signers: Vec<(&str, bool, &[&str])> =
        n.signers.iter().map(|s| (s.name.as_str(), s.identity.is_some(), s.signed.as_slice())).collect();
    assert_eq!(signers, [("ci", true, &["provenance"][..]), ("scanner", false, &["vulnerabilities"][..])]);
}

#[test]
fn the_scan_a_verdict_rests_on_is_quoted_before_a_newer_one() {
    // A newer scan by a signer no tier accepts for scans ("ci"), and an
    // older one by "scanner": the verdicts cite the older.
    let mut newer = scan(1, vec![finding("CVE-8", Severity::Critical, "x", "1", "")]);
    if let Outcome::Verified { signers, .. } = &mut newer {
        *signers = vec!["ci".into()];
    }
    let ev = evidence("v2", vec![scan(5, vec![]), newer]);
    let n = notes_of(&ev, None);
    let v = n.parts[0].vulnerabilities.as_ref().unwrap();
    assert_eq!(v.scan.attestation, Digest::of(b"v2/0").to_string());
    assert!(v.open.is_empty());
    // With nothing cited, the newest verified one.
    let side = Side { reference: "x".into(), name: "r.example/shop/api".into(), evidence: &ev, verdicts: &[] };
    let n = build(&policy(), &side, None, now());
    assert_eq!(n.parts[0].vulnerabilities.as_ref().unwrap().scan.attestation, Digest::of(b"v2/1").to_string());
}

#[test]
fn a_multi_arch_image_gets_a_part_per_platform_each_compared_with_its_own() {
    use crate::evidence::{LookupError, PlatformEvidence};
    use std::sync::Arc;
    let platform = |label: &str, ev: Result<ImageEvidence, LookupError>| PlatformEvidence {
        platform: label.into(),
        digest: Digest::of(label.as_bytes()),
        entry: 0,
        evidence: ev.map(Arc::new),
    };
    let index = |seed: &str, platforms: Vec<PlatformEvidence>| ImageEvidence {
        index: true,
        platforms,
        ..evidence(seed, vec![])
    };
    let crit = |id: &str| finding(id, Severity::Critical, "openssl", "3.0.1", "3.0.13");
    let before = index(
        "v1",
        vec![
            platform("linux/amd64", Ok(evidence("v1-amd64", vec![scan(30, vec![crit("CVE-1")])]))),
            platform("linux/arm64", Ok(evidence("v1-arm64", vec![scan(30, vec![crit("CVE-2")])]))),
        ],
    );
    let now_ev = index(
        "v2",
        vec![
            platform("linux/arm64", Ok(evidence("v2-arm64", vec![scan(2, vec![])]))),
            platform("linux/amd64", Ok(evidence("v2-amd64", vec![scan(2, vec![crit("CVE-1")])]))),
            platform("linux/s390x", Err(LookupError::Refused("denied".into()))),
        ],
    );
    let n = notes_of(&now_ev, Some(&before));
    let parts: Vec<(Option<&str>, Option<&str>)> =
        n.parts.iter().map(|p| (p.platform.as_deref(), p.previous_digest.as_deref())).collect();
    let was = |seed: &str| Digest::of(seed.as_bytes()).to_string();
    assert_eq!(
        parts,
        [(Some("linux/arm64"), Some(was("v1-arm64").as_str())), (Some("linux/amd64"), Some(was("v1-amd64").as_str()))]
    );
    // Each compared with the same platform of the previous image.
    let arm = n.parts[0].vulnerabilities.as_ref().unwrap();
    assert_eq!(ids(&arm.fixed), [("CVE-2", "openssl")]);
    let amd = n.parts[1].vulnerabilities.as_ref().unwrap();
    assert_eq!(ids(&amd.open), [("CVE-1", "openssl")]);
    assert!(amd.fixed.is_empty() && amd.new.is_empty());
    // A platform whose evidence could not be gathered is left out, and why.
    assert_eq!(n.left_out.len(), 1);
    assert_eq!(n.left_out[0].platform.as_deref(), Some("linux/s390x"));
    assert!(n.left_out[0].why.starts_with("its evidence could not be gathered"), "{:?}", n.left_out);
}
