//! Build provenance: signed by an accepted signer, from an accepted source
//! repository, by an accepted builder.

use super::{signed_by_any, Ctx, Found, Rule};
use crate::evidence::{repository_uri, Claim, Provenance, PROVENANCE_TYPES};
use crate::policy::eval::{EvidenceKind, Reason, Verdict};
use crate::policy::model::ProvenanceRule;

/// The step that attaches provenance (`{image}`: the image).
const PROVENANCE_FIX: &str = "attest provenance from the build: actions/attest-build-provenance (push-to-registry), or cosign attest --type slsaprovenance1 --predicate provenance.json {image}";

/// How a pipeline attaches provenance, for messages.
const PROVENANCE_HOW: &str =
    "`actions/attest-build-provenance` with push-to-registry, or `cosign attest --type slsaprovenance1`";

impl Rule for ProvenanceRule {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::Provenance
    }

    fn signed_by(&self) -> &[String] {
        &self.signed_by
    }

    fn how(&self) -> String {
        format!("signed build provenance ({PROVENANCE_HOW})")
    }

    fn attach(&self) -> String {
        PROVENANCE_FIX.to_string()
    }

    /// Build provenance: the newest signed by an accepted signer that
    /// matches passes; if none matches, the newest's mismatch is the reason.
    fn judge(&self, cx: &Ctx<'_>, v: &mut Verdict) {
        let found = cx.verified(|_, c| match c {
            Claim::Provenance(p) => Some(p),
            _ => None,
        });
        let mut accepted: Vec<&Found<'_, Provenance>> =
            found.iter().filter(|f| signed_by_any(f.signers, &self.signed_by)).collect();
        if accepted.is_empty() {
            cx.fail_missing(v, "build provenance", PROVENANCE_HOW, PROVENANCE_TYPES, &found, &self.signed_by);
            let fix = cx.fix_missing(&self.attach(), &found, &self.signed_by, v);
            v.fix(fix);
            return;
        }
        accepted.sort_by_key(|f| std::cmp::Reverse(f.att.index));
        let mut first_why = None;
        for f in accepted {
            let why = self.mismatch(cx, f);
            if why.is_empty() {
                v.cite(self.kind(), f, None);
                return;
            }
            first_why.get_or_insert(why);
        }
        v.fail_all(Reason::Provenance, first_why.unwrap_or_default());
        v.fix(
            "build it from a source repository and with a builder the tier accepts (provenance in the policy)".into(),
        );
    }
}

impl ProvenanceRule {
    /// How one provenance fails the rule (empty when it passes). The source
    /// repository is checked as the provenance states it and, for keyless
    /// signatures, as the signing certificate does (Fulcio copies it from
    /// the CI's token): both must be accepted.
    fn mismatch(&self, cx: &Ctx<'_>, f: &Found<'_, Provenance>) -> Vec<String> {
        let mut out = Vec::new();
        let matches = |patterns: &[String], s: &str| cx.policy.patterns.path_matches(patterns, s);
        if !self.source_repositories.is_empty() {
            let mut sources: Vec<(String, &str)> = Vec::new();
            if let Some(s) = &f.claim.source_repository {
                sources.push((s.clone(), "the provenance"));
            }
            if let Some(s) = f.identity.and_then(|i| i.source_repository.as_deref()) {
                sources.push((repository_uri(s), "the signing certificate"));
            }
            if sources.is_empty() {
                out.push(format!(
                    "the build provenance names no source repository, and tier {} accepts only {}",
                    cx.tier,
                    self.source_repositories.join(", ")
                ));
            }
            for (source, by) in sources {
                if !matches(&self.source_repositories, &source) {
                    out.push(format!(
                        "built from {source} (per {by}), but tier {} accepts source repositories {}",
                        cx.tier,
                        self.source_repositories.join(", ")
                    ));
                }
            }
        }
        if !self.builder_ids.is_empty() && !matches(&self.builder_ids, &f.claim.builder_id) {
            out.push(format!(
                "built by {}, but tier {} accepts builders {}",
                f.claim.builder_id,
                cx.tier,
                self.builder_ids.join(", ")
            ));
        }
        out
    }
}
