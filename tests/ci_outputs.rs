//! `portcullis check --output FORMAT[=FILE]`: every format of one decision,
//! from the real binary against a real registry and cosign attestations,
//! each read back by a real consumer: SARIF against the official 2.1.0
//! schema and by Portcullis' own SARIF reader, JUnit XML by a JUnit parser;
//! the GitHub commands, job summary and GitLab code-quality report field by
//! field (no GitLab schema is vendored; the unit tests in
//! src/cli/outputs/tests.rs check the workflow-command escaping); the SLSA
//! verification summary field by field against its specification (no JSON
//! schema of it is published), its inputs fetched back from the registry,
//! then signed and verified by the real cosign.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

fn portcullis(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .env_remove("GITHUB_STEP_SUMMARY")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn sarif_schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sarif-2.1.0/sarif-schema-2.1.0.json");
    serde_json::from_str(&read(Path::new(path))).unwrap()
}

/// One decision, several outputs: the criticals image denied in production
/// (2 criticals over the limit, the low within none), the clean one
/// admitted. The JSON on stdout is what it always was; every file renders
/// the same decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_decision_every_format_read_back_by_its_consumer() {
    let w = world().await;
    let clean_img = w.image("shop/api", "clean", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let crit_img = w.image("shop/api", "crit", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    let dir = w.cosign.path();
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, &w.policy).unwrap();
    let policy = policy.to_str().unwrap();
    let file = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let (sarif, junit) = (file("out.sarif"), file("out.xml"));
    let (github, markdown, gitlab, step_summary) =
        (file("github.txt"), file("summary.md"), file("gl-code-quality.json"), file("step-summary.md"));
    // An earlier step's summary stays: each step appends its own.
    std::fs::write(&step_summary, "earlier step\n").unwrap();
    let args = [
        "check",
        &clean_img,
        &crit_img,
        "--policy",
        policy,
        "--tier",
        "production",
        "--output",
        "json",
        "--output",
        &format!("sarif={sarif}"),
        "--output",
        &format!("junit={junit}"),
        "--output",
        &format!("github={github}"),
        "--output",
        &format!("markdown={markdown}"),
        "--output",
        &format!("gitlab={gitlab}"),
    ];
    let (code, out, err) = portcullis(&args, &[("GITHUB_STEP_SUMMARY", &step_summary)]);
    assert_eq!(code, 1, "{out}\n{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["allowed"], false);
    assert_eq!(json["tier"], "production");
    assert_eq!(json["verdicts"].as_array().unwrap().len(), 2);

    // SARIF: valid against the official schema.
    let log: Value = serde_json::from_str(&read(Path::new(&sarif))).unwrap();
    let schema = sarif_schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&log).map(|e| format!("{}: {e}", e.instance_path())).collect();
    assert!(errors.is_empty(), "SARIF against the 2.1.0 schema:\n{}", errors.join("\n"));
    // What code scanning needs of each result and rule.
    let run = &log["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let results = run["results"].as_array().unwrap();
    let rule = |id: &str| rules.iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("no rule {id}: {rules:?}"));
    let limit = rule("portcullis/vulnerabilities/limit");
    assert!(limit["help"]["text"].as_str().unwrap().contains("Upgrade"), "{limit}");
    let cve = rule("portcullis/vulnerability/CVE-2024-1111");
    assert_eq!(cve["properties"]["security-severity"], "9.5");
    assert!(cve["help"]["text"].as_str().unwrap().contains("Upgrade openssl to 3.0.13"), "{cve}");
    for r in results {
        let index = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], r["ruleId"], "{r}");
        let uri = r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].as_str().unwrap();
        // The repository as a relative reference: the port's colon escaped.
        assert!(uri.starts_with("127.0.0.1%3A") && uri.ends_with("/shop/api"), "{r}");
        assert_eq!(r["partialFingerprints"].as_object().unwrap().len(), 1, "{r}");
    }
    // (rule, level, message contains): the denial reason and each counted finding.
    let rows = [
        ("portcullis/vulnerabilities/limit", "error", "2 critical vulnerabilities exceed the limit 0"),
        ("portcullis/vulnerability/CVE-2024-1111", "error", "over the limit 0 of tier production"),
        ("portcullis/vulnerability/CVE-2024-2222", "error", "Package: zlib"),
        ("portcullis/vulnerability/CVE-2024-3333", "note", "tier production sets no limit for low"),
    ];
    assert_eq!(results.len(), rows.len(), "{results:#?}");
    for (id, level, text) in rows {
        let r = results.iter().find(|r| r["ruleId"] == id).unwrap_or_else(|| panic!("no result {id}"));
        assert_eq!(r["level"], level, "{id}");
        assert!(r["message"]["text"].as_str().unwrap().contains(text), "{id}: {r}");
    }
    // The same alert for the next build of the image: fingerprints name the repository, not the digest.
    let fp: Vec<&Value> = results.iter().map(|r| &r["partialFingerprints"]["portcullisImageFinding/v1"]).collect();
    let mut unique = fp.clone();
    unique.dedup();
    assert_eq!(unique.len(), fp.len(), "{fp:?}");
    // Read back by Portcullis' own SARIF reader: the findings, field by field.
    let report = portcullis::evidence::parse_report(read(Path::new(&sarif)).as_bytes()).unwrap();
    let found = |id: &str| report.findings.iter().find(|f| f.id == id).unwrap_or_else(|| panic!("{id}"));
    let openssl = found("portcullis/vulnerability/CVE-2024-1111");
    assert_eq!((openssl.package.as_str(), openssl.installed_version.as_str()), ("openssl", "3.0.1"));
    assert_eq!(openssl.fixed_versions, ["3.0.13"]);
    assert_eq!(openssl.severity, portcullis::evidence::Severity::Critical);
    let bash = found("portcullis/vulnerability/CVE-2024-3333");
    assert_eq!(bash.severity, portcullis::evidence::Severity::Low);
    assert!(bash.fixed_versions.is_empty());

    // JUnit: read by a JUnit parser; a suite per image, a case per tier and check.
    let suites = junit_parser::from_reader(std::io::BufReader::new(std::fs::File::open(&junit).unwrap())).unwrap();
    assert_eq!(suites.suites.len(), 2);
    let suite = |image: &str| suites.suites.iter().find(|s| s.name == image).unwrap();
    let case = |image: &str, name: &str| {
        suite(image)
            .cases
            .iter()
            .find(|c| c.original_name == name)
            .unwrap_or_else(|| panic!("{image}: no {name}"))
            .clone()
    };
    // (image, testcase, status, message contains)
    let rows = [
        (&crit_img, "production scan", "failure", "2 critical vulnerabilities exceed the limit 0"),
        (&crit_img, "production tests", "success", ""),
        (&crit_img, "production provenance", "skipped", "does not check provenance"),
        (&crit_img, "production base-image", "skipped", "does not check base-image"),
        (&crit_img, "production signers", "success", ""),
        (&crit_img, "production freshness", "success", ""),
        (&clean_img, "production scan", "success", ""),
        (&clean_img, "production image", "success", ""),
    ];
    for (image, name, status, text) in rows {
        let c = case(image, name);
        let (got, message) = match &c.status {
            junit_parser::TestStatus::Success => ("success", String::new()),
            junit_parser::TestStatus::Failure(f) => ("failure", f.message.clone()),
            junit_parser::TestStatus::Error(e) => ("error", e.message.clone()),
            junit_parser::TestStatus::Skipped(s) => ("skipped", s.message.clone()),
        };
        assert_eq!(got, status, "{image} {name}: {c:?}");
        assert!(message.contains(text), "{image} {name}: {message}");
        assert_eq!(c.classname.as_deref(), Some("portcullis.production"));
    }
    let failure = case(&crit_img, "production scan");
    let junit_parser::TestStatus::Failure(f) = &failure.status else { unreachable!() };
    assert!(f.text.contains("To fix:\n- upgrade openssl to 3.0.13"), "{}", f.text);
    assert_eq!(suite(&crit_img).failures, 1);
    assert_eq!(suite(&crit_img).cases.len(), 9);

    // GitHub: an ::error per problem of the denied image, nothing for the clean one; the summary appended.
    let commands = read(Path::new(&github));
    let lines: Vec<&str> = commands.lines().collect();
    assert_eq!(lines.len(), 1, "{commands}");
    assert!(lines[0].starts_with("::error title=portcullis%3A "), "{commands}");
    assert!(lines[0].contains("2 critical vulnerabilities exceed the limit 0"), "{commands}");
    let summary = read(Path::new(&markdown));
    assert!(summary.starts_with("## Portcullis: denied (production)"), "{summary}");
    assert!(summary.contains("| production | ❌ denied | ✅ | ❌ | ✅ | – | – | – | – | ✅ | ✅ |"), "{summary}");
    assert!(summary.contains("| production | ✅ admitted | ✅ | ✅ | ✅ | – | – | – | – | ✅ | ✅ |"), "{summary}");
    assert_eq!(read(Path::new(&step_summary)), format!("earlier step\n{summary}"));

    // GitLab code quality: the fields GitLab reads, a fingerprint each, unique.
    let issues: Value = serde_json::from_str(&read(Path::new(&gitlab))).unwrap();
    let issues = issues.as_array().unwrap();
    assert_eq!(issues.len(), 4, "{issues:#?}");
    for i in issues {
        for field in ["description", "check_name", "fingerprint", "severity"] {
            assert!(i[field].as_str().is_some_and(|s| !s.is_empty()), "{field}: {i}");
        }
        assert!(["info", "minor", "major", "critical", "blocker"].contains(&i["severity"].as_str().unwrap()), "{i}");
        assert!(i["location"]["path"].as_str().unwrap().ends_with("/shop/api"), "{i}");
        assert_eq!(i["location"]["lines"]["begin"], 1);
    }
    let mut fingerprints: Vec<&str> = issues.iter().map(|i| i["fingerprint"].as_str().unwrap()).collect();
    fingerprints.sort();
    fingerprints.dedup();
    assert_eq!(fingerprints.len(), issues.len());
    let check = |name: &str| issues.iter().find(|i| i["check_name"] == name).unwrap_or_else(|| panic!("{name}"));
    assert_eq!(check("portcullis/scan/vulnerabilities")["severity"], "blocker");
    assert_eq!(check("portcullis/vulnerability/CVE-2024-1111")["severity"], "critical");
    assert_eq!(check("portcullis/vulnerability/CVE-2024-3333")["severity"], "info");
}

/// Bad outputs are said, and the good ones are still written: an unknown
/// format, a file that cannot be written, a second format to stdout. The
/// exit code is then 2, whatever the decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_outputs_are_errors_and_the_others_are_still_written() {
    let w = world().await;
    let clean_img = w.image("shop/api", "clean", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let dir = w.cosign.path();
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, &w.policy).unwrap();
    let json = dir.join("out.json");
    let unwritable = dir.join("no-such-dir/out.sarif");
    let args = [
        "check".to_string(),
        clean_img.clone(),
        "--policy".into(),
        policy.to_str().unwrap().into(),
        "--tier".into(),
        "production".into(),
        "--output".into(),
        "yaml".into(),
        "--output".into(),
        format!("sarif={}", unwritable.display()),
        "--output".into(),
        format!("json={}", json.display()),
        "--output".into(),
        "text".into(),
        "--output".into(),
        "json".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = portcullis(&args, &[]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(out.starts_with("ADMIT  "), "{out}");
    assert!(err.contains("unknown format \"yaml\" (known: text, json, sarif"), "{err}");
    assert!(err.contains(&format!("writing {}", unwritable.display())), "{err}");
    assert!(err.contains("only one format can go to standard output"), "{err}");
    let written: Value = serde_json::from_str(&read(&json)).unwrap();
    assert_eq!(written["allowed"], true);
}

/// `--tier development,production`: both judged in one run, the answer
/// decided once: exit 1 when any tier denies; every format says each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_tiers_in_one_run() {
    let w = world().await;
    let crit_img = w.image("shop/api", "crit", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    let dir = w.cosign.path();
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, &w.policy).unwrap();
    let policy = policy.to_str().unwrap();
    let junit = dir.join("out.xml");
    let junit_arg = format!("junit={}", junit.display());
    // (case, tiers, exit code, text on stdout)
    let rows = [
        ("warn mode admits", "development", 0, vec!["WARN   "]),
        ("production denies", "development,production", 1, vec!["WARN   ", "DENY   "]),
        ("an undefined tier among them", "development,prod", 2, vec![]),
    ];
    for (case, tiers, want, lines) in rows {
        let (code, out, err) = portcullis(&["check", &crit_img, "--policy", policy, "--tier", tiers], &[]);
        assert_eq!(code, want, "{case}: {out}\n{err}");
        let got: Vec<&str> = out.lines().filter(|l| !l.starts_with(' ') && !l.starts_with("policy")).collect();
        assert_eq!(got.len(), lines.len(), "{case}: {out}");
        for (l, want) in got.iter().zip(lines) {
            assert!(l.starts_with(want), "{case}: {out}");
        }
        if want == 2 {
            assert!(err.contains("tier \"prod\" is not defined"), "{err}");
        }
    }
    let args = [
        "check",
        &crit_img,
        "--policy",
        policy,
        "--tier",
        "development,production",
        "--output",
        "json",
        "--output",
        &junit_arg,
    ];
    let (code, out, _) = portcullis(&args, &[]);
    assert_eq!(code, 1);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["allowed"], false);
    let tiers = json["tiers"].as_array().unwrap();
    assert_eq!(tiers.len(), 2);
    assert_eq!((&tiers[0]["tier"], &tiers[0]["allowed"]), (&Value::from("development"), &Value::from(true)));
    assert_eq!((&tiers[1]["tier"], &tiers[1]["allowed"]), (&Value::from("production"), &Value::from(false)));
    let suites = junit_parser::from_reader(std::io::BufReader::new(std::fs::File::open(&junit).unwrap())).unwrap();
    let suite = &suites.suites[0];
    assert_eq!(suite.cases.len(), 18);
    let case = |name: &str| suite.cases.iter().find(|c| c.original_name == name).unwrap();
    // Admitted in warn mode: it passes, and says what would deny it.
    let dev = case("development scan");
    assert!(dev.status.is_success());
    assert!(dev.system_err.as_deref().unwrap_or_default().contains("(mode warn) despite: 2 critical"), "{dev:?}");
    assert!(case("production scan").status.is_failure());
}

/// Evidence that cannot be gathered: exit 2, and every format says so as
/// an error of the image (SARIF's unverifiable rule, JUnit's error, an
/// `::error` command).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registry_is_an_error_in_every_format() {
    let w = world().await;
    let dir = w.cosign.path();
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, &w.policy).unwrap();
    let (sarif, junit) = (dir.join("out.sarif"), dir.join("out.xml"));
    let args = [
        "check".to_string(),
        "127.0.0.1:1/shop/api:v1".into(),
        "--policy".into(),
        policy.to_str().unwrap().into(),
        "--tier".into(),
        "production".into(),
        "--output".into(),
        "github".into(),
        "--output".into(),
        format!("sarif={}", sarif.display()),
        "--output".into(),
        format!("junit={}", junit.display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = portcullis(&args, &[]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        out.starts_with("::error title=portcullis%3A 127.0.0.1%3A1/shop/api%3Av1 not verified in production::"),
        "{out}"
    );
    assert!(out.contains("registry 127.0.0.1:1 unreachable"), "{out}");
    let log: Value = serde_json::from_str(&read(&sarif)).unwrap();
    let run = &log["runs"][0];
    assert_eq!(run["results"][0]["ruleId"], "portcullis/image/unverifiable");
    assert_eq!(run["results"][0]["level"], "error");
    assert_eq!(run["invocations"][0]["executionSuccessful"], false);
    let validator = jsonschema::validator_for(&sarif_schema()).unwrap();
    assert!(validator.is_valid(&log));
    let suites = junit_parser::from_reader(std::io::BufReader::new(std::fs::File::open(&junit).unwrap())).unwrap();
    let image = suites.suites[0].cases.iter().find(|c| c.original_name == "production image").unwrap();
    assert!(image.status.is_error(), "{image:?}");
}

const VSA: &str = "https://slsa.dev/verification_summary/v1";

/// A Statement holding a VSA, checked field by field against the SLSA
/// specification (https://slsa.dev/spec/v1.1/verification_summary, the
/// in-toto Statement v1, ResourceDescriptor and field types); no JSON
/// schema of the VSA is published to vendor. Returns its predicate.
fn valid_vsa(s: &Value) -> &Value {
    assert_eq!(s["_type"], "https://in-toto.io/Statement/v1", "{s}");
    valid_vsa_in(s)
}

/// [`valid_vsa`], in a Statement of either version (cosign v2 writes its own
/// Statement v0.1 around the predicate it signs).
fn valid_vsa_in(s: &Value) -> &Value {
    let hex64 = |v: &Value| {
        v.as_str().is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
    };
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    // The Statement: a subject with a digest each, the predicate type.
    let subject = s["subject"].as_array().unwrap();
    assert_eq!(subject.len(), 1, "{s}");
    assert!(hex64(&subject[0]["digest"]["sha256"]), "{s}");
    assert_eq!(s["predicateType"], VSA);
    let p = &s["predicate"];
    // Only the predicate's own fields (extension fields would be URIs).
    let known = [
        "verifier",
        "timeVerified",
        "resourceUri",
        "policy",
        "inputAttestations",
        "verificationResult",
        "verifiedLevels",
        "dependencyLevels",
        "slsaVersion",
    ];
    for k in keys(p) {
        assert!(known.contains(&k.as_str()), "unknown field {k}: {p}");
    }
    // verifier: object, required; id a TypeURI (scheme and authority lowercase); version string -> string.
    let id = p["verifier"]["id"].as_str().unwrap();
    let (scheme, rest) = id.split_once("://").unwrap();
    let authority = rest.split('/').next().unwrap();
    assert!(!scheme.is_empty() && scheme == scheme.to_lowercase() && authority == authority.to_lowercase(), "{id}");
    for (k, v) in p["verifier"]["version"].as_object().unwrap() {
        assert!(!k.is_empty() && v.is_string(), "{k}: {v}");
    }
    // timeVerified: RFC 3339, UTC ("Z").
    let t = p["timeVerified"].as_str().unwrap();
    assert!(t.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{t}");
    // resourceUri: required, a string.
    assert!(p["resourceUri"].as_str().is_some_and(|u| !u.is_empty()), "{p}");
    // policy: a ResourceDescriptor that MUST have a uri, SHOULD have a digest.
    assert!(p["policy"]["uri"].as_str().is_some_and(|u| !u.is_empty()), "{p}");
    assert!(hex64(&p["policy"]["digest"]["sha256"]), "{p}");
    // inputAttestations: each MUST have a digest, SHOULD have a uri.
    for a in p["inputAttestations"].as_array().unwrap() {
        assert!(hex64(&a["digest"]["sha256"]), "{a}");
        assert!(a["uri"].as_str().is_some_and(|u| !u.is_empty()), "{a}");
    }
    // verificationResult: PASSED or FAILED.
    let result = p["verificationResult"].as_str().unwrap();
    assert!(["PASSED", "FAILED"].contains(&result), "{result}");
    // verifiedLevels: SlsaResults, custom ones never starting with SLSA_, one level per SLSA track,
    // FAILED exactly when the verification failed.
    let levels: Vec<&str> = p["verifiedLevels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    let slsa = [
        "SLSA_BUILD_LEVEL_UNEVALUATED",
        "SLSA_BUILD_LEVEL_0",
        "SLSA_BUILD_LEVEL_1",
        "SLSA_BUILD_LEVEL_2",
        "SLSA_BUILD_LEVEL_3",
    ];
    assert!(levels.iter().all(|l| !l.starts_with("SLSA_") || slsa.contains(l)), "{levels:?}");
    assert!(levels.iter().filter(|l| l.starts_with("SLSA_BUILD_")).count() <= 1, "{levels:?}");
    assert_eq!(levels.contains(&"FAILED"), result == "FAILED", "{levels:?}");
    // dependencyLevels: absent (no claim), or SlsaResult -> count.
    if let Some(d) = p.get("dependencyLevels") {
        assert!(d.as_object().unwrap().values().all(|n| n.is_u64()), "{d}");
    }
    // slsaVersion: <MAJOR>.<MINOR>.
    let version = p["slsaVersion"].as_str().unwrap();
    let (major, minor) = version.split_once('.').unwrap();
    assert!(major.parse::<u32>().is_ok() && minor.parse::<u32>().is_ok(), "{version}");
    p
}

/// `--output vsa=FILE` from a real check: a Statement per image (JSON
/// Lines), each valid against the specification, the inputs fetched back
/// from the registry by the URIs given; the passing image's predicate is
/// signed and attached with the real cosign and verified back, so the
/// decision travels with the image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vsa_from_a_real_check_is_signed_and_verified_by_cosign() {
    use sha2::Digest as _;
    let w = world().await;
    let clean_img = w.image("shop/api", "clean", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let crit_img = w.image("shop/api", "crit", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    let dir = w.cosign.path();
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, &w.policy).unwrap();
    let vsa = dir.join("vsa.jsonl");
    let args = [
        "check".to_string(),
        clean_img.clone(),
        crit_img.clone(),
        "--policy".into(),
        policy.to_str().unwrap().into(),
        "--tier".into(),
        "development,production".into(),
        "--output".into(),
        format!("vsa={}", vsa.display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = portcullis(&args, &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    let text = read(&vsa);
    let statements: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(statements.len(), 2, "{text}");
    let hex_of = |image: &str| image.rsplit("sha256:").next().unwrap().to_string();
    let policy_sha = hex::encode(sha2::Sha256::digest(w.policy.as_bytes()));
    // (image, result, levels)
    let rows = [
        (&clean_img, "PASSED", vec!["PORTCULLIS_TIER_development", "PORTCULLIS_TIER_production"]),
        // Admitted in development's warn mode despite its criticals: not a pass.
        (&crit_img, "FAILED", vec!["FAILED"]),
    ];
    for ((image, result, levels), s) in rows.iter().zip(&statements) {
        let p = valid_vsa(s);
        let (name, _) = image.split_once('@').unwrap();
        assert_eq!(s["subject"][0]["name"], name);
        assert_eq!(s["subject"][0]["digest"]["sha256"], hex_of(image));
        assert_eq!(p["verifier"]["id"], "https://portcullis.dev/check");
        assert_eq!(p["verifier"]["version"]["portcullis"], env!("CARGO_PKG_VERSION"));
        assert_eq!(p["resourceUri"], image.as_str());
        assert_eq!(p["policy"]["uri"], format!("file://{}", policy.display()));
        assert_eq!(p["policy"]["digest"]["sha256"], policy_sha.as_str());
        assert_eq!(p["verificationResult"], *result);
        assert_eq!(p["verifiedLevels"], serde_json::json!(levels));
        let verified = chrono::DateTime::parse_from_rfc3339(p["timeVerified"].as_str().unwrap()).unwrap();
        assert!((chrono::Utc::now() - verified.to_utc()).num_seconds().abs() < 300, "{verified}");
        // The scan and the test result, each fetched back by its URI: the envelope whose digest is given,
        // a DSSE envelope about this image.
        let inputs = p["inputAttestations"].as_array().unwrap();
        assert_eq!(inputs.len(), 2, "{inputs:?}");
        let mut types = Vec::new();
        for a in inputs {
            let (repo_ref, blob) = a["uri"].as_str().unwrap().split_once('@').unwrap();
            assert_eq!(repo_ref, name);
            let bytes = w.reg.get_blob("shop/api", blob).await;
            assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), a["digest"]["sha256"].as_str().unwrap());
            let envelope: Value = serde_json::from_slice(&bytes).unwrap();
            use base64::Engine as _;
            let payload =
                base64::engine::general_purpose::STANDARD.decode(envelope["payload"].as_str().unwrap()).unwrap();
            let statement: Value = serde_json::from_slice(&payload).unwrap();
            assert_eq!(statement["subject"][0]["digest"]["sha256"], hex_of(image));
            types.push(statement["predicateType"].as_str().unwrap().to_string());
        }
        types.sort();
        assert_eq!(types, ["https://cosign.sigstore.dev/attestation/vuln/v1", TEST_RESULT]);
    }

    // Signed and attached with the real cosign, as a pipeline would: the predicate part.
    let predicate = &statements[0]["predicate"];
    w.cosign.attest("ci", &clean_img, VSA, predicate);
    let verified = w.cosign.verify_attestation("ci", &clean_img, VSA).unwrap();
    assert_eq!(verified.len(), 1, "{verified:?}");
    assert_eq!(verified[0]["predicateType"], VSA);
    assert_eq!(verified[0]["subject"][0]["digest"]["sha256"], hex_of(&clean_img));
    assert_eq!(&verified[0]["predicate"], predicate);
    valid_vsa_in(&verified[0]);
    // Only with the key that signed it.
    let rogue = w.cosign.verify_attestation("rogue", &clean_img, VSA);
    assert!(rogue.is_err(), "{rogue:?}");
}

/// A VSA of an image whose digest is not known is an error (nothing
/// written); an image pinned by digest that could not be judged is a
/// FAILED one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vsa_of_an_image_not_judged_is_never_passed() {
    let dir = tempfile::tempdir().unwrap();
    let vsa = dir.path().join("vsa.jsonl");
    let pinned = format!("127.0.0.1:1/shop/api@sha256:{}", "0".repeat(64));
    // (case, image, exit code, written)
    let rows = [("a tag", "127.0.0.1:1/shop/api:v1", 2, false), ("pinned by digest", pinned.as_str(), 2, true)];
    for (case, image, want, written) in rows {
        let _ = std::fs::remove_file(&vsa);
        let arg = format!("vsa={}", vsa.display());
        let (code, out, err) = portcullis(&["check", image, "--tier", "production", "--output", &arg], &[]);
        assert_eq!(code, want, "{case}: {out}\n{err}");
        assert_eq!(vsa.exists(), written, "{case}: {err}");
        if written {
            let s: Value = serde_json::from_str(&read(&vsa)).unwrap();
            let p = valid_vsa(&s);
            assert_eq!(p["verificationResult"], "FAILED", "{case}");
            assert_eq!(p["verifiedLevels"], serde_json::json!(["FAILED"]), "{case}");
            assert_eq!(p["resourceUri"], image, "{case}");
            assert_eq!(p["inputAttestations"], serde_json::json!([]), "{case}");
            // The embedded default policy, by its place in the source.
            assert!(p["policy"]["uri"].as_str().unwrap().starts_with("pkg:github/portcullis-dev/portcullis@v"), "{p}");
        } else {
            assert!(err.contains("--output vsa: a verification summary names its image by digest"), "{case}: {err}");
            assert!(err.contains("127.0.0.1:1/shop/api:v1: "), "{case}: {err}");
        }
    }
}
