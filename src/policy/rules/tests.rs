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
            cx.fail_missing(
                v,
                "test result",
                &format!("`cosign attest --type {TEST_RESULT_V01}`"),
                &[TEST_RESULT_V01],
                &found,
                &self.signed_by,
            );
            let fix = cx.fix_missing(&self.attach(), &found, &self.signed_by, v);
            v.fix(fix);
            return;
        };
        let report = chosen.claim;
        v.cite(self.kind(), chosen, report.finished_on);
        let forgiven = self.quarantined(cx, report, v);
        v.fail_all(Reason::Tests, self.problems(cx, report, &forgiven));
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
    /// The failed tests of `report` whose failure is forgiven: quarantined
    /// until a day not yet past. Each is noted in the verdict (a warning),
    /// with its quarantine's expiry when it is near; a quarantine that has
    /// expired on a failed test is noted as such, and forgives nothing.
    fn quarantined<'r>(&self, cx: &Ctx<'_>, report: &'r TestReport, v: &mut Verdict) -> Vec<&'r str> {
        let today = cx.now.date_naive();
        let mut forgiven = Vec::new();
        for t in &report.failed_tests {
            let Some(q) = self.quarantine.iter().find(|q| q.test == *t) else { continue };
            if today > q.expires {
                v.notes.push(format!(
                    "the quarantine of test {t} expired on {}; its failure counts again (tier {})",
                    q.expires, cx.tier
                ));
                continue;
            }
            forgiven.push(t.as_str());
            v.notes.push(format!(
                "test {t} failed and is quarantined until {} (approved by {}: {})",
                q.expires, q.approved_by, q.reason
            ));
            let note = format!("the quarantine of test {t} expires on {}; fix the test before then", q.expires);
            super::expiring_soon(v, today, &format!("quarantine of test {t}"), q.expires, note);
        }
        forgiven
    }

    /// How the chosen result fails the rule: its outcome, the configurations
    /// and tests required, the number passed. A FAILED result whose every
    /// failed test is forgiven (quarantined) passes.
    fn problems(&self, cx: &Ctx<'_>, report: &TestReport, forgiven: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        let failing: Vec<&str> =
            report.failed_tests.iter().map(String::as_str).filter(|t| !forgiven.contains(t)).collect();
        let all_quarantined = !report.failed_tests.is_empty() && failing.is_empty();
        let ok = match (self.require, report.result) {
            (_, TestOutcome::Failed) => all_quarantined,
            (TestOutcome::Passed, r) => r == TestOutcome::Passed,
            _ => true,
        };
        let failed = if failing.is_empty() {
            String::new()
        } else {
            let mut names: Vec<&str> = failing.iter().take(LIST_FINDINGS).copied().collect();
            let more = failing.len().saturating_sub(LIST_FINDINGS);
            let extra = if more > 0 { format!(", and {more} more") } else { String::new() };
            names.sort_unstable();
            let quarantined = if forgiven.is_empty() { "" } else { " not quarantined" };
            format!(" ({} failed{quarantined}: {}{extra})", failing.len(), names.join(", "))
        };
        let url = report.url.as_deref().map(|u| format!("; see {u}")).unwrap_or_default();
        if !ok {
            out.push(format!(
                "test result is {}{failed}, tier {} requires {}{url}",
                outcome_str(report.result),
                cx.tier,
                if self.require == TestOutcome::Passed { "PASSED" } else { "PASSED or WARNED" }
            ));
        } else if !failing.is_empty() {
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

#[cfg(test)]
mod table {
    use chrono::NaiveDate;

    use crate::evidence::TestOutcome::{Failed, Passed, Warned};
    use crate::image::ImageRef;
    use crate::policy::eval::tests::{evidence, name, now, policy, tests};
    use crate::policy::{evaluate, ExpiringException};

    /// Quarantined in the tier (now is 2026-06-15): `flaky` until the end
    /// of the year, `soon` until 2026-06-20, `gone` until 2026-06-14.
    const QUARANTINE: &str = "tests:\n  signedBy: [ci]\n  require: REQUIRE\n  quarantine:\n\
        \x20   - { test: flaky, expires: 2026-12-31, reason: \"races the clock\", approvedBy: qa@example.com }\n\
        \x20   - { test: soon, expires: 2026-06-20, reason: \"a slow mirror\", approvedBy: qa@example.com }\n\
        \x20   - { test: gone, expires: 2026-06-14, reason: \"fixed, surely\", approvedBy: qa@example.com }";

    /// (case, require, result, failed tests, admitted, text, expiring)
    type Row<'a> = (&'a str, &'a str, crate::evidence::TestOutcome, &'a [&'a str], bool, &'a str, bool);

    #[test]
    fn quarantined_failures_do_not_fail_the_gate_until_they_expire() {
        // (case, require, result, failed tests, admitted, text in problems or notes, expiring)
        #[rustfmt::skip]
        let rows: Vec<Row<'_>> = vec![
            ("every failure quarantined: passes, named", "PASSED", Failed, &["flaky"], true, "test flaky failed and is quarantined until 2026-12-31 (approved by qa@example.com: races the clock)", false),
            ("two, both quarantined", "PASSED", Failed, &["flaky", "soon"], true, "test soon failed and is quarantined until 2026-06-20", true),
            ("expiring within 14 days: warned", "PASSED", Failed, &["soon"], true, "the quarantine of test soon expires on 2026-06-20; fix the test before then", true),
            ("one not quarantined: fails, naming it", "PASSED", Failed, &["flaky", "checkout"], false, "test result is FAILED (1 failed not quarantined: checkout), tier t requires PASSED", false),
            ("expired: counts again, and says so", "PASSED", Failed, &["gone"], false, "the quarantine of test gone expired on 2026-06-14; its failure counts again (tier t)", false),
            ("and the failure is a problem", "PASSED", Failed, &["gone"], false, "test result is FAILED (1 failed: gone)", false),
            ("FAILED listing no test: fails", "PASSED", Failed, &[], false, "test result is FAILED, tier t requires PASSED", false),
            ("WARNED: as before, when PASSED is required", "PASSED", Warned, &[], false, "test result is WARNED, tier t requires PASSED", false),
            ("WARNED: as before, when WARNED is accepted", "WARNED", Warned, &[], true, "", false),
            ("FAILED, all quarantined, WARNED accepted", "WARNED", Failed, &["flaky"], true, "is quarantined until 2026-12-31", false),
            ("PASSED listing a quarantined failure", "PASSED", Passed, &["flaky"], true, "test flaky failed and is quarantined", false),
            ("PASSED listing another failure", "PASSED", Passed, &["checkout"], false, "test result is PASSED but lists failed tests (1 failed: checkout)", false),
        ];
        let img = ImageRef::parse("r.example/app:v1").unwrap();
        for (case, require, result, failed, admitted, text, expiring) in rows {
            let p = policy(&QUARANTINE.replace("REQUIRE", require), "");
            let v = evaluate(&p, &name("t"), &img, Ok(&evidence(vec![tests("ci", result, failed)])), now());
            assert_eq!(v.admitted, admitted, "{case}: {:?} {:?}", v.problems, v.notes);
            let said = v.problems.iter().chain(&v.notes).any(|p| p.contains(text));
            assert!(said || text.is_empty(), "{case}: want {text:?} in {:?} {:?}", v.problems, v.notes);
            let soon = ExpiringException {
                id: "quarantine of test soon".into(),
                expires: NaiveDate::from_ymd_opt(2026, 6, 20).unwrap(),
            };
            assert_eq!(v.expiring_exceptions.contains(&soon), expiring, "{case}: {:?}", v.expiring_exceptions);
        }
    }

    #[test]
    fn a_quarantine_entry_says_why_who_and_until_when() {
        let load = |entry: &str| {
            let y = format!(
                "apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers: {{ ci: {{ publicKey: k }} }}\n  tiers:\n    t:\n      tests:\n        signedBy: [ci]\n        quarantine:\n          - {entry}\n"
            );
            crate::policy::Policy::from_yaml(&y, "table").map(|_| ()).map_err(|e| e.to_string())
        };
        // (entry, error expected)
        let rows = [
            ("{ test: a, expires: 2026-12-31, reason: r }", "missing field `approvedBy`"),
            ("{ test: a, expires: 2026-12-31, approvedBy: q }", "missing field `reason`"),
            ("{ test: a, reason: r, approvedBy: q }", "missing field `expires`"),
            ("{ expires: 2026-12-31, reason: r, approvedBy: q }", "missing field `test`"),
            (
                "{ test: a, expires: 2026-12-31, reason: \" \", approvedBy: q }",
                "spec.tiers.t.tests.quarantine[0].reason: is empty",
            ),
            ("{ test: a, expires: someday, reason: r, approvedBy: q }", "expires"),
        ];
        for (entry, want) in rows {
            let e = load(entry).expect_err(entry);
            assert!(e.contains(want), "{entry}: want {want:?} in {e}");
        }
        // What lint warns of: entries expired, and expiring within 14 days.
        let p = policy(&QUARANTINE.replace("REQUIRE", "PASSED"), "");
        let w = p.warnings(now(), std::time::Duration::ZERO);
        assert_eq!(
            w,
            [
                "spec.tiers.t.tests.quarantine[1]: the quarantine of test soon expires on 2026-06-20",
                "spec.tiers.t.tests.quarantine[2]: the quarantine of test gone expired on 2026-06-14; its failures \
                 count again: fix the test, or renew the entry",
            ]
        );
    }
}
