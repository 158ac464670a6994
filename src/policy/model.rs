//! The `PromotionPolicy` file: its schema, loading and validation.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize};

use crate::attest::Keyring;
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
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VulnRule {
    /// Signers any one of which must have signed the scan.
    pub signed_by: Vec<String>,
    #[serde(default, with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// Do not count findings without a known fix.
    #[serde(default)]
    pub ignore_unfixed: bool,
    /// Maximum findings per severity; a severity not listed is not limited.
    #[serde(default)]
    pub max: Limits,
    /// A finding of this severity counts only once it is older than this
    /// (from its published date; a finding without one counts at once).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "grace_periods")]
    pub grace_period: BTreeMap<Severity, Duration>,
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
    #[serde(default, with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
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
    #[serde(default, with = "opt_duration", skip_serializing_if = "Option::is_none")]
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

mod opt_duration {
    use super::*;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map(Some).map_err(serde::de::Error::custom)
    }
    pub fn serialize<S: serde::Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_str(&super::super::fmt_duration(*d)),
            None => s.serialize_none(),
        }
    }
}

fn grace_periods<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<Severity, Duration>, D::Error> {
    let raw = BTreeMap::<Severity, String>::deserialize(d)?;
    raw.into_iter().map(|(k, v)| parse_duration(&v).map(|d| (k, d)).map_err(serde::de::Error::custom)).collect()
}

/// Parses durations as Kubernetes users write them: `24h`, `90m`, `1h30m`, `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("duration {s:?} does not parse ({e}); write e.g. 24h, 90m, 7d"))
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

/// A loaded, validated policy.
#[derive(Clone, Debug)]
pub struct Policy {
    pub file: PolicyFile,
    /// `sha256:<hex>` of the policy file's bytes, reported with every decision.
    pub digest: String,
    pub keyring: Keyring,
}

impl Policy {
    /// Parses and validates a policy; `source_name` names it in errors.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Policy, PolicyError> {
        let err = |problems| PolicyError { source_name: source_name.to_string(), problems };
        let file: PolicyFile = serde_yaml::from_str(text).map_err(|e| {
            let (line, column) = e.location().map(|l| (Some(l.line()), Some(l.column()))).unwrap_or((None, None));
            err(vec![Problem { line, column, path: String::new(), message: e.to_string() }])
        })?;
        let mut problems = validate(&file);
        let mut pems = Vec::new();
        for (name, s) in &file.spec.signers {
            for pem in s.keys() {
                pems.push((name.as_str(), pem));
            }
        }
        let keyring = match Keyring::new(pems) {
            Ok(k) => k,
            Err(e) => {
                problems.push(Problem::at(format!("spec.signers.{}", e.signer), e.to_string()));
                Keyring::default()
            }
        };
        if !problems.is_empty() {
            let at = super::locate::locations(text);
            for p in &mut problems {
                if let Some((l, c)) = super::locate::locate(&at, &p.path) {
                    (p.line, p.column) = (Some(l), Some(c));
                }
            }
            return Err(err(problems));
        }
        Ok(Policy { file, digest: crate::image::Digest::of(text.as_bytes()).to_string(), keyring })
    }

    pub fn tier(&self, name: &str) -> Option<&TierSpec> {
        self.file.spec.tiers.get(name)
    }

    pub fn tier_names(&self) -> Vec<&str> {
        self.file.spec.tiers.keys().map(String::as_str).collect()
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
        if s.keys().next().is_none() {
            p(format!("spec.signers.{name}"), "has no publicKey or publicKeys".into());
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
        let signed_by = [
            ("vulnerabilities", t.vulnerabilities.as_ref().map(|v| &v.signed_by)),
            ("tests", t.tests.as_ref().map(|v| &v.signed_by)),
        ];
        for (what, list) in signed_by {
            let Some(list) = list else { continue };
            if list.is_empty() {
                p(format!("spec.tiers.{tier}.{what}.signedBy"), "is empty: name at least one signer".into());
            }
            for (i, s) in list.iter().enumerate() {
                if !spec.signers.contains_key(s) {
                    p(format!("spec.tiers.{tier}.{what}.signedBy[{i}]"), format!("names undefined signer {s:?}"));
                }
            }
        }
        if let Some(tests) = &t.tests {
            if tests.require == TestOutcome::Failed {
                p(format!("spec.tiers.{tier}.tests.require"), "must be PASSED or WARNED".into());
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
    out
}
