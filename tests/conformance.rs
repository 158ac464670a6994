//! The sigstore-conformance suite's bundle-verification cases (vendored in
//! tests/fixtures/sigstore-conformance, see its ORIGIN.md), each run through
//! the verifier Portcullis admits keyless attestations with: a trusted root
//! loaded as a policy's `trustedRoot` file is, the bundle verified offline
//! for the artifact's sha256 digest, then the certificate's identity matched
//! exactly. Cases whose name ends in `fail` must fail; the others must pass.

use std::path::{Path, PathBuf};

use portcullis::attest::{IdentityRule, Match, Root, SignerIdentity};

const DEFAULT_IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const DEFAULT_ISSUER: &str = "https://token.actions.githubusercontent.com";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sigstore-conformance")
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// One case, as the suite runs it: Ok when it verifies.
fn verify_case(case: &Path) -> Result<(), String> {
    use sha2::Digest as _;
    let root_text = read(&case.join("trusted_root.json"))
        .or_else(|| read(&dir().join("trusted_root.public-good.json")))
        .ok_or("no trusted root")?;
    let root = Root::from_json("case", &root_text)?;
    let artifact = std::fs::read(case.join("artifact"))
        .or_else(|_| std::fs::read(dir().join("bundle-verify/a.txt")))
        .map_err(|e| e.to_string())?;
    let digest = hex::encode(sha2::Sha256::digest(&artifact));
    let json = read(&case.join("bundle.sigstore.json")).ok_or("no bundle")?;
    let bundle = sigstore_verify::types::Bundle::from_json(&json).map_err(|e| e.to_string())?;
    if let Some(key) = read(&case.join("key.pub")) {
        return root.verify_with_key(&bundle, &digest, &key).map(|_| ());
    }
    let result = root.verify(&bundle, &digest)?;
    let cert = result.certificate().filter(|_| result.certificate_verified()).ok_or("certificate not verified")?;
    let identity = SignerIdentity::of(cert, "case");
    let trim = |s: String| s.trim().to_string();
    let rule = IdentityRule {
        subject: Match::Exact(read(&case.join("identity")).map(trim).unwrap_or(DEFAULT_IDENTITY.into())),
        issuer: Match::Exact(read(&case.join("issuer")).map(trim).unwrap_or(DEFAULT_ISSUER.into())),
    };
    if !rule.matches(&identity) {
        return Err(format!("signed by {identity}, expected {rule}"));
    }
    Ok(())
}

#[test]
fn sigstore_conformance_bundle_verify_cases() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir().join("bundle-verify"))
        .expect("vendored cases")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    let (mut passed, mut wrong) = (0, Vec::new());
    let (mut must_verify, mut must_fail) = (0, 0);
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let should_verify = !name.ends_with("fail");
        if should_verify {
            must_verify += 1;
        } else {
            must_fail += 1;
        }
        match (verify_case(case), should_verify) {
            (Ok(()), true) | (Err(_), false) => passed += 1,
            (Ok(()), false) => wrong.push(format!("{name}: verified, but must fail")),
            (Err(e), true) => wrong.push(format!("{name}: failed, but must verify: {e}")),
        }
    }
    println!("sigstore-conformance bundle-verify: {passed}/{} as expected", cases.len());
    assert_eq!((cases.len(), must_verify, must_fail), (70, 21, 49), "the vendored suite changed");
    assert!(wrong.is_empty(), "{} of {} cases wrong:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
}
