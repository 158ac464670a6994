//! The in-toto vulnerabilities predicate, `https://in-toto.io/attestation/vulns`
//! (v0.1 and v0.2; in-toto/attestation `spec/predicates/vulns.md`,
//! `vulns_02.md` and `protos/.../vulns/v0.{1,2}/vulns.proto`).
//!
//! `scanner{uri, version, db{…}, result}` and `metadata{scanStartedOn,
//! scanFinishedOn}`; each result is `{id, severity[{method, score}],
//! annotations[{…}]}`. The sources disagree on the shape, so all are read:
//!
//! - v0.2 (spec and proto): `result` is a list of `{id, severity, annotations}`;
//! - v0.1 spec text: list entries hold them in a `vulnerability` object
//!   (its example, like v0.2, does not);
//! - v0.1 proto: `result` is `{vulnerabilities: [...]}`, `scanner.database`
//!   for `db`, `scanMetadata` for `metadata` (protobuf JSON names).
//!
//! A severity `score` is a name (`medium`) or a number (`5.2`, a CVSS base
//! score unless its method says v2). The predicate has no package fields:
//! annotations may carry them (conventions, not spec: `package`,
//! `version`, `fixedVersion(s)`, `fixState`/`status`, `purl`, `aliases` as
//! written by e.g. govulncheck-based attesters, `target`); without them the
//! package is empty and findings are told apart by id alone.
//!
//! Some pipelines attest a whole scanner report (`trivy --format
//! cosign-vuln`, Grype JSON) under this predicate type; a `result` that is
//! such a report is read as one.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::bounded::{self, Kind};

use super::{parse_time, Finding, FixState, Severity, VulnReport};

/// Most memory (estimated) one vulnerability entry may take to read.
const ENTRY_BUDGET: usize = 1 << 20;

/// A field present, whatever its value (`null` too).
fn present_raw<'de: 'a, 'a, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'a RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// The predicate from its JSON text. A `result` that is a scanner report is
/// read as one (typed); a list of vulnerabilities is read one entry at a
/// time, each entry within [`ENTRY_BUDGET`], and at most
/// [`bounded::MAX_FINDINGS`] of them.
pub(super) fn parse_text(text: &str) -> Result<VulnReport, String> {
    #[derive(Deserialize)]
    struct Predicate<'a> {
        #[serde(borrow, default)]
        scanner: Option<&'a RawValue>,
        #[serde(borrow, default)]
        metadata: Option<&'a RawValue>,
        #[serde(borrow, default, rename = "scanMetadata")]
        scan_metadata: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Scanner<'a> {
        #[serde(default)]
        uri: Option<Kind>,
        #[serde(borrow, default)]
        result: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Metadata {
        #[serde(default, rename = "scanFinishedOn")]
        scan_finished_on: Option<Kind>,
    }
    #[derive(Deserialize)]
    struct Listed<'a> {
        #[serde(borrow, default, deserialize_with = "present_raw")]
        vulnerabilities: Option<&'a RawValue>,
    }
    let object = |t: &str| t.trim_start().starts_with('{');
    let no_scanner = || "the predicate has no scanner object".to_string();
    let p: Predicate<'_> = match object(text) {
        true => serde_json::from_str(text).map_err(|e| e.to_string())?,
        false => return Err(no_scanner()),
    };
    let scanner: Scanner<'_> = p
        .scanner
        .filter(|s| object(s.get()))
        .map(|s| serde_json::from_str(s.get()).map_err(|e| format!("scanner: {e}")))
        .transpose()?
        .ok_or_else(no_scanner)?;
    let metadata = p.metadata.or(p.scan_metadata).and_then(|m| serde_json::from_str::<Metadata>(m.get()).ok());
    let finished = metadata.map(|m| Kind::str(&m.scan_finished_on).to_string());
    let finished_on = parse_time(finished.as_deref()).map_err(|e| format!("metadata.scanFinishedOn: {e}"))?;
    let uri = Kind::str(&scanner.uri).to_string();

    let Some(result) = scanner.result else {
        return Err("scanner.result is missing: a scan with no findings has an empty list".to_string());
    };
    let r = result.get();
    if super::formats::scanner_format(r).is_some() {
        let mut report = super::scanner_report(r)?;
        report.finished_on = finished_on.or(report.finished_on);
        return Ok(report.dedup());
    }
    let neither = || {
        format!(
            "scanner.result is neither a list of vulnerabilities nor a scanner report Portcullis reads \
             (understood: {})",
            super::formats::scanners_understood()
        )
    };
    let list = if r.trim_start().starts_with('[') {
        r
    } else if object(r) {
        match serde_json::from_str::<Listed<'_>>(r).map_err(|e| e.to_string())?.vulnerabilities {
            Some(v) if v.get() == "null" => "[]",
            Some(v) if v.get().trim_start().starts_with('[') => v.get(),
            Some(_) => return Err("scanner.result.vulnerabilities is not a list".to_string()),
            None => return Err(neither()),
        }
    } else {
        return Err(neither());
    };
    let mut findings = Vec::new();
    let mut de = serde_json::Deserializer::from_str(list);
    let read = bounded::each(|e: &RawValue| {
        let i = findings.len();
        if i == bounded::MAX_FINDINGS {
            return Err(format!("it lists more than {} vulnerabilities, the most read", bounded::MAX_FINDINGS));
        }
        let v = bounded::value(e.get(), ENTRY_BUDGET).map_err(|why| format!("scanner.result[{i}]: {why}"))?;
        findings.push(entry(&v).map_err(|why| format!("scanner.result[{i}]: {why}"))?);
        Ok(())
    });
    serde::de::DeserializeSeed::deserialize(read, &mut de).map_err(|e| e.to_string())?;
    let scanner_name = if uri.is_empty() { "in-toto vulns".to_string() } else { uri };
    Ok(VulnReport { scanner: scanner_name, finished_on, findings, vex: None, sbom: None }.dedup())
}

/// Lower case without `_` and `-`, so `fixedVersion`, `fixed_version` and
/// `Fixed-Version` are one key.
fn norm(k: &str) -> String {
    k.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect()
}

/// All annotation maps of an entry merged (the first value of a key wins).
fn annotations(vals: &[Option<&Value>]) -> Map<String, Value> {
    let mut out = Map::new();
    let mut add = |m: &Map<String, Value>| {
        for (k, v) in m {
            out.entry(norm(k)).or_insert_with(|| v.clone());
        }
    };
    for v in vals.iter().flatten() {
        match v {
            Value::Object(m) => add(m),
            Value::Array(a) => a.iter().filter_map(Value::as_object).for_each(&mut add),
            _ => {}
        }
    }
    out
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn texts(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().filter_map(text).collect(),
        v => text(v)
            .map(|s| s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
            .unwrap_or_default(),
    }
}

fn get<'a>(ann: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| ann.get(*k))
}

/// Name and version from a package URL, `pkg:type/ns/name@version?q#sub`.
fn purl_name_version(purl: &str) -> Option<(String, String)> {
    let rest = purl.strip_prefix("pkg:")?;
    let rest = rest.split(['?', '#']).next()?;
    let (path, version) = rest.rsplit_once('@').unwrap_or((rest, ""));
    let name = path.rsplit('/').next()?;
    (!name.is_empty()).then(|| (name.to_string(), version.to_string()))
}

fn entry(e: &Value) -> Result<Finding, String> {
    let vuln = e.get("vulnerability").filter(|v| v.is_object()).unwrap_or(e);
    let id = vuln.get("id").and_then(text).ok_or("no id")?;
    let ann = annotations(&[vuln.get("annotations"), e.get("annotations").filter(|_| !std::ptr::eq(vuln, e))]);

    let (name, cvss) = severity(vuln.get("severity"));
    let cvss = cvss.or_else(|| get(&ann, &["cvss", "cvssscore", "cvssv3", "cvssv3score"]).and_then(text)?.parse().ok());
    let name = name.or_else(|| get(&ann, &["severity"]).and_then(text)).unwrap_or_default();

    let mut package = String::new();
    let mut version = String::new();
    match get(&ann, &["package", "packagename", "pkgname", "pkg"]) {
        Some(Value::Object(p)) => {
            package = p.get("name").and_then(text).unwrap_or_default();
            version = p.get("version").and_then(text).unwrap_or_default();
        }
        Some(v) => package = text(v).unwrap_or_default(),
        None => {}
    }
    if let Some(v) = get(&ann, &["version", "installedversion", "packageversion", "pkgversion"]).and_then(text) {
        version = v;
    }
    if package.is_empty() {
        if let Some((n, v)) = get(&ann, &["purl", "packageurl"]).and_then(text).and_then(|p| purl_name_version(&p)) {
            package = n;
            if version.is_empty() {
                version = v;
            }
        }
    }
    let fixed_versions = get(&ann, &["fixedversions", "fixedversion", "fixversions", "fixversion", "fixedin"])
        .map(texts)
        .unwrap_or_default();
    let state = get(&ann, &["fixstate", "status", "state"]).and_then(text).unwrap_or_default();
    Ok(Finding {
        aliases: get(&ann, &["aliases"]).map(texts).unwrap_or_default().into_iter().filter(|a| *a != id).collect(),
        id,
        severity: Severity::from_name_or_cvss(&name, cvss),
        package,
        installed_version: version,
        fix_state: FixState::parse(&state, !fixed_versions.is_empty()),
        fixed_versions,
        published: None,
        cvss,
        target: get(&ann, &["target", "location", "path"]).and_then(text).unwrap_or_default(),
        purl: None,
    })
}

/// The first recognised severity name, and the CVSS score to band by: the
/// highest numeric score whose method names no CVSS v2 (v2 bands differ).
fn severity(v: Option<&Value>) -> (Option<String>, Option<f64>) {
    let items: Vec<&Value> = match v {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(o @ Value::Object(_)) => vec![o],
        Some(s @ Value::String(_)) => vec![s],
        _ => Vec::new(),
    };
    let mut name = None;
    let mut cvss: Option<f64> = None;
    for item in items {
        let (method, score) = match item {
            Value::Object(o) => (
                o.get("method").and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase(),
                o.get("score").and_then(text),
            ),
            other => (String::new(), text(other)),
        };
        let Some(score) = score else { continue };
        match score.parse::<f64>() {
            Ok(n) if n.is_finite() && (0.0..=10.0).contains(&n) => {
                let v2 = ["v2", "cvss2", "2.0"].iter().any(|m| method.contains(m));
                if !v2 {
                    cvss = Some(cvss.map_or(n, |c| c.max(n)));
                }
            }
            Ok(_) => {}
            Err(_) => {
                if name.is_none() && Severity::parse(&score) != Severity::Unknown {
                    name = Some(score);
                }
            }
        }
    }
    (name, cvss)
}
