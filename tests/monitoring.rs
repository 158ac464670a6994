//! What Portcullis ships for monitoring: the alerts (the Helm chart's
//! PrometheusRule and `manifests/optional/monitoring/`) and the Grafana
//! dashboard name only metrics `/metrics` exports, and the chart and the
//! plain manifests ship the same rules and the same dashboard.

use crate::common;

use std::collections::BTreeSet;

use chrono::Utc;
use portcullis::metrics::Metrics;
use serde_json::{json, Value};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CHART_RULES: &str = "charts/portcullis/templates/monitoring.yaml";
const RULES: &str = "manifests/optional/monitoring/prometheusrule.yaml";
const CHART_DASHBOARD: &str = "charts/portcullis/files/grafana-dashboard.json";
const DASHBOARD: &str = "manifests/optional/monitoring/grafana-dashboard.json";

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A policy with an exception and a trusted root whose Fulcio key ends, so
/// that the gauges computed from the policy have series.
fn policy(dir: &std::path::Path) -> portcullis::policy::Policy {
    let mut root: Value = serde_json::from_str(&read("tests/fixtures/keyless/trusted_root.public-good.json")).unwrap();
    let end = Utc::now() + chrono::Duration::days(20);
    for ca in root["certificateAuthorities"].as_array_mut().unwrap() {
        ca["validFor"]["end"] = json!(end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    std::fs::write(dir.join("trusted_root.json"), serde_json::to_vec(&root).unwrap()).unwrap();
    let path = dir.join("policy.yaml");
    std::fs::write(
        &path,
        r#"apiVersion: portcullis.dev/v1alpha1
kind: PromotionPolicy
spec:
  signers:
    ci:
      keyless:
        trustedRoot: trusted_root.json
        identities:
          - issuer: https://token.actions.githubusercontent.com
            subject: https://github.com/acme/shop/.github/workflows/release.yml@refs/heads/main
  defaultTier: production
  tiers:
    production:
      vulnerabilities: { signedBy: [ci], maxAge: 24h, max: { critical: 0 } }
  exceptions:
    - id: CVE-2024-0001
      tiers: [production]
      expires: 2099-12-31
      reason: not reachable
      approvedBy: security@example.com
"#,
    )
    .unwrap();
    portcullis::policy::Policy::from_file(&path).unwrap()
}

/// `/metrics` after every method was called once: each family has a series.
fn rendered() -> String {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path());
    let m = Metrics::new();
    m.decision("production", "denied", "vulnerabilities", 0.02);
    m.image("production", "denied");
    m.registry_request("registry.example.com", "manifest", "200", 0.1);
    m.cache("tag", true);
    m.break_glass("production", "granted");
    m.vex_suppressed("production", "not_affected");
    m.evidence_age("production", "vulnerabilities", 3600.0);
    m.policy_reload("success");
    m.policy_info(policy.digest.as_str(), "/etc/portcullis/policy.yaml");
    m.remediation("production", 7200.0);
    m.promotion("production", 86400.0);
    m.audit_write_error();
    m.events_dropped();
    m.running_with_bases(
        &[("production".into(), "violating".into(), 2)],
        &[("production".into(), 0.5)],
        &[("production".into(), 3600)],
        &[("production".into(), 0.75)],
    );
    m.reevaluation("success", 1.5);
    m.refresh(&policy, Utc::now());
    m.render()
}

/// The names of the samples exposed (`_total`, `_bucket`, `_info`… as they are).
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_string())
        .collect()
}

/// Every `portcullis_…` token of a file: the metrics its expressions name.
fn referenced(path: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"portcullis_[a-z0-9_]+").unwrap();
    re.find_iter(&read(path)).map(|m| m.as_str().to_string()).collect()
}

#[test]
fn metrics_are_exported_under_their_documented_names() {
    let text = rendered();
    let histogram = |name: &str| ["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}"));
    let mut want: BTreeSet<String> = [
        "portcullis_admission_decisions_total",
        "portcullis_image_verdicts_total",
        "portcullis_registry_requests_total",
        "portcullis_cache_requests_total",
        "portcullis_break_glass_total",
        "portcullis_vex_suppressed_total",
        "portcullis_policy_reloads_total",
        "portcullis_policy_info",
        "portcullis_exception_expiry_seconds",
        "portcullis_trusted_root_key_valid_seconds",
        "portcullis_audit_write_errors_total",
        "portcullis_events_dropped_total",
        "portcullis_build_info",
        "portcullis_running_images",
        "portcullis_running_verified_ratio",
        "portcullis_running_base_image_current_ratio",
        "portcullis_violation_age_seconds",
        "portcullis_reevaluations_total",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for h in [
        "portcullis_admission_duration_seconds",
        "portcullis_registry_request_duration_seconds",
        "portcullis_evidence_age_seconds",
        "portcullis_time_to_remediation_seconds",
        "portcullis_time_to_promotion_seconds",
        "portcullis_reevaluation_duration_seconds",
    ] {
        want.extend(histogram(h));
    }
    assert_eq!(sample_names(&text), want, "{text}");
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    // The gauges computed from the policy.
    let series = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).collect::<Vec<_>>();
    let exception = series("portcullis_exception_expiry_seconds{");
    assert_eq!(exception.len(), 1, "{text}");
    assert!(exception[0].starts_with(r#"portcullis_exception_expiry_seconds{id="CVE-2024-0001",tiers="production"} "#));
    let fulcio = series(r#"portcullis_trusted_root_key_valid_seconds{root="trusted_root.json",kind="fulcio"} "#);
    let left: f64 = fulcio[0].rsplit(' ').next().unwrap().parse().unwrap();
    assert!((19.0 * 86400.0..=20.0 * 86400.0).contains(&left), "{left}");
}

#[test]
fn alerts_and_the_dashboard_name_only_exported_metrics() {
    let exported = sample_names(&rendered());
    for path in [CHART_RULES, RULES, CHART_DASHBOARD, DASHBOARD] {
        let names = referenced(path);
        assert!(!names.is_empty(), "{path} names no metric");
        let unknown: Vec<&String> = names.difference(&exported).collect();
        assert!(unknown.is_empty(), "{path} names metrics /metrics does not export: {unknown:?}");
    }
}

/// What runs, as re-evaluation last judged it, has its panels: running
/// images by status, verified coverage, the oldest ongoing violation.
#[test]
fn the_dashboard_shows_what_runs() {
    let dashboard: Value = serde_json::from_str(&read(CHART_DASHBOARD)).unwrap();
    let exprs: Vec<(String, String)> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            p["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |t| (title.clone(), t["expr"].as_str().unwrap_or_default().to_string()))
        })
        .collect();
    for metric in [
        "portcullis_running_images",
        "portcullis_running_verified_ratio",
        "portcullis_violation_age_seconds",
        "portcullis_running_base_image_current_ratio",
    ] {
        assert!(exprs.iter().any(|(_, e)| e.contains(metric)), "no panel shows {metric}: {exprs:?}");
    }
    let ids: BTreeSet<u64> = dashboard["panels"].as_array().unwrap().iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), dashboard["panels"].as_array().unwrap().len(), "panel ids are unique");
}

/// The rules of the chart's PrometheusRule as Prometheus gets them: its
/// `spec`, with Helm's escaping of `{{ … }}` undone.
fn chart_rules() -> Value {
    let text = read(CHART_RULES);
    let rule = &text[text.find("kind: PrometheusRule").expect("the chart has a PrometheusRule")..];
    let spec = &rule[rule.find("\nspec:\n").unwrap() + 1..];
    let spec = &spec[..spec.find("\n{{-").unwrap_or(spec.len())];
    let plain = spec.replace("{{`", "").replace("`}}", "");
    let v: Value = serde_yaml_ng::from_str(&plain).unwrap_or_else(|e| panic!("{e}\n{plain}"));
    v["spec"].clone()
}

#[test]
fn the_chart_and_the_manifests_ship_the_same_alerts_and_dashboard() {
    let rules: Value = serde_yaml_ng::from_str(&read(RULES)).unwrap();
    assert_eq!(rules["kind"], "PrometheusRule");
    assert_eq!(rules["metadata"]["namespace"], "portcullis-system");
    assert_eq!(chart_rules(), rules["spec"], "the chart's rules and {RULES} differ");

    let alerts: Vec<&Value> =
        rules["spec"]["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
    let names: BTreeSet<&str> = alerts.iter().filter_map(|r| r["alert"].as_str()).collect();
    let want = [
        "PortcullisAuditWriteErrors",
        "PortcullisBreakGlass",
        "PortcullisDenialSpike",
        "PortcullisErrors",
        "PortcullisExceptionExpiring",
        "PortcullisPolicyRejected",
        "PortcullisRegistryErrors",
        "PortcullisRunningViolations",
        "PortcullisSlowAdmissions",
        "PortcullisTrustedRootExpiring",
    ];
    assert_eq!(names, want.into_iter().collect(), "the alerts");
    for r in &alerts {
        assert!(r["expr"].as_str().is_some_and(|e| e.contains("portcullis_")), "{r}");
        assert!(r["labels"]["severity"].is_string(), "{r}");
        assert!(r["annotations"]["summary"].as_str().is_some_and(|s| s.len() > 40), "{r}");
    }

    assert!(read(CHART_DASHBOARD) == read(DASHBOARD), "{CHART_DASHBOARD} and {DASHBOARD} differ");
    let d: Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    assert_eq!(d["schemaVersion"], 39);
    let vars = d["templating"]["list"].as_array().unwrap();
    let var = |name: &str| vars.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("no ${name} variable"));
    assert_eq!((&var("datasource")["type"], &var("datasource")["query"]), (&json!("datasource"), &json!("prometheus")));
    assert_eq!(var("tier")["definition"], "label_values(portcullis_admission_decisions_total, tier)");
    let ds = json!({"type": "prometheus", "uid": "${datasource}"});
    let panels: Vec<&Value> = d["panels"].as_array().unwrap().iter().filter(|p| p["type"] != "row").collect();
    for p in &panels {
        assert_eq!(p["datasource"], ds, "{}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"], ds, "{}", p["title"]);
        }
    }
    let titles: BTreeSet<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in [
        "Decisions by result",
        "Denials by tier and reason",
        "Admission latency vs deadline",
        "Registry requests by code",
        "Registry latency",
        "Cache hit ratio",
        "Break-glass uses",
        "Time to remediation",
        "Time to promotion",
        "Evidence age",
        "Exceptions expiring",
        "Trusted root validity",
    ] {
        assert!(titles.contains(want), "no panel {want:?} in {titles:?}");
    }
    let ids: BTreeSet<u64> = d["panels"].as_array().unwrap().iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), d["panels"].as_array().unwrap().len(), "every panel has an id of its own");
}

/// The shipped rules, checked and unit-tested by Prometheus' own promtool
/// (`make tools` builds it): `promtool check rules` on the rules as shipped
/// (their expressions and annotation templates), then `promtool test rules`
/// with tests/fixtures/monitoring/alerts.test.yaml: each alert fires on the
/// series that should raise it and stays quiet on the others.
#[test]
fn promtool_checks_and_tests_the_shipped_rules() {
    let promtool = common::tool("PORTCULLIS_PROMTOOL", "promtool");
    let dir = tempfile::tempdir().unwrap();
    let rules: Value = serde_yaml_ng::from_str(&read(RULES)).unwrap();
    let shipped = dir.path().join("shipped.yaml");
    std::fs::write(&shipped, serde_yaml_ng::to_string(&rules["spec"]).unwrap()).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&promtool).args(args).current_dir(dir.path()).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    let (ok, text) = run(&["check", "rules", "shipped.yaml"]);
    assert!(ok, "promtool check rules: {text}");
    assert!(text.contains("SUCCESS: 10 rules found"), "{text}");
    // The same rules without their annotations: promtool test compares them
    // too, and what is tested here is when each alert fires.
    let mut bare = rules["spec"].clone();
    for g in bare["groups"].as_array_mut().unwrap() {
        for r in g["rules"].as_array_mut().unwrap() {
            r.as_object_mut().unwrap().remove("annotations");
        }
    }
    std::fs::write(dir.path().join("rules.yaml"), serde_yaml_ng::to_string(&bare).unwrap()).unwrap();
    std::fs::copy(format!("{ROOT}/tests/fixtures/monitoring/alerts.test.yaml"), dir.path().join("alerts.test.yaml"))
        .unwrap();
    let (ok, text) = run(&["test", "rules", "alerts.test.yaml"]);
    assert!(ok, "promtool test rules: {text}");
    // Every alert has a test.
    let tests = read("tests/fixtures/monitoring/alerts.test.yaml");
    for g in bare["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let name = r["alert"].as_str().unwrap();
            assert!(tests.contains(&format!("alertname: {name}\n")), "no promtool test for {name}");
        }
    }
}

/// The label sets alerts count on exist at 0 from the first scrape, so that
/// `increase()` sees the first reload rejected and the first break-glass.
#[test]
fn counters_alerts_count_on_start_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let m = Metrics::new();
    m.refresh(&policy(dir.path()), Utc::now());
    let text = m.render();
    for series in [
        r#"portcullis_policy_reloads_total{result="rejected"} 0"#,
        r#"portcullis_policy_reloads_total{result="success"} 0"#,
        r#"portcullis_break_glass_total{tier="production",result="granted"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == series), "no {series} in\n{text}");
    }
}
