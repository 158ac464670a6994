//! The Helm chart (`charts/portcullis`), with the real `helm` (built by
//! `make tools`): it lints, renders for every switch, and produces the same
//! webhook rules, namespace selectors and RBAC as the kustomize manifests, so
//! the two install paths stay in step. (The end-to-end suite installs it
//! into a real API server.)

mod common;

use std::process::Command;

use common::tool;
use serde_json::{json, Value};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/portcullis");

fn helm(args: &[&str]) -> (bool, String) {
    let out = Command::new(tool("PORTCULLIS_HELM", "helm")).args(args).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// YAML documents as JSON values (empty ones dropped).
fn docs(text: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| serde_yaml_ng::Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .map(|v| serde_json::to_value(v).unwrap())
        .collect()
}

/// `helm template` with `--set` values.
fn render(sets: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", "portcullis", CHART, "--namespace", "portcullis-system"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let (ok, out) = helm(&args);
    assert!(ok, "helm template {sets:?}: {out}");
    docs(&out)
}

/// `helm template` with `--set` values that must fail: its error.
fn render_error(sets: &[&str]) -> String {
    let mut args = vec!["template", "portcullis", CHART, "--namespace", "portcullis-system"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let (ok, out) = helm(&args);
    assert!(!ok, "helm template {sets:?} rendered: {out}");
    out
}

/// The container's arguments.
fn args(docs: &[Value]) -> Vec<String> {
    let c = &find(docs, "Deployment", "portcullis").unwrap()["spec"]["template"]["spec"]["containers"][0];
    c["args"].as_array().unwrap().iter().filter_map(Value::as_str).map(String::from).collect()
}

/// Whether `args` holds `flag` followed by `value`.
fn has(args: &[String], flag: &str, value: &str) -> bool {
    args.windows(2).any(|w| w[0] == flag && w[1] == value)
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

fn manifest(file: &str) -> Vec<Value> {
    docs(&std::fs::read_to_string(format!("{}/manifests/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap())
}

/// A webhook entry without what legitimately differs between the two paths
/// (how the API server reaches it), with the excluded namespaces as a set.
fn comparable(w: &Value) -> Value {
    let mut w = w.clone();
    w.as_object_mut().unwrap().remove("clientConfig");
    for e in w["namespaceSelector"]["matchExpressions"].as_array_mut().unwrap() {
        if let Some(values) = e["values"].as_array_mut() {
            values.sort_by_key(|v| v.to_string());
        }
    }
    w
}

#[test]
fn chart_lints_and_renders_what_the_manifests_install() {
    let (ok, out) = helm(&["lint", CHART, "--strict"]);
    assert!(ok, "{out}");

    let chart = render(&["pullSecrets.enabled=true", "pullSecrets.withoutClientAuth=true"]);
    // The webhooks: the same entries, rules, selectors and failure policies.
    for (file, kind) in [
        ("40-webhook.yaml", "ValidatingWebhookConfiguration"),
        ("41-mutating-webhook.yaml", "MutatingWebhookConfiguration"),
    ] {
        let ours = find(&chart, kind, "portcullis").unwrap_or_else(|| panic!("the chart renders no {kind}"));
        let theirs = &manifest(file)[0];
        let names = |c: &Value| c["webhooks"].as_array().unwrap().iter().map(|w| w["name"].clone()).collect::<Vec<_>>();
        assert_eq!(names(ours), names(theirs), "{kind}");
        for (a, b) in ours["webhooks"].as_array().unwrap().iter().zip(theirs["webhooks"].as_array().unwrap()) {
            assert_eq!(comparable(a), comparable(b), "{kind} {}", a["name"]);
            assert_eq!(a["clientConfig"]["service"]["path"], b["clientConfig"]["service"]["path"]);
        }
    }
    // RBAC: the same rules, the optional pull-secret role included.
    let rbac = manifest("10-rbac.yaml");
    let optional = manifest("optional/pull-secrets-rbac.yaml");
    for (ours, theirs) in [
        (find(&chart, "ClusterRole", "portcullis"), find(&rbac, "ClusterRole", "portcullis")),
        (
            find(&chart, "ClusterRole", "portcullis-pull-secrets"),
            find(&optional, "ClusterRole", "portcullis-pull-secrets"),
        ),
    ] {
        assert_eq!(ours.unwrap()["rules"], theirs.unwrap()["rules"]);
    }
    // The Deployment: the same security context, probes and mounts.
    let ours = &find(&chart, "Deployment", "portcullis").unwrap()["spec"]["template"]["spec"];
    let deployment = manifest("30-deployment.yaml");
    let theirs = &find(&deployment, "Deployment", "portcullis").unwrap()["spec"]["template"]["spec"];
    assert_eq!(ours["securityContext"], theirs["securityContext"]);
    let (c, d) = (&ours["containers"][0], &theirs["containers"][0]);
    assert_eq!(c["securityContext"], d["securityContext"]);
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"], d[probe]["httpGet"], "{probe}");
    }
    let mounts =
        |c: &Value| c["volumeMounts"].as_array().unwrap().iter().map(|m| m["mountPath"].clone()).collect::<Vec<_>>();
    assert_eq!(mounts(c), mounts(d));
    assert_eq!(c["ports"], d["ports"], "the webhook and metrics ports");
    let args: Vec<&str> = c["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(args.windows(2).any(|w| w == ["--deadline", "8s"]) && args.contains(&"--pull-secrets"), "{args:?}");
    let theirs: Vec<&str> = d["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for a in [&args, &theirs] {
        assert!(a.windows(2).any(|w| w == ["--metrics-listen", "0.0.0.0:9443"]), "{a:?}");
    }
    // The NetworkPolicy: the same ports in and out.
    let ours = &find(&chart, "NetworkPolicy", "portcullis").unwrap()["spec"];
    let policy = manifest("33-networkpolicy.yaml");
    let theirs = &policy[0]["spec"];
    let ports = |rules: &Value| {
        let mut p: Vec<Value> =
            rules.as_array().unwrap().iter().flat_map(|r| r["ports"].as_array().unwrap().clone()).collect();
        p.sort_by_key(|v| v.to_string());
        p.dedup();
        p
    };
    assert_eq!(ports(&ours["ingress"]), ports(&theirs["ingress"]));
    assert_eq!(ports(&ours["egress"]), ports(&theirs["egress"]));
    // The metrics Service scrapes the metrics port on both paths.
    let scrape = manifest("optional/monitoring/servicemonitor.yaml");
    let (ours, theirs) = (
        find(&chart, "Service", "portcullis-metrics").unwrap(),
        find(&scrape, "Service", "portcullis-metrics").unwrap(),
    );
    assert_eq!(ours["spec"]["ports"][0]["port"], theirs["spec"]["ports"][0]["port"]);
    assert_eq!(ours["spec"]["ports"][0]["targetPort"], "metrics");

    // The generated serving certificate is the one the webhooks trust.
    let tls = find(&chart, "Secret", "portcullis-tls").unwrap();
    for kind in ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"] {
        for w in find(&chart, kind, "portcullis").unwrap()["webhooks"].as_array().unwrap() {
            assert_eq!(w["clientConfig"]["caBundle"], tls["data"]["ca.crt"], "{kind}");
        }
    }
    // The policy it ships is a valid one.
    let policy =
        find(&chart, "ConfigMap", "portcullis-policy").unwrap()["data"]["policy.yaml"].as_str().unwrap().to_string();
    portcullis::policy::Policy::from_yaml(&policy, "the chart's policy").unwrap();
}

#[test]
fn chart_switches() {
    // (case, --set values, check)
    type Check = fn(&[Value]) -> Result<(), String>;
    let rows: Vec<(&str, Vec<&str>, Check)> = vec![
        ("lenient tiers come from values", vec!["webhook.failOpenTiers={development,sandbox}"], |d| {
            let w = &find(d, "ValidatingWebhookConfiguration", "portcullis").unwrap()["webhooks"];
            let want = json!(["development", "sandbox"]);
            (w[0]["namespaceSelector"]["matchExpressions"][1]["values"] == want
                && w[1]["namespaceSelector"]["matchExpressions"][0]["values"] == want)
                .then_some(())
                .ok_or(format!("{w}"))
        }),
        ("no lenient tier: every label fails closed", vec!["webhook.failOpenTiers=null"], |d| {
            let w = find(d, "ValidatingWebhookConfiguration", "portcullis").unwrap()["webhooks"]
                .as_array()
                .unwrap()
                .clone();
            let names: Vec<&str> = w.iter().filter_map(|x| x["name"].as_str()).collect();
            (names == ["enforce.portcullis.dev", "unlabelled.portcullis.dev"]).then_some(()).ok_or(format!("{names:?}"))
        }),
        ("an enforcing default tier", vec!["webhook.unlabelledFailurePolicy=Fail"], |d| {
            let w = &find(d, "ValidatingWebhookConfiguration", "portcullis").unwrap()["webhooks"][2];
            (w["failurePolicy"] == "Fail").then_some(()).ok_or(format!("{w}"))
        }),
        ("no pinning: no mutating webhook", vec!["pinImages=never"], |d| {
            find(d, "MutatingWebhookConfiguration", "portcullis").is_none().then_some(()).ok_or("rendered".into())
        }),
        ("cert-manager issues the certificate", vec!["certificates.certManager.enabled=true"], |d| {
            let v = find(d, "ValidatingWebhookConfiguration", "portcullis").unwrap();
            let ok = find(d, "Certificate", "portcullis-serving").is_some()
                && find(d, "Issuer", "portcullis-selfsigned").is_some()
                && find(d, "Secret", "portcullis-tls").is_none()
                && v["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
                    == "portcullis-system/portcullis-serving"
                && v["webhooks"][0]["clientConfig"].get("caBundle").is_none();
            ok.then_some(()).ok_or(format!("{v}"))
        }),
        (
            "monitoring: the same alerts, scrape and dashboard as manifests/optional/monitoring",
            vec![
                "metrics.serviceMonitor.enabled=true",
                "metrics.prometheusRule.enabled=true",
                "metrics.grafanaDashboard.enabled=true",
            ],
            |d| {
                let rules = find(d, "PrometheusRule", "portcullis").ok_or("no PrometheusRule")?;
                let theirs = manifest("optional/monitoring/prometheusrule.yaml");
                if rules["spec"] != theirs[0]["spec"] {
                    return Err(format!("the rules differ: {}", rules["spec"]));
                }
                let monitor = find(d, "ServiceMonitor", "portcullis").ok_or("no ServiceMonitor")?;
                let scrape = manifest("optional/monitoring/servicemonitor.yaml");
                let theirs =
                    find(&scrape, "ServiceMonitor", "portcullis").ok_or("no ServiceMonitor in the manifest")?;
                if monitor["spec"]["endpoints"] != theirs["spec"]["endpoints"] {
                    return Err(format!("the scrapes differ: {}", monitor["spec"]["endpoints"]));
                }
                let dashboard = find(d, "ConfigMap", "portcullis-grafana-dashboard").ok_or("no dashboard ConfigMap")?;
                let file = std::fs::read_to_string(format!("{CHART}/files/grafana-dashboard.json")).unwrap();
                (dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
                    && dashboard["data"]["portcullis.json"].as_str() == Some(file.trim_end()))
                .then_some(())
                .ok_or(format!("{}", dashboard["metadata"]))
            },
        ),
        ("a policy of your own", vec!["policy.existingConfigMap=my-policy"], |d| {
            let dep = find(d, "Deployment", "portcullis").unwrap();
            let vols = dep["spec"]["template"]["spec"]["volumes"].to_string();
            (find(d, "ConfigMap", "portcullis-policy").is_none() && vols.contains("my-policy"))
                .then_some(())
                .ok_or(vols)
        }),
        (
            "an image pinned by digest",
            vec!["image.digest=sha256:0123456789012345678901234567890123456789012345678901234567890123"],
            |d| {
                let image = find(d, "Deployment", "portcullis").unwrap()["spec"]["template"]["spec"]["containers"][0]
                    ["image"]
                    .clone();
                (image == "ghcr.io/portcullis-dev/portcullis:0.1.0@sha256:0123456789012345678901234567890123456789012345678901234567890123")
                .then_some(()).ok_or(format!("{image}"))
            },
        ),
        (
            "client authentication, the CA from a ConfigMap",
            vec!["clientAuth.enabled=true", "clientAuth.caConfigMap=apiserver-client-ca", "clientAuth.names={kube-apiserver,apiserver.internal}"],
            |d| {
                let a = args(d);
                let spec = &find(d, "Deployment", "portcullis").unwrap()["spec"]["template"]["spec"];
                let volume = spec["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "client-ca").cloned();
                let mounted = spec["containers"][0]["volumeMounts"].to_string().contains("/etc/portcullis/client-ca");
                (has(&a, "--client-ca", "/etc/portcullis/client-ca/ca.crt")
                    && has(&a, "--client-name", "kube-apiserver")
                    && has(&a, "--client-name", "apiserver.internal")
                    && mounted
                    && volume.as_ref().is_some_and(|v| v["configMap"]["name"] == "apiserver-client-ca"))
                .then_some(())
                .ok_or(format!("{a:?} {volume:?}"))
            },
        ),
        ("client authentication, the CA from a Secret", vec!["clientAuth.enabled=true", "clientAuth.caSecret=apiserver-client-ca"], |d| {
            let vols = find(d, "Deployment", "portcullis").unwrap()["spec"]["template"]["spec"]["volumes"].clone();
            let v = vols.as_array().unwrap().iter().find(|v| v["name"] == "client-ca").cloned().unwrap_or_default();
            (v["secret"]["secretName"] == "apiserver-client-ca" && !args(d).iter().any(|a| a == "--client-name"))
                .then_some(())
                .ok_or(format!("{v}"))
        }),
        ("no client authentication by default", vec![], |d| {
            let a = args(d);
            (!a.iter().any(|a| a.starts_with("--client"))).then_some(()).ok_or(format!("{a:?}"))
        }),
        ("pull secrets with client authentication", vec!["pullSecrets.enabled=true", "clientAuth.enabled=true", "clientAuth.caConfigMap=ca"], |d| {
            let a = args(d);
            (a.iter().any(|a| a == "--pull-secrets") && !a.iter().any(|a| a == "--pull-secrets-without-client-auth"))
                .then_some(())
                .ok_or(format!("{a:?}"))
        }),
        ("pull secrets without it, the risk accepted", vec!["pullSecrets.enabled=true", "pullSecrets.withoutClientAuth=true"], |d| {
            let a = args(d);
            (a.iter().any(|a| a == "--pull-secrets-without-client-auth")).then_some(()).ok_or(format!("{a:?}"))
        }),
        (
            "the webhook port from the API server, the metrics port from the monitoring namespace",
            vec![
                "networkPolicy.apiServer.cidrs={10.0.0.0/28,192.168.10.0/24}",
                "networkPolicy.apiServer.from[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=kube-system",
                "networkPolicy.apiServer.from[0].podSelector.matchLabels.k8s-app=konnectivity-agent",
                "networkPolicy.metrics.from[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring",
            ],
            |d| {
                let ingress = &find(d, "NetworkPolicy", "portcullis").unwrap()["spec"]["ingress"];
                let want = json!([
                    {"ports": [{"protocol": "TCP", "port": 8443}], "from": [
                        {"ipBlock": {"cidr": "10.0.0.0/28"}},
                        {"ipBlock": {"cidr": "192.168.10.0/24"}},
                        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                         "podSelector": {"matchLabels": {"k8s-app": "konnectivity-agent"}}}]},
                    {"ports": [{"protocol": "TCP", "port": 9443}], "from": [
                        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}
                ]);
                (*ingress == want).then_some(()).ok_or(format!("{ingress}"))
            },
        ),
        ("by default the ports are open (where the API server comes from is cluster-specific)", vec![], |d| {
            let ingress = &find(d, "NetworkPolicy", "portcullis").unwrap()["spec"]["ingress"];
            let want = json!([{"ports": [{"protocol": "TCP", "port": 8443}]}, {"ports": [{"protocol": "TCP", "port": 9443}]}]);
            (*ingress == want).then_some(()).ok_or(format!("{ingress}"))
        }),
        ("no pull secrets by default", vec![], |d| {
            let dep = find(d, "Deployment", "portcullis").unwrap().to_string();
            (find(d, "ClusterRole", "portcullis-pull-secrets").is_none() && !dep.contains("--pull-secrets"))
                .then_some(())
                .ok_or("pull secrets on by default".into())
        }),
        ("no monitoring objects by default", vec![], |d| {
            let kinds = ["ServiceMonitor", "PrometheusRule"];
            (d.iter().all(|o| !kinds.contains(&o["kind"].as_str().unwrap_or("")))
                && find(d, "ConfigMap", "portcullis-grafana-dashboard").is_none())
            .then_some(())
            .ok_or("rendered".into())
        }),
    ];
    for (case, sets, check) in rows {
        if let Err(e) = check(&render(&sets)) {
            panic!("{case}: {e}");
        }
    }
    // (case, --set values, what the error says)
    let refused: &[(&str, &[&str], &str)] = &[
        (
            "pull secrets without client authentication",
            &["pullSecrets.enabled=true"],
            "pullSecrets.enabled needs clientAuth.enabled",
        ),
        ("client authentication without a CA", &["clientAuth.enabled=true"], "clientAuth.enabled needs the CA"),
    ];
    for (case, sets, says) in refused {
        let err = render_error(sets);
        assert!(err.contains(says), "{case}: {err}");
    }
}
