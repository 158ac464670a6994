//! Attestations of any predicate type a tier requires (an SBOM, a code
//! review, a coverage report): present, verified, signed by one of the
//! rule's signers, and meeting the rule's CEL conditions.
//!
//! With conditions, the accepted attestations of the type are tried newest
//! first (by their place in the registry's list, as without conditions);
//! the first that meets every condition is the one cited. When none does,
//! the newest one's unmet conditions are the problems, each in its
//! `message`; a condition that cannot be evaluated (an error, a result
//! that is not a bool, the cost bound reached) is a problem naming the
//! expression and the error.

use super::{signed_by_any, Ctx, Found, Rule};
use crate::evidence::Claim;
use crate::policy::condition::{self, Signer, Vars};
use crate::policy::eval::{EvidenceKind, Reason, Verdict};
use crate::policy::model::AttestationRule;

impl Rule for AttestationRule {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::Attestation
    }

    fn signed_by(&self) -> &[String] {
        &self.signed_by
    }

    fn how(&self) -> String {
        format!("a signed {} attestation", self.predicate_type)
    }

    fn attach(&self) -> String {
        format!("cosign attest --type {} --predicate FILE {{image}}", self.predicate_type)
    }

    /// A required attestation of any predicate type.
    fn judge(&self, cx: &Ctx<'_>, v: &mut Verdict) {
        // For a verified attestation the claimed type is the verified one.
        let found = cx.verified(|a, c| (a.claimed_type.as_deref() == Some(self.predicate_type.as_str())).then_some(c));
        let mut accepted: Vec<&Found<'_, Claim>> =
            found.iter().filter(|f| signed_by_any(f.signers, &self.signed_by)).collect();
        accepted.sort_by_key(|f| std::cmp::Reverse(f.att.index));
        let Some(newest) = accepted.first() else {
            cx.fail_missing(
                v,
                &format!("{} attestation", self.predicate_type),
                &format!("`cosign attest --type {}`", self.predicate_type),
                &[self.predicate_type.as_str()],
                &found,
                &self.signed_by,
            );
            let attach = format!("attest it: {}", self.attach());
            let fix = cx.fix_missing(&attach, &found, &self.signed_by, v);
            v.fix(fix);
            return;
        };
        if self.conditions.is_empty() {
            v.cite(self.kind(), newest, None);
            return;
        }
        let mut newest_unmet = Vec::new();
        for (i, f) in accepted.iter().enumerate() {
            let unmet = self.unmet(cx, f);
            if unmet.is_empty() {
                v.cite(self.kind(), f, None);
                return;
            }
            if i == 0 {
                newest_unmet = unmet;
            }
        }
        v.cite(self.kind(), newest, None);
        let older = match accepted.len() - 1 {
            0 => String::new(),
            1 => " (nor does the older one)".to_string(),
            n => format!(" (nor do the {n} older ones)"),
        };
        for p in newest_unmet {
            v.fail(Reason::Conditions, format!("{p}{older}"));
        }
        v.fix(format!(
            "meet the conditions on the {} attestation, then attest again: {}",
            self.predicate_type,
            self.attach().replace("{image}", &v.pinned())
        ));
    }
}

impl AttestationRule {
    /// The conditions `f` does not meet, each as a problem: its message, or
    /// why it could not be evaluated.
    fn unmet(&self, cx: &Ctx<'_>, f: &Found<'_, Claim>) -> Vec<String> {
        let name = f.signers.iter().find(|s| self.signed_by.contains(s)).cloned().unwrap_or_default();
        let by = match f.identity {
            Some(id) => format!("{name} ({id})"),
            None => name.clone(),
        };
        let what = format!("the {} attestation signed by {by}", self.predicate_type);
        let signer = Signer {
            name,
            identity: f.identity.map(|i| i.subject.clone()),
            issuer: f.identity.map(|i| i.issuer.clone()),
        };
        let vars = match f.statement.map(|st| (st.predicate.as_ref(), st)) {
            None => Err("its predicate was not kept (the evidence was gathered before the policy set conditions on \
                         its type); it is read again once the cached evidence expires"
                .to_string()),
            Some((Err(e), _)) => Err(e.clone()),
            Some((Ok(p), st)) => Vars::new(p, &st.subjects, &self.predicate_type, &signer, cx.now),
        };
        let vars = match vars {
            Ok(vars) => vars,
            Err(e) => return vec![format!("the conditions on {what} cannot be evaluated: {e}")],
        };
        let mut out = Vec::new();
        for c in &self.conditions {
            let result = match &c.compiled {
                Some(compiled) => condition::evaluate(compiled, &vars),
                None => Err("it did not compile".to_string()),
            };
            match result {
                Ok(true) => {}
                Ok(false) => out.push(format!("{} ({what}: `{}` is false)", c.message.trim(), c.expression)),
                Err(e) => out.push(format!("the condition `{}` on {what} could not be evaluated: {e}", c.expression)),
            }
        }
        out
    }
}

#[cfg(test)]
mod table {
    use std::sync::Arc;

    use crate::attest::StatementSubject;
    use crate::evidence::{Claim, Outcome, Statement};
    use crate::image::ImageRef;
    use crate::policy::eval::tests::{evidence, h, identity, name, now, policy, RELEASE_WORKFLOW};
    use crate::policy::{evaluate, Reason};

    const COVERAGE: &str = "https://example.com/coverage/v1";

    /// A verified coverage attestation by `signer` (keyless when `keyless`),
    /// kept whole with `predicate`.
    fn coverage(signer: &str, keyless: bool, predicate: serde_json::Value) -> Outcome {
        Outcome::Verified {
            identity: keyless.then(|| Arc::new(identity(RELEASE_WORKFLOW, None))),
            signers: vec![signer.into()],
            claim: Claim::Other { predicate_type: COVERAGE.into() },
            statement: Some(Arc::new(Statement {
                predicate: Ok(predicate),
                subjects: vec![StatementSubject {
                    name: "r.example/app".into(),
                    digest: [("sha256".to_string(), crate::image::Digest::of(b"image").hex().to_string())].into(),
                }],
            })),
        }
    }

    fn pct(p: f64) -> serde_json::Value {
        serde_json::json!({ "lines": { "percent": p }, "finishedOn": (now() - h(2)).to_rfc3339() })
    }

    /// The tier: a coverage attestation by ci or release, meeting `conditions`
    /// (`expression`, `message`).
    fn tier(conditions: &[(&str, &str)]) -> String {
        let listed: Vec<String> = conditions
            .iter()
            .map(|(e, m)| {
                format!("      - {{ expression: {}, message: {} }}", serde_json::json!(e), serde_json::json!(m))
            })
            .collect();
        format!(
            "attestations:\n  - predicateType: {COVERAGE}\n    signedBy: [ci, release]\n    conditions:\n{}",
            listed.join("\n")
        )
    }

    /// (case, conditions (expression, message), attestations, admitted, text)
    type Row<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<Outcome>, bool, &'a str);

    const AT_80: (&str, &str) = ("predicate.lines.percent >= 80.0", "raise line coverage to 80%");

    #[test]
    fn conditions_on_an_attestation() {
        let fresh = ("timestamp(predicate.finishedOn) > now - duration('24h')", "rerun coverage within a day");
        let by_release = ("signer.name == 'release' && signer.issuer == 'https://token.actions.githubusercontent.com' && signer.identity.endsWith('@refs/heads/main')", "coverage must come from the release workflow on main");
        let about = ("subject.exists(s, s.name == 'r.example/app' && size(s.digest.sha256) == 64) && predicateType.endsWith('/v1')", "coverage of another artifact");
        // (case, conditions, attestations, admitted, text in problems (or, admitted, the cited signer))
        #[rustfmt::skip]
        let rows: Vec<Row<'_>> = vec![
            ("true", vec![AT_80], vec![coverage("ci", false, pct(87.5))], true, "ci"),
            ("false: its message, the type and the signer", vec![AT_80], vec![coverage("ci", false, pct(61.0))], false,
             "raise line coverage to 80% (the https://example.com/coverage/v1 attestation signed by ci: `predicate.lines.percent >= 80.0` is false)"),
            ("an int compares with a double", vec![("predicate.lines.percent >= 80", "m")], vec![coverage("ci", false, pct(80.0))], true, "ci"),
            ("an error names the expression and the error", vec![("predicate.branches.percent >= 80.0", "m")], vec![coverage("ci", false, pct(90.0))], false,
             "the condition `predicate.branches.percent >= 80.0` on the https://example.com/coverage/v1 attestation signed by ci could not be evaluated: No such key: branches"),
            ("not a bool", vec![("predicate.lines.percent", "m")], vec![coverage("ci", false, pct(90.0))], false,
             "could not be evaluated: gives a double 90, not a bool"),
            ("every condition must hold", vec![AT_80, ("false", "never")], vec![coverage("ci", false, pct(90.0))], false, "never ("),
            ("now: fresh", vec![fresh], vec![coverage("ci", false, pct(90.0))], true, "ci"),
            ("now: stale", vec![fresh], vec![coverage("ci", false, serde_json::json!({ "finishedOn": (now() - h(30)).to_rfc3339() }))], false, "rerun coverage within a day"),
            ("signer: the keyless identity", vec![by_release], vec![coverage("release", true, pct(90.0))], true, "release"),
            ("signer: another", vec![by_release], vec![coverage("ci", false, pct(90.0))], false,
             "coverage must come from the release workflow on main (the https://example.com/coverage/v1 attestation signed by ci:"),
            ("the keyless identity is named", vec![("signer.name == 'ci'", "only ci")], vec![coverage("release", true, pct(90.0))], false,
             "signed by release (subject https://github.com/acme/shop/.github/workflows/release.yml@refs/heads/main from issuer https://token.actions.githubusercontent.com)"),
            ("subject and predicateType", vec![about], vec![coverage("ci", false, pct(90.0))], true, "ci"),
            ("several: an older one that meets them", vec![AT_80], vec![coverage("release", true, pct(85.0)), coverage("ci", false, pct(61.0))], true, "release"),
            ("several: the newest that meets them is cited", vec![AT_80], vec![coverage("release", true, pct(85.0)), coverage("ci", false, pct(95.0))], true, "ci"),
            ("several: none meets them", vec![AT_80], vec![coverage("release", true, pct(75.0)), coverage("ci", false, pct(61.0))], false,
             "raise line coverage to 80% (the https://example.com/coverage/v1 attestation signed by ci: `predicate.lines.percent >= 80.0` is false) (nor does the older one)"),
            ("a signer the rule does not accept is not tried", vec![AT_80], vec![coverage("scanner", false, pct(99.0)), coverage("ci", false, pct(61.0))], false, "raise line coverage to 80%"),
            ("none accepted: missing, as without conditions", vec![AT_80], vec![coverage("scanner", false, pct(99.0))], false, "is signed by scanner, but tier t accepts only"),
        ];
        let img = ImageRef::parse("r.example/app:v1").unwrap();
        for (case, conditions, outcomes, admitted, text) in rows {
            let v = evaluate(&policy(&tier(&conditions), ""), &name("t"), &img, Ok(&evidence(outcomes)), now());
            assert_eq!(v.admitted, admitted, "{case}: {:?}", v.problems);
            if admitted {
                let cited: Vec<&str> = v.attestations.iter().map(|c| c.signers[0].as_str()).collect();
                assert_eq!(cited, [text], "{case}");
            } else {
                assert!(v.problems.iter().any(|p| p.contains(text)), "{case}: want {text:?} in {:?}", v.problems);
            }
        }
    }

    #[test]
    fn a_false_condition_is_a_reason_of_its_own_with_a_remedy() {
        let img = ImageRef::parse("r.example/app:v1").unwrap();
        let ev = evidence(vec![coverage("ci", false, pct(61.0))]);
        let v = evaluate(&policy(&tier(&[AT_80]), ""), &name("t"), &img, Ok(&ev), now());
        assert_eq!(v.reasons, [Reason::Conditions]);
        assert!(v.remedies[0].starts_with("meet the conditions on the https://example.com/coverage/v1 attestation, then attest again: cosign attest --type https://example.com/coverage/v1"), "{:?}", v.remedies);
        // The attestation judged is cited.
        assert_eq!(v.evidence, [ev.attestations[0].envelope.to_string()]);
        // A predicate too large to keep, or not kept: a denial that says so.
        let mut too_large = coverage("ci", false, pct(99.0));
        if let Outcome::Verified { statement, .. } = &mut too_large {
            *statement = Some(Arc::new(Statement { predicate: Err("the predicate is not kept for conditions: the document would take more than 16 MiB of memory to read".into()), subjects: vec![] }));
        }
        let mut not_kept = coverage("ci", false, pct(99.0));
        if let Outcome::Verified { statement, .. } = &mut not_kept {
            *statement = None;
        }
        for (o, text) in [(too_large, "more than 16 MiB"), (not_kept, "its predicate was not kept")] {
            let v = evaluate(&policy(&tier(&[AT_80]), ""), &name("t"), &img, Ok(&evidence(vec![o])), now());
            assert!(!v.admitted);
            assert!(v.problems[0].starts_with("the conditions on the https://example.com/coverage/v1 attestation signed by ci cannot be evaluated: "), "{:?}", v.problems);
            assert!(v.problems[0].contains(text), "{:?}", v.problems);
        }
    }

    /// The README's examples, read from it.
    #[test]
    fn the_readme_examples() {
        let readme = include_str!("../../../README.md");
        let block =
            readme.split("```yaml\n").find(|b| b.contains("load-test/v1")).unwrap().split("```").next().unwrap();
        #[derive(serde::Deserialize)]
        struct Tier {
            attestations: Vec<crate::policy::AttestationRule>,
        }
        let tier: Tier = serde_yaml_ng::from_str(block).unwrap();
        let expr = |rule: usize, condition: usize| tier.attestations[rule].conditions[condition].expression.clone();
        let (coverage, fresh, p95, syft) = (expr(0, 0), expr(0, 1), expr(1, 0), expr(2, 0));
        let sbom_15 = serde_json::json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "metadata": {"tools": {"components": [{"type": "application", "name": "syft", "version": "1.18.1"}]}}, "components": []});
        let sbom_14 = serde_json::json!({"bomFormat": "CycloneDX", "specVersion": "1.4", "metadata": {"tools": [{"vendor": "anchore", "name": "syft", "version": "0.98.0"}]}});
        let by_trivy = serde_json::json!({"bomFormat": "CycloneDX", "specVersion": "1.6", "metadata": {"tools": {"components": [{"name": "trivy"}]}}});
        let no_tools = serde_json::json!({"bomFormat": "CycloneDX", "specVersion": "1.6", "metadata": {}});
        let k6 = |p95: f64| serde_json::json!({"metrics": {"http_req_duration": {"avg": 120.3, "p(90)": 180.0, "p(95)": p95, "max": 950.1}}});
        let old = serde_json::json!({"lines": {"percent": 90.0}, "finishedOn": (now() - h(200)).to_rfc3339()});
        // (case, expression, predicate, holds)
        let rows = [
            ("SBOM by syft, CycloneDX 1.5", &syft, sbom_15, true),
            ("SBOM by syft, CycloneDX 1.4", &syft, sbom_14, true),
            ("SBOM by another tool", &syft, by_trivy, false),
            ("SBOM naming no tool", &syft, no_tools, false),
            ("p95 under 300 ms", &p95, k6(212.4), true),
            ("p95 over", &p95, k6(312.0), false),
            ("covered", &coverage, pct(82.0), true),
            ("covered too little", &coverage, pct(79.9), false),
            ("measured this week", &fresh, pct(82.0), true),
            ("measured before", &fresh, old, false),
        ];
        for (case, expr, predicate, holds) in rows {
            let c = crate::policy::condition::compile(expr).unwrap();
            let signer = super::Signer { name: "ci".into(), identity: None, issuer: None };
            let vars = super::Vars::new(&predicate, &[], COVERAGE, &signer, now()).unwrap();
            assert_eq!(crate::policy::condition::evaluate(&c, &vars), Ok(holds), "{case}");
        }
    }
}
