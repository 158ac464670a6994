//! Evidence: verified attestation predicates turned into one model.
//!
//! Vulnerability reports (whatever the scanner) become a [`VulnReport`] of
//! [`Finding`]s; test-result predicates become a [`TestReport`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::attest::VerifiedStatement;

pub use formats::{parse_report, scanner_report, ReportError, UNDERSTOOD};
pub use lookup::LookupError;

pub mod base;
pub(crate) mod bounded;
mod cosign;
pub(crate) mod cyclonedx;
mod formats;
mod grype;
mod intoto;
mod lookup;
mod sarif;
pub mod sbom;
#[cfg(test)]
mod tests;
mod trivy;
pub mod vex;

pub const COSIGN_VULN_V1: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";
/// The in-toto vulnerabilities predicate, unversioned and per version.
pub const INTOTO_VULNS: &str = "https://in-toto.io/attestation/vulns";
pub const INTOTO_VULNS_V01: &str = "https://in-toto.io/attestation/vulns/v0.1";
pub const INTOTO_VULNS_V02: &str = "https://in-toto.io/attestation/vulns/v0.2";
/// A CycloneDX document (`cosign attest --type cyclonedx`): a scan when it
/// lists `vulnerabilities`, else an SBOM (another predicate).
pub const CYCLONEDX_BOM: &str = "https://cyclonedx.org/bom";
pub const TEST_RESULT_V01: &str = "https://in-toto.io/attestation/test-result/v0.1";
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
pub const SLSA_PROVENANCE_V02: &str = "https://slsa.dev/provenance/v0.2";
/// Predicate types that carry a vulnerability scan.
pub const VULN_TYPES: &[&str] = &[COSIGN_VULN_V1, INTOTO_VULNS, INTOTO_VULNS_V01, INTOTO_VULNS_V02, CYCLONEDX_BOM];
/// Predicate types that carry an SBOM (a CycloneDX document that lists
/// vulnerabilities is a scan and an SBOM both).
pub const SBOM_TYPES: &[&str] = &[CYCLONEDX_BOM, sbom::SPDX_DOCUMENT];
/// Predicate types that carry build provenance.
pub const PROVENANCE_TYPES: &[&str] = &[SLSA_PROVENANCE_V1, SLSA_PROVENANCE_V02];

/// Severity buckets a tier can limit. Scanner names map case-insensitively;
/// anything unrecognised is `Unknown`, its own bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Unknown,
}

impl Severity {
    pub const ALL: [Severity; 5] =
        [Severity::Critical, Severity::High, Severity::Medium, Severity::Low, Severity::Unknown];

    pub fn parse(s: &str) -> Severity {
        match s.trim().to_ascii_lowercase().as_str() {
            "critical" => Severity::Critical,
            "high" | "important" => Severity::High,
            "medium" | "moderate" => Severity::Medium,
            "low" | "negligible" | "minor" => Severity::Low,
            _ => Severity::Unknown,
        }
    }

    /// CVSS v3 qualitative bands: 9.0+ critical, 7.0+ high, 4.0+ medium, else low.
    pub fn from_cvss(score: f64) -> Severity {
        match score {
            s if s >= 9.0 => Severity::Critical,
            s if s >= 7.0 => Severity::High,
            s if s >= 4.0 => Severity::Medium,
            s if s >= 0.0 => Severity::Low,
            _ => Severity::Unknown,
        }
    }

    /// The scanner's severity name; when it is missing or unrecognised, the
    /// CVSS score's band; else `Unknown`.
    pub fn from_name_or_cvss(name: &str, cvss: Option<f64>) -> Severity {
        match (Severity::parse(name), cvss) {
            (Severity::Unknown, Some(score)) => Severity::from_cvss(score),
            (s, _) => s,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Unknown => "unknown",
        }
    }
}

/// One vulnerability in one package.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    pub severity: Severity,
    pub package: String,
    pub installed_version: String,
    /// Versions that fix it; empty when no fix is known.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fixed_versions: Vec<String>,
    pub fix_state: FixState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cvss: Option<f64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub target: String,
    /// The package's purl, when the report gives it (what VEX
    /// subcomponents match).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
}

/// Whether the vendor ships a fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FixState {
    Fixed,
    NotFixed,
    WontFix,
    Unknown,
}

impl FixState {
    /// Maps scanner fix states (`fixed`, `not-fixed`, `affected`, `wont-fix`,
    /// `will_not_fix`, …) case-insensitively; a fixed version implies `Fixed`.
    pub fn parse(state: &str, has_fixed_version: bool) -> FixState {
        if has_fixed_version {
            return FixState::Fixed;
        }
        match state.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "fixed" => FixState::Fixed,
            "not-fixed" | "affected" | "fix-deferred" | "under-investigation" => FixState::NotFixed,
            "wont-fix" | "will-not-fix" | "end-of-life" => FixState::WontFix,
            _ => FixState::Unknown,
        }
    }
}

impl Finding {
    /// A fix is available: a fixed version is known.
    pub fn fixable(&self) -> bool {
        !self.fixed_versions.is_empty()
    }

    /// `CVE-2024-1111 in openssl 3.0.1, fixed in 3.0.13` (or `, no fix available`).
    pub fn describe(&self) -> String {
        let fix = if self.fixable() {
            format!("fixed in {}", self.fixed_versions.join(" or "))
        } else {
            "no fix available".to_string()
        };
        match (self.package.is_empty(), self.installed_version.is_empty()) {
            (true, _) => format!("{} (package not named), {fix}", self.id),
            (false, true) => format!("{} in {}, {fix}", self.id, self.package),
            (false, false) => format!("{} in {} {}, {fix}", self.id, self.package, self.installed_version),
        }
    }
}

/// A normalised vulnerability report.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VulnReport {
    pub scanner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_on: Option<DateTime<Utc>>,
    pub findings: Vec<Finding>,
    /// The scanner's own analysis of its findings, as VEX (CycloneDX
    /// `analysis`), trusted as the scan is; about the scanned image.
    #[serde(skip)]
    pub vex: Option<std::sync::Arc<vex::Document>>,
    /// For a CycloneDX attestation, which is an SBOM as well as a scan:
    /// its packages and their licences (read by a tier's `licenses`).
    #[serde(skip)]
    pub sbom: Option<std::sync::Arc<sbom::Sbom>>,
}

impl VulnReport {
    /// Drops repeated findings: one per (id, package, installed version)
    /// across all targets; a finding listed under an alias of one already
    /// seen is the same finding.
    pub fn dedup(mut self) -> Self {
        // The most severe listing of a finding is the one kept (stable, so
        // otherwise the report's order stands).
        self.findings.sort_by_key(|f| f.severity);
        let mut seen = std::collections::HashSet::new();
        self.findings.retain(|f| {
            let mut keys = vec![f.id.clone()];
            keys.extend(f.aliases.iter().cloned());
            let fresh =
                keys.iter().all(|k| !seen.contains(&(k.clone(), f.package.clone(), f.installed_version.clone())));
            if fresh {
                for k in keys {
                    seen.insert((k, f.package.clone(), f.installed_version.clone()));
                }
            }
            fresh
        });
        self
    }

    pub fn count(&self, sev: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == sev).count()
    }
}

/// Outcome of a test run, as the test-result predicate states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TestOutcome {
    Passed,
    Warned,
    Failed,
}

/// `https://in-toto.io/attestation/test-result/v0.1`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestReport {
    pub result: TestOutcome,
    #[serde(default, deserialize_with = "bounded::capped::<_, _, { bounded::MAX_PER_FINDING }>")]
    pub configuration: Vec<ResourceDescriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, deserialize_with = "bounded::capped::<_, _, { bounded::MAX_TESTS }>")]
    pub passed_tests: Vec<String>,
    #[serde(default, deserialize_with = "bounded::capped::<_, _, { bounded::MAX_TESTS }>")]
    pub warned_tests: Vec<String>,
    #[serde(default, deserialize_with = "bounded::capped::<_, _, { bounded::MAX_TESTS }>")]
    pub failed_tests: Vec<String>,
    /// When the run finished. Not part of test-result v0.1, which carries no
    /// time; read from an optional RFC 3339 `finishedOn` field CI may add,
    /// so that `tests.maxAge` can be enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_on: Option<DateTime<Utc>>,
}

/// The in-toto ResourceDescriptor fields a test configuration is named by.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDescriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

/// What a verified attestation says.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Claim {
    Vulnerabilities(VulnReport),
    Tests(TestReport),
    Provenance(Provenance),
    /// An SBOM (`cosign attest --type cyclonedx` without vulnerabilities,
    /// `--type spdxjson`): its packages and their licences.
    Sbom(#[serde(serialize_with = "sbom::serialize_shared")] std::sync::Arc<sbom::Sbom>),
    /// A VEX document (`cosign attest --type openvex`).
    Vex(#[serde(serialize_with = "vex::serialize_shared")] std::sync::Arc<vex::Document>),
    /// A predicate no built-in rule reads (a review): only its type
    /// and signers matter, to the tier's `attestations` rules.
    Other {
        predicate_type: String,
    },
}

/// SLSA build provenance, reduced to what a tier matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    /// `https://slsa.dev/provenance/v1` or `/v0.2`.
    pub predicate_type: String,
    pub builder_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub build_type: String,
    /// The repository built from, as a URI without `git+` and `@ref`
    /// (`https://github.com/acme/shop`), when the provenance names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_repository: Option<String>,
    /// The commit built, when the provenance names one (a git dependency's
    /// `gitCommit` or `sha1` digest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_commit: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EvidenceError {
    #[error("{predicate_type} predicate is invalid: {why}")]
    Invalid { predicate_type: String, why: String },
}

/// Interprets a verified statement's predicate, within a bound of memory
/// (typed, capped lists; see `evidence::bounded`).
pub fn claim_of(st: &VerifiedStatement) -> Result<Claim, EvidenceError> {
    let invalid = |why: String| EvidenceError::Invalid { predicate_type: st.predicate_type.clone(), why };
    let text = st.predicate();
    if let Some(format) = formats::predicate_format(&st.predicate_type).filter(|f| (f.scan)(text)) {
        let mut report = (format.parse)(text).map_err(invalid)?;
        // A CycloneDX scan is an SBOM too: its components' licences.
        if st.predicate_type == CYCLONEDX_BOM {
            report.sbom = Some(std::sync::Arc::new(sbom::cyclonedx(text).map_err(invalid)?));
        }
        return Ok(Claim::Vulnerabilities(report));
    }
    match st.predicate_type.as_str() {
        TEST_RESULT_V01 => {
            serde_json::from_str::<TestReport>(text).map(Claim::Tests).map_err(|e| invalid(e.to_string()))
        }
        SLSA_PROVENANCE_V1 | SLSA_PROVENANCE_V02 => bounded::value(text, bounded::PROVENANCE_BUDGET)
            .and_then(|v| provenance(&st.predicate_type, &v))
            .map(Claim::Provenance)
            .map_err(invalid),
        CYCLONEDX_BOM => sbom::cyclonedx(text)
            .map(|s| Claim::Sbom(std::sync::Arc::new(s)))
            .map_err(|e| invalid(format!("SBOM: {e}"))),
        sbom::SPDX_DOCUMENT => {
            sbom::spdx(text).map(|s| Claim::Sbom(std::sync::Arc::new(s))).map_err(|e| invalid(format!("SBOM: {e}")))
        }
        t if vex::VEX_TYPES.contains(&t) => vex::parse(text.as_bytes())
            .map(|d| Claim::Vex(std::sync::Arc::new(d)))
            .map_err(|e| invalid(format!("VEX document: {e}"))),
        other => Ok(Claim::Other { predicate_type: other.to_string() }),
    }
}

/// Reads SLSA provenance v1 (`runDetails.builder.id`; the source from
/// `buildDefinition.externalParameters.workflow.repository` as GitHub's
/// build types write it, else `externalParameters.source`, else the first
/// git `resolvedDependencies` entry) or v0.2 (`builder.id`;
/// `invocation.configSource.uri`, else the first git `materials` entry).
fn provenance(predicate_type: &str, p: &serde_json::Value) -> Result<Provenance, String> {
    let s = |ptr: &str| p.pointer(ptr).and_then(serde_json::Value::as_str).map(str::to_string);
    let first_git = |list: &str| {
        p.pointer(list)
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|d| d.get("uri").and_then(serde_json::Value::as_str))
            .find(|u| u.starts_with("git+"))
            .map(str::to_string)
    };
    // The commit: the digest of the first git dependency that names one.
    let git_commit = |list: &str| {
        p.pointer(list)
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter(|d| d.get("uri").and_then(serde_json::Value::as_str).is_some_and(|u| u.starts_with("git+")))
            .find_map(|d| commit_of(d.get("digest")?))
    };
    let (builder, build_type, source, commit) = if predicate_type == SLSA_PROVENANCE_V1 {
        let source = s("/buildDefinition/externalParameters/workflow/repository")
            .or_else(|| s("/buildDefinition/externalParameters/source"))
            .or_else(|| s("/buildDefinition/externalParameters/source/uri"))
            .or_else(|| first_git("/buildDefinition/resolvedDependencies"));
        let commit = git_commit("/buildDefinition/resolvedDependencies");
        (s("/runDetails/builder/id"), s("/buildDefinition/buildType"), source, commit)
    } else {
        let source = s("/invocation/configSource/uri").or_else(|| first_git("/materials"));
        let commit =
            p.pointer("/invocation/configSource/digest").and_then(commit_of).or_else(|| git_commit("/materials"));
        (s("/builder/id"), s("/buildType"), source, commit)
    };
    let builder_id = builder.filter(|b| !b.is_empty()).ok_or("it names no builder id")?;
    Ok(Provenance {
        predicate_type: predicate_type.to_string(),
        builder_id,
        build_type: build_type.unwrap_or_default(),
        source_repository: source.map(|u| repository_uri(&u)),
        source_commit: commit,
    })
}

/// A commit id from an in-toto DigestSet (`gitCommit`, else `sha1`), when
/// it looks like one (hex, 40 or 64 digits).
fn commit_of(digest: &serde_json::Value) -> Option<String> {
    let id = ["gitCommit", "sha1"].iter().find_map(|k| digest.get(k)?.as_str())?;
    let hex = id.len() == 40 || id.len() == 64;
    (hex && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_ascii_lowercase())
}

/// `git+https://github.com/acme/shop.git@refs/heads/main` ->
/// `https://github.com/acme/shop`.
pub fn repository_uri(uri: &str) -> String {
    let u = uri.trim().strip_prefix("git+").unwrap_or(uri.trim());
    // A ref follows the last '@' after the host.
    let host_at = u.find("://").map(|i| i + 3).unwrap_or(0);
    let path_at = u[host_at..].find('/').map(|i| host_at + i).unwrap_or(u.len());
    let u = match u[path_at..].find('@') {
        Some(i) => &u[..path_at + i],
        None => u,
    };
    u.strip_suffix(".git").unwrap_or(u).trim_end_matches('/').to_string()
}

/// Parses an RFC 3339 time; Go's zero time (`0001-01-01T00:00:00Z`, what
/// cosign writes for an unset time) counts as absent.
fn parse_time(s: Option<&str>) -> Result<Option<DateTime<Utc>>, String> {
    let Some(s) = s.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let t = DateTime::parse_from_rfc3339(s).map_err(|e| format!("time {s:?}: {e}"))?.with_timezone(&Utc);
    Ok((t.timestamp() > 0).then_some(t))
}

/// Attestations a registry listed for an image that were not read, and
/// why. Of each claimed predicate type the newest are read first, so what
/// is left is older than what was read of its type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unread {
    /// Past the number read per image and scheme.
    pub past_count: usize,
    /// That number.
    pub count_limit: usize,
    /// Past the bytes read per image (or older than one of their claimed
    /// type that was).
    pub over_budget: usize,
    /// Those bytes.
    pub byte_budget: u64,
    /// Each larger than the limit for one attestation.
    pub too_large: usize,
    /// That limit, in bytes.
    pub size_limit: u64,
}

impl Unread {
    pub fn total(&self) -> usize {
        self.past_count + self.over_budget + self.too_large
    }
}

/// Everything found for one image digest, each attestation verified or
/// rejected with its reason. Built once per digest and trust, then cached.
#[derive(Clone, Debug)]
pub struct ImageEvidence {
    pub digest: crate::image::Digest,
    /// Where attestations were looked for.
    pub location: String,
    pub attestations: Vec<Attestation>,
    /// Attestations listed but not read (past the per-image limits).
    pub skipped: Unread,
    /// The digest is an image index (a multi-arch image).
    pub index: bool,
    /// For an index without attestations of its own: each of its entries,
    /// as the choice of what a node runs sees it (attestation manifests too).
    pub entries: Vec<crate::platform::Entry>,
    /// For an index without attestations of its own: the evidence of each
    /// entry with something to run (or why it could not be gathered).
    pub platforms: Vec<PlatformEvidence>,
    /// The base image its manifest names, and what that base is now: only
    /// looked up when a tier of the policy judges base images (`baseImage`).
    pub base: Option<base::BaseImage>,
}

/// The evidence of one entry of an index.
#[derive(Clone, Debug)]
pub struct PlatformEvidence {
    /// `linux/arm64`, `windows/amd64`, `linux/arm/v7`,
    /// `linux/amd64 from its config` ([`crate::platform::Entry::label`]).
    pub platform: String,
    pub digest: crate::image::Digest,
    /// Its place in [`ImageEvidence::entries`].
    pub entry: usize,
    pub evidence: Result<std::sync::Arc<ImageEvidence>, LookupError>,
}

#[derive(Clone, Debug)]
pub struct Attestation {
    /// Digest of the envelope as stored (cite it to replay a decision).
    pub envelope: crate::image::Digest,
    /// Position in the registry's list; later is newer.
    pub index: usize,
    /// The predicate type the payload claims. For rejected attestations this
    /// is unauthenticated and used only to word messages.
    pub claimed_type: Option<String>,
    pub outcome: Outcome,
}

/// Most memory a predicate kept whole for conditions may take once read
/// ([`bounded::value`]'s estimate, as for provenance): an SBOM of a few
/// thousand components. A larger one is not kept, and its conditions deny
/// saying so.
pub const MAX_KEPT_PREDICATE: usize = bounded::PROVENANCE_BUDGET;

/// A verified Statement kept whole, for the CEL conditions a policy sets on
/// attestations of its predicate type: the predicate as JSON (or why it was
/// not kept) and the subjects.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub predicate: Result<serde_json::Value, String>,
    pub subjects: Vec<crate::attest::StatementSubject>,
}

impl Statement {
    /// What a verified Statement says, kept within [`MAX_KEPT_PREDICATE`].
    pub fn of(st: &VerifiedStatement) -> Statement {
        let predicate = bounded::value(st.predicate(), MAX_KEPT_PREDICATE)
            .map_err(|e| format!("the predicate is not kept for conditions: {e}"));
        Statement { predicate, subjects: st.subjects.clone() }
    }
}

impl Attestation {
    /// Verifies `signed` (found under the digest `source` of the blob that
    /// held it, at `index` in the registry's order) for the image `digest`
    /// against `trust`, and keeps what it says: the claim, not the bytes;
    /// and for the predicate types in `keep` (those the policy sets
    /// conditions on), the Statement too.
    pub fn read(
        index: usize,
        source: crate::image::Digest,
        signed: &crate::attest::Signed,
        trust: &crate::attest::Trust,
        digest: &crate::image::Digest,
        keep: &[String],
    ) -> Attestation {
        let (claimed_type, outcome) = match crate::attest::verify(signed, trust, digest) {
            // For a verified attestation the claimed type is the verified one.
            Ok(st) => {
                let statement = keep.contains(&st.predicate_type).then(|| std::sync::Arc::new(Statement::of(&st)));
                let outcome = match claim_of(&st) {
                    Ok(claim) => Outcome::Verified {
                        signers: st.signers,
                        claim,
                        identity: st.identity.map(std::sync::Arc::new),
                        statement,
                    },
                    Err(e) => Outcome::Unreadable { signers: st.signers, why: e.to_string() },
                };
                (Some(st.predicate_type), outcome)
            }
            Err(p) => (signed.claimed_predicate_type(), Outcome::Rejected(p)),
        };
        Attestation { envelope: source, index, claimed_type, outcome }
    }
}

#[derive(Clone, Debug)]
pub enum Outcome {
    Verified {
        signers: Vec<String>,
        claim: Claim,
        /// Who signed, for keyless signatures.
        identity: Option<std::sync::Arc<crate::attest::SignerIdentity>>,
        /// The Statement whole, when the policy sets conditions on its
        /// predicate type.
        statement: Option<std::sync::Arc<Statement>>,
    },
    Rejected(crate::attest::Problem),
    /// Correctly signed, but the predicate could not be read.
    Unreadable {
        signers: Vec<String>,
        why: String,
    },
}

impl ImageEvidence {
    /// Verifies and interprets each piece of signed material, found under
    /// the digest of the blob that held it, against `trust`, one at a time.
    pub fn build(
        digest: crate::image::Digest,
        location: String,
        found: &[(crate::image::Digest, crate::attest::Signed)],
        trust: &crate::attest::Trust,
        keep: &[String],
    ) -> Self {
        let attestations = found
            .iter()
            .enumerate()
            .map(|(index, (source, signed))| Attestation::read(index, source.clone(), signed, trust, &digest, keep))
            .collect();
        ImageEvidence {
            digest,
            location,
            attestations,
            skipped: Unread::default(),
            index: false,
            entries: vec![],
            platforms: vec![],
            base: None,
        }
    }

    /// True when nothing verified: such entries are cached briefly, so a
    /// developer who attests after a denial is not kept waiting.
    pub fn nothing_verified(&self) -> bool {
        !self.attestations.iter().any(|a| matches!(a.outcome, Outcome::Verified { .. }))
            && self.platforms.iter().all(|p| p.evidence.as_ref().map_or(true, |e| e.nothing_verified()))
    }
}
