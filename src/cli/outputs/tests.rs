//! The renderers, on decisions made by hand: one row per case.

use super::*;

#[test]
fn output_specs_read_one_by_one() {
    let specs = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // (case, specs, targets (format, file), errors naming)
    type Row<'a> = (&'a str, Vec<String>, Vec<(Format, Option<&'a str>)>, Vec<&'a str>);
    let rows: [Row<'_>; 5] = [
        ("the default", specs(&["text"]), vec![(Format::Text, None)], vec![]),
        (
            "one to stdout, one to a file",
            specs(&["json", "text=out.txt"]),
            vec![(Format::Json, None), (Format::Text, Some("out.txt"))],
            vec![],
        ),
        ("an unknown format", specs(&["yaml=x", "json"]), vec![(Format::Json, None)], vec!["unknown format \"yaml\""]),
        (
            "two to stdout",
            specs(&["json", "text"]),
            vec![(Format::Json, None)],
            vec!["only one format can go to standard output"],
        ),
        ("no file", specs(&["json="]), vec![], vec!["no file after `=`"]),
    ];
    for (case, specs, want, errors) in rows {
        let (got, bad) = targets(&specs);
        let got: Vec<(Format, Option<&str>)> =
            got.iter().map(|t| (t.format, t.file.as_deref().and_then(|p| p.to_str()))).collect();
        assert_eq!(got, want, "{case}");
        assert_eq!(bad.len(), errors.len(), "{case}: {bad:?}");
        for (b, e) in bad.iter().zip(errors) {
            assert!(b.contains(e), "{case}: {b}");
        }
    }
}

/// A decision by hand: one image denied in production for a problem whose
/// text tries to forge a workflow command and a Markdown table row.
fn forged() -> Checked {
    use portcullis::policy::{BreakGlass, Failure, Outcome, Reason, Verdict};
    let problem = "100% bad\r\n::error::forged, at a:b\n| x | y |".to_string();
    let v = Verdict {
        image: "registry.example.com/shop/api@sha256:0123456789abcdef".into(),
        name: "registry.example.com/shop/api".into(),
        tier: "production".into(),
        problems: vec![problem.clone()],
        reasons: vec![Reason::Tests],
        failures: vec![Failure { reason: Reason::Tests, kind: Some(EvidenceKind::Tests), signers: false, problem }],
        remedies: vec!["fix the tests".into()],
        ..Verdict::default()
    };
    Checked {
        tiers: vec![Judged {
            tier: "production".into(),
            requires: vec![EvidenceKind::Vulnerabilities, EvidenceKind::Tests],
            decision: Decision {
                allowed: false,
                outcome: Outcome::Denied,
                reason: "tests",
                message: None,
                warnings: vec![],
                recorded_warnings: vec![],
                verdicts: vec![v],
                break_glass: BreakGlass::NotRequested,
            },
        }],
        policy_digest: "sha256:00".into(),
        policy_uri: "policy.yaml".into(),
        evaluated_at: chrono::DateTime::UNIX_EPOCH,
        origin: Origin::Registry,
        documents: Default::default(),
    }
}

#[test]
fn workflow_commands_escape_what_could_forge_one() {
    // (input, as a message, as a property): GitHub's escapeData and escapeProperty.
    let rows = [
        ("100%", "100%25", "100%25"),
        ("a\r\nb", "a%0D%0Ab", "a%0D%0Ab"),
        ("a:b,c", "a:b,c", "a%3Ab%2Cc"),
        ("%0A", "%250A", "%250A"),
        ("::error::x", "::error::x", "%3A%3Aerror%3A%3Ax"),
    ];
    for (input, data, property) in rows {
        assert_eq!(github::escape_data(input), data, "{input:?}");
        assert_eq!(github::escape_property(input), property, "{input:?}");
    }
    let out = String::from_utf8(render(Format::Github, &forged()).unwrap()).unwrap();
    // One command, one line: the forged one is text inside it.
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with(
            "::error title=portcullis%3A registry.example.com/shop/api@sha256%3A0123456789ab denied in production::"
        ),
        "{out}"
    );
    assert!(out.contains("100%25 bad%0D%0A::error::forged, at a:b%0A| x | y |%0ATo fix: fix the tests"), "{out}");
}

#[test]
fn the_summary_is_a_table_per_image_and_the_problems_inert() {
    let md = String::from_utf8(render(Format::Markdown, &forged()).unwrap()).unwrap();
    assert!(md.starts_with("## Portcullis: denied (production)\n"), "{md}");
    assert!(
        md.contains(
            "| tier | verdict | image | scan | tests | provenance | attestations | licenses | base-image | signers | freshness |"
        ),
        "{md}"
    );
    assert!(md.contains("| production | ❌ denied | ✅ | ✅ | ❌ | – | – | – | – | ✅ | ✅ |"), "{md}");
    // The problem is one list item, its pipes escaped: no row of its own.
    assert!(md.contains("- **production**: 100% bad  ::error::forged, at a:b \\| x \\| y \\|\n"), "{md}");
    assert!(md.contains("  - to fix: fix the tests\n"), "{md}");
    // GitHub's job summary is this text, appended by `--output github` when GITHUB_STEP_SUMMARY is set.
    assert_eq!(md, github::summary(&forged()));
}

#[test]
fn the_gitlab_report_has_the_fields_gitlab_reads() {
    let report: serde_json::Value = serde_json::from_slice(&render(Format::Gitlab, &forged()).unwrap()).unwrap();
    let issues = report.as_array().unwrap();
    assert_eq!(issues.len(), 1);
    let i = &issues[0];
    assert_eq!(i["check_name"], "portcullis/tests/tests");
    assert_eq!(i["severity"], "blocker");
    assert_eq!(i["location"]["path"], "registry.example.com/shop/api");
    assert_eq!(i["location"]["lines"]["begin"], 1);
    assert_eq!(i["fingerprint"].as_str().unwrap().len(), 64);
    assert!(i["description"].as_str().unwrap().ends_with("To fix: fix the tests"), "{i}");
}

#[test]
fn check_help_lists_every_format() {
    use clap::CommandFactory as _;
    let mut cli = crate::cli::args::Cli::command();
    let help = cli.find_subcommand_mut("check").unwrap().render_long_help().to_string();
    for (name, _) in Format::ALL {
        assert!(help.contains(&format!("`{name}`")), "check --help does not name {name}:\n{help}");
    }
}

mod vsa_statements {
    use super::*;
    use portcullis::policy::{BreakGlass, Cited, Outcome, Reason, Verdict};
    use serde_json::Value;

    const POLICY: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn digest(n: char) -> String {
        format!("sha256:{}", n.to_string().repeat(64))
    }

    fn cited(n: char, kind: EvidenceKind) -> Cited {
        Cited {
            digest: digest(n),
            kind,
            predicate_type: None,
            signers: vec!["scanner".into()],
            identity: None,
            finished_on: None,
        }
    }

    /// An image admitted without a problem in `tier`, resting on a scan and a test result.
    fn admitted(repo: &str, n: char, tier: &str) -> Verdict {
        Verdict {
            image: format!("registry.example.com/{repo}:1.0"),
            name: format!("registry.example.com/{repo}"),
            digest: Some(digest(n)),
            tier: tier.into(),
            admitted: true,
            attestations: vec![cited('a', EvidenceKind::Vulnerabilities), cited('b', EvidenceKind::Tests)],
            ..Verdict::default()
        }
    }

    fn denied(mut v: Verdict, problem: &str) -> Verdict {
        v.admitted = false;
        v.problems = vec![problem.into()];
        v.reasons = vec![Reason::Vulnerabilities];
        v
    }

    /// Each tier (name, what it requires, its verdicts), decided.
    fn checked(tiers: Vec<(&str, Vec<EvidenceKind>, Vec<Verdict>)>, origin: Origin) -> Checked {
        Checked {
            tiers: tiers
                .into_iter()
                .map(|(tier, requires, verdicts)| Judged {
                    tier: tier.into(),
                    requires,
                    decision: Decision {
                        allowed: verdicts.iter().all(|v| v.admitted),
                        outcome: Outcome::Allowed,
                        reason: "",
                        message: None,
                        warnings: vec![],
                        recorded_warnings: vec![],
                        verdicts,
                        break_glass: BreakGlass::NotRequested,
                    },
                })
                .collect(),
            policy_digest: POLICY.into(),
            policy_uri: "policies/production.yaml".into(),
            evaluated_at: "2026-12-05T10:00:00.5Z".parse().unwrap(),
            origin,
            documents: Default::default(),
        }
    }

    fn lines(c: &Checked) -> Vec<Value> {
        let out = String::from_utf8(render(Format::Vsa, c).unwrap()).unwrap();
        assert!(out.ends_with('\n'), "{out}");
        out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    fn levels(statement: &Value) -> Vec<&str> {
        statement["predicate"]["verifiedLevels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect()
    }

    #[test]
    fn one_image_is_one_statement_every_field_as_the_spec_defines_it() {
        let scan = vec![EvidenceKind::Vulnerabilities, EvidenceKind::Tests];
        let c = checked(
            vec![
                ("staging", scan.clone(), vec![admitted("shop/api", 'c', "staging")]),
                ("production", scan, vec![admitted("shop/api", 'c', "production")]),
            ],
            Origin::Registry,
        );
        // The whole file is one JSON document: the Statement.
        let bytes = render(Format::Vsa, &c).unwrap();
        let s: Value = serde_json::from_slice(&bytes).unwrap();
        let c_hex = "c".repeat(64);
        let want = serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "registry.example.com/shop/api", "digest": {"sha256": c_hex}}],
            "predicateType": "https://slsa.dev/verification_summary/v1",
            "predicate": {
                "verifier": {"id": "https://portcullis.dev/check", "version": {"portcullis": env!("CARGO_PKG_VERSION")}},
                "timeVerified": "2026-12-05T10:00:00.500Z",
                "resourceUri": format!("registry.example.com/shop/api@sha256:{c_hex}"),
                "policy": {"uri": "policies/production.yaml", "digest": {"sha256": "1".repeat(64)}},
                "inputAttestations": [
                    {"uri": format!("registry.example.com/shop/api@{}", digest('a')), "digest": {"sha256": "a".repeat(64)}},
                    {"uri": format!("registry.example.com/shop/api@{}", digest('b')), "digest": {"sha256": "b".repeat(64)}},
                ],
                "verificationResult": "PASSED",
                "verifiedLevels": ["PORTCULLIS_TIER_staging", "PORTCULLIS_TIER_production"],
                "slsaVersion": "1.1",
            },
        });
        assert_eq!(s, want);
        // No claim about dependencies: the field is absent, not empty.
        assert!(s["predicate"].get("dependencyLevels").is_none());
    }

    #[test]
    fn several_images_are_json_lines_one_statement_each() {
        let scan = vec![EvidenceKind::Vulnerabilities];
        let by_tag = admitted("shop/web", 'e', "production");
        let mut by_digest = by_tag.clone();
        by_digest.image = format!("registry.example.com/shop/web@{}", digest('e'));
        let c = checked(
            vec![
                (
                    "development",
                    scan.clone(),
                    vec![admitted("shop/api", 'c', "development"), admitted("shop/db", 'd', "development")],
                ),
                (
                    "production",
                    scan,
                    vec![
                        admitted("shop/api", 'c', "production"),
                        denied(admitted("shop/db", 'd', "production"), "2 critical vulnerabilities"),
                        // The same image twice, by tag and by digest: one Statement.
                        by_tag,
                        by_digest,
                    ],
                ),
            ],
            Origin::Registry,
        );
        let s = lines(&c);
        // (subject digest, result, verified levels)
        let rows = [
            ('c', "PASSED", vec!["PORTCULLIS_TIER_development", "PORTCULLIS_TIER_production"]),
            ('d', "FAILED", vec!["PORTCULLIS_TIER_development", "FAILED"]),
            ('e', "FAILED", vec!["PORTCULLIS_TIER_production", "FAILED"]),
        ];
        assert_eq!(s.len(), rows.len(), "{s:#?}");
        for (st, (n, result, want)) in s.iter().zip(rows) {
            assert_eq!(st["subject"][0]["digest"]["sha256"], n.to_string().repeat(64));
            assert_eq!(st["predicate"]["verificationResult"], result, "{st}");
            assert_eq!(levels(st), want, "{st}");
        }
    }

    #[test]
    fn what_was_not_judged_or_has_problems_never_passes() {
        let pinned = |v: Verdict| v;
        let error = |mut v: Verdict| {
            v.admitted = false;
            v.error = Some("registry registry.example.com unreachable".into());
            v.attestations.clear();
            v
        };
        // onError: allow admits it, and says why.
        let tolerated = |mut v: Verdict| {
            v.error = Some("registry registry.example.com unreachable".into());
            v.attestations.clear();
            v
        };
        // mode: warn admits it despite its problems.
        let warned = |mut v: Verdict| {
            v.problems = vec!["tests FAILED".into()];
            v
        };
        let denial = |v: Verdict| denied(v, "tests FAILED");
        // (case, the verdict, result)
        type Case = fn(Verdict) -> Verdict;
        let rows: [(&str, Case, &str); 5] = [
            ("admitted", pinned, "PASSED"),
            ("an error, denied", error, "FAILED"),
            ("an error the tier tolerates", tolerated, "FAILED"),
            ("admitted in warn mode despite problems", warned, "FAILED"),
            ("denied", denial, "FAILED"),
        ];
        for (case, make, result) in rows {
            let v = make(admitted("shop/api", 'c', "production"));
            let c = checked(vec![("production", vec![EvidenceKind::Tests], vec![v])], Origin::Registry);
            let s = lines(&c);
            assert_eq!(s[0]["predicate"]["verificationResult"], result, "{case}");
            let want = if result == "PASSED" { vec!["PORTCULLIS_TIER_production"] } else { vec!["FAILED"] };
            assert_eq!(levels(&s[0]), want, "{case}");
        }
    }

    #[test]
    fn an_image_without_a_digest_is_an_error_not_a_statement() {
        let mut v = admitted("shop/api", 'c', "production");
        v.digest = None;
        v.admitted = false;
        v.error = Some("registry registry.example.com unreachable: connection refused".into());
        let c =
            checked(vec![("production", vec![], vec![admitted("shop/db", 'd', "production"), v])], Origin::Registry);
        let err = render(Format::Vsa, &c).unwrap_err();
        assert!(err.contains("names its image by digest"), "{err}");
        assert!(err.contains("registry.example.com/shop/api:1.0: registry registry.example.com unreachable"), "{err}");
        assert!(err.contains("NAME@sha256:"), "{err}");
    }

    #[test]
    fn slsa_build_level_1_only_where_a_passed_tier_required_the_provenance_cited() {
        let with_provenance = |tier: &str| {
            let mut v = admitted("shop/api", 'c', tier);
            v.attestations.push(cited('f', EvidenceKind::Provenance));
            v
        };
        let prov = vec![EvidenceKind::Vulnerabilities, EvidenceKind::Provenance];
        let scan = vec![EvidenceKind::Vulnerabilities];
        // (case, tiers, levels)
        type Tiers<'a> = Vec<(&'a str, Vec<EvidenceKind>, Vec<Verdict>)>;
        let rows: [(&str, Tiers<'_>, Vec<&str>); 4] = [
            (
                "required and cited",
                vec![("production", prov.clone(), vec![with_provenance("production")])],
                vec!["PORTCULLIS_TIER_production", "SLSA_BUILD_LEVEL_1"],
            ),
            (
                "cited, not required",
                vec![("production", scan.clone(), vec![with_provenance("production")])],
                vec!["PORTCULLIS_TIER_production"],
            ),
            (
                "required, the tier denied",
                vec![("production", prov.clone(), vec![denied(with_provenance("production"), "no provenance")])],
                vec!["FAILED"],
            ),
            (
                "required by a tier that passed, another failed",
                vec![
                    ("staging", prov, vec![with_provenance("staging")]),
                    ("production", scan, vec![denied(with_provenance("production"), "criticals")]),
                ],
                vec!["PORTCULLIS_TIER_staging", "SLSA_BUILD_LEVEL_1", "FAILED"],
            ),
        ];
        for (case, tiers, want) in rows {
            let s = lines(&checked(tiers, Origin::Registry));
            assert_eq!(levels(&s[0]), want, "{case}");
            // Never a level the policy cannot establish.
            assert!(!levels(&s[0]).iter().any(|l| l.starts_with("SLSA_BUILD_LEVEL_") && !l.ends_with('1')), "{case}");
        }
    }

    #[test]
    fn attestation_files_are_where_the_inputs_are_fetched() {
        let mut files = std::collections::BTreeMap::new();
        files.insert(digest('a'), std::path::PathBuf::from("evidence/scan.bundle.json"));
        // The test result came from nowhere this run knows of: its digest alone.
        let c =
            checked(vec![("production", vec![], vec![admitted("shop/api", 'c', "production")])], Origin::Files(files));
        let s = lines(&c);
        let inputs = s[0]["predicate"]["inputAttestations"].as_array().unwrap();
        assert_eq!(
            inputs[0],
            serde_json::json!({"uri": "evidence/scan.bundle.json", "digest": {"sha256": "a".repeat(64)}})
        );
        assert_eq!(inputs[1], serde_json::json!({"digest": {"sha256": "b".repeat(64)}}));
    }

    #[test]
    fn vex_files_that_suppressed_findings_are_inputs_too() {
        use portcullis::evidence::vex::{Status, Suppressed};
        let mut v = admitted("shop/api", 'c', "production");
        let suppressed = |document: String| Suppressed {
            finding: portcullis::evidence::Finding {
                id: "CVE-2024-1111".into(),
                aliases: vec![],
                severity: portcullis::evidence::Severity::Critical,
                package: "openssl".into(),
                installed_version: "3.0.1".into(),
                fixed_versions: vec![],
                fix_state: portcullis::evidence::FixState::Fixed,
                published: None,
                cvss: None,
                target: String::new(),
                purl: None,
            },
            status: Status::NotAffected,
            justification: None,
            impact_statement: None,
            author: "Acme".into(),
            signer: None,
            document,
        };
        // One given with --vex, one attested (already an input, by its envelope), one twice.
        v.vex_suppressed = vec![suppressed(digest('9')), suppressed(digest('a')), suppressed(digest('9'))];
        let mut c = checked(vec![("production", vec![], vec![v])], Origin::Registry);
        c.documents.insert(digest('9'), "vex/app.openvex.json".into());
        let s = lines(&c);
        let inputs = s[0]["predicate"]["inputAttestations"].as_array().unwrap();
        assert_eq!(inputs.len(), 3, "{inputs:?}");
        assert_eq!(inputs[2], serde_json::json!({"uri": "vex/app.openvex.json", "digest": {"sha256": "9".repeat(64)}}));
    }

    #[test]
    fn the_policy_is_named_by_a_uri() {
        use std::path::Path;
        // (path given, uri)
        let rows = [
            (Some("policy.yaml"), "policy.yaml".to_string()),
            (Some("ci/policies/prod policy.yaml"), "ci/policies/prod%20policy.yaml".into()),
            (Some("/etc/portcullis/policy#1.yaml"), "file:///etc/portcullis/policy%231.yaml".into()),
            (Some("c:policy.yaml"), "./c:policy.yaml".into()),
            (
                None,
                format!(
                    "pkg:github/portcullis-dev/portcullis@v{}#src/policy/default-policy.yaml",
                    env!("CARGO_PKG_VERSION")
                ),
            ),
        ];
        for (path, want) in rows {
            assert_eq!(policy_uri(path.map(Path::new)), want, "{path:?}");
        }
    }
}
