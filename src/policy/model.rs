//! The `PromotionPolicy` file: its schema, loading and validation.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize};

use super::duration::Duration;
use crate::attest::{IdentityRule, KeylessSigner, Match, Root, Trust};
use crate::evidence::{Severity, TestOutcome};

pub const API_VERSION: &str = "portcullis.dev/v1alpha1";
pub const KIND: &str = "PromotionPolicy";

/// The policy shipped in the binary, used when `--policy` is not given.
/// Its keys are placeholders for a demo: every image is denied in enforcing
/// tiers until real signer keys are configured.
pub const EMBEDDED_DEFAULT: &str = include_str!("default-policy.yaml");

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyFile {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    pub spec: Spec,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    #[serde(default)]
    pub name: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    /// Trusted keys, by signer name.
    pub signers: BTreeMap<String, SignerSpec>,
    /// Tier for namespaces without a tier label. Without one, such namespaces
    /// are denied (the safe default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_tier: Option<String>,
    /// Static namespace -> tier map, used when running without a cluster.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespace_tiers: BTreeMap<String, String>,
    pub tiers: BTreeMap<String, TierSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<ExceptionSpec>,
    /// VEX files (OpenVEX, CycloneDX VEX), relative to the policy file: the
    /// security team's own statements, trusted as the policy is, in every
    /// tier; each statement must name the images it is about.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vex: Vec<String>,
    /// Exceptions to tiers' `licenses` rules: a licence allowed for the
    /// packages a purl pattern names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub license_exceptions: Vec<LicenseExceptionSpec>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SignerSpec {
    /// One PEM public key (cosign `cosign.pub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Several PEM keys, any of which is accepted (key rotation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_keys: Vec<String>,
    /// Keyless signing: certificates from a trusted root's Fulcio CA, issued
    /// to one of these identities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyless: Option<KeylessSpec>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeylessSpec {
    /// `public-good` (the default), `github` (GitHub's instance, for
    /// private-repository attestations), or a `trusted_root.json` path,
    /// relative to the policy file.
    #[serde(default = "public_good")]
    pub trusted_root: String,
    /// Accepted identities: any one suffices.
    pub identities: Vec<IdentitySpec>,
}

fn public_good() -> String {
    crate::attest::keyless::PUBLIC_GOOD.to_string()
}

/// A certificate identity: exactly one of `issuer` / `issuerRegExp`, and
/// exactly one of `subject` / `subjectRegExp` (regular expressions are
/// unanchored, as cosign's: write `^…$`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IdentitySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_reg_exp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_reg_exp: Option<String>,
}

impl SignerSpec {
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.public_key.iter().chain(self.public_keys.iter()).map(String::as_str)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deny what fails the policy.
    #[default]
    Enforce,
    /// Admit, with Kubernetes warnings carrying the reasons.
    Warn,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Registry unreachable or too slow: deny (fail closed).
    #[default]
    Deny,
    /// Registry unreachable or too slow: admit with a warning (fail open).
    Allow,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TierSpec {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub on_error: OnError,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vulnerabilities: Option<VulnRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<TestRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlassSpec>,
    /// Deny images not pinned by digest (`name@sha256:…` or
    /// `name:tag@sha256:…`): what is judged is then exactly what is pulled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_digest: bool,
    /// SLSA build provenance (v1 or v0.2), signed and matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<ProvenanceRule>,
    /// Further attestations required, of any predicate type (an SBOM, a
    /// code review), each signed by one of its signers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<AttestationRule>,
    /// The licences of the packages a signed SBOM lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licenses: Option<LicenseRule>,
    /// How far behind its base image's tag an image may be built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<BaseImageRule>,
    /// Which attestations judge a multi-arch image (an index). Empty (the
    /// default): the index's own if it has any, else those of every entry
    /// with something to run, each having to pass. `[index]`: only the
    /// index's own. A list of the platforms the tier's nodes run
    /// (`linux/amd64`, `linux/arm64`): the index's own if any, else those of
    /// every entry a node of one could run ([`crate::platform::judged`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// What re-evaluation does about a running workload that no longer
    /// passes: `report` (the default: PolicyReport, Event, metrics),
    /// `annotate` (also marks the workload), `rollback` (also rolls a
    /// Deployment, StatefulSet or DaemonSet back to its newest previous
    /// revision that passes).
    #[serde(default)]
    pub on_violation: OnViolation,
    /// How long a violation lasts before `annotate` or `rollback` acts.
    #[serde(default, deserialize_with = "some_duration", skip_serializing_if = "Option::is_none")]
    pub violation_grace: Option<Duration>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnViolation {
    #[default]
    Report,
    Annotate,
    Rollback,
}

/// The `platforms` value that judges an index by its own attestations only.
pub const PLATFORMS_INDEX: &str = "index";

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProvenanceRule {
    pub signed_by: Vec<String>,
    /// Patterns the source repository must match (`https://github.com/acme/*`:
    /// `*` stays within one path segment, `**` crosses them). Empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_repositories: Vec<String>,
    /// Patterns the builder id must match. Empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub builder_ids: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AttestationRule {
    /// The exact predicate type (`https://cyclonedx.org/bom`).
    pub predicate_type: String,
    pub signed_by: Vec<String>,
    /// CEL expressions that must all hold on one verified attestation of
    /// the type from an accepted signer (the newest that meets them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ConditionSpec>,
}

/// A CEL condition on an attestation, and what a denial says when it is false.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConditionSpec {
    /// A CEL expression giving a bool, over `predicate`, `subject`,
    /// `predicateType`, `signer` and `now`.
    pub expression: String,
    /// The reason a denial gives when it is false: what to do about it.
    pub message: String,
    /// The expression compiled, once the policy has loaded.
    #[serde(skip)]
    pub compiled: Option<super::condition::Compiled>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VulnRule {
    /// Signers any one of which must have signed the scan.
    pub signed_by: Vec<String>,
    #[serde(default, deserialize_with = "some_duration", skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// Do not count findings without a known fix.
    #[serde(default)]
    pub ignore_unfixed: bool,
    /// Maximum findings per severity; a severity not listed is not limited.
    #[serde(default)]
    pub max: Limits,
    /// A finding of this severity counts only once it is older than this
    /// (from its published date; a finding without one counts at once).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub grace_period: BTreeMap<Severity, Duration>,
    /// Whose VEX statements may take findings out of the count; without
    /// it, VEX attached to an image is ignored (and the verdict says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vex: Option<VexRule>,
}

/// `licenses`: what the packages of a signed SBOM (CycloneDX or SPDX) may
/// be licensed under. Each entry of `deny` and `allow` is one SPDX licence
/// (`GPL-3.0-only`, `Apache-2.0 WITH LLVM-exception`, `LicenseRef-acme`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LicenseRule {
    pub signed_by: Vec<String>,
    /// A package fails when its expression cannot be met without one of
    /// these (`MIT OR GPL-3.0-only` can: the choice is the user's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// When set, every package's expression must be met with these alone
    /// (and none denied: deny wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// A package with no licence, `NOASSERTION`, or an expression that does
    /// not parse: `warn` (the default), `deny` or `allow`.
    #[serde(default)]
    pub unknown: UnknownLicense,
}

/// `baseImage`: the base an image's manifest names
/// (`org.opencontainers.image.base.name` and `.base.digest`) may not have
/// moved on to a newer digest for longer than `maxBehind`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BaseImageRule {
    /// How long the base's tag may have pointed to a newer digest than the
    /// one built on (`14d`).
    pub max_behind: Duration,
    /// An image whose base is not known (no annotations, a base that cannot
    /// be resolved): `deny` (the default), `warn` or `allow`.
    #[serde(default)]
    pub on_unknown: OnUnknownBase,
}

/// What a `baseImage` rule does about an image whose base is not known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnknownBase {
    #[default]
    Deny,
    Warn,
    Allow,
}

/// What a `licenses` rule does about a package of unknown licence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownLicense {
    Deny,
    Allow,
    #[default]
    Warn,
}

/// `spec.licenseExceptions[]`: `license` allowed for the packages whose
/// purl (or, without one, name) matches `package`, in `tiers` (empty: all)
/// for `images` (empty: all), until `expires`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LicenseExceptionSpec {
    /// A purl pattern (`pkg:deb/debian/bash@*`, `pkg:npm/@acme/*`).
    pub package: String,
    /// The SPDX licence allowed (`GPL-3.0-only`), or `NOASSERTION` for a
    /// package of unknown licence.
    pub license: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<String>,
    /// Last day (UTC) on which the exception applies.
    pub expires: NaiveDate,
    pub reason: String,
    pub approved_by: String,
}

/// `vulnerabilities.vex`: the signers whose VEX counts.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VexRule {
    pub signed_by: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown: Option<u32>,
}

impl Limits {
    pub fn get(&self, s: Severity) -> Option<u32> {
        match s {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
            Severity::Unknown => self.unknown,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TestRule {
    pub signed_by: Vec<String>,
    /// `PASSED`, or `WARNED` to accept PASSED and WARNED.
    #[serde(default = "passed")]
    pub require: TestOutcome,
    /// Test configurations (suites) that must have run, by the `name` or `uri`
    /// of an entry of the predicate's `configuration`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require_configurations: Vec<String>,
    /// Tests that must be listed as passed (or warned, with `require: WARNED`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require_tests: Vec<String>,
    /// At least this many passed tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_passed: Option<u32>,
    /// The newest accepted result must be at most this old (needs the
    /// result's `finishedOn`; test-result v0.1 has no time of its own).
    #[serde(default, deserialize_with = "some_duration", skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// Flaky tests whose failure does not fail the gate until they expire.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quarantine: Vec<QuarantineSpec>,
}

/// A failing test that does not fail the tests gate until `expires`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QuarantineSpec {
    /// The test's name, as the result's `failedTests` lists it.
    pub test: String,
    /// Last day (UTC) on which its failure is forgiven.
    pub expires: NaiveDate,
    pub reason: String,
    pub approved_by: String,
}

fn passed() -> TestOutcome {
    TestOutcome::Passed
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BreakGlassSpec {
    #[serde(default)]
    pub allowed: bool,
    /// Kubernetes groups whose members may use break-glass in this tier.
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub require_ticket: bool,
    /// How long a break-glass grant lasts (default 24h): the copies
    /// controllers make of a granted workload are honoured until then.
    #[serde(default, deserialize_with = "some_duration", skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<Duration>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExceptionSpec {
    /// Finding id (e.g. `CVE-2024-0001`); matches ids and aliases.
    pub id: String,
    /// Image name patterns (`registry/repo/*`); empty means every image.
    #[serde(default)]
    pub images: Vec<String>,
    /// Tiers it applies in; empty means every tier.
    #[serde(default)]
    pub tiers: Vec<String>,
    /// Last day (UTC) on which the exception applies.
    pub expires: NaiveDate,
    pub reason: String,
    pub approved_by: String,
}

/// A pattern over URIs: `*` within one path segment, `**` across them.
pub fn path_glob(pattern: &str) -> Result<globset::GlobMatcher, globset::Error> {
    Ok(globset::GlobBuilder::new(pattern).literal_separator(true).build()?.compile_matcher())
}

/// A duration the policy writes, when it writes one (`null` is not one).
fn some_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Duration::deserialize(d).map(Some)
}

/// A problem found in a policy, with where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// 1-based line and column in the file, when known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The field (`spec.tiers.production.tests.signedBy[0]`); empty for syntax errors.
    pub path: String,
    pub message: String,
}

impl Problem {
    fn at(path: String, message: String) -> Problem {
        Problem { line: None, column: None, path, message }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, "{l}:{c}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("policy {source_name} is invalid:\n{}", problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
pub struct PolicyError {
    pub source_name: String,
    pub problems: Vec<Problem>,
}

/// Who signed the VEX files a policy names, as a verdict shows it.
pub const POLICY_VEX_SIGNER: &str = "the policy";

/// A loaded, validated policy.
#[derive(Clone, Debug)]
pub struct Policy {
    pub file: PolicyFile,
    /// The digest of the policy file's bytes, reported with every decision.
    pub digest: crate::image::Digest,
    /// The keys and keyless identities signers are trusted by. Its
    /// fingerprint, the predicate types kept whole and whether bases are
    /// looked up make [`Policy::evidence_scope`], written when the policy is
    /// read: a policy is not changed once read (a new one is put in force).
    pub trust: Trust,
    /// The files the policy refers to (trusted roots, VEX), as resolved
    /// paths, with the digest of what was read; a change to one reloads the
    /// policy.
    pub root_files: Vec<RootFile>,
    /// The VEX files it names (`spec.vex`), read.
    pub vex: Vec<crate::evidence::vex::Source>,
    /// Its patterns, compiled once when it loads.
    pub patterns: Patterns,
    /// The predicate types it sets conditions on, sorted: attestations of
    /// these are kept whole as evidence (the predicate and subjects).
    pub conditioned: Vec<String>,
    /// A tier judges base images: evidence lookups then resolve the base
    /// an image names.
    pub base_images: bool,
    /// What evidence gathered under this policy depends on besides the
    /// image and the login (the trust's fingerprint, the predicate types
    /// kept whole, whether bases are looked up), written once: every cached
    /// entry and every warm lookup shares it (see [`Policy::evidence_scope`]).
    evidence_scope: Arc<str>,
}

/// The name of a tier a policy defines, checked once where the tier is
/// looked up ([`Policy::tier_name`]) and carried typed from there: only the
/// policy makes one. It reads as the name (`Deref<Target = str>`) and
/// serialises as it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TierName(pub(super) String);

impl TierName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for TierName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// As the name: `"production"`.
impl std::fmt::Debug for TierName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl std::fmt::Display for TierName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for TierName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// A policy's patterns, compiled when it loads (validation has already
/// rejected any that do not compile).
#[derive(Clone, Debug, Default)]
pub struct Patterns {
    /// For each exception, in order, its image patterns.
    exception_images: Vec<Vec<globset::GlobMatcher>>,
    /// Provenance patterns (`sourceRepositories`, `builderIds`), by text.
    paths: std::collections::HashMap<String, globset::GlobMatcher>,
    /// For each licence exception, in order: its package pattern and its
    /// image patterns.
    license_exceptions: Vec<(Option<globset::GlobMatcher>, Vec<globset::GlobMatcher>)>,
}

impl Patterns {
    fn compile(spec: &Spec) -> Patterns {
        let exception_images = spec
            .exceptions
            .iter()
            .map(|e| e.images.iter().filter_map(|g| globset::Glob::new(g).ok().map(|g| g.compile_matcher())).collect())
            .collect();
        let mut paths = std::collections::HashMap::new();
        for t in spec.tiers.values() {
            if let Some(p) = &t.provenance {
                for g in p.source_repositories.iter().chain(&p.builder_ids) {
                    if let Ok(m) = path_glob(g) {
                        paths.insert(g.clone(), m);
                    }
                }
            }
        }
        let glob = |g: &String| globset::Glob::new(g).ok().map(|g| g.compile_matcher());
        let license_exceptions = spec
            .license_exceptions
            .iter()
            .map(|e| (glob(&e.package), e.images.iter().filter_map(glob).collect()))
            .collect();
        Patterns { exception_images, paths, license_exceptions }
    }

    /// Whether licence exception `index` names the package (by its purl,
    /// or its name when it has none) of the image `image`.
    pub fn license_exception_covers(&self, index: usize, package: &str, image: &str) -> bool {
        match self.license_exceptions.get(index) {
            Some((Some(p), images)) => {
                p.is_match(package) && (images.is_empty() || images.iter().any(|g| g.is_match(image)))
            }
            _ => false,
        }
    }

    /// Whether exception `index` names `image` (an exception without image
    /// patterns names every image).
    pub fn exception_covers(&self, index: usize, image: &str) -> bool {
        match self.exception_images.get(index) {
            Some(globs) => globs.is_empty() || globs.iter().any(|g| g.is_match(image)),
            None => false,
        }
    }

    /// Whether any of `patterns` (provenance patterns of this policy) matches `s`.
    pub fn path_matches(&self, patterns: &[String], s: &str) -> bool {
        patterns.iter().any(|p| self.paths.get(p).is_some_and(|m| m.is_match(s)))
    }
}

/// A trusted root file as read: its resolved path and the digest of its text.
pub type RootFile = (String, crate::image::Digest);

/// Reads a file a policy refers to (a trusted root), by the path the policy
/// wrote; answers the resolved path and the text.
pub type ReadFile<'a> = &'a dyn Fn(&str) -> Result<(String, String), String>;

/// The built-in roots, made once.
fn built_in_root(name: &str) -> Option<Result<Arc<Root>, String>> {
    static PUBLIC_GOOD: OnceLock<Result<Arc<Root>, String>> = OnceLock::new();
    static GITHUB: OnceLock<Result<Arc<Root>, String>> = OnceLock::new();
    let cell = match name {
        crate::attest::keyless::PUBLIC_GOOD => &PUBLIC_GOOD,
        crate::attest::keyless::GITHUB => &GITHUB,
        _ => return None,
    };
    Some(cell.get_or_init(|| Root::built_in(name).unwrap_or_else(|| Err("unknown".into())).map(Arc::new)).clone())
}

/// [`Policy::evidence_scope`]: the trust's fingerprint, then each
/// predicate type kept whole, then `#base` when base images are looked up.
fn evidence_scope(trust: &Trust, conditioned: &[String], base_images: bool) -> Arc<str> {
    let mut scope = trust.fingerprint().to_string();
    for t in conditioned {
        scope.push('\n');
        scope.push_str(t);
    }
    if base_images {
        // Evidence gathered for a policy that judges base images holds the base.
        scope.push_str("\n#base");
    }
    scope.into()
}

impl Policy {
    /// The exceptions written for finding `f` of the image `image`
    /// (`registry/repository`) in `tier`, expired or not, in the policy's
    /// order: an exception matches the finding's id or an alias, the tier
    /// (none named: every tier) and the image's name.
    pub fn exceptions_for(&self, tier: &str, image: &str, f: &crate::evidence::Finding) -> Vec<&ExceptionSpec> {
        self.file
            .spec
            .exceptions
            .iter()
            .enumerate()
            .filter(|(i, e)| {
                let id = e.id.eq_ignore_ascii_case(&f.id) || f.aliases.iter().any(|a| a.eq_ignore_ascii_case(&e.id));
                let tier = e.tiers.is_empty() || e.tiers.iter().any(|t| t == tier);
                id && tier && self.patterns.exception_covers(*i, image)
            })
            .map(|(_, e)| e)
            .collect()
    }

    /// Parses and validates a policy; `source_name` names it in errors. A
    /// policy read this way cannot refer to trusted root files.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Policy, PolicyError> {
        Policy::load(text, source_name, &|path: &str| {
            Err(format!("cannot read {path}: this policy was not read from a file, so it can name only built-in roots"))
        })
    }

    /// Reads, parses and validates the policy file at `path`; trusted root
    /// files are read relative to its directory. (Loading reads files;
    /// evaluation never does.)
    pub fn from_file(path: &std::path::Path) -> Result<Policy, PolicyFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| PolicyFileError::Read { path: path.display().to_string(), why: e.to_string() })?;
        let dir = path.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
        let read = move |p: &str| {
            let full = dir.join(p);
            let shown = full.display().to_string();
            std::fs::read_to_string(&full).map(|t| (shown.clone(), t)).map_err(|e| format!("cannot read {shown}: {e}"))
        };
        Ok(Policy::load(&text, &path.display().to_string(), &read)?)
    }

    /// Parses and validates a policy, reading the files it refers to with `read`.
    pub fn load(text: &str, source_name: &str, read: ReadFile<'_>) -> Result<Policy, PolicyError> {
        let err = |problems| PolicyError { source_name: source_name.to_string(), problems };
        super::locate::check_structure(text).map_err(|e| {
            let (line, column) = e.at();
            err(vec![Problem { line: Some(line), column: Some(column), path: String::new(), message: e.to_string() }])
        })?;
        let file: PolicyFile = match serde_yaml_ng::from_str(text) {
            Ok(f) => f,
            Err(e) => return Err(err(structural_problems(text, e))),
        };
        let mut problems = validate(&file);
        let (trust, mut root_files) = match trust(&file, read) {
            Ok(t) => t,
            Err(mut more) => {
                problems.append(&mut more);
                (Trust::default(), vec![])
            }
        };
        let mut vex = Vec::new();
        for (i, name) in file.spec.vex.iter().enumerate() {
            let read = read(name).and_then(|(path, text)| {
                let document = crate::evidence::vex::parse(text.as_bytes()).map_err(|e| format!("{path}: {e}"))?;
                Ok((path, text, document))
            });
            match read {
                Ok((path, text, document)) => {
                    let digest = crate::image::Digest::of(text.as_bytes());
                    vex.push(crate::evidence::vex::Source {
                        document: Arc::new(document),
                        digest: digest.to_string(),
                        signer: Some(POLICY_VEX_SIGNER.to_string()),
                        // About the images its statements name, none other.
                        bound: false,
                    });
                    root_files.push((path, digest));
                }
                Err(e) => problems.push(Problem::at(format!("spec.vex[{i}]"), e)),
            }
        }
        if !problems.is_empty() {
            let at = super::locate::locations(text);
            for p in &mut problems {
                if let Some((l, c)) = super::locate::locate(&at, &p.path) {
                    (p.line, p.column) = (Some(l), Some(c));
                }
            }
            return Err(err(problems));
        }
        let patterns = Patterns::compile(&file.spec);
        let mut file = file;
        let mut conditioned = Vec::new();
        for t in file.spec.tiers.values_mut() {
            for a in &mut t.attestations {
                for c in &mut a.conditions {
                    // Validation compiled each already.
                    c.compiled = super::condition::compile(&c.expression).ok();
                }
                if !a.conditions.is_empty() && !conditioned.contains(&a.predicate_type) {
                    conditioned.push(a.predicate_type.clone());
                }
            }
        }
        conditioned.sort();
        let base_images = file.spec.tiers.values().any(|t| t.base_image.is_some());
        let digest = crate::image::Digest::of(text.as_bytes());
        let evidence_scope = evidence_scope(&trust, &conditioned, base_images);
        Ok(Policy { file, digest, trust, root_files, vex, patterns, conditioned, base_images, evidence_scope })
    }

    /// What evidence gathered under this policy depends on besides the
    /// image and the login: two policies with the same scope verify and
    /// keep the same evidence, so it is cached under it.
    pub fn evidence_scope(&self) -> &Arc<str> {
        &self.evidence_scope
    }

    pub fn tier(&self, name: &str) -> Option<&TierSpec> {
        self.file.spec.tiers.get(name)
    }

    /// `name`, when the policy defines a tier by that name.
    pub fn tier_name(&self, name: &str) -> Option<TierName> {
        self.file.spec.tiers.contains_key(name).then(|| TierName(name.to_string()))
    }

    pub fn tier_names(&self) -> Vec<&str> {
        self.file.spec.tiers.keys().map(String::as_str).collect()
    }

    /// What is valid but probably not meant: trusted roots whose newest key
    /// of a kind ends within `within` of `now` (signatures made after that
    /// will not verify until the root is refreshed), identity patterns
    /// that are not anchored (`acme` matches `https://github.com/evil/acme-x`),
    /// and tiers narrowed to some `platforms` (see [`platform_warnings`]).
    pub fn warnings(&self, now: chrono::DateTime<chrono::Utc>, within: std::time::Duration) -> Vec<String> {
        let mut out = Vec::new();
        for (name, s) in &self.file.spec.signers {
            let Some(k) = &s.keyless else { continue };
            for (i, id) in k.identities.iter().enumerate() {
                for (field, pattern) in [("issuerRegExp", &id.issuer_reg_exp), ("subjectRegExp", &id.subject_reg_exp)] {
                    if pattern.as_deref().is_some_and(|p| !(p.starts_with('^') && p.ends_with('$'))) {
                        out.push(format!(
                            "spec.signers.{name}.keyless.identities[{i}].{field}: not anchored (^…$), so it matches anywhere in the value"
                        ));
                    }
                }
            }
        }
        for (tier, t) in &self.file.spec.tiers {
            out.extend(platform_warnings(tier, &t.platforms));
            let today = now.date_naive();
            for (i, q) in t.tests.iter().flat_map(|r| r.quarantine.iter()).enumerate() {
                let at = format!("spec.tiers.{tier}.tests.quarantine[{i}]");
                let days = (q.expires - today).num_days();
                if days < 0 {
                    out.push(format!(
                        "{at}: the quarantine of test {} expired on {}; its failures count again: fix the test, or \
                         renew the entry",
                        q.test, q.expires
                    ));
                } else if days <= super::eval::EXCEPTION_WARNING_DAYS {
                    out.push(format!("{at}: the quarantine of test {} expires on {}", q.test, q.expires));
                }
            }
            let Some(bg) = t.break_glass.as_ref().filter(|b| b.allowed) else { continue };
            for (i, g) in bg.groups.iter().enumerate() {
                if let Some(who) = catch_all_group(g) {
                    out.push(format!(
                        "spec.tiers.{tier}.breakGlass.groups[{i}]: {g} is {who}: every one of them may break glass in \
                         tier {tier}; name the on-call group instead"
                    ));
                }
            }
        }
        for root in self.trust.roots() {
            for v in root.expiring(now, within) {
                let until = v.until.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default();
                out.push(format!(
                    "trusted root {}: its newest {} key is valid only until {until}; refresh the root (see the README) before then",
                    root.name, v.kind
                ));
            }
        }
        out
    }

    /// The identities a keyless signer accepts, for messages (empty for a
    /// signer with keys only).
    pub fn keyless_identities(&self, signer: &str) -> Vec<String> {
        let Some(k) = self.file.spec.signers.get(signer).and_then(|s| s.keyless.as_ref()) else { return vec![] };
        k.identities.iter().filter_map(|i| identity_rule(i).ok()).map(|r| r.to_string()).collect()
    }
}

/// Most structural problems reported for one policy.
const MAX_STRUCTURAL: usize = 32;

/// Every structural problem of a policy the model cannot read (an unknown
/// field, a value of the wrong type, a missing field), not only the first:
/// each is reported with its field and position, then taken out of the
/// document, and the rest read again; the semantic checks of what remains
/// follow, but for what was taken out.
fn structural_problems(text: &str, first: serde_yaml_ng::Error) -> Vec<Problem> {
    let at = super::locate::locations(text);
    let mut problems = Vec::new();
    // Not a YAML document at all: the reader's one error is all there is.
    let Ok(mut doc) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) else { return vec![located(first)] };
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..MAX_STRUCTURAL {
        let e = match serde_path_to_error::deserialize::<_, PolicyFile>(&doc) {
            Ok(file) => {
                let semantic = validate(&file).into_iter().filter(|p| !removed.iter().any(|r| p.path.starts_with(r)));
                for mut p in semantic {
                    if let Some((l, c)) = super::locate::locate(&at, &p.path) {
                        (p.line, p.column) = (Some(l), Some(c));
                    }
                    problems.push(p);
                }
                break;
            }
            Err(e) => e,
        };
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = e.inner().to_string();
        let (line, column) = match super::locate::locate(&at, &path) {
            Some((l, c)) => (Some(l), Some(c)),
            None => (None, None),
        };
        problems.push(Problem { line, column, path: path.clone(), message });
        if path.is_empty() || !remove(&mut doc, &path) {
            break;
        }
        removed.push(path);
    }
    if !problems.iter().any(|p| !p.path.is_empty() || p.line.is_some()) {
        // Nothing this pass could place: the reader's own error, with its position.
        return vec![located(first)];
    }
    problems
}

/// A reader's error as a problem, its position said once, in front.
fn located(e: serde_yaml_ng::Error) -> Problem {
    let (line, column) = e.location().map(|l| (Some(l.line()), Some(l.column()))).unwrap_or((None, None));
    let mut message = e.to_string();
    if let (Some(l), Some(c)) = (line, column) {
        let said = format!(" at line {l} column {c}");
        if let Some(cut) = message.rfind(&said) {
            message.replace_range(cut..cut + said.len(), "");
        }
    }
    Problem { line, column, path: String::new(), message }
}

/// Removes the node at `path` (`spec.tiers.production.mood`,
/// `spec.exceptions[0]`) from `doc`; false when there is none.
fn remove(doc: &mut serde_yaml_ng::Value, path: &str) -> bool {
    use serde_yaml_ng::Value;
    // `a.b[2].c` -> ["a", "b", "[2]", "c"]
    let mut steps: Vec<String> = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                steps.push(rest[..i].to_string());
            }
            rest = &rest[i..];
            while let Some(end) = rest.find(']') {
                steps.push(rest[..=end].to_string());
                rest = &rest[end + 1..];
            }
        } else {
            steps.push(rest.to_string());
        }
    }
    let Some((last, parents)) = steps.split_last() else { return false };
    let mut node = doc;
    for step in parents {
        let next = match step.strip_prefix('[').and_then(|s| s.strip_suffix(']')).and_then(|i| i.parse::<usize>().ok())
        {
            Some(i) => node.as_sequence_mut().and_then(|s| s.get_mut(i)),
            None => node.as_mapping_mut().and_then(|m| m.get_mut(step.as_str())),
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    match last.strip_prefix('[').and_then(|s| s.strip_suffix(']')).and_then(|i| i.parse::<usize>().ok()) {
        Some(i) => match node.as_sequence_mut() {
            Some(seq) if i < seq.len() => {
                seq.remove(i);
                true
            }
            _ => false,
        },
        None => node.as_mapping_mut().is_some_and(|m| m.remove(Value::String(last.clone())).is_some()),
    }
}

/// What a Kubernetes group everybody of a kind is in stands for, or None
/// for a group someone chose its members for.
fn catch_all_group(group: &str) -> Option<&'static str> {
    match group {
        "system:authenticated" => Some("every authenticated user and service account"),
        "system:unauthenticated" => Some("every anonymous request"),
        "system:serviceaccounts" => Some("every service account of every namespace"),
        g if g.starts_with("system:serviceaccounts:") => Some("every service account of a namespace"),
        "system:nodes" => Some("every node"),
        _ => None,
    }
}

/// What a tier's `platforms` leaves open: the platforms of an image not
/// named there are not judged, yet a node of such a platform would run them
/// (Portcullis cannot see which nodes a Pod lands on); a variant does not
/// narrow (every variant of the architecture is judged, as runtimes differ
/// in the variants they accept); a spelling containerd reads as another
/// platform (`linux/x86_64` is `linux/amd64`).
fn platform_warnings(tier: &str, platforms: &[String]) -> Vec<String> {
    use crate::platform::Platform;
    let mut out = Vec::new();
    let named: Vec<Platform> = platforms.iter().filter_map(|p| Platform::parse(p)).collect();
    if named.is_empty() {
        return out;
    }
    let (os, arch): (Vec<&str>, Vec<&str>) = named.iter().map(|p| (p.os.as_str(), p.architecture.as_str())).unzip();
    let dedup = |v: Vec<&str>| {
        let mut once: Vec<&str> = Vec::new();
        for x in v {
            if !once.contains(&x) {
                once.push(x);
            }
        }
        once.join(", ")
    };
    out.push(format!(
        "spec.tiers.{tier}.platforms: the other platforms of an image are not judged, and a node of one of them \
         would run them unjudged; keep this tier's Pods on such nodes only (nodeSelector kubernetes.io/os: {}, \
         kubernetes.io/arch: {}, or a cluster without other nodes), or leave platforms out to judge every platform",
        dedup(os),
        dedup(arch)
    ));
    for (i, (written, p)) in platforms.iter().filter(|w| Platform::parse(w).is_some()).zip(&named).enumerate() {
        let at = format!("spec.tiers.{tier}.platforms[{i}]");
        let canonical = format!("{}/{}", p.os, p.architecture);
        if !p.variant.is_empty() || written.split('/').count() > 2 {
            out.push(format!(
                "{at}: {written:?}: a variant does not narrow; every variant of {canonical} is judged, \
                 as container runtimes differ in the variants they accept"
            ));
        } else if *written != canonical {
            out.push(format!("{at}: {written:?} is {canonical} as containerd reads it"));
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    #[error("reading policy {path}: {why}")]
    Read { path: String, why: String },
    #[error(transparent)]
    Invalid(#[from] PolicyError),
}

/// An identity as the policy writes it, compiled.
fn identity_rule(i: &IdentitySpec) -> Result<IdentityRule, String> {
    let one = |exact: &Option<String>, pattern: &Option<String>, name: &str| match (exact, pattern) {
        (Some(e), None) => Ok(Match::Exact(e.clone())),
        (None, Some(p)) => {
            regex::Regex::new(p).map(Match::Pattern).map_err(|e| format!("{name}RegExp does not compile: {e}"))
        }
        (Some(_), Some(_)) => Err(format!("has both {name} and {name}RegExp: give one")),
        (None, None) => Err(format!("has neither {name} nor {name}RegExp: give one")),
    };
    Ok(IdentityRule {
        issuer: one(&i.issuer, &i.issuer_reg_exp, "issuer")?,
        subject: one(&i.subject, &i.subject_reg_exp, "subject")?,
    })
}

/// The policy's keys and keyless signers, with the roots they use loaded.
fn trust(f: &PolicyFile, read: ReadFile<'_>) -> Result<(Trust, Vec<RootFile>), Vec<Problem>> {
    use sha2::Digest as _;
    let mut problems = Vec::new();
    let mut pems = Vec::new();
    let mut keyless = Vec::new();
    let mut roots: Vec<(String, Arc<Root>)> = Vec::new();
    let mut root_files = Vec::new();
    let mut h = sha2::Sha256::new();
    for (name, s) in &f.spec.signers {
        for pem in s.keys() {
            pems.push((name.as_str(), pem));
        }
        let Some(k) = &s.keyless else { continue };
        let at = format!("spec.signers.{name}.keyless");
        let mut identities = Vec::new();
        for (i, spec) in k.identities.iter().enumerate() {
            match identity_rule(spec) {
                Ok(r) => identities.push(r),
                Err(e) => problems.push(Problem::at(format!("{at}.identities[{i}]"), e)),
            }
        }
        let index = match roots.iter().position(|(n, _)| n == &k.trusted_root) {
            Some(i) => Some(i),
            None => {
                let loaded = match built_in_root(&k.trusted_root) {
                    Some(r) => r.map(|r| (String::new(), r)),
                    None => read(&k.trusted_root).and_then(|(path, text)| {
                        Root::from_json(&k.trusted_root, &text).map(|r| {
                            root_files.push((path, crate::image::Digest::of(text.as_bytes())));
                            (text, Arc::new(r))
                        })
                    }),
                };
                match loaded {
                    Ok((text, root)) => {
                        h.update(k.trusted_root.as_bytes());
                        h.update([0]);
                        h.update(text.as_bytes());
                        h.update([0]);
                        roots.push((k.trusted_root.clone(), root));
                        Some(roots.len() - 1)
                    }
                    Err(e) => {
                        problems.push(Problem::at(format!("{at}.trustedRoot"), format!("{:?}: {e}", k.trusted_root)));
                        None
                    }
                }
            }
        };
        h.update(name.as_bytes());
        h.update(serde_json::to_vec(k).unwrap_or_default());
        if let Some(root) = index {
            keyless.push(KeylessSigner { signer: name.clone(), root, identities });
        }
    }
    let roots = roots.into_iter().map(|(_, r)| r).collect();
    match Trust::with_keyless(pems, keyless, roots, &hex::encode(h.finalize())) {
        Ok(t) if problems.is_empty() => Ok((t, root_files)),
        Ok(_) => Err(problems),
        Err(e) => {
            problems.push(Problem::at(format!("spec.signers.{}", e.signer), e.to_string()));
            Err(problems)
        }
    }
}

fn validate(f: &PolicyFile) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut p = |path: String, message: String| out.push(Problem::at(path, message));
    if f.api_version != API_VERSION {
        p("apiVersion".into(), format!("is {:?}, expected {API_VERSION:?}", f.api_version));
    }
    if f.kind != KIND {
        p("kind".into(), format!("is {:?}, expected {KIND:?}", f.kind));
    }
    let spec = &f.spec;
    for (name, s) in &spec.signers {
        if s.keys().next().is_none() && s.keyless.is_none() {
            p(format!("spec.signers.{name}"), "has no publicKey, publicKeys or keyless".into());
        }
        if s.keyless.as_ref().is_some_and(|k| k.identities.is_empty()) {
            p(
                format!("spec.signers.{name}.keyless.identities"),
                "is empty: name the identities (issuer and subject) whose certificates are trusted".into(),
            );
        }
    }
    if spec.tiers.is_empty() {
        p("spec.tiers".into(), "defines no tier".into());
    }
    let tier_known = |t: &str| spec.tiers.contains_key(t);
    if let Some(t) = &spec.default_tier {
        if !tier_known(t) {
            p("spec.defaultTier".into(), format!("names undefined tier {t:?}"));
        }
    }
    for (ns, t) in &spec.namespace_tiers {
        if !tier_known(t) {
            p(format!("spec.namespaceTiers.{ns}"), format!("names undefined tier {t:?}"));
        }
    }
    for (tier, t) in &spec.tiers {
        for (i, a) in t.attestations.iter().enumerate() {
            if a.predicate_type.trim().is_empty() {
                p(format!("spec.tiers.{tier}.attestations[{i}].predicateType"), "is empty".into());
            }
            for (j, c) in a.conditions.iter().enumerate() {
                let at = format!("spec.tiers.{tier}.attestations[{i}].conditions[{j}]");
                if let Err(e) = super::condition::compile(&c.expression) {
                    p(format!("{at}.expression"), format!("{:?} {e}", c.expression));
                }
                if c.message.trim().is_empty() {
                    p(format!("{at}.message"), "is empty: say what to do when the condition is false".into());
                }
            }
        }
        if let Some(prov) = &t.provenance {
            let fields = [("sourceRepositories", &prov.source_repositories), ("builderIds", &prov.builder_ids)];
            for (field, list) in fields {
                for (i, g) in list.iter().enumerate() {
                    if let Err(e) = path_glob(g) {
                        p(format!("spec.tiers.{tier}.provenance.{field}[{i}]"), format!("bad pattern: {e}"));
                    }
                }
            }
        }
        if let Some(vex) = t.vulnerabilities.as_ref().and_then(|v| v.vex.as_ref()) {
            if vex.signed_by.is_empty() {
                p(
                    format!("spec.tiers.{tier}.vulnerabilities.vex.signedBy"),
                    "is empty: name at least one signer".into(),
                );
            }
            for (i, s) in vex.signed_by.iter().enumerate() {
                if !spec.signers.contains_key(s) {
                    p(
                        format!("spec.tiers.{tier}.vulnerabilities.vex.signedBy[{i}]"),
                        format!("names undefined signer {s:?}"),
                    );
                }
            }
        }
        for (what, rule) in super::rules::placed(t) {
            let list = rule.signed_by();
            if list.is_empty() {
                p(format!("spec.tiers.{tier}.{what}.signedBy"), "is empty: name at least one signer".into());
            }
            for (i, s) in list.iter().enumerate() {
                if !spec.signers.contains_key(s) {
                    p(format!("spec.tiers.{tier}.{what}.signedBy[{i}]"), format!("names undefined signer {s:?}"));
                }
            }
        }
        for (i, pl) in t.platforms.iter().enumerate() {
            let shaped = crate::platform::Platform::parse(pl).is_some();
            if pl == PLATFORMS_INDEX && t.platforms.len() > 1 {
                p(format!("spec.tiers.{tier}.platforms"), "index stands alone: judge the index, or platforms".into());
            } else if pl != PLATFORMS_INDEX && !shaped {
                p(
                    format!("spec.tiers.{tier}.platforms[{i}]"),
                    format!("{pl:?} is neither index nor os/architecture[/variant] (linux/amd64, linux/arm/v7)"),
                );
            }
        }
        if let Some(l) = &t.licenses {
            for (field, list) in [("deny", &l.deny), ("allow", &l.allow)] {
                for (i, id) in list.iter().enumerate() {
                    if let Err(e) = super::rules::licenses::licensee(id) {
                        p(format!("spec.tiers.{tier}.licenses.{field}[{i}]"), e);
                    }
                }
            }
        }
        if let Some(tests) = &t.tests {
            if tests.require == TestOutcome::Failed {
                p(format!("spec.tiers.{tier}.tests.require"), "must be PASSED or WARNED".into());
            }
            for (i, q) in tests.quarantine.iter().enumerate() {
                let at = format!("spec.tiers.{tier}.tests.quarantine[{i}]");
                for (field, value) in [("test", &q.test), ("reason", &q.reason), ("approvedBy", &q.approved_by)] {
                    if value.trim().is_empty() {
                        p(format!("{at}.{field}"), "is empty".into());
                    }
                }
            }
        }
        if let Some(bg) = &t.break_glass {
            if bg.allowed && bg.groups.is_empty() {
                p(
                    format!("spec.tiers.{tier}.breakGlass.groups"),
                    "is empty: name the groups allowed to break glass".into(),
                );
            }
            if bg.max_duration.is_some_and(|d| d.is_zero()) {
                p(format!("spec.tiers.{tier}.breakGlass.maxDuration"), "must be longer than zero".into());
            }
        }
    }
    for (i, e) in spec.exceptions.iter().enumerate() {
        if e.reason.trim().is_empty() {
            p(format!("spec.exceptions[{i}].reason"), "is empty".into());
        }
        if e.approved_by.trim().is_empty() {
            p(format!("spec.exceptions[{i}].approvedBy"), "is empty".into());
        }
        for (j, t) in e.tiers.iter().enumerate() {
            if !tier_known(t) {
                p(format!("spec.exceptions[{i}].tiers[{j}]"), format!("names undefined tier {t:?}"));
            }
        }
        for (j, g) in e.images.iter().enumerate() {
            if let Err(err) = globset::Glob::new(g) {
                p(format!("spec.exceptions[{i}].images[{j}]"), format!("bad pattern: {err}"));
            }
        }
    }
    for (i, e) in spec.license_exceptions.iter().enumerate() {
        let at = |field: &str| format!("spec.licenseExceptions[{i}].{field}");
        if e.reason.trim().is_empty() {
            p(at("reason"), "is empty".into());
        }
        if e.approved_by.trim().is_empty() {
            p(at("approvedBy"), "is empty".into());
        }
        if e.package.trim().is_empty() {
            p(at("package"), "is empty: name the packages by a purl pattern (pkg:deb/debian/bash@*)".into());
        } else if let Err(err) = globset::Glob::new(&e.package) {
            p(at("package"), format!("bad pattern: {err}"));
        }
        if e.license != super::rules::licenses::NOASSERTION {
            if let Err(err) = super::rules::licenses::licensee(&e.license) {
                p(at("license"), err);
            }
        }
        for (j, t) in e.tiers.iter().enumerate() {
            if !tier_known(t) {
                p(format!("spec.licenseExceptions[{i}].tiers[{j}]"), format!("names undefined tier {t:?}"));
            }
        }
        for (j, g) in e.images.iter().enumerate() {
            if let Err(err) = globset::Glob::new(g) {
                p(format!("spec.licenseExceptions[{i}].images[{j}]"), format!("bad pattern: {err}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(signers: &str, tier: &str) -> Result<Policy, PolicyError> {
        let y = format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers:\n{signers}\n  tiers:\n    t:\n{tier}\n"
        );
        let read = |p: &str| match p {
            "roots/private.json" => Ok((
                "/etc/portcullis/roots/private.json".to_string(),
                sigstore_trust_root::SIGSTORE_GITHUB_TRUSTED_ROOT.to_string(),
            )),
            _ => Err(format!("cannot read {p}: no such file")),
        };
        Policy::load(&y, "table", &read)
    }

    #[test]
    fn only_tiers_the_policy_defines_get_a_name() {
        let p = Policy::from_yaml(EMBEDDED_DEFAULT, "embedded").unwrap();
        // (asked, named)
        let rows = [("production", true), ("development", true), ("Production", false), ("", false), ("nope", false)];
        for (asked, named) in rows {
            let name = p.tier_name(asked);
            assert_eq!(name.is_some(), named, "{asked}");
            if let Some(n) = name {
                assert_eq!(n.as_str(), asked);
                assert_eq!(format!("{n} {n:?}"), format!("{asked} {asked:?}"));
                assert_eq!(serde_json::to_value(&n).unwrap(), serde_json::json!(asked));
            }
        }
    }

    const ID: &str = "          - { issuer: https://token.actions.githubusercontent.com, subject: https://github.com/acme/shop/.github/workflows/release.yml@refs/heads/main }";

    #[test]
    fn narrowed_platforms_are_warned_about() {
        // (tier platforms, warnings after the first, which says what stays open)
        let rows: &[(&str, &[&str])] = &[
            ("[]", &[]),
            ("[index]", &[]),
            ("[linux/amd64]", &[""]),
            ("[linux/amd64, linux/arm64]", &[""]),
            ("[Linux/x86_64]", &["", "spec.tiers.t.platforms[0]: \"Linux/x86_64\" is linux/amd64 as containerd reads it"]),
            ("[linux/arm64/v8]", &["", "spec.tiers.t.platforms[0]: \"linux/arm64/v8\": a variant does not narrow; every variant of linux/arm64 is judged, as container runtimes differ in the variants they accept"]),
            ("[linux/arm/v7]", &["", "spec.tiers.t.platforms[0]: \"linux/arm/v7\": a variant does not narrow; every variant of linux/arm is judged, as container runtimes differ in the variants they accept"]),
        ];
        for (platforms, want) in rows {
            let p = load("", &format!("      platforms: {platforms}")).unwrap();
            let w = p.warnings(chrono::Utc::now(), std::time::Duration::ZERO);
            assert_eq!(w.len(), want.len(), "{platforms}: {w:?}");
            for (got, want) in w.iter().zip(*want) {
                assert!(got.contains(want), "{platforms}: {got}");
            }
        }
        let w = load("", "      platforms: [linux/amd64, linux/arm64, windows/amd64]").unwrap();
        assert_eq!(
            w.warnings(chrono::Utc::now(), std::time::Duration::ZERO)[0],
            "spec.tiers.t.platforms: the other platforms of an image are not judged, and a node of one of them would \
             run them unjudged; keep this tier's Pods on such nodes only (nodeSelector kubernetes.io/os: linux, windows, \
             kubernetes.io/arch: amd64, arm64, or a cluster without other nodes), or leave platforms out to judge every platform"
        );
    }

    #[test]
    fn keyless_signers_and_provenance_rules_are_validated() {
        let keyless = |root: &str, ids: &str| {
            format!("    ci:\n      keyless:\n        trustedRoot: {root}\n        identities:\n{ids}")
        };
        let prov = "      provenance: { signedBy: [ci], sourceRepositories: [\"https://github.com/acme/*\"] }";
        // (case, signers, tier, error path and words; empty when valid)
        let rows: Vec<(&str, String, &str, &str)> = vec![
            ("public-good by default", format!("    ci:\n      keyless:\n        identities:\n{ID}"), prov, ""),
            ("github built in", keyless("github", ID), prov, ""),
            ("a root file relative to the policy", keyless("roots/private.json", ID), prov, ""),
            (
                "a root file that is not there",
                keyless("roots/missing.json", ID),
                prov,
                "spec.signers.ci.keyless.trustedRoot: \"roots/missing.json\": cannot read roots/missing.json",
            ),
            ("no identities", keyless("github", "          []"), prov, "spec.signers.ci.keyless.identities: is empty"),
            (
                "issuer and issuerRegExp",
                keyless("github", "          - { issuer: a, issuerRegExp: b, subject: c }"),
                prov,
                "identities[0]: has both issuer and issuerRegExp",
            ),
            (
                "no subject",
                keyless("github", "          - { issuer: a }"),
                prov,
                "identities[0]: has neither subject nor subjectRegExp",
            ),
            (
                "a pattern that does not compile",
                keyless("github", "          - { issuer: a, subjectRegExp: \"(\" }"),
                prov,
                "subjectRegExp does not compile",
            ),
            (
                "an unknown field",
                keyless("github", "          - { issuer: a, subject: b, sub: c }"),
                prov,
                "unknown field `sub`",
            ),
            ("no key and no keyless", "    ci: {}".into(), prov, "has no publicKey, publicKeys or keyless"),
            (
                "provenance by an undefined signer",
                keyless("github", ID),
                "      provenance: { signedBy: [nobody] }",
                "spec.tiers.t.provenance.signedBy[0]: names undefined signer",
            ),
            (
                "VEX by an undefined signer",
                keyless("github", ID),
                "      vulnerabilities: { signedBy: [ci], vex: { signedBy: [ci, nobody] } }",
                "spec.tiers.t.vulnerabilities.vex.signedBy[1]: names undefined signer \"nobody\"",
            ),
            (
                "VEX trusting nobody",
                keyless("github", ID),
                "      vulnerabilities: { signedBy: [ci], vex: { signedBy: [] } }",
                "spec.tiers.t.vulnerabilities.vex.signedBy: is empty",
            ),
            (
                "an unknown field under vex",
                keyless("github", ID),
                "      vulnerabilities: { signedBy: [ci], vex: { signers: [ci] } }",
                "unknown field `signers`",
            ),
            (
                "provenance with a bad pattern",
                keyless("github", ID),
                "      provenance: { signedBy: [ci], builderIds: [\"[\"] }",
                "spec.tiers.t.provenance.builderIds[0]: bad pattern",
            ),
            (
                "an attestation rule without a type",
                keyless("github", ID),
                "      attestations: [ { predicateType: \"\", signedBy: [ci] } ]",
                "spec.tiers.t.attestations[0].predicateType: is empty",
            ),
            (
                "a condition that does not compile: the tier, the entry and the expression",
                keyless("github", ID),
                "      attestations: [ { predicateType: x, signedBy: [ci], conditions: [ { expression: \"predicate.x >\", message: m } ] } ]",
                "spec.tiers.t.attestations[0].conditions[0].expression: \"predicate.x >\" does not compile: ",
            ),
            (
                "a condition without a message",
                keyless("github", ID),
                "      attestations: [ { predicateType: x, signedBy: [ci], conditions: [ { expression: \"true\", message: \"\" } ] } ]",
                "spec.tiers.t.attestations[0].conditions[0].message: is empty",
            ),
            (
                "a condition nesting too many comprehensions",
                keyless("github", ID),
                "      attestations: [ { predicateType: x, signedBy: [ci], conditions: [ { expression: \"[1].all(a, [1].all(b, [1].all(c, [1].all(d, true))))\", message: m } ] } ]",
                "conditions[0].expression: \"[1].all(a, [1].all(b, [1].all(c, [1].all(d, true))))\" nests 4 comprehensions",
            ),
            (
                "an attestation rule without signers",
                keyless("github", ID),
                "      attestations: [ { predicateType: x, signedBy: [] } ]",
                "spec.tiers.t.attestations[0].signedBy: is empty",
            ),
        ];
        for (case, signers, tier, want) in rows {
            match (load(&signers, tier), want) {
                (Ok(_), "") => {}
                (Ok(_), want) => panic!("{case}: accepted, want {want:?}"),
                (Err(e), "") => panic!("{case}: {e}"),
                (Err(e), want) => assert!(e.to_string().contains(want), "{case}: want {want:?} in {e}"),
            }
        }
        // VEX files the policy names are read with it, and recorded so that
        // a change reloads it; one that cannot be read is a problem.
        let with_vex = |files: &str| {
            let y = format!(
                "apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers:\n{}\n  tiers:\n    t:\n{prov}\n  vex: [{files}]\n",
                keyless("github", ID)
            );
            Policy::load(&y, "table", &|p: &str| match p {
                "vex/central.json" => Ok((
                    "/etc/portcullis/vex/central.json".to_string(),
                    r#"{"@context": "https://openvex.dev/ns/v0.2.0", "statements": []}"#.to_string(),
                )),
                "vex/broken.json" => {
                    Ok(("/etc/portcullis/vex/broken.json".to_string(), "{\"bomFormat\": \"CycloneDX\"}".to_string()))
                }
                _ => Err(format!("cannot read {p}: no such file")),
            })
        };
        let p = with_vex("vex/central.json").unwrap();
        assert_eq!((p.vex.len(), p.root_files[0].0.as_str()), (1, "/etc/portcullis/vex/central.json"));
        assert_eq!(p.vex[0].signer.as_deref(), Some(POLICY_VEX_SIGNER));
        let e = with_vex("vex/broken.json").unwrap_err().to_string();
        assert!(
            e.contains("spec.vex[0]: /etc/portcullis/vex/broken.json: CycloneDX VEX: it has no vulnerabilities list"),
            "{e}"
        );
        let e = with_vex("vex/central.json, vex/missing.json").unwrap_err().to_string();
        assert!(e.contains("spec.vex[1]: cannot read vex/missing.json"), "{e}");
        // Root files are recorded so a change reloads the policy.
        let p = load(&keyless("roots/private.json", ID), prov).unwrap();
        assert_eq!(p.root_files.len(), 1);
        assert_eq!(p.root_files[0].0, "/etc/portcullis/roots/private.json");
        // The fingerprint follows identities, so cached evidence is not reused across them.
        let other = load(&keyless("roots/private.json", &ID.replace("release.yml", "deploy.yml")), prov).unwrap();
        assert_ne!(p.trust.fingerprint(), other.trust.fingerprint());
        // An unanchored pattern is valid, and warned about.
        let loose = load(
            &keyless(
                "github",
                "          - { issuer: https://token.actions.githubusercontent.com, subjectRegExp: acme }",
            ),
            prov,
        )
        .unwrap();
        let w = loose.warnings(chrono::Utc::now(), std::time::Duration::ZERO);
        assert_eq!(w, ["spec.signers.ci.keyless.identities[0].subjectRegExp: not anchored (^…$), so it matches anywhere in the value"]);
        assert!(p.warnings(chrono::Utc::now(), std::time::Duration::ZERO).is_empty());
        // A break-glass group everybody is in is valid, and warned about.
        // (group, warned)
        let rows = [
            ("sre-oncall", false),
            ("system:masters", false),
            ("system:authenticated", true),
            ("system:unauthenticated", true),
            ("system:serviceaccounts", true),
            ("system:serviceaccounts:kube-system", true),
            ("system:nodes", true),
        ];
        for (group, warned) in rows {
            let y = format!("apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers: {{}}\n  tiers:\n    production:\n      breakGlass: {{ allowed: true, groups: [sre-oncall, \"{group}\"] }}\n");
            let w = Policy::from_yaml(&y, "text").unwrap().warnings(chrono::Utc::now(), std::time::Duration::ZERO);
            assert_eq!(
                w.iter().any(|w| w.starts_with("spec.tiers.production.breakGlass.groups[1]: ")),
                warned,
                "{group}: {w:?}"
            );
        }
        // Two tiers of one name: refused where the second starts, not read as the last one.
        let twice = "apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers: {}\n  tiers:\n    production: { mode: enforce }\n    production: { mode: warn }\n";
        let e = Policy::from_yaml(twice, "text").unwrap_err();
        assert_eq!((e.problems[0].line, e.problems[0].column), (Some(7), Some(5)), "{e}");
        assert!(e.to_string().contains("spec.tiers: duplicate key \"production\" (first at line 6)"), "{e}");
        // A policy given as text cannot name files.
        let y = format!("apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers:\n{}\n  tiers:\n    t: {{}}\n", keyless("roots/private.json", ID));
        assert!(Policy::from_yaml(&y, "text").unwrap_err().to_string().contains("can name only built-in roots"));
    }
}
