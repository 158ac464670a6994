//! Attestations of any predicate type a tier requires (an SBOM, a code
//! review): present, verified, and signed by one of the rule's signers.

use super::{signed_by_any, Ctx, Rule};
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
        match found.iter().filter(|f| signed_by_any(f.signers, &self.signed_by)).max_by_key(|f| f.att.index) {
            Some(f) => v.cite(self.kind(), f, None),
            None => {
                v.fail(
                    Reason::MissingEvidence,
                    cx.missing(
                        &format!("{} attestation", self.predicate_type),
                        &format!("`cosign attest --type {}`", self.predicate_type),
                        &[self.predicate_type.as_str()],
                        &found,
                        &self.signed_by,
                    ),
                );
                let attach = format!("attest it: {}", self.attach());
                let fix = cx.fix_missing(&attach, &found, &self.signed_by, v);
                v.fix(fix);
            }
        }
    }
}
