//! Property-based fuzzing of every parser that reads what a peer or a user
//! sends (proptest, on stable Rust): AdmissionReviews, image references,
//! policies (as `policy lint` reads them), every scanner format, DSSE
//! envelopes and sigstore bundles, credential files, and audit trails.
//!
//! Inputs are the real fixtures (the seed corpus), mutated: bytes flipped,
//! cut, repeated, spliced; and arbitrary text. The properties: no panic (a
//! clear error instead), and `audit verify` never accepts an edited chain.
//! `make test` runs a bounded pass (`PORTCULLIS_FUZZ_CASES`, 256 per target
//! by default); `make fuzz` a long one. A crash found becomes a regression
//! test next to its parser.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn cases() -> u32 {
    std::env::var("PORTCULLIS_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256)
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixtures(dir: &str) -> Vec<Vec<u8>> {
    let mut all: Vec<_> = std::fs::read_dir(format!("{ROOT}/{dir}"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "json" || e == "jsonl" || e == "sarif"))
        .collect();
    all.sort();
    all.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// One edit of a seed: bytes flipped, a cut, a piece repeated, bytes
/// inserted, or a splice of two seeds.
#[derive(Clone, Debug)]
enum Edit {
    Flip(usize, u8),
    Cut(usize),
    Repeat(usize, usize, u8),
    Insert(usize, Vec<u8>),
    Splice(usize, usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    // Bytes that matter to JSON, YAML and base64 more often than others.
    let byte = prop_oneof![any::<u8>(), prop::sample::select(b"{}[]\":,\\0-9aeAZ+/=\n #&*!|>'".to_vec())];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(i, b)| Edit::Flip(i, b)),
        any::<usize>().prop_map(Edit::Cut),
        (any::<usize>(), 1usize..64, 1u8..8).prop_map(|(i, n, k)| Edit::Repeat(i, n, k)),
        (any::<usize>(), prop::collection::vec(byte, 1..32)).prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<usize>(), any::<usize>(), any::<usize>()).prop_map(|(a, b, c)| Edit::Splice(a, b, c)),
    ]
}

fn apply(seeds: &[Vec<u8>], seed: usize, edits: &[Edit]) -> Vec<u8> {
    let mut b = seeds[seed % seeds.len()].clone();
    for e in edits {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match e {
            Edit::Flip(i, v) if !b.is_empty() => {
                let n = b.len();
                b[i % n] = *v;
            }
            Edit::Flip(..) => {}
            Edit::Cut(i) => b.truncate(at(*i, b.len())),
            Edit::Repeat(i, n, k) => {
                let start = at(*i, b.len());
                let piece: Vec<u8> = b[start..(start + n).min(b.len())].to_vec();
                for _ in 0..*k {
                    b.splice(start..start, piece.iter().copied());
                }
            }
            Edit::Insert(i, bytes) => {
                let i = at(*i, b.len());
                b.splice(i..i, bytes.iter().copied());
            }
            Edit::Splice(s, from, to) => {
                let other = &seeds[s % seeds.len()];
                let from = at(*from, other.len());
                let to = at(*to, b.len());
                b.truncate(to);
                b.extend_from_slice(&other[from..]);
            }
        }
    }
    b
}

/// Runs `property` on `cases()` mutations of `seeds` (and the seeds themselves).
fn fuzz(name: &str, seeds: Vec<Vec<u8>>, property: impl Fn(&[u8])) {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    for s in &seeds {
        property(s);
    }
    let mut runner = TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
    let strategy = (any::<usize>(), prop::collection::vec(edit(), 1..6));
    runner
        .run(&strategy, |(seed, edits)| {
            property(&apply(&seeds, seed, &edits));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

#[test]
fn admission_reviews() {
    let mut seeds = fixtures("tests/fixtures/recorded");
    seeds.push(fixture("tests/fixtures/admission-review-pod.json"));
    fuzz("AdmissionReview decoder and the image walker", seeds, |b| {
        if let Ok(review) = portcullis::webhook::review::decode(b) {
            // What a decision then reads of it.
            if let Some(kind) = portcullis::kinds::of(&review.req.kind.group, &review.req.kind.kind) {
                let _ = portcullis::kinds::images(kind, &review.object);
            }
        }
    });
}

/// Image manifests and configs, as the base image rule reads them: no
/// panic, and a base name is never longer than the bound.
#[test]
fn base_image_annotations() {
    let seeds: Vec<Vec<u8>> = [
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"org.opencontainers.image.base.name":"docker.io/library/alpine:3.20","org.opencontainers.image.base.digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}"#,
        r#"{"created":"2026-11-01T10:00:00.5Z","architecture":"amd64","os":"linux"}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    fuzz("base image annotations", seeds, |b| {
        if let Some(a) = portcullis::evidence::base::annotated(b) {
            assert!(a.name.len() <= 512, "{}", a.name.len());
        }
        let _ = portcullis::evidence::base::created(b);
    });
}

#[test]
fn image_references() {
    let seeds: Vec<Vec<u8>> = [
        "nginx",
        "registry.example.com:5000/team/app:v1.2@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "localhost/a/b/c:latest",
        "[::1]:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    fuzz("image references", seeds, |b| {
        let text = String::from_utf8_lossy(b);
        if let Ok(r) = portcullis::image::ImageRef::parse(&text) {
            // What parses prints as the same reference. (The printed form
            // may be refused: the 255-character bound applies to the name as
            // written, before `docker.io/library/` is added, as in the
            // distribution grammar, so `<250 characters>:v1` parses and its
            // full name does not.)
            if let Ok(again) = portcullis::image::ImageRef::parse(&r.to_string()) {
                assert_eq!((again.name(), again.tag, again.digest), (r.name(), r.tag.clone(), r.digest.clone()));
            }
        }
    });
}

#[test]
fn policies() {
    let cm: serde_json::Value =
        serde_yaml_ng::from_slice(&fixture("manifests/20-configmap-policy.yaml")).expect("the shipped ConfigMap");
    let shipped = cm["data"].as_object().and_then(|d| d.values().next()).and_then(|v| v.as_str()).unwrap();
    let seeds = vec![portcullis::policy::EMBEDDED_DEFAULT.as_bytes().to_vec(), shipped.as_bytes().to_vec()];
    fuzz("policy parser and lint", seeds, |b| {
        let text = String::from_utf8_lossy(b);
        match portcullis::policy::Policy::from_yaml(&text, "fuzz") {
            Ok(p) => {
                let _ = p.warnings(chrono::Utc::now(), portcullis::attest::keyless::EXPIRY_WARNING);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    });
}

#[test]
fn scanner_reports() {
    let mut seeds = fixtures("tests/fixtures/reports");
    seeds.extend(fixtures("tests/fixtures/reports/upstream"));
    fuzz("scanner formats", seeds, |b| {
        let _ = portcullis::evidence::parse_report(b);
    });
}

/// VEX documents: no panic, reading them or matching what they name.
#[test]
fn vex_documents() {
    use portcullis::evidence::vex;
    let mut seeds = fixtures("tests/fixtures/vex/trivy");
    seeds.extend(fixtures("tests/fixtures/vex/grype"));
    fuzz("VEX documents", seeds, |b| {
        if let Ok(d) = vex::parse(b) {
            let image = vex::Image {
                digest: "sha256:124c7d2707904eea7431fffe91522a01e5a861a624ee31d03372cc1d138a3126".into(),
                repository: Some("docker.io/library/alpine".into()),
            };
            let source =
                vex::Source { document: std::sync::Arc::new(d), digest: String::new(), signer: None, bound: true };
            for st in &source.document.statements {
                for p in &st.products {
                    let _ = vex::product_names(&p.id, &image, true);
                    for s in &p.subcomponents {
                        let _ = vex::subcomponent_matches(s, "pkg:apk/alpine/libssl3@3.0.8-r3?arch=x86_64");
                    }
                }
            }
        }
    });
}

#[test]
fn envelopes_and_bundles() {
    let mut seeds = fixtures("tests/fixtures/keyless");
    seeds.extend(fixtures("tests/fixtures/sigstore-conformance").into_iter().take(40));
    fuzz("DSSE envelopes and sigstore bundles", seeds, |b| {
        if let Ok(found) = portcullis::attest::Signed::from_file(b, 16) {
            for s in &found {
                let _ = s.claimed_predicate_type();
            }
        }
    });
}

#[test]
fn credential_files() {
    let seeds = vec![
        br#"{"auths":{"r.example":{"auth":"dXNlcjpwYXNz"},"q.example":{"username":"u","password":"p"}},"credHelpers":{"ecr.example":"ecr-login"}}"#.to_vec(),
        br#"{"auths":{"https://index.docker.io/v1/":{"auth":"Zm9vOmJhcg=="}},"credsStore":"desktop"}"#.to_vec(),
    ];
    fuzz("credential files", seeds, |b| {
        let _ = portcullis::registry::Credentials::from_docker_config(b);
    });
}

/// A trail of real records, edited: `audit verify` accepts the result only
/// when the edit left every line as it was.
#[test]
fn audit_trails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let log = portcullis::audit::AuditLog::open(path.to_str().unwrap()).unwrap();
        for i in 0..12 {
            log.write(
                serde_json::json!({"uid": format!("uid-{i}"), "allowed": i % 2 == 0, "images": ["r.example/app:v1"]}),
            )
            .await;
        }
        log.close().await;
    });
    let original = std::fs::read(&path).unwrap();
    let lines = |b: &[u8]| b.split(|c| *c == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect::<Vec<_>>();
    let before = lines(&original);
    fuzz("audit line parser and verify", vec![original.clone()], |b| {
        let verdict = portcullis::audit::verify([("audit.log".to_string(), b)]);
        if let Ok(trail) = verdict {
            // Accepted: every line it holds is one of the original lines, in
            // order and without a gap (a cut off the end, or off the start,
            // is all an unanchored chain cannot show).
            let after = lines(b);
            let start = before.iter().position(|l| Some(l) == after.first());
            let same = match start {
                None => after.is_empty(),
                Some(s) => before[s..].starts_with(&after),
            };
            assert!(same, "verify accepted an edited chain ({} records)", trail.records);
        }
    });
}
