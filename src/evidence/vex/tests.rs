//! One table per matching rule: the statement and the finding side by
//! side with whether the statement decides it; then the upstream documents
//! (Trivy's and Grype's own test VEX, `tests/fixtures/vex/`) and bad input.

use std::sync::Arc;

use super::*;
use crate::evidence::{FixState, Severity};

const DIGEST: &str = "sha256:124c7d2707904eea7431fffe91522a01e5a861a624ee31d03372cc1d138a3126";
const OTHER: &str = "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

fn image() -> Image {
    Image { digest: DIGEST.to_string(), repository: Some("registry.example.com/shop/api".to_string()) }
}

fn finding(id: &str, aliases: &[&str], purl: Option<&str>) -> Finding {
    Finding {
        id: id.to_string(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        severity: Severity::Critical,
        package: "libssl3".to_string(),
        installed_version: "3.0.8-r3".to_string(),
        fixed_versions: vec![],
        fix_state: FixState::Unknown,
        published: None,
        cvss: None,
        target: String::new(),
        purl: purl.map(String::from),
    }
}

fn statement(vulnerability: &[&str], product: &str, subcomponents: &[&str], status: Status) -> Statement {
    Statement {
        vulnerability: vulnerability.iter().map(|v| v.to_string()).collect(),
        products: vec![Product {
            id: product.to_string(),
            subcomponents: subcomponents.iter().map(|s| s.to_string()).collect(),
        }],
        status,
        justification: Some("vulnerable_code_not_present".to_string()),
        impact_statement: None,
        timestamp: None,
    }
}

fn source(statements: Vec<Statement>, bound: bool) -> Source {
    Source {
        document: Arc::new(Document {
            format: Format::OpenVex,
            id: String::new(),
            author: "Acme Security".to_string(),
            timestamp: None,
            statements,
            ignored: vec![],
        }),
        digest: "sha256:d0c".to_string(),
        signer: Some("security".to_string()),
        bound,
    }
}

const SSL: &str = "pkg:apk/alpine/libssl3@3.0.8-r3?arch=x86_64&distro=alpine-3.17";

#[test]
fn rule_digest_the_product_must_name_the_judged_digest() {
    // (product, covers)
    let rows = [
        (format!("pkg:oci/api@sha256%3A{}", &DIGEST[7..]), true),
        (format!("pkg:oci/api@sha256:{}", &DIGEST[7..]), true),
        (format!("pkg:oci/api@sha256%3A{}", &DIGEST[7..].to_uppercase()), true),
        (format!("pkg:oci/api@sha256%3A{}", &OTHER[7..]), false),
        // The name is the repository's last segment.
        (format!("pkg:oci/web@sha256%3A{}", &DIGEST[7..]), false),
        // A constraint Portcullis cannot check about the image.
        (format!("pkg:oci/api@sha256%3A{}?arch=amd64", &DIGEST[7..]), false),
        (format!("pkg:oci/api@sha256%3A{}?tag=2.3.1", &DIGEST[7..]), true),
        // Not an image.
        ("pkg:maven/org.springframework.boot/spring-boot@2.6.0".to_string(), false),
        ("not a purl".to_string(), false),
    ];
    for (product, want) in rows {
        let st = statement(&["CVE-2023-1255"], &product, &[], Status::NotAffected);
        assert_eq!(covers(&st, &image(), false, &finding("CVE-2023-1255", &[], Some(SSL))), want, "{product}");
    }
}

#[test]
fn rule_repository_url_must_be_the_images_registry_and_repository() {
    // (product, image repository, covers)
    let d = &DIGEST[7..];
    let rows = [
        (
            "pkg:oci/api?repository_url=registry.example.com/shop/api".to_string(),
            Some("registry.example.com/shop/api"),
            true,
        ),
        (
            "pkg:oci/api?repository_url=registry.example.com%2Fshop%2Fapi".to_string(),
            Some("registry.example.com/shop/api"),
            true,
        ),
        (
            format!("pkg:oci/api@sha256%3A{d}?repository_url=registry.example.com/shop/api"),
            Some("registry.example.com/shop/api"),
            true,
        ),
        (
            "pkg:oci/api?repository_url=other.example.com/shop/api".to_string(),
            Some("registry.example.com/shop/api"),
            false,
        ),
        (
            format!("pkg:oci/api@sha256%3A{d}?repository_url=registry.example.com/shop/web"),
            Some("registry.example.com/shop/api"),
            false,
        ),
        // Docker Hub's names for itself are one.
        (
            "pkg:oci/debian?repository_url=index.docker.io/library/debian".to_string(),
            Some("docker.io/library/debian"),
            true,
        ),
        // Without a known repository (judged by digest alone), the digest decides,
        (format!("pkg:oci/api@sha256%3A{d}?repository_url=registry.example.com/shop/api"), None, true),
        (format!("pkg:oci/api@sha256%3A{}?repository_url=registry.example.com/shop/api", &OTHER[7..]), None, false),
        // and a repository-wide product names nothing.
        ("pkg:oci/api?repository_url=registry.example.com/shop/api".to_string(), None, false),
        // Neither a digest nor a repository: only for the document's own subject.
        ("pkg:oci/api".to_string(), Some("registry.example.com/shop/api"), false),
    ];
    for (product, repository, want) in rows {
        let img = Image { digest: DIGEST.to_string(), repository: repository.map(String::from) };
        let st = statement(&["CVE-2023-1255"], &product, &[], Status::NotAffected);
        assert_eq!(
            covers(&st, &img, false, &finding("CVE-2023-1255", &[], Some(SSL))),
            want,
            "{product} {repository:?}"
        );
    }
}

#[test]
fn rule_subcomponents_match_on_name_and_on_version_and_qualifiers_when_given() {
    // (subcomponents, finding's purl, covers)
    let rows: [(&[&str], Option<&str>, bool); 11] = [
        (&[], Some(SSL), true),
        (&[], None, true),
        (&["pkg:apk/alpine/libssl3"], Some(SSL), true),
        (&["pkg:apk/alpine/libssl3@3.0.8-r3"], Some(SSL), true),
        (&["pkg:apk/alpine/libssl3@3.0.8-r4"], Some(SSL), false),
        (&["pkg:apk/alpine/libssl3?distro=alpine-3.17"], Some(SSL), true),
        (&["pkg:apk/alpine/libssl3?distro=alpine-3.18"], Some(SSL), false),
        (&["pkg:apk/wolfi/libssl3"], Some(SSL), false),
        (&["pkg:deb/alpine/libssl3"], Some(SSL), false),
        (&["pkg:apk/alpine/libcrypto3", "pkg:apk/alpine/libssl3"], Some(SSL), true),
        // A finding whose report gave no purl cannot be matched to one.
        (&["pkg:apk/alpine/libssl3"], None, false),
    ];
    let product = format!("pkg:oci/api@sha256%3A{}", &DIGEST[7..]);
    for (subcomponents, purl, want) in rows {
        let st = statement(&["CVE-2023-1255"], &product, subcomponents, Status::NotAffected);
        assert_eq!(
            covers(&st, &image(), false, &finding("CVE-2023-1255", &[], purl)),
            want,
            "{subcomponents:?} {purl:?}"
        );
    }
}

#[test]
fn rule_aliases_the_vulnerability_matches_on_name_id_or_alias_against_the_findings_id_and_aliases() {
    // (statement's name, @id and aliases, finding's id and aliases, covers)
    let rows: [(&[&str], &str, &[&str], bool); 6] = [
        (&["CVE-2023-1255"], "CVE-2023-1255", &[], true),
        (&["CVE-2023-1255"], "GHSA-xxxx-yyyy-zzzz", &["CVE-2023-1255"], true),
        (&["GHSA-xxxx-yyyy-zzzz", "CVE-2023-1255"], "CVE-2023-1255", &[], true),
        (&["https://nvd.nist.gov/vuln/detail/CVE-2023-1255", "GHSA-a"], "GHSA-b", &["GHSA-a"], true),
        (&["CVE-2023-1256"], "CVE-2023-1255", &["GHSA-a"], false),
        // Ids are compared as written.
        (&["cve-2023-1255"], "CVE-2023-1255", &[], false),
    ];
    let product = format!("pkg:oci/api@sha256%3A{}", &DIGEST[7..]);
    for (names, id, aliases, want) in rows {
        let st = statement(names, &product, &[], Status::NotAffected);
        assert_eq!(covers(&st, &image(), false, &finding(id, aliases, Some(SSL))), want, "{names:?} {id}");
    }
}

#[test]
fn rule_newest_wins_by_statement_timestamp_else_the_documents_later_listed_on_a_tie() {
    let t = |s: &str| Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc));
    let product = format!("pkg:oci/api@sha256%3A{}", &DIGEST[7..]);
    let at = |status, time| Statement { timestamp: time, ..statement(&["CVE-1"], &product, &[], status) };
    // (statements in order, suppressed)
    let rows = [
        (
            vec![at(Status::Affected, t("2024-01-01T00:00:00Z")), at(Status::NotAffected, t("2024-02-01T00:00:00Z"))],
            true,
        ),
        (
            vec![at(Status::NotAffected, t("2024-02-01T00:00:00Z")), at(Status::Affected, t("2024-01-01T00:00:00Z"))],
            true,
        ),
        (
            vec![at(Status::NotAffected, t("2024-01-01T00:00:00Z")), at(Status::Affected, t("2024-02-01T00:00:00Z"))],
            false,
        ),
        (
            vec![
                at(Status::Fixed, t("2024-01-01T00:00:00Z")),
                at(Status::UnderInvestigation, t("2024-01-01T00:00:01Z")),
            ],
            false,
        ),
        // A tie: the later listed.
        (vec![at(Status::Affected, t("2024-01-01T00:00:00Z")), at(Status::Fixed, t("2024-01-01T00:00:00Z"))], true),
        (vec![at(Status::Fixed, None), at(Status::Affected, None)], false),
        // A statement with a time is newer than one without.
        (vec![at(Status::Fixed, t("2024-01-01T00:00:00Z")), at(Status::Affected, None)], true),
    ];
    for (statements, want) in rows {
        let what: Vec<_> = statements.iter().map(|s| (s.status, s.timestamp)).collect();
        let (_, suppressed) = apply(vec![finding("CVE-1", &[], Some(SSL))], &image(), &[source(statements, false)]);
        assert_eq!(suppressed.len() == 1, want, "{what:?}");
    }
    // Across documents alike: the newer document's statement.
    let older = Document { timestamp: t("2024-01-01T00:00:00Z"), ..(*source(vec![], false).document).clone() };
    let mut a = source(vec![at(Status::NotAffected, older.timestamp)], false);
    let b = source(vec![at(Status::Affected, t("2024-03-01T00:00:00Z"))], false);
    a.document = Arc::new(Document { statements: a.document.statements.clone(), ..older });
    let (kept, _) = apply(vec![finding("CVE-1", &[], Some(SSL))], &image(), &[a, b]);
    assert_eq!(kept.len(), 1);
}

#[test]
fn rule_not_affected_without_justification_or_impact_statement_is_ignored() {
    // (justification, impact_statement, read as a statement)
    let rows = [
        (None, None, false),
        (Some(""), None, false),
        (None, Some("   "), false),
        (Some("\"vulnerable_code_not_present\""), None, true),
        (None, Some("\"the parser is not linked\""), true),
    ];
    for (justification, impact, want) in rows {
        let mut s = serde_json::json!({"vulnerability": {"name": "CVE-1"}, "products": [{"@id": "pkg:oci/api"}],
                                        "status": "not_affected"});
        if let Some(j) = justification {
            s["justification"] = serde_json::from_str(j).unwrap_or(serde_json::json!(j));
        }
        if let Some(i) = impact {
            s["impact_statement"] = serde_json::from_str(i).unwrap_or(serde_json::json!(i));
        }
        let doc = serde_json::json!({"@context": OPENVEX_V020, "author": "a", "statements": [s]});
        let d = parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!((d.statements.len() == 1, d.ignored.len() == 1), (want, !want), "{justification:?} {impact:?}");
    }
}

#[test]
fn rule_only_not_affected_and_fixed_suppress() {
    // (status, suppresses)
    let rows = [
        (Status::NotAffected, true),
        (Status::Fixed, true),
        (Status::Affected, false),
        (Status::UnderInvestigation, false),
    ];
    let product = format!("pkg:oci/api@sha256%3A{}", &DIGEST[7..]);
    for (status, want) in rows {
        let st = statement(&["CVE-1"], &product, &[], status);
        let (kept, suppressed) = apply(vec![finding("CVE-1", &[], Some(SSL))], &image(), &[source(vec![st], false)]);
        assert_eq!((suppressed.len(), kept.len()), if want { (1, 0) } else { (0, 1) }, "{status:?}");
    }
}

#[test]
fn rule_another_images_digest_never_covers_even_on_the_images_own_attestation() {
    // (product, bound to the judged image, covers)
    let rows = [
        (format!("pkg:oci/api@sha256%3A{}", &OTHER[7..]), true, false),
        (format!("pkg:oci/api@sha256%3A{}", &OTHER[7..]), false, false),
        // No product named: the subject of the attestation that carried it.
        (String::new(), true, true),
        (String::new(), false, false),
        // By name alone: only on the image's own attestation.
        ("pkg:oci/api".to_string(), true, true),
        ("pkg:oci/web".to_string(), true, false),
    ];
    for (product, bound, want) in rows {
        let st = statement(&["CVE-1"], &product, &[], Status::NotAffected);
        assert_eq!(covers(&st, &image(), bound, &finding("CVE-1", &[], Some(SSL))), want, "{product} {bound}");
    }
}

fn fixture(path: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/vex/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn upstream_documents_read_into_one_model() {
    // (file, format, statements, first statement's vulnerability, status, first product)
    let rows = [
        ("trivy/openvex.json", Format::OpenVex, 1, "CVE-2021-44228", Status::NotAffected, "pkg:maven/org.springframework.boot/spring-boot@2.6.0"),
        ("trivy/openvex-oci.json", Format::OpenVex, 1, "CVE-2022-3715", Status::NotAffected, "pkg:oci/debian"),
        ("trivy/openvex-oci-mismatch.json", Format::OpenVex, 1, "CVE-2022-3715", Status::NotAffected, "pkg:oci/mismatch"),
        ("trivy/openvex-multiple.json", Format::OpenVex, 2, "CVE-2021-44228", Status::Affected, "pkg:maven/org.springframework.boot/spring-boot@2.6.0"),
        // The second statement (not_affected without a justification) is ignored.
        ("trivy/cyclonedx.json", Format::CycloneDx, 1, "CVE-2021-44228", Status::NotAffected, ""),
        ("grype/openvex-demo1.json", Format::OpenVex, 1, "CVE-2023-1255", Status::Fixed, "pkg:oci/alpine@sha256%3A124c7d2707904eea7431fffe91522a01e5a861a624ee31d03372cc1d138a3126"),
        ("grype/openvex-debian.json", Format::OpenVex, 1, "CVE-2014-fake-1", Status::Fixed, "pkg:oci/debian@sha256%3A124c7d2707904eea7431fffe91522a01e5a861a624ee31d03372cc1d138a3126?repository_url=index.docker.io/library"),
        ("grype/openvex-image-no-subcomponents.json", Format::OpenVex, 1, "CVE-2023-1255", Status::Fixed, "pkg:oci/alpine@sha256%3A124c7d2707904eea7431fffe91522a01e5a861a624ee31d03372cc1d138a3126"),
        ("grype/under_investigation.openvex.json", Format::OpenVex, 1, "CVE-2024-0000", Status::UnderInvestigation, "pkg:oci/alpine@sha256%3Affffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
    ];
    for (file, format, n, vulnerability, status, product) in rows {
        let d = parse(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(d.format, format, "{file}");
        assert_eq!(d.statements.len(), n, "{file}");
        assert_eq!(d.statements[0].vulnerability[0], vulnerability, "{file}");
        assert_eq!(d.statements[0].status, status, "{file}");
        assert_eq!(d.statements[0].products[0].id, product, "{file}");
    }
    let cdx = parse(&fixture("trivy/cyclonedx.json")).unwrap();
    assert_eq!(cdx.statements[0].products[0].subcomponents, ["pkg:maven/org.springframework.boot/spring-boot@2.6.0"]);
    assert_eq!(cdx.ignored, ["CVE-2022-27943: not_affected without a justification or an impact statement"]);
}

#[test]
fn grypes_alpine_document_suppresses_its_subcomponents_in_that_image_only() {
    let doc = Arc::new(parse(&fixture("grype/openvex-demo1.json")).unwrap());
    let src = Source { document: doc, digest: "sha256:d0c".into(), signer: Some("security".into()), bound: false };
    let alpine =
        |digest: &str| Image { digest: digest.to_string(), repository: Some("docker.io/library/alpine".into()) };
    let ssl = finding("CVE-2023-1255", &[], Some("pkg:apk/alpine/libssl3@3.0.8-r3?arch=x86_64&distro=alpine-3.17.3"));
    let zlib = finding("CVE-2023-1255", &[], Some("pkg:apk/alpine/zlib@1.2.13-r0"));
    let (kept, suppressed) = apply(vec![ssl.clone(), zlib.clone()], &alpine(DIGEST), std::slice::from_ref(&src));
    assert_eq!((kept, suppressed.len()), (vec![zlib], 1));
    assert_eq!(
        suppressed[0].describe(),
        "CVE-2023-1255 in libssl3 3.0.8-r3: fixed, by The OpenVEX Project <openvex@openssf.org>, signed by security"
    );
    let (kept, _) = apply(vec![ssl.clone()], &alpine(OTHER), &[src]);
    assert_eq!(kept, vec![ssl]);
}

#[test]
fn bad_documents_are_errors_that_say_why_never_panics() {
    let big = vec![b' '; MAX_VEX_BYTES + 1];
    // (bytes, error)
    let rows: Vec<(Vec<u8>, &str)> = vec![
        (big, "larger than 4194304 bytes"),
        (b"".to_vec(), "not JSON"),
        (b"\xff\xfe".to_vec(), "not JSON"),
        (b"[]".to_vec(), "not JSON"),
        (br#"{"@context": "https://example.com/ns"}"#.to_vec(), "neither OpenVEX"),
        (br#"{"@context": "https://openvex.dev/ns/v0.2.0", "statements": {}}"#.to_vec(), "OpenVEX document"),
        (
            br#"{"@context": "https://openvex.dev/ns/v0.2.0", "statements": [{"status": "fixed"}]}"#.to_vec(),
            "missing field `vulnerability`",
        ),
        (
            br#"{"@context": "https://openvex.dev/ns", "timestamp": "yesterday", "statements": []}"#.to_vec(),
            "OpenVEX timestamp",
        ),
        (br#"{"bomFormat": "CycloneDX", "components": []}"#.to_vec(), "no vulnerabilities list"),
        (br#"{"bomFormat": "CycloneDX", "vulnerabilities": [{"analysis": {}}]}"#.to_vec(), "missing field `id`"),
    ];
    for (bytes, want) in rows {
        let e = parse(&bytes).unwrap_err().to_string();
        assert!(e.contains(want), "{e} (wanted {want})");
    }
    // An unknown status is left out and said so, not guessed.
    let d = parse(
        br#"{"@context": "https://openvex.dev/ns/v0.2.0", "statements": [
        {"vulnerability": "CVE-1", "products": ["pkg:oci/api"], "status": "mitigated"}]}"#,
    )
    .unwrap();
    assert_eq!(
        (d.statements.len(), d.ignored.as_slice()),
        (0, &["CVE-1: unknown status \"mitigated\"".to_string()][..])
    );
}

#[test]
fn cyclonedx_refs_resolve_through_bom_refs_and_an_unresolved_one_is_never_widened() {
    let doc = br#"{"bomFormat": "CycloneDX", "specVersion": "1.6",
        "metadata": {"component": {"bom-ref": "img", "name": "api",
            "purl": "pkg:oci/api@sha256%3A124c7d2707904eea7431fffe91522a01e5a861a624ee31d03372cc1d138a3126"}},
        "components": [{"bom-ref": "c1", "name": "libssl3", "purl": "pkg:apk/alpine/libssl3@3.0.8-r3"}],
        "vulnerabilities": [
            {"id": "CVE-1", "analysis": {"state": "not_affected", "justification": "code_not_reachable"},
             "affects": [{"ref": "c1"}]},
            {"id": "CVE-2", "analysis": {"state": "resolved"}, "affects": [{"ref": "nowhere"}]},
            {"id": "CVE-3", "analysis": {"state": "in_triage"}, "affects": [{"ref": "urn:cdx:x/1#pkg:apk/alpine/zlib"}]}]}"#;
    let d = parse(doc).unwrap();
    // (statement, vulnerability, status, subcomponents)
    let got: Vec<(&str, Status, &[String])> = d
        .statements
        .iter()
        .map(|s| (s.vulnerability[0].as_str(), s.status, s.products[0].subcomponents.as_slice()))
        .collect();
    let ssl = ["pkg:apk/alpine/libssl3@3.0.8-r3".to_string()];
    let zlib = ["pkg:apk/alpine/zlib".to_string()];
    assert_eq!(got, [("CVE-1", Status::NotAffected, &ssl[..]), ("CVE-3", Status::UnderInvestigation, &zlib[..])]);
    assert_eq!(d.ignored, ["CVE-2: its affects name no package by purl"]);
    assert!(d.statements[0].products[0].id.starts_with("pkg:oci/api@"));
}

#[test]
fn csaf_vex_reads_into_the_same_model() {
    // Trivy's own CSAF test documents: a product, and a component of a product.
    let d = parse(&fixture("trivy/csaf.json")).unwrap();
    assert_eq!(d.format, Format::Csaf);
    let st = &d.statements[0];
    assert_eq!((st.vulnerability[0].as_str(), st.status), ("CVE-2024-0001", Status::NotAffected));
    assert_eq!(st.products[0].id, "pkg:golang/github.com/aquasecurity/go-transitive@v4.0.0");
    assert_eq!(st.impact_statement.as_deref(), Some("vulnerable_code_not_in_execute_path"));
    let d = parse(&fixture("trivy/csaf-relationships.json")).unwrap();
    let st = &d.statements[0];
    assert_eq!(st.products[0].subcomponents, ["pkg:golang/github.com/aquasecurity/go-transitive@v4.0.0"]);
    assert_eq!(st.justification.as_deref(), Some("vulnerable_code_cannot_be_controlled_by_adversary"));

    // An image with a component: the same matching rules.
    let csaf = format!(
        r#"{{"document": {{"csaf_version": "2.0", "category": "csaf_vex", "publisher": {{"name": "Acme PSIRT"}},
             "tracking": {{"id": "ACME-2026-1", "current_release_date": "2026-11-20T10:00:00Z"}}}},
           "product_tree": {{"full_product_names": [
               {{"product_id": "api", "name": "api", "product_identification_helper": {{"purl": "pkg:oci/api@sha256%3A{}"}}}},
               {{"product_id": "ssl", "name": "libssl3", "product_identification_helper": {{"purl": "pkg:apk/alpine/libssl3"}}}}],
             "relationships": [{{"category": "default_component_of", "product_reference": "ssl",
               "relates_to_product_reference": "api", "full_product_name": {{"product_id": "api:ssl", "name": "libssl3 in api"}}}}]}},
           "vulnerabilities": [
             {{"cve": "CVE-2023-1255", "product_status": {{"known_not_affected": ["api:ssl"]}},
               "flags": [{{"label": "vulnerable_code_not_in_execute_path", "product_ids": ["api:ssl"]}}]}},
             {{"cve": "CVE-2023-9999", "product_status": {{"known_not_affected": ["api"]}}}},
             {{"cve": "CVE-2023-8888", "product_status": {{"fixed": ["nowhere"]}}}}]}}"#,
        &DIGEST[7..]
    );
    let d = parse(csaf.as_bytes()).unwrap();
    assert_eq!((d.author.as_str(), d.id.as_str()), ("Acme PSIRT", "ACME-2026-1"));
    assert_eq!(
        d.ignored,
        [
            "CVE-2023-9999: not_affected without a justification or an impact statement",
            "CVE-2023-8888: product \"nowhere\" has no purl"
        ]
    );
    let src = Source { document: Arc::new(d), digest: "sha256:c5af".into(), signer: None, bound: false };
    let ssl = finding("CVE-2023-1255", &[], Some(SSL));
    let zlib = finding("CVE-2023-1255", &[], Some("pkg:apk/alpine/zlib@1.2.13-r0"));
    let (kept, suppressed) = apply(vec![ssl, zlib.clone()], &image(), &[src]);
    assert_eq!((kept, suppressed.len()), (vec![zlib], 1));
}
