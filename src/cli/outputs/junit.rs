//! `junit`: JUnit XML, as GitLab's and Jenkins' test report parsers read
//! it. One testsuite per image; in it, one testcase per tier and check
//! (image, scan, tests, provenance, attestations, signers, freshness). A
//! check the tier does not make is skipped; a failing one carries the
//! webhook's own reason as its message and what to do in its text. Problems
//! a tier in warn mode admits despite pass, said in the testcase's
//! system-err. Written with `quick-junit` (nextest's), which escapes XML.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::{failures, judged, standing, Check, Checked, Standing};

pub(super) fn junit(c: &Checked) -> Vec<u8> {
    let mut report = Report::new("portcullis check");
    // The images in the order first judged; each tier's verdict on each.
    let mut images: Vec<String> = Vec::new();
    for t in &c.tiers {
        for v in &t.decision.verdicts {
            if !images.contains(&v.image) {
                images.push(v.image.clone());
            }
        }
    }
    for image in &images {
        let mut suite = TestSuite::new(image.as_str());
        suite.add_property(("policyDigest", c.policy_digest.as_str()));
        suite.set_timestamp(c.evaluated_at);
        for t in &c.tiers {
            let Some(v) = t.decision.verdicts.iter().find(|v| &v.image == image) else { continue };
            suite.add_property((format!("tier.{}", t.tier).as_str(), if v.admitted { "admitted" } else { "denied" }));
            let filed: Vec<_> = failures(v).into_iter().map(|f| (Check::of(&f, &t.requires), f)).collect();
            let st = standing(v);
            for check in Check::ALL {
                let name = format!("{} {}", t.tier, check.as_str());
                let mine: Vec<&str> =
                    filed.iter().filter(|(cs, _)| cs.contains(&check)).map(|(_, f)| f.problem.as_str()).collect();
                let status = if !mine.is_empty() && matches!(st, Standing::Denied | Standing::Error) {
                    let kind = if st == Standing::Error && check == Check::Image {
                        NonSuccessKind::Error
                    } else {
                        NonSuccessKind::Failure
                    };
                    let mut s = TestCaseStatus::non_success(kind);
                    s.set_message(mine.join("; "));
                    s.set_type(check.as_str());
                    let mut text = format!("{} denied for tier {}:\n", judged(v), t.tier);
                    for p in &mine {
                        text.push_str(&format!("- {p}\n"));
                    }
                    if !v.remedies.is_empty() {
                        text.push_str("To fix:\n");
                        for r in &v.remedies {
                            text.push_str(&format!("- {r}\n"));
                        }
                    }
                    s.set_description(text);
                    s
                } else if !check.made(&t.requires) {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(format!("tier {} does not check {}", t.tier, check.as_str()));
                    s
                } else {
                    TestCaseStatus::success()
                };
                let mut case = TestCase::new(name, status);
                case.set_classname(format!("portcullis.{}", t.tier));
                // Admitted in warn mode: it passes, and says why it would not.
                if !mine.is_empty() && st == Standing::Warned {
                    case.set_system_err(format!(
                        "admitted in tier {} (mode warn) despite: {}",
                        t.tier,
                        mine.join("; ")
                    ));
                }
                suite.add_test_case(case);
            }
        }
        report.add_test_suite(suite);
    }
    report.to_string().map(String::into_bytes).unwrap_or_default()
}
