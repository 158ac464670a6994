//! Licences: the packages of the newest accepted SBOM (CycloneDX or SPDX)
//! against the tier's `deny` and `allow` lists, each package's licence an
//! SPDX expression evaluated by the `spdx` crate.
//!
//! A package passes when its expression can be met using only licences the
//! tier permits: not denied, and allowed when the tier lists `allow`; so
//! `MIT OR GPL-3.0-only` passes a deny of GPL-3.0-only (the choice is the
//! user's) and `MIT AND GPL-3.0-only` does not. A requirement is denied when
//! it names a denied licence: by SPDX id, the GNU licences' `-only` and
//! `-or-later` forms of one version being one licence (`GPL-3.0-or-later`
//! is denied by a deny of `GPL-3.0-only`, having no later version to
//! choose; `GPL-2.0-or-later` is not); a deny entry without `WITH` denies
//! the licence with any exception too. A requirement is allowed when an
//! allowed licence meets it (`Licensee::satisfies`). A licence exception (`spec.licenseExceptions`) permits its licence
//! for the packages it names, over deny and allow alike.
//!
//! A package of unknown licence (none stated, `NOASSERTION`, `NONE`, or an
//! expression that does not parse even leniently) is handled per
//! `unknown`: `warn` (the default) notes it, `deny` fails it, `allow`
//! passes it.

use chrono::NaiveDate;
use spdx::{Expression, LicenseReq, Licensee, ParseMode};

use super::{signed_by_any, Ctx, Found, Rule, LIST_FINDINGS};
use crate::evidence::sbom::{Package, Sbom};
use crate::evidence::{Claim, SBOM_TYPES};
use crate::policy::eval::{EvidenceKind, ExpiringException, Reason, Verdict, EXCEPTION_WARNING_DAYS};
use crate::policy::model::{LicenseExceptionSpec, LicenseRule, UnknownLicense};

/// The step that attaches an SBOM (`{image}`: the image).
const SBOM_FIX: &str =
    "attest an SBOM: syft {image} -o cyclonedx-json > sbom.json, then cosign attest --type cyclonedx --predicate sbom.json {image}";

/// How a pipeline attaches an SBOM, for messages.
const SBOM_HOW: &str = "`cosign attest --type cyclonedx` or `--type spdxjson`";

/// The `license` of a licence exception for packages of unknown licence.
pub(in crate::policy) const NOASSERTION: &str = "NOASSERTION";

/// One licence of a policy (`deny`, `allow`, an exception's `license`),
/// parsed: an SPDX id (`-or-later`, `+`), `LicenseRef-…`, optionally
/// `WITH` an exception; anything else is a load error.
pub(in crate::policy) fn licensee(text: &str) -> Result<Licensee, String> {
    Licensee::parse(text.trim())
        .map_err(|e| format!("{text:?} is not an SPDX licence id (https://spdx.org/licenses/): {}", e.reason))
}

impl Rule for LicenseRule {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::Licenses
    }

    fn signed_by(&self) -> &[String] {
        &self.signed_by
    }

    fn how(&self) -> String {
        format!("a signed SBOM ({SBOM_HOW})")
    }

    fn attach(&self) -> String {
        SBOM_FIX.to_string()
    }

    /// The newest SBOM an accepted signer signed (a CycloneDX scan is one
    /// too), its packages judged one by one.
    fn judge(&self, cx: &Ctx<'_>, v: &mut Verdict) {
        let found = cx.verified(|_, c| match c {
            Claim::Sbom(s) => Some(s.as_ref()),
            Claim::Vulnerabilities(r) => r.sbom.as_deref(),
            _ => None,
        });
        let Some(chosen) =
            found.iter().filter(|f| signed_by_any(f.signers, &self.signed_by)).max_by_key(|f| f.att.index)
        else {
            cx.fail_missing(v, "SBOM", SBOM_HOW, SBOM_TYPES, &found, &self.signed_by);
            let fix = cx.fix_missing(&self.attach(), &found, &self.signed_by, v);
            v.fix(fix);
            return;
        };
        v.cite(self.kind(), chosen, None);
        self.packages(cx, chosen, v);
    }
}

/// A package that fails, and why.
struct Failing<'a> {
    package: &'a Package,
    /// Its licence as written, or why it is unknown.
    why: String,
}

impl LicenseRule {
    fn packages(&self, cx: &Ctx<'_>, sbom: &Found<'_, Sbom>, v: &mut Verdict) {
        // Validation has rejected entries that do not parse.
        let reqs = |list: &[String]| -> Vec<LicenseReq> {
            list.iter().filter_map(|l| licensee(l).ok()).map(Licensee::into_req).collect()
        };
        let (deny, allow) = (reqs(&self.deny), reqs(&self.allow));
        let allow_licensees: Vec<Licensee> = self.allow.iter().filter_map(|l| licensee(l).ok()).collect();
        let denied = |r: &LicenseReq| {
            deny.iter().any(|d| same_licence(d, r) && (d.addition.is_none() || d.addition == r.addition))
        };
        let allowed = |r: &LicenseReq| {
            allow.is_empty() || allow_licensees.iter().any(|a| a.satisfies(r)) || allow.iter().any(|a| a == r)
        };
        let permitted = |r: &LicenseReq| !denied(r) && allowed(r);
        let mut failing: Vec<Failing<'_>> = Vec::new();
        let mut unknown: Vec<Failing<'_>> = Vec::new();
        for p in &sbom.claim.packages {
            let exceptions = self.exceptions(cx, p, v);
            // (`NOASSERTION` and `NONE` state nothing, however the SBOM writes them.)
            let stated = p.license.as_deref().filter(|t| !matches!(t.trim(), "NOASSERTION" | "NONE"));
            let parsed = stated.map(|t| (t, Expression::parse_mode(t, ParseMode::LAX)));
            let expr = match parsed {
                Some((_, Ok(e))) => e,
                _ => {
                    let why = match parsed {
                        Some((t, _)) => format!("({t:?} is not an SPDX expression)"),
                        None => "(no licence stated)".to_string(),
                    };
                    if let Some(e) = exceptions.iter().find(|e| e.license == NOASSERTION) {
                        applied(cx, e, p, v);
                    } else if self.unknown != UnknownLicense::Allow {
                        unknown.push(Failing { package: p, why });
                    }
                    continue;
                }
            };
            if expr.evaluate(permitted) {
                continue;
            }
            // What the exceptions for this package permit besides.
            let excepted: Vec<(&LicenseExceptionSpec, Licensee)> = exceptions
                .iter()
                .filter_map(|e| licensee(&e.license).ok().map(|l| (*e, l)))
                .filter(|(_, l)| {
                    expr.requirements().any(|r| l.satisfies(&r.req) || same_licence(&l.clone().into_req(), &r.req))
                })
                .collect();
            let by_exception =
                |r: &LicenseReq| excepted.iter().any(|(_, l)| l.satisfies(r) || same_licence(&l.clone().into_req(), r));
            if !excepted.is_empty() && expr.evaluate(|r| permitted(r) || by_exception(r)) {
                for (e, _) in &excepted {
                    applied(cx, e, p, v);
                }
                continue;
            }
            let why = match expr.evaluate_with_failures(|r| permitted(r) || by_exception(r)) {
                Err(reqs) => {
                    let mut names: Vec<String> = Vec::new();
                    for r in reqs {
                        let word = if denied(&r.req) { "denied" } else { "not allowed" };
                        let name = format!("{} {word}", r.req);
                        if !names.contains(&name) {
                            names.push(name);
                        }
                    }
                    format!("under {} ({})", p.license.as_deref().unwrap_or_default(), names.join(", "))
                }
                Ok(()) => format!("under {}", p.license.as_deref().unwrap_or_default()),
            };
            failing.push(Failing { package: p, why });
        }
        if !failing.is_empty() {
            let lists = match (self.deny.is_empty(), self.allow.is_empty()) {
                (false, true) => format!("denies {}", self.deny.join(", ")),
                (true, false) => format!("allows only {}", self.allow.join(", ")),
                _ => format!("denies {} and allows only {}", self.deny.join(", "), self.allow.join(", ")),
            };
            v.fail(
                Reason::Licenses,
                format!(
                    "{} in the {} SBOM licensed in a way tier {} does not accept (it {lists}): {}",
                    packages(failing.len()),
                    sbom.claim.format,
                    cx.tier,
                    listed(&failing)
                ),
            );
            let first = failing[0].package;
            let pattern = first.purl.clone().unwrap_or_else(|| first.name.clone());
            v.fix(format!(
                "replace or remove {} (and the others listed), or ask for a licence exception: spec.licenseExceptions \
                 with package {pattern:?}, license, expires, reason and approvedBy",
                first.describe()
            ));
        }
        if !unknown.is_empty() {
            let what = format!("{} of unknown licence in the {} SBOM", packages(unknown.len()), sbom.claim.format);
            match self.unknown {
                UnknownLicense::Deny => {
                    v.fail(
                        Reason::Licenses,
                        format!("{what}, which tier {} denies (licenses.unknown: deny): {}", cx.tier, listed(&unknown)),
                    );
                    v.fix(format!(
                        "have the SBOM state their licences (an SPDX expression each), or ask for a licence exception \
                         with license {NOASSERTION:?}"
                    ));
                }
                UnknownLicense::Warn => v.notes.push(format!("{what} (licenses.unknown: warn): {}", listed(&unknown))),
                UnknownLicense::Allow => {}
            }
        }
    }

    /// The licence exceptions written for package `p` of this image in this
    /// tier that apply today; an expired one is noted.
    fn exceptions<'p>(&self, cx: &Ctx<'p>, p: &Package, v: &mut Verdict) -> Vec<&'p LicenseExceptionSpec> {
        let today = cx.now.date_naive();
        let name = cx.image.name();
        let key = p.purl.as_deref().unwrap_or(&p.name);
        // A purl as written (`pkg:npm/%40acme/x@1`) or decoded (`pkg:npm/@acme/x@1`).
        let decoded = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
        let mut out = Vec::new();
        for (i, e) in cx.policy.file.spec.license_exceptions.iter().enumerate() {
            let tier = e.tiers.is_empty() || e.tiers.iter().any(|t| t == cx.tier.as_str());
            let covers = |k: &str| cx.policy.patterns.license_exception_covers(i, k, &name);
            if !tier || !(covers(key) || covers(&decoded)) {
                continue;
            }
            if today > e.expires {
                let note = format!(
                    "licence exception for {} ({}) expired on {}; it no longer applies",
                    e.package, e.license, e.expires
                );
                if !v.notes.contains(&note) {
                    v.notes.push(note);
                }
                continue;
            }
            out.push(e);
        }
        out
    }
}

/// Records a licence exception that let package `p` pass, and warns when
/// it expires within [`EXCEPTION_WARNING_DAYS`].
fn applied(cx: &Ctx<'_>, e: &LicenseExceptionSpec, p: &Package, v: &mut Verdict) {
    let id = format!("{} for {}", e.license, e.package);
    let label = format!("{id} (approved by {}, expires {}: {})", e.approved_by, e.expires, e.reason);
    if !v.exceptions.contains(&label) {
        v.exceptions.push(label);
    }
    let today = cx.now.date_naive();
    if days_until(today, e.expires) <= EXCEPTION_WARNING_DAYS {
        let note = format!("licence exception {id} expires on {}; replace {} before then", e.expires, p.describe());
        if !v.notes.contains(&note) {
            v.notes.push(note);
        }
        let expiring = ExpiringException { id, expires: e.expires };
        if !v.expiring_exceptions.contains(&expiring) {
            v.expiring_exceptions.push(expiring);
        }
    }
}

fn days_until(today: NaiveDate, day: NaiveDate) -> i64 {
    (day - today).num_days()
}

/// Whether two requirements name the same licence (its SPDX id, the GNU
/// `-only` and `-or-later` forms of a version alike, or the same
/// `LicenseRef`), whatever their `+` and exception.
fn same_licence(a: &LicenseReq, b: &LicenseReq) -> bool {
    let gnu = |name: &'static str| name.trim_end_matches("-only").trim_end_matches("-or-later");
    match (a.license.id(), b.license.id()) {
        (Some(x), Some(y)) => x == y || (x.is_gnu() && y.is_gnu() && gnu(x.name) == gnu(y.name)),
        (None, None) => a.license == b.license,
        _ => false,
    }
}

/// `1 package`, `3 packages`.
fn packages(n: usize) -> String {
    format!("{n} package{}", if n == 1 { "" } else { "s" })
}

/// The first few, each with why, and how many more.
fn listed(list: &[Failing<'_>]) -> String {
    let mut out: Vec<String> =
        list.iter().take(LIST_FINDINGS).map(|f| format!("{} {}", f.package.describe(), f.why)).collect();
    if list.len() > LIST_FINDINGS {
        out.push(format!("and {} more", list.len() - LIST_FINDINGS));
    }
    out.join("; ")
}

#[cfg(test)]
mod table {
    use std::sync::Arc;

    use chrono::{DateTime, Utc};

    use crate::evidence::sbom::{Package, Sbom};
    use crate::evidence::{Attestation, Claim, ImageEvidence, Outcome};
    use crate::image::{Digest, ImageRef};
    use crate::policy::eval::{evaluate, EvidenceKind, Reason};
    use crate::policy::model::Policy;

    const KEY: &str = "-----BEGIN PUBLIC KEY-----\n        MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE7QtNpX/PTPA4pOkBdBOmWT3S3HhP\n        hVxygajXbNEXKMRxbQMUMhUF/8RAIKvGJDujIcIveyrBAUZ07McENQdDrw==\n        -----END PUBLIC KEY-----";

    fn now() -> DateTime<Utc> {
        "2026-06-15T12:00:00Z".parse().unwrap()
    }

    fn policy(rule: &str, exceptions: &str) -> Result<Policy, crate::policy::model::PolicyError> {
        let y = format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers:\n    sbom:\n      publicKey: |\n        {KEY}\n    other:\n      publicKey: |\n        {KEY}\n  tiers:\n    t:\n      licenses: {rule}\n{exceptions}"
        );
        Policy::from_yaml(&y, "table")
    }

    fn pkg(name: &str, purl: Option<&str>, license: Option<&str>) -> Package {
        Package {
            name: name.into(),
            version: "1.0".into(),
            purl: purl.map(str::to_string),
            license: license.map(str::to_string),
        }
    }

    fn evidence(signer: &str, packages: Vec<Package>) -> ImageEvidence {
        let claim = Claim::Sbom(Arc::new(Sbom { format: "CycloneDX", packages }));
        ImageEvidence {
            digest: Digest::of(b"image"),
            location: "r.example/app:sha256-x.att".into(),
            attestations: vec![Attestation {
                envelope: Digest::of(b"sbom"),
                index: 0,
                claimed_type: Some(crate::evidence::CYCLONEDX_BOM.into()),
                outcome: Outcome::Verified { signers: vec![signer.into()], claim, identity: None, statement: None },
            }],
            skipped: Default::default(),
            index: false,
            entries: vec![],
            platforms: vec![],
            base: None,
        }
    }

    const DENY: &str = "{ signedBy: [sbom], deny: [GPL-3.0-only, AGPL-3.0-only] }";
    const ALLOW: &str = "{ signedBy: [sbom], allow: [MIT, Apache-2.0, BSD-3-Clause] }";
    const BOTH: &str = "{ signedBy: [sbom], allow: [MIT, GPL-3.0-only], deny: [GPL-3.0-only] }";
    const UNKNOWN_DENY: &str = "{ signedBy: [sbom], deny: [GPL-3.0-only], unknown: deny }";
    const UNKNOWN_ALLOW: &str = "{ signedBy: [sbom], deny: [GPL-3.0-only], unknown: allow }";
    const EXC: &str = "  licenseExceptions:\n    - { package: \"pkg:deb/debian/bash@*\", license: GPL-3.0-only, expires: 2026-12-31, reason: \"shell only, not linked\", approvedBy: legal@example.com }";
    const EXC_SOON: &str = "  licenseExceptions:\n    - { package: \"pkg:deb/debian/*\", license: GPL-3.0-only, expires: 2026-06-20, reason: r, approvedBy: legal@example.com }";
    const EXC_EXPIRED: &str = "  licenseExceptions:\n    - { package: \"pkg:deb/debian/bash@*\", license: GPL-3.0-only, expires: 2026-06-14, reason: r, approvedBy: legal@example.com }";
    const EXC_UNKNOWN: &str = "  licenseExceptions:\n    - { package: \"pkg:npm/@acme/*\", license: NOASSERTION, expires: 2026-12-31, reason: ours, approvedBy: legal@example.com }";
    const EXC_OTHER_TIER_IMAGE: &str = "  licenseExceptions:\n    - { package: \"pkg:deb/debian/bash@*\", license: GPL-3.0-only, images: [\"other.example/*\"], expires: 2026-12-31, reason: r, approvedBy: legal@example.com }";

    const BASH: &str = "pkg:deb/debian/bash@5.2";

    /// (case, rule, exceptions, signer, packages, admitted, text in problems or notes)
    type Row = (&'static str, &'static str, &'static str, &'static str, Vec<Package>, bool, &'static str);

    #[test]
    fn licences_table() {
        // (case, rule, exceptions, signer, packages, admitted, text in problems or notes)
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            ("permissive passes a deny list", DENY, "", "sbom", vec![pkg("a", None, Some("MIT")), pkg("b", None, Some("Apache-2.0"))], true, ""),
            ("a denied licence fails, the package named", DENY, "", "sbom", vec![pkg("bash", Some(BASH), Some("GPL-3.0-only"))], false, "1 package in the CycloneDX SBOM licensed in a way tier t does not accept (it denies GPL-3.0-only, AGPL-3.0-only): bash@1.0 (pkg:deb/debian/bash@5.2) under GPL-3.0-only (GPL-3.0-only denied)"),
            ("OR: the user's choice passes", DENY, "", "sbom", vec![pkg("x", None, Some("MIT OR GPL-3.0-only"))], true, ""),
            ("AND: both apply, fails", DENY, "", "sbom", vec![pkg("x", None, Some("MIT AND GPL-3.0-only"))], false, "x@1.0 under MIT AND GPL-3.0-only (GPL-3.0-only denied)"),
            ("or-later met by a denied licence fails", DENY, "", "sbom", vec![pkg("x", None, Some("GPL-3.0-or-later"))], false, "x@1.0 under GPL-3.0-or-later"),
            ("a denied licence with an exception is denied", DENY, "", "sbom", vec![pkg("x", None, Some("GPL-3.0-only WITH GCC-exception-3.1"))], false, "x@1.0 under GPL-3.0-only WITH GCC-exception-3.1"),
            ("GPL-2.0-or-later may be taken as GPL-2.0", DENY, "", "sbom", vec![pkg("x", None, Some("GPL-2.0-or-later"))], true, ""),
            ("GPL-2.0 is not GPL-3.0", DENY, "", "sbom", vec![pkg("x", None, Some("GPL-2.0-only"))], true, ""),
            ("lenient parsing: a deprecated id", DENY, "", "sbom", vec![pkg("x", None, Some("GPL-3.0"))], false, "x@1.0 under GPL-3.0"),
            ("allow: only allowed licences pass", ALLOW, "", "sbom", vec![pkg("a", None, Some("MIT")), pkg("b", None, Some("BSD-3-Clause OR GPL-2.0-only"))], true, ""),
            ("allow: another licence fails", ALLOW, "", "sbom", vec![pkg("c", None, Some("MPL-2.0"))], false, "c@1.0 under MPL-2.0 (MPL-2.0 not allowed)"),
            ("allow: AND needs both allowed", ALLOW, "", "sbom", vec![pkg("c", None, Some("MIT AND MPL-2.0"))], false, "it allows only MIT, Apache-2.0, BSD-3-Clause"),
            ("deny wins over allow", BOTH, "", "sbom", vec![pkg("g", None, Some("GPL-3.0-only"))], false, "GPL-3.0-only denied"),
            ("allow and deny both met", BOTH, "", "sbom", vec![pkg("m", None, Some("MIT OR GPL-3.0-only"))], true, ""),
            ("more than five: the rest summarised", DENY, "", "sbom", (0..7).map(|i| pkg(&format!("p{i}"), None, Some("AGPL-3.0-only"))).collect(), false, "7 packages in the CycloneDX SBOM"),
            ("… and counted", DENY, "", "sbom", (0..7).map(|i| pkg(&format!("p{i}"), None, Some("AGPL-3.0-only"))).collect(), false, "; and 2 more"),
            ("unknown warns by default", DENY, "", "sbom", vec![pkg("n", None, None), pkg("q", None, Some("NOASSERTION"))], true, "2 packages of unknown licence in the CycloneDX SBOM (licenses.unknown: warn): n@1.0 (no licence stated); q@1.0 (no licence stated)"),
            ("unknown: a licence by name only", DENY, "", "sbom", vec![pkg("r", None, Some("Some random license"))], true, "r@1.0 (\"Some random license\" is not an SPDX expression)"),
            ("unknown: deny", UNKNOWN_DENY, "", "sbom", vec![pkg("n", None, None)], false, "1 package of unknown licence in the CycloneDX SBOM, which tier t denies (licenses.unknown: deny): n@1.0 (no licence stated)"),
            ("unknown: allow says nothing", UNKNOWN_ALLOW, "", "sbom", vec![pkg("n", None, None)], true, ""),
            ("exception by purl pattern", DENY, EXC, "sbom", vec![pkg("bash", Some(BASH), Some("GPL-3.0-only"))], true, ""),
            ("exception names only its packages", DENY, EXC, "sbom", vec![pkg("bash", Some(BASH), Some("GPL-3.0-only")), pkg("gcc", Some("pkg:deb/debian/gcc@12"), Some("GPL-3.0-only"))], false, "1 package in the CycloneDX SBOM licensed in a way tier t does not accept (it denies GPL-3.0-only, AGPL-3.0-only): gcc@1.0"),
            ("exception names only its licence", DENY, EXC, "sbom", vec![pkg("bash", Some(BASH), Some("GPL-3.0-only AND AGPL-3.0-only"))], false, "AGPL-3.0-only denied"),
            ("exception expiring within 14 days warns", DENY, EXC_SOON, "sbom", vec![pkg("bash", Some(BASH), Some("GPL-3.0-only"))], true, "licence exception GPL-3.0-only for pkg:deb/debian/* expires on 2026-06-20; replace bash@1.0 (pkg:deb/debian/bash@5.2) before then"),
            ("expired exception no longer applies", DENY, EXC_EXPIRED, "sbom", vec![pkg("bash", Some(BASH), Some("GPL-3.0-only"))], false, "licence exception for pkg:deb/debian/bash@* (GPL-3.0-only) expired on 2026-06-14; it no longer applies"),
            ("exception for other images", DENY, EXC_OTHER_TIER_IMAGE, "sbom", vec![pkg("bash", Some(BASH), Some("GPL-3.0-only"))], false, "bash@1.0"),
            ("exception for unknown licence", UNKNOWN_DENY, EXC_UNKNOWN, "sbom", vec![pkg("ours", Some("pkg:npm/%40acme/ours@1"), None)], true, ""),
            ("SBOM by another signer", DENY, "", "other", vec![pkg("a", None, Some("MIT"))], false, "the SBOM is signed by other, but tier t accepts only sbom"),
        ];
        let img = ImageRef::parse("r.example/app:v1").unwrap();
        for (case, rule, exceptions, signer, packages, admitted, text) in rows {
            let p = policy(rule, exceptions).unwrap_or_else(|e| panic!("{case}: {e}"));
            let tier = p.tier_name("t").unwrap();
            let v = evaluate(&p, &tier, &img, Ok(&evidence(signer, packages)), now());
            let said = format!("{} | {}", v.problems.join("; "), v.notes.join("; "));
            assert_eq!(v.admitted, admitted, "{case}: {said}");
            assert!(said.contains(text), "{case}: want {text:?} in {said:?}");
            if admitted {
                assert!(v.attestations.iter().any(|c| c.kind == EvidenceKind::Licenses), "{case}: cited");
            } else {
                assert!(!v.remedies.is_empty(), "{case}: a remedy");
                assert!(v.failures.iter().all(|f| f.kind == Some(EvidenceKind::Licenses)), "{case}");
            }
            if case == "a denied licence fails, the package named" {
                assert_eq!(v.reasons, [Reason::Licenses]);
                assert!(
                    v.remedies[0].contains("spec.licenseExceptions with package \"pkg:deb/debian/bash@5.2\""),
                    "{:?}",
                    v.remedies
                );
            }
            if case.starts_with("exception by purl") {
                assert_eq!(v.exceptions, ["GPL-3.0-only for pkg:deb/debian/bash@* (approved by legal@example.com, expires 2026-12-31: shell only, not linked)"]);
            }
            if case.starts_with("exception expiring") {
                assert_eq!(v.expiring_exceptions.len(), 1);
            }
        }
    }

    #[test]
    fn lint_names_unknown_licence_ids_where_they_are() {
        // (rule, exceptions, path of the problem, message)
        let rows = [
            ("{ signedBy: [sbom], deny: [GPL-3] }", "", "spec.tiers.t.licenses.deny[0]", "\"GPL-3\" is not an SPDX licence id"),
            ("{ signedBy: [sbom], allow: [MIT, Apache 2.0] }", "", "spec.tiers.t.licenses.allow[1]", "is not an SPDX licence id"),
            ("{ signedBy: [nobody] }", "", "spec.tiers.t.licenses.signedBy[0]", "names undefined signer"),
            ("{ signedBy: [sbom], unknown: maybe }", "", "", "unknown variant `maybe`"),
            ("{ signedBy: [sbom] }", "  licenseExceptions:\n    - { package: \"pkg:deb/*\", license: Nonsense-1, expires: 2026-12-31, reason: r, approvedBy: a }", "spec.licenseExceptions[0].license", "is not an SPDX licence id"),
            ("{ signedBy: [sbom] }", "  licenseExceptions:\n    - { package: \"\", license: MIT, expires: 2026-12-31, reason: \" \", approvedBy: a }", "spec.licenseExceptions[0].package", "is empty"),
        ];
        for (rule, exceptions, path, message) in rows {
            let e = policy(rule, exceptions).map(|_| ()).unwrap_err();
            let p = e
                .problems
                .iter()
                .find(|p| p.message.contains(message) && p.path.contains(path))
                .unwrap_or_else(|| panic!("{path}: {message}: {e}"));
            assert!(p.line.is_some(), "located: {p:?}");
        }
        assert!(policy("{ signedBy: [sbom], deny: [GPL-3.0-or-later, \"Apache-2.0 WITH LLVM-exception\", LicenseRef-acme], allow: [MIT] }", "").is_ok());
    }
}
