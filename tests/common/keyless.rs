//! Keyless attestations for tests: `keyless-signer` (tests/keyless-signer),
//! a virtual Sigstore, since no real Fulcio, Rekor or OIDC provider can run
//! here; its bundles are real and verify with cosign and sigstore-go against
//! the root it writes. And how cosign and GitHub attach them to an image.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};

use super::{att_tag, rand_suffix, tool, Registry};

pub const ACTIONS: &str = "https://token.actions.githubusercontent.com";
pub const SLSA_V1: &str = "https://slsa.dev/provenance/v1";
pub const CYCLONEDX: &str = "https://cyclonedx.org/bom";
/// The release workflow the test policies trust.
pub const RELEASE: &str = "https://github.com/acme/shop/.github/workflows/release.yml@refs/heads/main";

/// A virtual Sigstore: its state and trusted root in a directory of its own.
pub struct Sigstore {
    bin: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Sigstore {
    pub fn new() -> Sigstore {
        let bin = tool("PORTCULLIS_KEYLESS_SIGNER", "keyless-signer");
        let dir = tempfile::tempdir().unwrap();
        run(Command::new(&bin).args(["root", "--state"]).arg(dir.path()));
        Sigstore { bin, dir }
    }

    /// Signs `statement` as `identity`, with GitHub's claims for `repo`;
    /// `format` is `bundle`, `legacy` (a Rekor intoto entry) or
    /// `legacy-dsse` (a Rekor dsse entry, cosign v2's default). Returns the
    /// tool's JSON output.
    pub fn sign(&self, statement: &Value, identity: &str, repo: &str, format: &str) -> Value {
        let (format, kind) = match format {
            "legacy-dsse" => ("legacy", "dsse"),
            f => (f, "intoto"),
        };
        let st = self.dir.path().join(format!("statement-{}.json", rand_suffix()));
        std::fs::write(&st, serde_json::to_vec(statement).unwrap()).unwrap();
        let out = run(Command::new(&self.bin)
            .args(["sign", "--state"])
            .arg(self.dir.path())
            .arg("--statement")
            .arg(&st)
            .args(["--identity", identity, "--issuer", ACTIONS, "--format", format, "--rekor-kind", kind])
            .arg("--github-claims")
            .arg(format!("source-repo-uri={repo},source-repo-ref=refs/heads/main,runner-environment=github-hosted")));
        serde_json::from_slice(&out).unwrap()
    }
}

pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// An in-toto Statement v1 about `image` (`host/repo@sha256:…`).
pub fn statement(image: &str, predicate_type: &str, predicate: Value) -> Value {
    let hex = image.rsplit("sha256:").next().unwrap();
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": image.split('@').next().unwrap(), "digest": {"sha256": hex}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    })
}

/// SLSA provenance v1 as `actions/attest-build-provenance` writes it.
pub fn provenance(repo: &str) -> Value {
    json!({
        "buildDefinition": {
            "buildType": "https://actions.github.io/buildtypes/workflow/v1",
            "externalParameters": {"workflow": {"ref": "refs/heads/main", "repository": repo, "path": ".github/workflows/release.yml"}},
            "resolvedDependencies": [{"uri": format!("git+{repo}@refs/heads/main"), "digest": {"gitCommit": "0123456789abcdef0123456789abcdef01234567"}}]
        },
        "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}, "metadata": {"invocationId": "https://github.com/acme/shop/actions/runs/1/attempts/1"}}
    })
}

/// Attaches a sigstore bundle to `image` as an OCI 1.1 referrer, as cosign
/// v3 does on a registry without the referrers API (the `sha256-<hex>` tag).
pub async fn attach_bundle(reg: &Registry, repo: &str, image: &str, bundle: &Value) {
    let digest = image.rsplit('@').next().unwrap();
    let bytes = serde_json::to_vec(bundle).unwrap();
    let media = "application/vnd.dev.sigstore.bundle.v0.3+json";
    let layer = reg.put_blob_public(repo, &bytes).await;
    let empty = reg.put_blob_public(repo, b"{}").await;
    let subject = serde_json::to_vec(&reg.get_manifest(repo, digest).await).unwrap();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": media,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": media, "digest": layer, "size": bytes.len()}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": subject.len()}
    });
    let referrer = reg.put_manifest(repo, &format!("r-{}", rand_suffix()), &manifest).await;
    let size = serde_json::to_vec(&manifest).unwrap().len();
    let tag = format!("sha256-{}", digest.trim_start_matches("sha256:"));
    let mut index = match reg.try_get_manifest(repo, &tag).await {
        Some(index) => index,
        None => json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}),
    };
    index["manifests"].as_array_mut().unwrap().push(
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": referrer, "size": size, "artifactType": media}),
    );
    reg.put_manifest(repo, &tag, &index).await;
}

/// Writes cosign v2's legacy keyless `.att`: the layer's exact bytes, with
/// the certificate, chain and Rekor bundle in its annotations.
pub async fn attach_legacy(reg: &Registry, repo: &str, image: &str, legacy: &Value) {
    let layer = legacy["layer"].as_str().unwrap().as_bytes().to_vec();
    let digest = reg.put_blob_public(repo, &layer).await;
    let config = reg.put_blob_public(repo, b"{}").await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.dsse.envelope.v1+json", "digest": digest, "size": layer.len(), "annotations": legacy["annotations"]}]
    });
    reg.put_manifest(repo, &att_tag(image), &manifest).await;
}

/// Attests `image` with provenance (built from `repo`) and an SBOM, both
/// signed by `who` as `by`, attached as `format` (`bundle` or `legacy`).
pub async fn attest(reg: &Registry, image: &str, who: &Sigstore, by: &str, repo: &str, format: &str) {
    let sbom = json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []});
    // `host/repo@sha256:…`: the repository the image is in.
    let repo_of = image.split_once('/').map(|(_, r)| r.split('@').next().unwrap_or(r)).unwrap();
    let prov = who.sign(&statement(image, SLSA_V1, provenance(repo)), by, repo, format);
    let bom = who.sign(&statement(image, CYCLONEDX, sbom), by, repo, format);
    if format == "bundle" {
        attach_bundle(reg, repo_of, image, &prov).await;
        attach_bundle(reg, repo_of, image, &bom).await;
        return;
    }
    // Both layers in one .att, as cosign appends them.
    attach_legacy(reg, repo_of, image, &prov).await;
    let mut manifest = reg.get_manifest(repo_of, &att_tag(image)).await;
    let layer = bom["layer"].as_str().unwrap().as_bytes().to_vec();
    let d = reg.put_blob_public(repo_of, &layer).await;
    manifest["layers"].as_array_mut().unwrap().push(json!({
        "mediaType": "application/vnd.dsse.envelope.v1+json", "digest": d, "size": layer.len(), "annotations": bom["annotations"]
    }));
    reg.put_manifest(repo_of, &att_tag(image), &manifest).await;
}

/// A policy file next to the virtual Sigstore's root, naming it by a
/// relative path, as a ConfigMap mounted beside the policy would: signer `ci`
/// is the release workflow, keyless; production (namespace `prod`) asks for
/// its provenance from acme on GitHub-hosted runners and a CycloneDX SBOM.
pub fn policy_file(sigstore: &Sigstore) -> PathBuf {
    let p = sigstore.dir.path().join("policy.yaml");
    std::fs::write(
        &p,
        format!(
            r#"apiVersion: portcullis.dev/v1alpha1
kind: PromotionPolicy
spec:
  signers:
    ci:
      keyless:
        trustedRoot: trusted_root.json
        identities:
          - issuer: {ACTIONS}
            subject: {RELEASE}
  namespaceTiers:
    prod: production
  tiers:
    production:
      provenance:
        signedBy: [ci]
        sourceRepositories: ["https://github.com/acme/*"]
        builderIds: ["https://github.com/actions/runner/github-hosted"]
      attestations:
        - {{ predicateType: "{CYCLONEDX}", signedBy: [ci] }}
"#
        ),
    )
    .unwrap();
    p
}
