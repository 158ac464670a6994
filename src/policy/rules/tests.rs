//! Test results: the newest accepted result, its outcome, the tests and
//! configurations the tier requires, and its age.

use super::{signed_by_any, Age, Ctx, Rule, LIST_FINDINGS};
use crate::evidence::{Claim, TestOutcome, TestReport, TEST_RESULT_V01};
use crate::policy::eval::{EvidenceKind, Reason, Verdict};
use crate::policy::model::TestRule;

/// The step that attaches test results (`{image}`: the image).
const TEST_FIX: &str =
    "attest the results: cosign attest --type https://in-toto.io/attestation/test-result/v0.1 --predicate results.json {image}";

impl Rule for TestRule {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::Tests
    }

    fn signed_by(&self) -> &[String] {
        &self.signed_by
    }

    fn how(&self) -> String {
        format!("a signed test result (`cosign attest --type {TEST_RESULT_V01}`)")
    }

    fn attach(&self) -> String {
        TEST_FIX.to_string()
    }

    fn judge(&self, cx: &Ctx<'_>, v: &mut Verdict) {
        let found = cx.verified(|_, c| match c {
            Claim::Tests(r) => Some(r),
            _ => None,
        });
        // The newest by finishedOn when results carry it, else the last attached.
        let Some(chosen) = found
            .iter()
            .filter(|f| signed_by_any(f.signers, &self.signed_by))
            .max_by_key(|f| (f.claim.finished_on, f.att.index))
        else {
            v.fail(
                Reason::MissingEvidence,
                cx.missing(
                    "test result",
                    &format!("`cosign attest --type {TEST_RESULT_V01}`"),
                    &[TEST_RESULT_V01],
                    &found,
                    &self.signed_by,
                ),
            );
            let fix = cx.fix_missing(&self.attach(), &found, &self.signed_by, v);
            v.fix(fix);
            return;
        };
        let report = chosen.claim;
        v.cite(self.kind(), chosen, report.finished_on);
        v.fail_all(Reason::Tests, self.problems(cx, report));
        if v.reasons.contains(&Reason::Tests) {
            let fix = format!("make the tests pass, then {}", self.attach().replace("{image}", &v.pinned()));
            v.fix(fix);
        }
        let age = Age {
            what: "test result",
            limit: "tests maxAge",
            field: "finishedOn",
            redo: "rerun the tests and attest the result",
        };
        if let Some(stale) = cx.age_problem(&age, report.finished_on, self.max_age) {
            v.fail(Reason::StaleEvidence, stale);
            let fix = format!("rerun the tests, then {}", self.attach().replace("{image}", &v.pinned()));
            v.fix(fix);
        }
    }
}

impl TestRule {
    /// How the chosen result fails the rule: its outcome, the configurations
    /// and tests required, the number passed.
    fn problems(&self, cx: &Ctx<'_>, report: &TestReport) -> Vec<String> {
        let mut out = Vec::new();
        let ok = match self.require {
            TestOutcome::Passed => report.result == TestOutcome::Passed,
            _ => report.result != TestOutcome::Failed,
        };
        let failed = if report.failed_tests.is_empty() {
            String::new()
        } else {
            let mut names: Vec<&str> = report.failed_tests.iter().take(LIST_FINDINGS).map(String::as_str).collect();
            let more = report.failed_tests.len().saturating_sub(LIST_FINDINGS);
            let extra = if more > 0 { format!(", and {more} more") } else { String::new() };
            names.sort_unstable();
            format!(" ({} failed: {}{extra})", report.failed_tests.len(), names.join(", "))
        };
        let url = report.url.as_deref().map(|u| format!("; see {u}")).unwrap_or_default();
        if !ok {
            out.push(format!(
                "test result is {}{failed}, tier {} requires {}{url}",
                outcome_str(report.result),
                cx.tier,
                if self.require == TestOutcome::Passed { "PASSED" } else { "PASSED or WARNED" }
            ));
        } else if !report.failed_tests.is_empty() {
            out.push(format!("test result is {} but lists failed tests{failed}{url}", outcome_str(report.result)));
        }
        let ran =
            |c: &str| report.configuration.iter().any(|d| d.name.as_deref() == Some(c) || d.uri.as_deref() == Some(c));
        let missing: Vec<&str> = self.require_configurations.iter().map(String::as_str).filter(|c| !ran(c)).collect();
        if !missing.is_empty() {
            out.push(format!(
                "required test configuration{} {} did not run (tier {}){url}",
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", "),
                cx.tier
            ));
        }
        let passed = |t: &str| {
            report.passed_tests.iter().any(|p| p == t)
                || (self.require != TestOutcome::Passed && report.warned_tests.iter().any(|p| p == t))
        };
        let not_passed: Vec<&str> = self.require_tests.iter().map(String::as_str).filter(|t| !passed(t)).collect();
        if !not_passed.is_empty() {
            out.push(format!("required tests not passed: {} (tier {}){url}", not_passed.join(", "), cx.tier));
        }
        if let Some(min) = self.min_passed {
            if (report.passed_tests.len() as u64) < min as u64 {
                out.push(format!(
                    "only {} passed tests, tier {} requires at least {min}{url}",
                    report.passed_tests.len(),
                    cx.tier
                ));
            }
        }
        out
    }
}

fn outcome_str(o: TestOutcome) -> &'static str {
    match o {
        TestOutcome::Passed => "PASSED",
        TestOutcome::Warned => "WARNED",
        TestOutcome::Failed => "FAILED",
    }
}
