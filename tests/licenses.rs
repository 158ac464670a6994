//! A tier's `licenses` rule through the real binary: SBOMs attested with
//! cosign (`--type spdxjson`, `--type cyclonedx`) to a real registry, then
//! `portcullis check` and its JUnit output.

use crate::common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};

fn portcullis(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/sbom/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// A CycloneDX 1.6 SBOM as Syft writes one for a Debian image (written for
/// this test): bash under GPL-3.0-only, the rest permissive.
fn gpl_sbom() -> Value {
    let component = |name: &str, version: &str, licenses: Value| {
        json!({"type": "library", "bom-ref": format!("pkg:deb/debian/{name}@{version}"), "name": name,
               "version": version, "purl": format!("pkg:deb/debian/{name}@{version}?distro=debian-12"),
               "licenses": licenses})
    };
    json!({"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
           "metadata": {"timestamp": "2026-06-01T00:00:00Z", "tools": {"components": [{"type": "application", "name": "syft"}]},
                        "component": {"type": "container", "name": "shop/licences"}},
           "components": [
               component("bash", "5.2.15-2+b7", json!([{"license": {"id": "GPL-3.0-only"}}])),
               component("zlib1g", "1:1.2.13", json!([{"license": {"id": "Zlib"}}])),
               component("libssl3", "3.0.15", json!([{"expression": "Apache-2.0 OR GPL-3.0-only"}]))]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sbom_attested_with_cosign_passes_or_names_the_package_denied() {
    let w = world().await;
    let tier =
        "    licensed:\n      mode: enforce\n      licenses: { signedBy: [ci], deny: [GPL-3.0-only, AGPL-3.0-only] }\n";
    let policy_text = format!("{}{tier}", w.policy);
    let dir = w.cosign.path();
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, &policy_text).unwrap();
    let policy = policy.to_str().unwrap();
    let (code, out, err) = portcullis(&["policy", "lint", policy]);
    assert_eq!(code, 0, "lint: {out} {err}");

    // The SPDX project's example SBOM (spdxjson), CycloneDX's own example
    // BOM (cyclonedx), and an SBOM listing bash under GPL-3.0-only.
    let spdx = w.reg.push_image("shop/licences", "spdx", "spdx").await;
    w.cosign.attest_text("ci", &spdx, "spdxjson", &fixture("spdx-example11-sbom.spdx.json"));
    let cdx = w.reg.push_image("shop/licences", "cdx", "cdx").await;
    w.cosign.attest_text("ci", &cdx, "cyclonedx", &fixture("cyclonedx-valid-bom-1.6.json"));
    let gpl = w.reg.push_image("shop/licences", "gpl", "gpl").await;
    w.cosign.attest("ci", &gpl, "cyclonedx", &gpl_sbom());
    let rogue = w.reg.push_image("shop/licences", "rogue", "rogue").await;
    w.cosign.attest_text("rogue", &rogue, "spdxjson", &fixture("spdx-example11-sbom.spdx.json"));

    // (case, image, exit code, text on stdout)
    let rows = [
        ("SPDX, permissive and a choice", spdx.as_str(), 0, "ADMIT"),
        ("CycloneDX, a name only is unknown: a warning", cdx.as_str(), 0, "myframework@1.0.0 (pkg:maven/com.example/myframework@1.0.0?packaging=war) (\"Some random license\" is not an SPDX expression)"),
        (
            "GPL-3.0-only denied, the package named",
            gpl.as_str(),
            1,
            "1 package in the CycloneDX SBOM licensed in a way tier licensed does not accept (it denies GPL-3.0-only, AGPL-3.0-only): bash@5.2.15-2+b7 (pkg:deb/debian/bash@5.2.15-2+b7?distro=debian-12) under GPL-3.0-only (GPL-3.0-only denied)",
        ),
        ("signed by a key the tier does not accept", rogue.as_str(), 1, "SBOM"),
    ];
    for (case, image, code, text) in rows {
        let (got, out, err) = portcullis(&["check", image, "--policy", policy, "--tier", "licensed"]);
        assert_eq!(got, code, "{case}: stdout {out} stderr {err}");
        assert!(out.contains(text), "{case}: want {text:?} in {out}");
    }
    // libssl3 (Apache-2.0 OR GPL-3.0-only) is not named: the choice is the user's.
    let (_, out, _) = portcullis(&["check", &gpl, "--policy", policy, "--tier", "licensed"]);
    assert!(!out.contains("libssl3"), "{out}");

    // The verdict cites the SBOM; JUnit files the denial under `licenses`.
    let junit = dir.join("licences.xml");
    let junit_arg = format!("junit={}", junit.display());
    let (_, out, _) = portcullis(&[
        "check", &gpl, "--policy", policy, "--tier", "licensed", "--output", "json", "--output", &junit_arg,
    ]);
    let out: Value = serde_json::from_str(&out).unwrap();
    let cited = out["verdicts"][0]["attestations"].as_array().unwrap();
    let sbom = cited.iter().find(|c| c["kind"] == "licenses").expect("the SBOM is cited");
    assert_eq!(sbom["predicateType"], "https://cyclonedx.org/bom");
    assert_eq!(sbom["signers"], json!(["ci"]));
    let suites = junit_parser::from_reader(std::io::BufReader::new(std::fs::File::open(&junit).unwrap())).unwrap();
    let case = suites.suites[0].cases.iter().find(|c| c.original_name == "licensed licenses").expect("a licenses case");
    let junit_parser::TestStatus::Failure(f) = &case.status else { panic!("{:?}", case.status) };
    assert!(f.message.contains("bash@5.2.15-2+b7"), "{}", f.message);
}

/// Unknown SPDX ids in `deny` and `allow` are load errors, with where.
#[test]
fn lint_names_an_unknown_licence_id_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    let text = "apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers:\n    ci: { publicKey: x }\n  tiers:\n    t:\n      licenses:\n        signedBy: [ci]\n        deny: [GPL-3.0-only, GPLv3]\n";
    std::fs::write(&policy, text).unwrap();
    let (code, out, err) = portcullis(&["policy", "lint", policy.to_str().unwrap()]);
    assert_ne!(code, 0);
    let said = format!("{out}{err}");
    assert!(said.contains("spec.tiers.t.licenses.deny[1]"), "{said}");
    assert!(said.contains(":10:"), "line 10: {said}");
    assert!(said.contains("\"GPLv3\" is not an SPDX licence id"), "{said}");
}
