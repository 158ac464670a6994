//! Normalisation of every report format against the fixtures in
//! `tests/fixtures/reports/`, which copy the upstream shapes with our values
//! and each hold, on purpose: one vulnerability in two targets of the same
//! package version, a GHSA next to its CVE (where the format can say so),
//! a finding with a CVSS score but no severity name, an unfixed finding and
//! severity names in mixed case.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/reports/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn load(name: &str) -> VulnReport {
    parse_report(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Counts per severity, critical first, then the fixable count.
fn counts(r: &VulnReport) -> ([usize; 5], usize) {
    (Severity::ALL.map(|s| r.count(s)), r.findings.iter().filter(|f| f.fixable()).count())
}

fn find<'a>(r: &'a VulnReport, id: &str, package: &str, version: &str) -> &'a Finding {
    r.findings
        .iter()
        .find(|f| f.id == id && f.package == package && f.installed_version == version)
        .unwrap_or_else(|| panic!("no {id} in {package} {version} among {:#?}", r.findings))
}

fn ids(r: &VulnReport) -> Vec<&str> {
    r.findings.iter().map(|f| f.id.as_str()).collect()
}

fn time(s: &str) -> Option<DateTime<Utc>> {
    Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc))
}

use super::{ReportError, UNDERSTOOD};

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn trivy_json() {
    let r = load("trivy.json");
    assert_eq!(r.scanner, "trivy");
    assert_eq!(r.finished_on, time("2024-12-10T09:30:15.123456789Z"));
    assert_eq!(r.findings.len(), 7, "{:?}", ids(&r));
    assert_eq!(counts(&r), ([2, 2, 1, 1, 1], 5));

    // Three fixed versions, comma-separated; the GHSA listed on its own in
    // app/pom.xml is this finding's vendor id and is not counted again.
    let pg = find(&r, "CVE-2024-1597", "org.postgresql:postgresql", "42.6.0");
    assert_eq!(pg.severity, Severity::Critical);
    assert_eq!(pg.fixed_versions, strings(&["42.7.2", "42.6.1", "42.5.5"]));
    assert_eq!(pg.fix_state, FixState::Fixed);
    assert_eq!(pg.aliases, strings(&["GHSA-24rp-q3w6-vc56"]));
    assert_eq!(pg.cvss, Some(9.8));
    assert_eq!(pg.target, "Java");
    assert!(!ids(&r).contains(&"GHSA-24rp-q3w6-vc56"));

    // In two Go binaries, counted once; `critical` in lower case.
    let go = find(&r, "CVE-2024-24790", "stdlib", "v1.21.6");
    assert_eq!(go.severity, Severity::Critical);
    assert_eq!(go.fixed_versions, strings(&["1.21.11", "1.22.4"]));
    assert_eq!(go.target, "usr/local/bin/api");
    assert_eq!(ids(&r).iter().filter(|i| **i == "CVE-2024-24790").count(), 1);

    // UNKNOWN with an NVD v3 score of 7.5 (the v2 score of 10 is ignored).
    let zlib = find(&r, "CVE-2023-45853", "zlib1g", "1:1.2.13.dfsg-1");
    assert_eq!((zlib.severity, zlib.cvss), (Severity::High, Some(7.5)));
    assert_eq!(zlib.fix_state, FixState::WontFix);
    assert!(zlib.fixed_versions.is_empty());

    let ncurses = find(&r, "CVE-2023-50495", "libncursesw6", "6.4-4");
    assert_eq!((ncurses.severity, ncurses.fix_state), (Severity::Low, FixState::NotFixed));
    assert!(!ncurses.fixable());
    assert_eq!(ncurses.published, time("2023-12-12T15:15:07.867Z"));

    // DSA-5678-1 fixes both: a shared vendor advisory is no alias, so both count.
    let a = find(&r, "CVE-2024-0727", "openssl", "3.0.11-1~deb12u2");
    let b = find(&r, "CVE-2024-0728", "openssl", "3.0.11-1~deb12u2");
    assert!(a.aliases.is_empty() && b.aliases.is_empty());
    assert_eq!((a.severity, b.severity), (Severity::Medium, Severity::Unknown));
    assert_eq!(find(&r, "CVE-2024-2511", "openssl", "3.0.11-1~deb12u2").severity, Severity::High);
}

#[test]
fn grype_json() {
    let r = load("grype.json");
    assert_eq!(r.scanner, "grype");
    assert_eq!(r.finished_on, time("2024-12-10T09:31:02.417852338Z"));
    assert_eq!(r.findings.len(), 6, "{:?}", ids(&r));
    assert_eq!(counts(&r), ([2, 2, 1, 1, 0], 4));

    // The GHSA and the NVD record of its CVE count once; ignored matches not at all.
    let ghsa = find(&r, "GHSA-24rp-q3w6-vc56", "postgresql", "42.6.0");
    assert_eq!(ghsa.aliases, strings(&["CVE-2024-1597"]));
    assert_eq!((ghsa.severity, ghsa.fix_state), (Severity::Critical, FixState::Fixed));
    assert_eq!(ghsa.fixed_versions, strings(&["42.6.1"]));
    assert_eq!(ghsa.target, "/app/lib/postgresql-42.6.0.jar");
    assert!(!ids(&r).contains(&"CVE-2024-1597"));
    assert!(!ids(&r).contains(&"CVE-2024-9143"));

    // Two binaries with the same stdlib: once.
    let go = find(&r, "CVE-2024-24790", "stdlib", "go1.21.6");
    assert_eq!(go.fixed_versions, strings(&["1.21.11", "1.22.4"]));
    assert_eq!(go.target, "/usr/local/bin/api");

    // `Unknown` with a v3 score of 7.5 (and a v2 of 10, ignored).
    let zlib = find(&r, "CVE-2023-45853", "zlib1g", "1:1.2.13.dfsg-1");
    assert_eq!((zlib.severity, zlib.cvss, zlib.fix_state), (Severity::High, Some(7.5), FixState::WontFix));

    // `Negligible` is low; not fixed; the CVSS score comes from the NVD record.
    let nc = find(&r, "CVE-2023-50495", "libncursesw6", "6.4-4");
    assert_eq!((nc.severity, nc.fix_state, nc.cvss), (Severity::Low, FixState::NotFixed, Some(6.5)));

    // `high` and `MEDIUM`; a related record with the match's own id is no alias.
    let ssl = find(&r, "CVE-2024-2511", "libssl3", "3.0.11-1~deb12u2");
    assert_eq!((ssl.severity, ssl.cvss), (Severity::High, Some(7.5)));
    assert!(ssl.aliases.is_empty());
    assert_eq!(find(&r, "CVE-2024-0727", "libssl3", "3.0.11-1~deb12u2").severity, Severity::Medium);
}

#[test]
fn trivy_sarif() {
    let r = load("trivy.sarif");
    assert_eq!(r.scanner, "trivy");
    assert_eq!(r.finished_on, None);
    // The misconfiguration DS002 is not a vulnerability.
    assert!(!ids(&r).contains(&"DS002"));
    assert_eq!(r.findings.len(), 6, "{:?}", ids(&r));
    assert_eq!(counts(&r), ([1, 3, 1, 1, 0], 4));

    // One rule, two packages: the rule's help names libssl3, the result openssl.
    for pkg in ["libssl3", "openssl"] {
        let f = find(&r, "CVE-2024-2511", pkg, "3.0.11-1~deb12u2");
        assert_eq!((f.severity, f.fix_state), (Severity::High, FixState::Fixed));
        assert_eq!(f.fixed_versions, strings(&["3.0.13-1~deb12u1"]));
        assert_eq!(f.target, "shop/api");
    }

    // `Critical` in mixed case, in two binaries: once, fixed in two versions.
    let go = find(&r, "CVE-2024-24790", "stdlib", "v1.21.6");
    assert_eq!((go.severity, go.cvss), (Severity::Critical, Some(9.8)));
    assert_eq!(go.fixed_versions, strings(&["1.21.11", "1.22.4"]));
    assert_eq!(go.target, "usr/local/bin/api");

    // `Severity: UNKNOWN` with a security-severity of 7.5.
    let zlib = find(&r, "CVE-2023-45853", "zlib1g", "1:1.2.13.dfsg-1");
    assert_eq!((zlib.severity, zlib.fix_state), (Severity::High, FixState::Unknown));

    // No fixed version: SARIF says nothing more about the fix.
    let nc = find(&r, "CVE-2023-50495", "libncursesw6", "6.4-4");
    assert_eq!((nc.severity, nc.fix_state), (Severity::Low, FixState::Unknown));
    assert!(!nc.fixable());
}

#[test]
fn grype_sarif() {
    let r = load("grype.sarif");
    assert_eq!(r.scanner, "grype");
    assert_eq!(r.findings.len(), 7, "{:?}", ids(&r));
    assert_eq!(counts(&r), ([2, 1, 1, 2, 1], 4));

    // The rule id is `<id>-<package>`; the id comes from the help text.
    let ghsa = find(&r, "GHSA-24rp-q3w6-vc56", "postgresql", "42.6.0");
    assert_eq!((ghsa.severity, ghsa.fix_state), (Severity::Critical, FixState::Fixed));
    assert_eq!(ghsa.fixed_versions, strings(&["42.6.1"]));
    assert_eq!(ghsa.target, "api/app/lib/postgresql-42.6.0.jar");

    // Two binaries, one rule: once; Grype joins fix versions without spaces.
    let go = find(&r, "CVE-2024-24790", "stdlib", "go1.21.6");
    assert_eq!(go.fixed_versions, strings(&["1.21.11", "1.22.4"]));
    assert_eq!(ids(&r).iter().filter(|i| **i == "CVE-2024-24790").count(), 1);

    // Grype writes `low` below medium, and its label counts, as in its JSON:
    // a score of 0.0 alone (nothing known) is unknown.
    let band = |id: &str, pkg: &str, ver: &str| find(&r, id, pkg, ver).severity;
    // 1.0: a true low; 7.5: a CVSS score, low as Grype labels it; 0.0: nothing known.
    assert_eq!(band("CVE-2023-50495", "libncursesw6", "6.4-4"), Severity::Low);
    assert_eq!(band("CVE-2023-45853", "zlib1g", "1:1.2.13.dfsg-1"), Severity::Low);
    assert_eq!(band("CVE-2024-9143", "libssl3", "3.0.11-1~deb12u2"), Severity::Unknown);
    // `High` in mixed case; named severities above low win over the score.
    assert_eq!(band("CVE-2024-2511", "libssl3", "3.0.11-1~deb12u2"), Severity::High);
    assert_eq!(band("CVE-2024-0727", "libssl3", "3.0.11-1~deb12u2"), Severity::Medium);

    let unfixed = find(&r, "CVE-2023-45853", "zlib1g", "1:1.2.13.dfsg-1");
    assert_eq!((unfixed.fix_state, unfixed.fixable()), (FixState::Unknown, false));
}

/// The same Grype scan as JSON and as SARIF counts alike, so a tier cannot
/// admit one form and deny the other (a low with a high CVSS was high in
/// SARIF, low in the JSON). One case SARIF cannot tell: it writes `low` for
/// low, negligible and unknown alike, so an *unknown* with a CVSS score,
/// which the JSON counts by its score, is low there (the README says so:
/// limit unknowns on Grype's JSON).
#[test]
fn grype_json_and_sarif_agree() {
    let json = load("grype.json");
    let sarif = load("grype.sarif");
    let mut compared = 0;
    for s in &sarif.findings {
        let Some(j) = json.findings.iter().find(|j| j.id == s.id && j.package == s.package) else { continue };
        compared += 1;
        if s.id == "CVE-2023-45853" {
            // `Unknown` in the JSON, with CVSS scores: counted by its score there.
            assert_eq!((j.severity, s.severity), (Severity::High, Severity::Low), "{}", s.id);
            continue;
        }
        assert_eq!(s.severity, j.severity, "{} in {}", s.id, s.package);
    }
    assert!(compared >= 4, "{compared} findings in both forms");
    // A low with a CVSS score is low in both forms, whatever its score.
    let sarif_low = br#"{"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "grype", "rules": [
        {"id": "CVE-1999-0001-pkg", "help": {"text": "Vulnerability CVE-1999-0001\nSeverity: low\nPackage: pkg\nVersion: 1\nFix Version: 2"},
         "properties": {"security-severity": "7.5"}}]}},
      "results": [{"ruleId": "CVE-1999-0001-pkg", "message": {"text": "A low vulnerability in deb package: pkg, version 1 was found in image x"}}]}]}"#;
    let r = super::parse_report(sarif_low).unwrap();
    assert_eq!(r.findings[0].severity, Severity::Low, "{:?}", r.findings[0]);
}

#[test]
fn intoto_vulns_v01() {
    let r = load("intoto-vulns-v0.1.json");
    assert_eq!(r.scanner, "pkg:github/aquasecurity/trivy@0.58.1");
    assert_eq!(r.finished_on, time("2024-12-10T09:30:15Z"));
    assert_eq!(r.findings.len(), 7, "{:?}", ids(&r));
    assert_eq!(counts(&r), ([2, 2, 1, 1, 1], 1));
    // No packages: findings are told apart by id, aliases included.
    assert!(r.findings.iter().all(|f| f.package.is_empty() && f.installed_version.is_empty()));
    let ghsa = find(&r, "GHSA-24rp-q3w6-vc56", "", "");
    assert_eq!((ghsa.severity, ghsa.cvss), (Severity::Critical, Some(9.8)));
    assert_eq!(ghsa.aliases, strings(&["CVE-2024-1597"]));
    assert!(!ids(&r).contains(&"CVE-2024-1597"));
    assert_eq!(ids(&r).iter().filter(|i| **i == "CVE-2024-24790").count(), 1);
    // A v2 score is not banded; the v3 one is.
    assert_eq!(find(&r, "CVE-2023-45853", "", "").severity, Severity::High);
    assert_eq!(find(&r, "CVE-2024-0727", "", "").severity, Severity::Medium); // `Moderate`
    assert_eq!(find(&r, "CVE-2024-9143", "", "").severity, Severity::Unknown);
    let ssl = find(&r, "CVE-2024-2511", "", "");
    assert_eq!((ssl.severity, ssl.fix_state), (Severity::High, FixState::Fixed));
    assert_eq!(ssl.fixed_versions, strings(&["3.0.13-1~deb12u1"]));
    let nc = find(&r, "CVE-2023-50495", "", "");
    assert_eq!((nc.severity, nc.fix_state), (Severity::Low, FixState::NotFixed));
}

#[test]
fn intoto_vulns_v02() {
    let r = load("intoto-vulns-v0.2.json");
    assert_eq!(r.scanner, "pkg:github/anchore/grype@0.82.2");
    assert_eq!(r.finished_on, time("2024-12-10T09:31:02Z"));
    assert_eq!(r.findings.len(), 6, "{:?}", ids(&r));
    assert_eq!(counts(&r), ([3, 2, 0, 1, 0], 4));
    // The CVE's package comes from its purl, and it is the GHSA's alias.
    let ghsa = find(&r, "GHSA-24rp-q3w6-vc56", "postgresql", "42.6.0");
    assert_eq!((ghsa.fix_state, ghsa.fixed_versions.clone()), (FixState::Fixed, strings(&["42.6.1"])));
    assert!(!ids(&r).contains(&"CVE-2024-1597"));
    // Two targets of stdlib go1.21.6 count once; go1.22.1 is another finding.
    let go = find(&r, "CVE-2024-24790", "stdlib", "go1.21.6");
    assert_eq!((go.severity, go.target.as_str()), (Severity::Critical, "/usr/local/bin/api"));
    assert_eq!(find(&r, "CVE-2024-24790", "stdlib", "go1.22.1").fixed_versions, strings(&["1.22.4"]));
    let ssl = find(&r, "CVE-2024-2511", "libssl3", "3.0.11-1~deb12u2"); // `hIgH`
    assert_eq!((ssl.severity, ssl.fixed_versions.clone()), (Severity::High, strings(&["3.0.13-1~deb12u1"])));
    let zlib = find(&r, "CVE-2023-45853", "zlib1g", "1:1.2.13.dfsg-1");
    assert_eq!((zlib.severity, zlib.cvss, zlib.fix_state), (Severity::High, Some(7.5), FixState::WontFix));
    let nc = find(&r, "CVE-2023-50495", "libncursesw6", "6.4-4");
    assert_eq!((nc.severity, nc.fix_state), (Severity::Low, FixState::NotFixed));
}

#[test]
fn cosign_vuln_wrapping_grype() {
    let r = load("cosign-vuln-grype.json");
    let bare = load("grype.json");
    assert_eq!(r.findings, bare.findings);
    assert_eq!(r.scanner, "grype");
    // The predicate's scan time replaces the report's.
    assert_eq!(r.finished_on, time("2024-12-10T09:31:05Z"));
    assert_eq!(counts(&r), ([2, 2, 1, 1, 0], 4));

    // The same predicate inside a statement, and as a verified attestation.
    let predicate: serde_json::Value = serde_json::from_slice(&fixture("cosign-vuln-grype.json")).unwrap();
    let statement = json!({"_type": "https://in-toto.io/Statement/v1", "subject": [],
        "predicateType": COSIGN_VULN_V1, "predicate": predicate.clone()});
    assert_eq!(parse_report(statement.to_string().as_bytes()).unwrap(), r);
    let st = VerifiedStatement::new(COSIGN_VULN_V1, &predicate.to_string(), vec![], None);
    assert_eq!(claim_of(&st), Ok(Claim::Vulnerabilities(r)));
}

#[test]
fn statement_with_intoto_vulns() {
    let r = load("statement-intoto-vulns.json");
    assert_eq!(r.scanner, "https://pkg.go.dev/golang.org/x/vuln/cmd/govulncheck");
    assert_eq!(r.finished_on, time("2024-12-10T09:31:24Z"));
    assert_eq!(r.findings.len(), 6, "{:?}", ids(&r));
    assert_eq!(counts(&r), ([1, 1, 2, 1, 1], 5));
    // GO-2024-2887 is CVE-2024-24790 (its alias) in the other binary.
    assert!(!ids(&r).contains(&"GO-2024-2887"));
    let go = find(&r, "CVE-2024-24790", "stdlib", "v1.21.6");
    assert_eq!((go.severity, go.fixed_versions.clone()), (Severity::Critical, strings(&["1.21.11", "1.22.4"])));
    let cvss_only = find(&r, "GO-2024-2963", "stdlib", "v1.21.6");
    assert_eq!((cvss_only.severity, cvss_only.cvss), (Severity::Medium, Some(5.9)));
    assert_eq!(cvss_only.aliases, strings(&["CVE-2024-24791"]));
    let unfixed = find(&r, "GO-2023-2382", "golang.org/x/crypto", "v0.14.0");
    assert_eq!((unfixed.severity, unfixed.fix_state), (Severity::Unknown, FixState::NotFixed));
    assert_eq!(find(&r, "GO-2024-2611", "google.golang.org/protobuf", "v1.32.0").severity, Severity::Low);

    // As a verified attestation it is a vulnerability claim too.
    let v: serde_json::Value = serde_json::from_slice(&fixture("statement-intoto-vulns.json")).unwrap();
    let st = VerifiedStatement::new(v["predicateType"].as_str().unwrap(), &v["predicate"].to_string(), vec![], None);
    assert_eq!(claim_of(&st), Ok(Claim::Vulnerabilities(r)));
}

#[test]
fn intoto_predicate_types_with_and_without_version() {
    let predicate: serde_json::Value = serde_json::from_slice(&fixture("intoto-vulns-v0.2.json")).unwrap();
    let want = load("intoto-vulns-v0.2.json");
    for t in [INTOTO_VULNS, INTOTO_VULNS_V01, INTOTO_VULNS_V02] {
        let st = VerifiedStatement::new(t, &predicate.to_string(), vec![], None);
        assert_eq!(claim_of(&st), Ok(Claim::Vulnerabilities(want.clone())), "{t}");
        let statement = json!({"_type": "https://in-toto.io/Statement/v1", "predicateType": t, "predicate": predicate});
        assert_eq!(parse_report(statement.to_string().as_bytes()).as_ref(), Ok(&want), "{t}");
    }
    let st = VerifiedStatement::new("https://in-toto.io/attestation/vulns/v9", &predicate.to_string(), vec![], None);
    assert_eq!(claim_of(&st), Ok(Claim::Other { predicate_type: "https://in-toto.io/attestation/vulns/v9".into() }));
}

#[test]
fn intoto_v01_protobuf_json_shape() {
    // protos/in_toto_attestation/predicates/vulns/v0.1: `database`,
    // `result.vulnerabilities`, `scanMetadata`.
    let p = json!({
        "scanner": {
            "uri": "pkg:github/example/scanner@1.0.0",
            "database": {"uri": "https://db.example.com", "lastUpdate": "2024-12-01T00:00:00Z"},
            "result": {"vulnerabilities": [
                {"id": "CVE-2024-0001", "severity": [{"method": "nvd", "score": "MEDIUM"}]},
                {"id": "CVE-2024-0002", "severity": [{"method": "CVSS_V3", "score": "9.1"}],
                 "annotations": [{"package": {"name": "libfoo", "version": "1.2.3"}, "fixed_version": "1.2.4"}]}
            ]}
        },
        "scanMetadata": {"scanStartedOn": "2024-12-01T10:00:00Z", "scanFinishedOn": "2024-12-01T10:01:00Z"}
    });
    let r = parse_report(p.to_string().as_bytes()).unwrap();
    assert_eq!(r.finished_on, time("2024-12-01T10:01:00Z"));
    assert_eq!(counts(&r), ([1, 0, 1, 0, 0], 1));
    let f = find(&r, "CVE-2024-0002", "libfoo", "1.2.3");
    assert_eq!((f.severity, f.fixed_versions.clone()), (Severity::Critical, strings(&["1.2.4"])));
    // An empty result is a clean scan; a missing one is not evidence.
    let clean = json!({"scanner": {"uri": "x", "result": []}, "metadata": {"scanFinishedOn": "2024-12-01T10:01:00Z"}});
    assert_eq!(parse_report(clean.to_string().as_bytes()).unwrap().findings, vec![]);
    let missing = json!({"scanner": {"uri": "x"}});
    assert!(parse_report(missing.to_string().as_bytes())
        .unwrap_err()
        .to_string()
        .contains("scanner.result is missing"));
    let no_id = json!({"scanner": {"uri": "x", "result": [{"severity": []}]}});
    assert!(parse_report(no_id.to_string().as_bytes()).unwrap_err().to_string().contains("scanner.result[0]: no id"));
}

#[test]
fn intoto_predicate_holding_a_scanner_report() {
    // `trivy --format cosign-vuln` attested under the in-toto type.
    let trivy: serde_json::Value = serde_json::from_slice(&fixture("trivy.json")).unwrap();
    let p = json!({"scanner": {"uri": "pkg:github/aquasecurity/trivy@0.58.1", "result": trivy},
                   "metadata": {"scanFinishedOn": "2024-12-10T09:31:00Z"}});
    let st = VerifiedStatement::new(INTOTO_VULNS_V02, &p.to_string(), vec![], None);
    let Ok(Claim::Vulnerabilities(r)) = claim_of(&st) else { panic!("{:?}", claim_of(&st)) };
    assert_eq!(r.findings, load("trivy.json").findings);
    assert_eq!(r.finished_on, time("2024-12-10T09:31:00Z"));
}

#[test]
fn scanner_report_detects_every_bare_format() {
    for (name, scanner) in
        [("trivy.json", "trivy"), ("grype.json", "grype"), ("trivy.sarif", "trivy"), ("grype.sarif", "grype")]
    {
        let text = String::from_utf8(fixture(name)).unwrap();
        assert_eq!(scanner_report(&text).unwrap().scanner, scanner, "{name}");
    }
    let err = scanner_report(&json!({"hello": "world"}).to_string()).unwrap_err();
    assert!(err.contains(UNDERSTOOD), "{err}");
}

#[test]
fn unknown_sarif_producer() {
    let doc = json!({
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "AcmeScan", "rules": [
                {"id": "CVE-2024-1111", "help": {"text": "Package: libacme\nVersion: 2.0\nFixed Version: 2.1"},
                 "properties": {"tags": ["security", "High"]}},
                {"id": "CVE-2024-2222", "properties": {"security-severity": "9.3"}},
                {"id": "ACME-3", "properties": {"security-severity": "0.0"}}
            ]}},
            "invocations": [{"executionSuccessful": true, "endTimeUtc": "2024-12-10T08:00:00Z"}],
            "results": [
                {"ruleId": "CVE-2024-1111", "message": {"text": "libacme is vulnerable"}},
                {"ruleIndex": 1, "message": {"text": "Severity: none given\nPackage: acme-cli"},
                 "locations": [{"physicalLocation": {"artifactLocation": {"uri": "bin/acme"}}}]},
                {"ruleId": "ACME-3", "message": {"text": "no severity at all"}},
                {"ruleId": "CVE-2024-1111", "kind": "pass", "message": {"text": "fixed here"}},
                {"message": {"text": "no rule"}}
            ]
        }]
    });
    let r = parse_report(doc.to_string().as_bytes()).unwrap();
    assert_eq!(r.scanner, "AcmeScan");
    assert_eq!(r.finished_on, time("2024-12-10T08:00:00Z"));
    // Most severe first.
    assert_eq!(ids(&r), ["CVE-2024-2222", "CVE-2024-1111", "ACME-3"]);
    let a = find(&r, "CVE-2024-1111", "libacme", "2.0");
    assert_eq!((a.severity, a.fixed_versions.clone()), (Severity::High, strings(&["2.1"])));
    let b = find(&r, "CVE-2024-2222", "acme-cli", "");
    assert_eq!((b.severity, b.target.as_str()), (Severity::Critical, "bin/acme"));
    assert_eq!(find(&r, "ACME-3", "", "").severity, Severity::Unknown);
}

#[test]
fn bad_input_gives_a_clear_error() {
    for empty in [&b""[..], b"  \n\t"] {
        assert_eq!(parse_report(empty).unwrap_err().to_string(), "not JSON: the input is empty");
    }
    for garbage in [&b"\x00\xff\xfe garbage"[..], b"{\"Results\": [", b"<html></html>", b"SchemaVersion: 2"] {
        let err = parse_report(garbage).unwrap_err().to_string();
        assert!(err.starts_with("not JSON: "), "{err}");
    }
    for unknown in [
        json!({"hello": "world"}),
        json!([1, 2, 3]),
        json!(42),
        json!("a string"),
        json!(null),
        json!({"bomFormat": "CycloneDX", "specVersion": "1.5"}),
    ] {
        let err = parse_report(unknown.to_string().as_bytes()).unwrap_err().to_string();
        assert_eq!(err, format!("not a vulnerability report Portcullis reads ({UNDERSTOOD})"), "{unknown}");
    }
    let provenance = json!({"_type": "https://in-toto.io/Statement/v1",
                            "predicateType": "https://slsa.dev/provenance/v1", "predicate": {}});
    let err = parse_report(provenance.to_string().as_bytes()).unwrap_err();
    assert_eq!(err, ReportError::NotVulnerabilities("https://slsa.dev/provenance/v1".into()));
    let err = err.to_string();
    assert!(err.contains("https://slsa.dev/provenance/v1 is not a vulnerability report") && err.contains(UNDERSTOOD));
}

#[test]
fn malformed_reports_are_errors_not_panics() {
    let cases = [
        json!({"SchemaVersion": 2, "Results": "nope"}),
        json!({"SchemaVersion": 2, "Results": [{"Vulnerabilities": [{"PkgName": "x"}]}]}),
        json!({"SchemaVersion": 2, "CreatedAt": "yesterday", "Results": []}),
        json!({"matches": [{"artifact": {}}], "descriptor": {}}),
        json!({"matches": [], "descriptor": {"timestamp": "not a time"}}),
        json!({"predicateType": COSIGN_VULN_V1, "predicate": {"scanner": {"result": {"foo": 1}}}}),
        json!({"predicateType": COSIGN_VULN_V1, "predicate": "a string"}),
        json!({"predicateType": INTOTO_VULNS_V02, "predicate": {"scanner": {"result": 7}}}),
        json!({"predicateType": INTOTO_VULNS_V02, "predicate": {"scanner": {"result": {"vulnerabilities": 7}}}}),
        json!({"predicateType": INTOTO_VULNS_V02, "predicate": []}),
        json!({"scanner": {"result": [{"id": "CVE-1"}]}, "metadata": {"scanFinishedOn": "tomorrow"}}),
    ];
    for c in cases {
        assert!(parse_report(c.to_string().as_bytes()).is_err(), "{c}");
    }
    // Odd but readable shapes never panic; SARIF with nothing in it is empty.
    let odd = [
        json!({"version": "2.1.0", "runs": []}),
        json!({"version": "2.1.0", "runs": [{}]}),
        json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "Trivy", "rules": 3}},
                                             "results": [1, "x", null, {}]}]}),
        json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "grype"}},
                                             "results": [{"ruleId": "X", "message": {"text": "A"}}]}]}),
        json!({"SchemaVersion": 2}),
        json!({"matches": [], "source": null}),
        json!({"scanner": {"result": [{"id": "CVE-1", "severity": "HIGH", "annotations": "x"}]}}),
    ];
    for c in odd {
        assert!(parse_report(c.to_string().as_bytes()).is_ok(), "{c}");
    }
}

#[test]
fn vendor_advisories_fixing_several_cves_do_not_merge_them() {
    // Grype: two ALAS-like records of one package, sharing a related CVE.
    let doc = json!({"matches": [
        {"vulnerability": {"id": "ALAS-2024-1", "severity": "High"},
         "relatedVulnerabilities": [{"id": "CVE-2024-10"}, {"id": "CVE-2024-11"}],
         "artifact": {"name": "curl", "version": "8.0"}},
        {"vulnerability": {"id": "ALAS-2024-2", "severity": "Low"},
         "relatedVulnerabilities": [{"id": "CVE-2024-11"}, {"id": "CVE-2024-12"}],
         "artifact": {"name": "curl", "version": "8.0"}}
    ], "descriptor": {"name": "grype"}});
    let r = parse_report(doc.to_string().as_bytes()).unwrap();
    assert_eq!(ids(&r), ["ALAS-2024-1", "ALAS-2024-2"]);
    assert_eq!(r.findings[0].aliases, strings(&["CVE-2024-10"]));
}

#[test]
fn dedup_keeps_the_most_severe_listing() {
    let f = |id: &str, aliases: &[&str], severity| Finding {
        id: id.into(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        severity,
        package: "pkg".into(),
        installed_version: "1.0".into(),
        fixed_versions: vec![],
        fix_state: FixState::Unknown,
        published: None,
        cvss: None,
        target: String::new(),
        purl: None,
    };
    let r = VulnReport {
        scanner: "x".into(),
        finished_on: None,
        findings: vec![f("GHSA-1", &["CVE-1"], Severity::Unknown), f("CVE-1", &["GHSA-1"], Severity::Critical)],
        vex: None,
        sbom: None,
    }
    .dedup();
    assert_eq!(r.findings.len(), 1);
    assert_eq!(r.findings[0].severity, Severity::Critical);
}

/// Grype's own `-o cyclonedx-json` golden (anchore/grype, vendored in
/// `tests/fixtures/reports/upstream/`): the same findings as its JSON
/// presenter's golden gives for the same matches.
#[test]
fn cyclonedx_from_grype_upstream() {
    let r = load("upstream/grype-cyclonedx-image.json");
    assert_eq!(r.scanner, "grype");
    assert_eq!(r.finished_on, time("2026-03-19T11:34:26-04:00"));
    let one = find(&r, "CVE-1999-0001", "package-1", "1.1.1");
    // Grype's own rating (no source) names the severity, whatever its score.
    assert_eq!((one.severity, one.cvss), (Severity::Low, Some(8.2)));
    // This version of the golden has no version ranges (newer Grype writes
    // `unaffected` ranges from its fixed versions: see `cyclonedx::tests`).
    assert!(one.fixed_versions.is_empty());
    assert_eq!(one.target, "/foo/bar/somefile-1.txt");
    assert_eq!(one.purl, None);
    let two = find(&r, "CVE-1999-0002", "package-2", "2.2.2");
    assert_eq!(two.severity, Severity::Critical);
    assert!(two.fixed_versions.is_empty());
    assert_eq!(two.purl.as_deref(), Some("pkg:deb/package-2@2.2.2"));
    assert_eq!(counts(&r), ([1, 0, 0, 1, 0], 0));
}

/// Trivy's own `--format cyclonedx` golden (aquasecurity/trivy,
/// `integration/testdata/fluentd-multiple-lockfiles-short.cdx.json.golden`):
/// the severities and fixed versions Trivy's JSON golden for the same image
/// gives (`fluentd-multiple-lockfiles.json.golden`).
#[test]
fn cyclonedx_from_trivy_upstream() {
    let r = load("upstream/trivy-cyclonedx-fluentd.json");
    assert_eq!(r.scanner, "trivy");
    assert_eq!(r.finished_on, time("2021-08-25T12:20:30Z"));
    assert_eq!(r.findings.len(), 3, "{:?}", ids(&r));
    // (id, package, version, severity as Trivy's JSON has it, fixed)
    let rows: [(&str, &str, &str, Severity, &[&str]); 3] = [
        ("CVE-2019-18224", "libidn2-0", "2.0.5-1", Severity::Critical, &["2.0.5-1+deb10u1"]),
        ("CVE-2019-18276", "bash", "5.0-4", Severity::Low, &[]),
        ("CVE-2020-8165", "activesupport", "6.0.2.1", Severity::High, &["6.0.3.1", "5.2.4.3"]),
    ];
    for (id, package, version, severity, fixed) in rows {
        let f = find(&r, id, package, version);
        assert_eq!((f.severity, f.fixed_versions.clone()), (severity, strings(fixed)), "{id}");
    }
    let bash = find(&r, "CVE-2019-18276", "bash", "5.0-4");
    assert_eq!(bash.purl.as_deref(), Some("pkg:deb/debian/bash@5.0-4?distro=debian-10.2"));
    assert_eq!(bash.published, time("2019-11-28T01:15:00Z"));
    let gem = find(&r, "CVE-2020-8165", "activesupport", "6.0.2.1");
    assert_eq!(gem.target, "var/lib/gems/2.5.0/specifications/activesupport-6.0.2.1.gemspec");
}

/// A CycloneDX scan is read alone, inside a cosign vuln predicate, and as
/// the predicate of a statement of type `https://cyclonedx.org/bom`; a
/// CycloneDX SBOM (no `vulnerabilities`) is not a scan.
#[test]
fn cyclonedx_alone_in_a_cosign_predicate_and_as_a_statement() {
    let bom: serde_json::Value = serde_json::from_slice(&fixture("upstream/trivy-cyclonedx-fluentd.json")).unwrap();
    let cosign = json!({"scanner": {"uri": "pkg:github/aquasecurity/trivy", "result": bom},
                        "metadata": {"scanFinishedOn": "2021-08-25T12:30:00Z"}});
    let statement = json!({"_type": "https://in-toto.io/Statement/v1", "subject": [],
                           "predicateType": CYCLONEDX_BOM, "predicate": bom});
    for doc in [&bom, &cosign, &statement] {
        let r = parse_report(doc.to_string().as_bytes()).unwrap();
        assert_eq!(counts(&r), ([1, 1, 0, 1, 0], 2), "{doc}");
    }
    let r = parse_report(cosign.to_string().as_bytes()).unwrap();
    assert_eq!(r.finished_on, time("2021-08-25T12:30:00Z"));

    // Trivy writes an empty list into SBOMs too: as its own predicate, an
    // empty list is no scan; inside a cosign vuln predicate it is a clean one.
    let empty = json!({"bomFormat": "CycloneDX", "specVersion": "1.6", "components": [], "vulnerabilities": []});
    let empty_statement = json!({"_type": "https://in-toto.io/Statement/v1", "subject": [],
                                 "predicateType": CYCLONEDX_BOM, "predicate": empty});
    assert_eq!(
        parse_report(empty_statement.to_string().as_bytes()),
        Err(ReportError::NotVulnerabilities(CYCLONEDX_BOM.to_string()))
    );
    let clean = json!({"scanner": {"uri": "pkg:github/aquasecurity/trivy", "result": empty}});
    assert_eq!(parse_report(clean.to_string().as_bytes()).unwrap().findings, vec![]);
    let sbom = json!({"bomFormat": "CycloneDX", "specVersion": "1.6", "components": []});
    let sbom_statement = json!({"_type": "https://in-toto.io/Statement/v1", "subject": [],
                                "predicateType": CYCLONEDX_BOM, "predicate": sbom});
    assert_eq!(parse_report(sbom.to_string().as_bytes()), Err(ReportError::Unknown));
    assert_eq!(
        parse_report(sbom_statement.to_string().as_bytes()),
        Err(ReportError::NotVulnerabilities(CYCLONEDX_BOM.to_string()))
    );
}

#[test]
fn a_verified_cyclonedx_attestation_is_a_scan_and_an_sbom_and_one_without_vulnerabilities_an_sbom() {
    let bom: serde_json::Value = serde_json::from_slice(&fixture("upstream/grype-cyclonedx-image.json")).unwrap();
    let st = VerifiedStatement::new(CYCLONEDX_BOM, &bom.to_string(), vec![], None);
    // A scan, and an SBOM too: its components, for a tier's licences.
    let Ok(Claim::Vulnerabilities(mut scan)) = claim_of(&st) else { panic!("a scan") };
    let sbom = scan.sbom.take().expect("the scan's components");
    assert_eq!(sbom.format, "CycloneDX");
    assert!(!sbom.packages.is_empty());
    assert_eq!(scan, load("upstream/grype-cyclonedx-image.json"));
    let sbom = json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": [{"name": "x"}]});
    let st = VerifiedStatement::new(CYCLONEDX_BOM, &sbom.to_string(), vec![], None);
    let want = crate::evidence::sbom::Sbom {
        format: "CycloneDX",
        packages: vec![crate::evidence::sbom::Package { name: "x".into(), ..Default::default() }],
    };
    assert_eq!(claim_of(&st), Ok(Claim::Sbom(std::sync::Arc::new(want))));
    // An SBOM past the bound does not verify into a claim: it is unreadable.
    let spdx = json!({"spdxVersion": "SPDX-2.3", "packages": vec![json!({}); crate::evidence::sbom::MAX_PACKAGES + 1]});
    let st = VerifiedStatement::new(crate::evidence::sbom::SPDX_DOCUMENT, &spdx.to_string(), vec![], None);
    assert!(claim_of(&st)
        .unwrap_err()
        .to_string()
        .contains("SBOM: SPDX document: a list has more than 100000 entries"));
}

/// A predicate kept whole for conditions is read within its bound: a
/// larger one is not kept, and why is kept instead.
#[test]
fn statements_are_kept_within_their_bound() {
    use crate::attest::VerifiedStatement;
    let small =
        VerifiedStatement::new("https://example.com/coverage/v1", r#"{"lines": {"percent": 87.5}}"#, vec![], None);
    let kept = super::Statement::of(&small);
    assert_eq!(kept.predicate, Ok(serde_json::json!({"lines": {"percent": 87.5}})));
    // A million tiny objects: each charged far more than its few bytes.
    let huge = format!("[{}{{}}]", "{},".repeat(1_000_000));
    let st = VerifiedStatement::new("https://example.com/coverage/v1", &huge, vec![], None);
    let kept = super::Statement::of(&st);
    let e = kept.predicate.unwrap_err();
    assert!(e.starts_with("the predicate is not kept for conditions: the document would take more than 16 MiB"), "{e}");
}

/// The commit built, from real provenance: GitHub's artifact attestation
/// (cli/cli's test data, vendored in tests/fixtures/keyless) names it as the
/// `gitCommit` of its git dependency; SLSA v0.2 as `configSource.digest.sha1`.
#[test]
fn provenance_names_the_commit_built() {
    use base64::Engine as _;
    let path =
        format!("{}/tests/fixtures/keyless/reusable-workflow-attestation.sigstore.json", env!("CARGO_MANIFEST_DIR"));
    let bundle: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let payload =
        base64::engine::general_purpose::STANDARD.decode(bundle["dsseEnvelope"]["payload"].as_str().unwrap()).unwrap();
    let statement: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    let p = provenance(SLSA_PROVENANCE_V1, &statement["predicate"]).unwrap();
    assert_eq!(p.source_repository.as_deref(), Some("https://github.com/malancas/attest-demo"));
    assert_eq!(p.source_commit.as_deref(), Some("95baf27389e83e6a5c48f42e190d48d7abcea19e"));

    let commit = "a1b2c3d4e5f60718293a4b5c6d7e8f9011223344";
    let v02 = json!({"builder": {"id": "https://ci.example/builder"},
                     "invocation": {"configSource": {"uri": "git+https://git.example/acme/shop@refs/heads/main",
                                                     "digest": {"sha1": commit}}}});
    let p = provenance(SLSA_PROVENANCE_V02, &v02).unwrap();
    assert_eq!(p.source_commit.as_deref(), Some(commit));
    // From the materials when the config source names none; not a commit
    // when it does not look like one.
    let v02 = json!({"builder": {"id": "b"}, "materials": [
        {"uri": "pkg:docker/alpine@3.19", "digest": {"sha256": "00"}},
        {"uri": "git+https://git.example/acme/shop", "digest": {"gitCommit": commit.to_uppercase()}}]});
    assert_eq!(provenance(SLSA_PROVENANCE_V02, &v02).unwrap().source_commit.as_deref(), Some(commit));
    let v1 = json!({"runDetails": {"builder": {"id": "b"}}, "buildDefinition": {"resolvedDependencies": [
        {"uri": "git+https://git.example/acme/shop", "digest": {"gitCommit": "main; rm -rf /"}}]}});
    assert_eq!(provenance(SLSA_PROVENANCE_V1, &v1).unwrap().source_commit, None);
}
