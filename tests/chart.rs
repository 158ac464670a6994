//! The Helm chart (`charts/portcullis`), with the real `helm` (built by
//! `make tools`): it lints, renders for every switch, and produces the same
//! webhook rules, namespace selectors and RBAC as the kustomize manifests, so
//! the two install paths stay in step. (The end-to-end suite installs it
//! into a real API server.)

use crate::common;

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
    render_with(&[], sets)
}

/// `helm template` with further arguments (`--api-versions …`) and `--set` values.
fn render_with(extra: &[&str], sets: &[&str]) -> Vec<Value> {
    let (ok, out) = template(extra, sets);
    assert!(ok, "helm template {extra:?} {sets:?}: {out}");
    docs(&out)
}

fn template(extra: &[&str], sets: &[&str]) -> (bool, String) {
    let mut args = vec!["template", "portcullis", CHART, "--namespace", "portcullis-system"];
    args.extend(extra);
    for s in sets {
        args.extend(["--set", s]);
    }
    helm(&args)
}

/// The pod template's spec.
fn pod_spec(docs: &[Value]) -> &Value {
    &find(docs, "Deployment", "portcullis").unwrap()["spec"]["template"]["spec"]
}

/// The volume named `name`, and where the container mounts it.
fn volume(docs: &[Value], name: &str) -> Option<(Value, String)> {
    let spec = pod_spec(docs);
    let v = spec["volumes"].as_array()?.iter().find(|v| v["name"] == name)?.clone();
    let m = spec["containers"][0]["volumeMounts"].as_array()?.iter().find(|m| m["name"] == name)?;
    Some((v, m["mountPath"].as_str()?.to_string()))
}

/// The NOTES.txt `helm install` prints, rendered with `--set` values
/// (`helm template` leaves NOTES out, and `helm install --dry-run` needs a
/// cluster): the chart copied with NOTES.txt beside it, `tpl`-rendered
/// into a ConfigMap by one more template, so it sees the same values and
/// helpers.
fn notes(sets: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("portcullis");
    let copied = Command::new("cp").arg("-r").arg(CHART).arg(&chart).status().unwrap();
    assert!(copied.success());
    std::fs::copy(chart.join("templates/NOTES.txt"), chart.join("notes.txt")).unwrap();
    std::fs::write(
        chart.join("templates/zz-notes.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: helm-notes }\ndata:\n  notes: {{ tpl (.Files.Get \"notes.txt\") . | toJson }}\n",
    )
    .unwrap();
    let mut args = vec!["template", "portcullis", chart.to_str().unwrap(), "--namespace", "portcullis-system"];
    args.extend(["--show-only", "templates/zz-notes.yaml"]);
    for s in sets {
        args.extend(["--set", s]);
    }
    let (ok, out) = helm(&args);
    assert!(ok, "NOTES.txt {sets:?}: {out}");
    docs(&out)[0]["data"]["notes"].as_str().unwrap().to_string()
}

/// The Deployment's pod template.
fn pod_template(docs: &[Value]) -> &Value {
    &find(docs, "Deployment", "portcullis").unwrap()["spec"]["template"]
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
        ("namespaces never sent are never re-evaluated", vec!["webhook.excludeNamespaces={kube-system,legacy}"], |d| {
            let a = args(d);
            let excluded: Vec<&str> =
                a.windows(2).filter(|w| w[0] == "--exclude-namespace").map(|w| w[1].as_str()).collect();
            let skipped = find(d, "ValidatingWebhookConfiguration", "portcullis").unwrap()["webhooks"][0]
                ["namespaceSelector"]
                .to_string();
            (excluded == ["kube-system", "legacy"] && skipped.contains("legacy")).then_some(()).ok_or(format!("{a:?}"))
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
                         "podSelector": {"matchLabels": {"k8s-app": "konnectivity-agent"}}},
                        // `helm test`'s Pod, from this namespace.
                        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "portcullis-test",
                                                         "app.kubernetes.io/instance": "portcullis"}}}]},
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
        ("no helm test, no way in for it", vec!["networkPolicy.apiServer.cidrs={10.0.0.0/28}", "test.enabled=false"], |d| {
            let from = &find(d, "NetworkPolicy", "portcullis").unwrap()["spec"]["ingress"][0]["from"];
            let pods = d.iter().filter(|o| o["kind"] == "Pod").count();
            (*from == json!([{"ipBlock": {"cidr": "10.0.0.0/28"}}]) && pods == 0).then_some(()).ok_or(format!("{from}"))
        }),
        ("the policy reloads without a restart by default: no checksum on the pods", vec![], |d| {
            let meta = &pod_template(d)["metadata"];
            meta["annotations"].get("checksum/policy").is_none().then_some(()).ok_or(format!("{meta}"))
        }),
        ("policy.restartOnChange: a checksum of the policy on the pods", vec!["policy.restartOnChange=true"], |d| {
            let sum = &pod_template(d)["metadata"]["annotations"]["checksum/policy"];
            let other = render(&["policy.restartOnChange=true", "policy.inline=other"]);
            let changed = &pod_template(&other)["metadata"]["annotations"]["checksum/policy"];
            (sum.is_string() && changed.is_string() && sum != changed).then_some(()).ok_or(format!("{sum} {changed}"))
        }),
        ("no audit key by default", vec![], |d| {
            let a = args(d);
            (!a.iter().any(|x| x == "--audit-key") && volume(d, "audit-key").is_none())
                .then_some(())
                .ok_or(format!("{a:?}"))
        }),
        ("a keyed audit trail from a Secret", vec!["auditKey.existingSecret=audit-key"], |d| {
            let a = args(d);
            let (v, at) = volume(d, "audit-key").ok_or("not mounted")?;
            (has(&a, "--audit-key", &format!("{at}/key")) && v["secret"]["secretName"] == "audit-key")
                .then_some(())
                .ok_or(format!("{a:?} {v}"))
        }),
        (
            "Portcullis' own registry credentials from a Secret",
            vec!["registryAuth.existingSecret=regcred"],
            |d| {
                let a = args(d);
                let (v, at) = volume(d, "registry-auth").ok_or("not mounted")?;
                let items = json!([{"key": ".dockerconfigjson", "path": "config.json"}]);
                (has(&a, "--registry-auth", &format!("{at}/config.json"))
                    && v["secret"]["secretName"] == "regcred"
                    && v["secret"]["items"] == items)
                    .then_some(())
                    .ok_or(format!("{a:?} {v}"))
            },
        ),
        (
            "registry CAs: one for every registry, one per host, from ConfigMaps or Secrets",
            vec![
                "registryCA.all.secret=corporate-ca",
                "registryCA.hosts[0].host=registry.example.com:5000",
                "registryCA.hosts[0].configMap=harbor-ca",
                "registryCA.hosts[1].host=quay.internal",
                "registryCA.hosts[1].secret=quay-ca",
                "registryCA.hosts[1].key=root.pem",
            ],
            |d| {
                let a = args(d);
                let cas: Vec<&String> =
                    a.windows(2).filter(|w| w[0] == "--registry-ca").map(|w| &w[1]).collect();
                let (all, all_at) = volume(d, "registry-ca-all").ok_or("no volume for every registry")?;
                let (h0, h0_at) = volume(d, "registry-ca-0").ok_or("no volume for registry.example.com")?;
                let (h1, h1_at) = volume(d, "registry-ca-1").ok_or("no volume for quay.internal")?;
                let want = [
                    format!("{all_at}/ca.crt"),
                    format!("registry.example.com:5000={h0_at}/ca.crt"),
                    format!("quay.internal={h1_at}/ca.crt"),
                ];
                let item = |key: &str| json!([{"key": key, "path": "ca.crt"}]);
                (cas == want.iter().collect::<Vec<_>>()
                    && all["secret"]["secretName"] == "corporate-ca"
                    && all["secret"]["items"] == item("ca.crt")
                    && h0["configMap"]["name"] == "harbor-ca"
                    && h0["configMap"]["items"] == item("ca.crt")
                    && h1["secret"]["secretName"] == "quay-ca"
                    && h1["secret"]["items"] == item("root.pem"))
                .then_some(())
                .ok_or(format!("{cas:?} {all} {h0} {h1}"))
            },
        ),
        ("no registry credentials or CAs by default", vec![], |d| {
            let a = args(d);
            (!a.iter().any(|a| a.starts_with("--registry"))).then_some(()).ok_or(format!("{a:?}"))
        }),
        (
            "extra environment, volumes and mounts",
            vec![
                "extraEnv[0].name=HTTPS_PROXY",
                "extraEnv[0].value=http://proxy:3128",
                "extraVolumes[0].name=helpers",
                "extraVolumes[0].emptyDir.medium=Memory",
                "extraVolumeMounts[0].name=helpers",
                "extraVolumeMounts[0].mountPath=/opt/helpers",
            ],
            |d| {
                let c = &pod_spec(d)["containers"][0];
                let env = c["env"].as_array().unwrap();
                let (v, at) = volume(d, "helpers").ok_or("not mounted")?;
                (env.iter().any(|e| *e == json!({"name": "HTTPS_PROXY", "value": "http://proxy:3128"}))
                    && env.iter().any(|e| e["name"] == "POD_NAMESPACE")
                    && v["emptyDir"]["medium"] == "Memory"
                    && at == "/opt/helpers")
                    .then_some(())
                    .ok_or(format!("{c}"))
            },
        ),
        (
            "pod annotations and labels, never on the selector",
            vec!["podAnnotations.example\\.com/owner=platform", "podLabels.team=platform"],
            |d| {
                let dep = find(d, "Deployment", "portcullis").unwrap();
                let meta = &dep["spec"]["template"]["metadata"];
                (meta["annotations"]["example.com/owner"] == "platform"
                    && meta["labels"]["team"] == "platform"
                    && meta["labels"]["app.kubernetes.io/name"] == "portcullis"
                    && dep["spec"]["selector"]["matchLabels"].get("team").is_none()
                    && find(d, "Service", "portcullis").unwrap()["spec"]["selector"].get("team").is_none())
                .then_some(())
                .ok_or(format!("{meta}"))
            },
        ),
        ("names: fullnameOverride", vec!["fullnameOverride=gate"], |d| {
            let dep = find(d, "Deployment", "gate").ok_or("no Deployment gate")?;
            let spec = &dep["spec"]["template"]["spec"];
            let webhook = &find(d, "ValidatingWebhookConfiguration", "gate").ok_or("no webhooks gate")?["webhooks"][0];
            (spec["serviceAccountName"] == "gate"
                && find(d, "Service", "gate").is_some()
                && find(d, "Secret", "gate-tls").is_some()
                && webhook["clientConfig"]["service"]["name"] == "gate"
                && find(d, "Pod", "gate-test").is_some())
            .then_some(())
            .ok_or(format!("{spec}"))
        }),
        ("names: nameOverride, in the names and the name label", vec!["nameOverride=gate"], |d| {
            let dep = find(d, "Deployment", "portcullis-gate").ok_or("no Deployment portcullis-gate")?;
            let selector = &dep["spec"]["selector"]["matchLabels"];
            let service = &find(d, "Service", "portcullis-gate").ok_or("no Service")?["spec"]["selector"];
            (selector["app.kubernetes.io/name"] == "gate" && service == selector).then_some(()).ok_or(format!("{selector}"))
        }),
        ("by default one replica per node where the nodes allow it", vec![], |d| {
            let a = &pod_spec(d)["affinity"];
            let term = &a["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"];
            (term["topologyKey"] == "kubernetes.io/hostname"
                && term["labelSelector"]["matchLabels"]
                    == json!({"app.kubernetes.io/name": "portcullis", "app.kubernetes.io/instance": "portcullis"}))
            .then_some(())
            .ok_or(format!("{a}"))
        }),
        (
            "an affinity of your own replaces it",
            vec!["affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=pool",
                 "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists"],
            |d| {
                let a = &pod_spec(d)["affinity"];
                (a.get("podAntiAffinity").is_none() && a["nodeAffinity"].is_object()).then_some(()).ok_or(format!("{a}"))
            },
        ),
        (
            "user and groups left to the platform (OpenShift), the rest of the security context fixed",
            vec!["securityContext.runAsUser=null", "securityContext.runAsGroup=null", "securityContext.fsGroup=null"],
            |d| {
                let spec = pod_spec(d);
                let (pod, c) = (&spec["securityContext"], &spec["containers"][0]["securityContext"]);
                let ids = ["runAsUser", "runAsGroup", "fsGroup"];
                (ids.iter().all(|k| pod.get(k).is_none() && c.get(k).is_none())
                    && pod["runAsNonRoot"] == true
                    && c["runAsNonRoot"] == true
                    && c["readOnlyRootFilesystem"] == true
                    && c["allowPrivilegeEscalation"] == false
                    && c["capabilities"]["drop"] == json!(["ALL"]))
                .then_some(())
                .ok_or(format!("{pod} {c}"))
            },
        ),
        ("another user", vec!["securityContext.runAsUser=1000650000"], |d| {
            let spec = pod_spec(d);
            (spec["securityContext"]["runAsUser"] == 1000650000_u64
                && spec["containers"][0]["securityContext"]["runAsUser"] == 1000650000_u64)
                .then_some(())
                .ok_or(format!("{}", spec["securityContext"]))
        }),
        ("a deadline in milliseconds, below the timeout", vec!["deadline=9500ms"], |d| {
            let a = args(d);
            has(&a, "--deadline", "9500ms").then_some(()).ok_or(format!("{a:?}"))
        }),
        ("a longer timeout lets a longer deadline through", vec!["webhook.timeoutSeconds=30", "deadline=25s"], |d| {
            let a = args(d);
            let w = &find(d, "ValidatingWebhookConfiguration", "portcullis").unwrap()["webhooks"][0];
            (has(&a, "--deadline", "25s") && w["timeoutSeconds"] == 30).then_some(()).ok_or(format!("{a:?}"))
        }),
        ("no monitoring objects by default", vec![], |d| {
            let kinds = ["ServiceMonitor", "PrometheusRule"];
            (d.iter().all(|o| !kinds.contains(&o["kind"].as_str().unwrap_or("")))
                && find(d, "ConfigMap", "portcullis-grafana-dashboard").is_none())
            .then_some(())
            .ok_or("rendered".into())
        }),
    ];
    // Every row is tried, and every failing one named.
    let mut failed = Vec::new();
    for (case, sets, check) in rows {
        match template(&[], &sets) {
            (true, out) => {
                if let Err(e) = check(&docs(&out)) {
                    failed.push(format!("{case}: {e}"));
                }
            }
            (false, out) => failed.push(format!("{case}: helm template {sets:?}: {out}")),
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
        // values.schema.json
        ("replicas not a number", &["replicas=abc"], "at '/replicas': got string, want integer"),
        ("no replica", &["replicas=0"], "at '/replicas': minimum"),
        (
            "a failure policy the API server does not know",
            &["webhook.unlabelledFailurePolicy=Never"],
            "at '/webhook/unlabelledFailurePolicy': value must be one of 'Fail', 'Ignore'",
        ),
        ("pinning neither pods, all nor never", &["pinImages=sometimes"], "at '/pinImages': value must be one of"),
        ("a deadline that is not a duration", &["deadline=soon"], "at '/deadline'"),
        ("a deadline without its unit", &["deadline=8"], "at '/deadline': got number, want string"),
        ("a timeout the API server refuses", &["webhook.timeoutSeconds=31"], "at '/webhook/timeoutSeconds'"),
        ("a misspelt value", &["replica=3"], "additional properties 'replica' not allowed"),
        (
            "a misspelt value deeper down",
            &["networkPolicy.apiserver.cidrs={10.0.0.0/8}"],
            "additional properties 'apiserver' not allowed",
        ),
        ("the metrics port on the webhook's", &["metrics.port=8443"], "at '/metrics/port'"),
        ("an image digest that is not one", &["image.digest=latest"], "at '/image/digest'"),
        ("root", &["securityContext.runAsUser=0"], "at '/securityContext/runAsUser': minimum"),
        ("a CRD switch that is neither", &["policyReports.installCRD=maybe"], "at '/policyReports/installCRD'"),
        (
            "a registry CA from both a ConfigMap and a Secret",
            &[
                "registryCA.hosts[0].host=r.example.com",
                "registryCA.hosts[0].configMap=a",
                "registryCA.hosts[0].secret=b",
            ],
            "at '/registryCA/hosts/0'",
        ),
        // templates: what a schema cannot compare
        (
            "a deadline as long as the timeout",
            &["deadline=10s"],
            "deadline (10s) must be above zero and below webhook.timeoutSeconds (10s)",
        ),
        (
            "a deadline longer than the timeout",
            &["deadline=1m"],
            "deadline (1m) must be above zero and below webhook.timeoutSeconds (10s)",
        ),
        (
            "a timeout shorter than the deadline",
            &["webhook.timeoutSeconds=5"],
            "deadline (8s) must be above zero and below webhook.timeoutSeconds (5s)",
        ),
        ("no deadline", &["deadline=0s"], "deadline (0s) must be above zero"),
        (
            "a registry CA for no host",
            &["registryCA.hosts[0].configMap=a"],
            "at '/registryCA/hosts/0': missing property 'host'",
        ),
        ("a registry CA from nowhere", &["registryCA.hosts[0].host=r.example.com"], "at '/registryCA/hosts/0'"),
        (
            "the CA for every registry from both",
            &["registryCA.all.configMap=a", "registryCA.all.secret=b"],
            "registryCA: the CA for every registry needs one of configMap or secret",
        ),
        (
            "a pod label that would change the selector",
            &["podLabels.app\\.kubernetes\\.io/name=other"],
            "podLabels.app.kubernetes.io/name: the chart sets this label",
        ),
    ];
    for (case, sets, says) in refused {
        match template(&[], sets) {
            (true, _) => failed.push(format!("{case}: rendered {sets:?}")),
            (false, err) if !err.contains(says) => failed.push(format!("{case}: {err}")),
            _ => {}
        }
    }
    assert!(failed.is_empty(), "{} failed:\n{}", failed.len(), failed.join("\n"));
}

#[test]
fn chart_installs_the_policyreport_crd_unless_the_cluster_has_it() {
    let crd = |d: &[Value]| find(d, "CustomResourceDefinition", "policyreports.wgpolicyk8s.io").cloned();
    let theirs = manifest("optional/policyreport/crd.yaml");
    // One vendored file, in both places.
    let read = |p: String| std::fs::read_to_string(p).unwrap();
    assert!(
        read(format!("{CHART}/files/policyreport-crd.yaml"))
            == read(format!("{}/manifests/optional/policyreport/crd.yaml", env!("CARGO_MANIFEST_DIR"))),
        "charts/portcullis/files/policyreport-crd.yaml differs from manifests/optional/policyreport/crd.yaml"
    );
    // (case, helm arguments, --set values, installed)
    let has_api = ["--api-versions", "wgpolicyk8s.io/v1alpha2"];
    let rows: &[(&str, &[&str], &[&str], bool)] = &[
        ("auto, the API absent (helm template knows no cluster)", &[], &[], true),
        ("auto, the API already there (Kyverno, policy-reporter)", &has_api, &[], false),
        ("true: whatever the cluster has", &has_api, &["policyReports.installCRD=true"], true),
        ("false: never", &[], &["policyReports.installCRD=false"], false),
    ];
    for (case, extra, sets, installed) in rows {
        let d = render_with(extra, sets);
        let ours = crd(&d);
        assert_eq!(ours.is_some(), *installed, "{case}");
        if let Some(ours) = ours {
            // The vendored CRD, unmodified, as manifests/ ships it.
            assert_eq!(ours["spec"], theirs[0]["spec"], "{case}");
            // Never deleted by Helm: deleting a CRD deletes every report in it.
            assert_eq!(ours["metadata"]["annotations"]["helm.sh/resource-policy"], "keep", "{case}");
        }
    }
    // Re-evaluation can write the reports either way.
    let rbac = render(&["policyReports.installCRD=false"]);
    let rules = find(&rbac, "ClusterRole", "portcullis").unwrap()["rules"].to_string();
    assert!(rules.contains("policyreports"), "{rules}");
}

#[test]
fn notes_say_what_to_do_next() {
    let n = notes(&[]);
    for says in [
        // It runs, and answers.
        "kubectl -n portcullis-system get pods -l app.kubernetes.io/instance=portcullis",
        "helm test portcullis -n portcullis-system",
        // Tiers, attestations, what runs.
        "kubectl label namespace shop-prod portcullis.dev/tier=production",
        // Keyed attestations stay off the public log, as in the README.
        "cosign attest --key scanner.key --tlog-upload=false --type vuln --predicate scan.json",
        "cosign attest --key ci.key --tlog-upload=false --type https://in-toto.io/attestation/test-result/v0.1",
        "--type https://in-toto.io/attestation/test-result/v0.1",
        "portcullis check --policy policy.yaml --tier production",
        "portcullis report --policy policy.yaml",
        "kubectl get policyreports -A",
        // Who fails open and closed.
        "fail CLOSED, the object is refused: namespaces labelled portcullis.dev/tier\n    with any value but development (enforce.portcullis.dev)",
        "fail OPEN, admitted unchecked: portcullis.dev/tier=development (warn.portcullis.dev)",
        "namespaces without the label: fail OPEN (unlabelled.portcullis.dev, failurePolicy Ignore)",
        "never sent to Portcullis: kube-system, kube-public, kube-node-lease, portcullis-system",
        // The shipped policy verifies nothing; the port is open to anyone.
        "WARNING: this is the chart's example policy",
        "Anyone who can reach the webhook port may send it reviews",
    ] {
        assert!(n.contains(says), "NOTES.txt does not say {says:?}:\n{n}");
    }
    // (case, --set values, said, not said)
    let rows: &[(&str, &[&str], &str, &str)] = &[
        ("a policy of your own", &["policy.existingConfigMap=mine"], "get configmap mine", "WARNING"),
        (
            "every tier enforced, the unlabelled too",
            &["webhook.failOpenTiers=null", "webhook.unlabelledFailurePolicy=Fail"],
            "namespaces without the label: fail CLOSED",
            "fail OPEN, admitted unchecked",
        ),
        (
            "another label",
            &["tierLabel=example.com/env"],
            "kubectl label namespace shop-prod example.com/env=production",
            "portcullis.dev/tier",
        ),
        (
            "no re-evaluation",
            &["reevaluation.every=0s"],
            "Re-evaluation in the cluster is off",
            "kubectl get policyreports",
        ),
        (
            "client authentication on",
            &["clientAuth.enabled=true", "clientAuth.caConfigMap=ca"],
            "one review sent to the webhook Service",
            "Anyone who can reach",
        ),
        (
            "the NetworkPolicy narrowed",
            &["networkPolicy.apiServer.cidrs={10.0.0.0/28}"],
            "the NetworkPolicy is what keeps\nothers out",
            "Anyone who can reach",
        ),
    ];
    for (case, sets, said, unsaid) in rows {
        let n = notes(sets);
        assert!(n.contains(said) && !n.contains(unsaid), "{case}: {n}");
    }
}

/// The `helm test` Pod: what it runs, with which CA, let in by the
/// NetworkPolicy, selected by nothing else; and its command, run against a
/// real webhook (the in-process `portcullis serve`), with and without
/// client authentication.
#[test]
fn helm_test_pings_the_webhook_service() {
    let d = render(&["networkPolicy.apiServer.cidrs={10.0.0.0/28}"]);
    let pod = find(&d, "Pod", "portcullis-test").expect("a test Pod");
    assert_eq!(pod["metadata"]["annotations"]["helm.sh/hook"], "test");
    let spec = &pod["spec"];
    let c = &spec["containers"][0];
    assert_eq!(c["image"], pod_spec(&d)["containers"][0]["image"], "the Portcullis image");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(spec["automountServiceAccountToken"], false);
    let ping: Vec<String> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    let url = "https://portcullis.portcullis-system.svc/validate";
    assert_eq!(ping, ["ping", "--ca", "/etc/portcullis/tls/ca.crt", "--expect", "answer", url]);
    // The service the webhooks name, at the path they name.
    let w =
        &find(&d, "ValidatingWebhookConfiguration", "portcullis").unwrap()["webhooks"][0]["clientConfig"]["service"];
    assert_eq!(
        format!(
            "https://{}.{}.svc{}",
            w["name"].as_str().unwrap(),
            w["namespace"].as_str().unwrap(),
            w["path"].as_str().unwrap()
        ),
        url
    );
    // Only the CA of the serving certificate's Secret, never its key.
    let v = &spec["volumes"][0];
    assert_eq!(v["secret"]["secretName"], "portcullis-tls");
    assert_eq!(v["secret"]["items"], json!([{"key": "ca.crt", "path": "ca.crt"}]));
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/etc/portcullis/tls");
    // Not a replica: neither the Service, the PDB nor the NetworkPolicy selects it ...
    let labels = &pod["metadata"]["labels"];
    let selects = |sel: &Value| sel.as_object().unwrap().iter().all(|(k, v)| labels[k] == *v);
    assert!(!selects(&find(&d, "Service", "portcullis").unwrap()["spec"]["selector"]));
    assert!(!selects(&find(&d, "PodDisruptionBudget", "portcullis").unwrap()["spec"]["selector"]["matchLabels"]));
    let np = &find(&d, "NetworkPolicy", "portcullis").unwrap()["spec"];
    assert!(!selects(&np["podSelector"]["matchLabels"]));
    // ... but the NetworkPolicy lets it reach the webhook port.
    let from = np["ingress"][0]["from"].as_array().unwrap();
    assert!(
        from.iter().any(|p| p.get("namespaceSelector").is_none()
            && p["podSelector"]["matchLabels"]
                .as_object()
                .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels[k] == *v))),
        "{from:?}"
    );

    // With client authentication the Pod has no certificate: it expects the refusal.
    let d = render(&["clientAuth.enabled=true", "clientAuth.caSecret=apiserver-ca"]);
    let refused: Vec<String> = find(&d, "Pod", "portcullis-test").unwrap()["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(refused[3..5], ["--expect", "refused"]);

    // The command, against a real webhook: the URL's host made its address,
    // the CA file the one its serving certificate chains to.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let policy = find(&render(&[]), "ConfigMap", "portcullis-policy").unwrap()["data"]["policy.yaml"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let (client_ca, _issuer) = common::test_ca("API server client CA");
    let run = |args: &[String], hook: &common::Webhook| {
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, &hook.ca_pem).unwrap();
        let args: Vec<String> = args
            .iter()
            .map(|a| match a.as_str() {
                "/etc/portcullis/tls/ca.crt" => ca.display().to_string(),
                a => a.replace("https://portcullis.portcullis-system.svc", &hook.url.replace("127.0.0.1", "localhost")),
            })
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_portcullis")).args(&args).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let plain = rt.block_on(common::Webhook::start_with(&policy, Default::default()));
    let certified = rt.block_on(common::Webhook::start_with(
        &policy,
        common::HookOptions { client_ca: Some(client_ca), ..Default::default() },
    ));
    // (case, the Pod's arguments, webhook, exit code, said)
    let rows: [(&str, &[String], &common::Webhook, i32, &str); 4] = [
        ("answered", &ping, &plain, 0, "answered the review (allowed: true)"),
        (
            "refused, as expected with client authentication",
            &refused,
            &certified,
            0,
            "refused a client without a certificate",
        ),
        ("client authentication expected but off", &refused, &plain, 1, "expected a refusal"),
        ("an answer expected but client authentication on", &ping, &certified, 1, "expected an answer"),
    ];
    for (case, args, hook, code, says) in rows {
        let (got, out) = run(args, hook);
        assert!(got == Some(code) && out.contains(says), "{case}: exit {got:?}: {out}");
    }
    // A server whose certificate does not chain to the CA: no answer.
    let other = common::test_tls();
    std::fs::write(dir.path().join("other-ca.crt"), &other.ca_pem).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["ping", "--ca"])
        .arg(dir.path().join("other-ca.crt"))
        .arg(format!("{}/validate", plain.url))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid peer certificate"), "{out:?}");
}

/// Every `helm install` and `helm upgrade` in the README's shell examples,
/// and the examples values.yaml and the README give inline, render.
#[test]
fn documented_examples_render() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    let shipped = find(&render(&[]), "ConfigMap", "portcullis-policy").unwrap()["data"]["policy.yaml"].clone();
    std::fs::write(&policy, shipped.as_str().unwrap()).unwrap();
    let digest = format!("sha256:{}", "0".repeat(64));
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh || !(line.starts_with("helm install ") || line.starts_with("helm upgrade ")) {
            continue;
        }
        let mut command = line.to_string();
        while command.ends_with('\\') {
            command.pop();
            command.push_str(lines.next().unwrap());
        }
        commands.push(command);
    }
    assert!(commands.len() >= 3, "{commands:?}");
    for command in &commands {
        let words = shell_words(command);
        let mut args = vec!["template".to_string()];
        for w in &words[2..] {
            match w.as_str() {
                "--reuse-values" | "--create-namespace" => {}
                "charts/portcullis" => args.push(CHART.into()),
                w => {
                    args.push(w.replace("=policy.yaml", &format!("={}", policy.display())).replace("sha256:…", &digest))
                }
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out) = helm(&args);
        assert!(ok, "README: {command}: {out}");
    }
    // Inline examples (values.yaml comments, README prose).
    for sets in [
        &[
            "registryCA.hosts[0].host=registry.example.com:5000",
            "registryCA.hosts[0].configMap=registry-ca",
            "registryCA.hosts[0].key=ca.crt",
        ][..],
        &["networkPolicy.apiServer.cidrs={10.0.0.10/32,10.0.0.11/32,10.0.0.12/32}"],
        &["certificates.certManager.enabled=true"],
        &["metrics.grafanaDashboard.enabled=true", "metrics.grafanaDashboard.annotations.grafana_folder=Security"],
    ] {
        render(sets);
    }
    let (ok, out) = template(
        &[
            "--set-json",
            r#"networkPolicy.metrics.from=[{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]"#,
        ],
        &[],
    );
    assert!(ok, "{out}");
}

/// A command line split as sh would: words, single and double quotes.
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut started) = (Vec::new(), String::new(), None, false);
    for c in line.chars() {
        match (quote, c) {
            (None, '\'' | '"') => (quote, started) = (Some(c), true),
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (_, c) => (word.push(c), started = true).1,
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// Resources as (API group, version, resource).
type Resources = std::collections::BTreeSet<(String, String, String)>;

/// The resources of every webhook's rules in `docs`, by webhook name.
fn webhook_resources(docs: &[Value]) -> Vec<(String, Resources)> {
    let mut out = Vec::new();
    for d in docs
        .iter()
        .filter(|d| d["kind"] == "ValidatingWebhookConfiguration" || d["kind"] == "MutatingWebhookConfiguration")
    {
        for w in d["webhooks"].as_array().unwrap() {
            let mut set = std::collections::BTreeSet::new();
            for r in w["rules"].as_array().unwrap() {
                let list = |k: &str| -> Vec<String> {
                    r[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
                };
                for g in list("apiGroups") {
                    for v in list("apiVersions") {
                        for res in list("resources") {
                            set.insert((g.clone(), v.clone(), res));
                        }
                    }
                }
            }
            out.push((format!("{} {}", d["kind"].as_str().unwrap(), w["name"].as_str().unwrap()), set));
        }
    }
    out
}

/// The resources a rule of `docs` grants `verb` on, in API group `group`.
fn granted(docs: &[Value], group: &str, verb: &str) -> std::collections::BTreeSet<String> {
    docs.iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
        .flat_map(|d| d["rules"].as_array().into_iter().flatten())
        .filter(|r| r["apiGroups"].as_array().unwrap().iter().any(|g| g == group))
        .filter(|r| r["verbs"].as_array().unwrap().iter().any(|v| v == verb))
        .flat_map(|r| r["resources"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()))
        .collect()
}

/// The lists of kinds the YAML carries are the kinds Portcullis knows
/// (`kinds::KINDS`): every webhook of the manifests and the chart asks for
/// exactly the pod-bearing resources (and the subresources judged with
/// them), and RBAC grants what re-evaluation and rollback read of them (the
/// Pods; each workload rollback patches and where it keeps its revisions).
/// Adding a kind to `kinds.rs`
/// without the YAML, or the YAML without `kinds.rs`, fails here.
#[test]
fn the_yaml_lists_of_kinds_match_kinds_rs() {
    use portcullis::kinds::{self, KINDS};
    use portcullis::watch::rollback::Workload;
    use std::collections::BTreeSet;
    let want: Resources = KINDS
        .iter()
        .flat_map(|k| {
            std::iter::once(k.plural.to_string())
                .chain(k.subresources.iter().map(|s| format!("{}/{s}", k.plural)))
                .map(|res| (k.group.to_string(), k.version.to_string(), res))
        })
        .collect();
    let chart = render(&["reevaluation.rollback.enabled=true"]);
    let sources = [
        ("manifests/40-webhook.yaml", manifest("40-webhook.yaml")),
        ("manifests/41-mutating-webhook.yaml", manifest("41-mutating-webhook.yaml")),
        ("the chart", chart.clone()),
    ];
    for (source, docs) in &sources {
        let webhooks = webhook_resources(docs);
        assert!(!webhooks.is_empty(), "{source} has webhooks");
        for (name, got) in webhooks {
            assert_eq!(got, want, "{source}: {name}");
        }
    }
    let chart_webhooks = webhook_resources(&chart);
    assert!(chart_webhooks.iter().any(|(n, _)| n.starts_with("Mutating")), "the chart renders /mutate by default");

    // RBAC: re-evaluation watches the Pods; rollback patches each workload
    // it can roll back and lists where that workload keeps its revisions.
    let workloads = Workload::ALL;
    let patched: BTreeSet<(&str, &str)> = workloads.iter().map(|w| (w.kind().group, w.kind().plural)).collect();
    let listed: BTreeSet<(&str, &str)> = workloads.iter().map(|w| w.history()).collect();
    let granted_pairs = |docs: &[Value], pairs: &BTreeSet<(&str, &str)>, verb: &str| -> BTreeSet<(String, String)> {
        let groups: BTreeSet<&str> = pairs.iter().map(|(g, _)| *g).collect();
        groups.into_iter().flat_map(|g| granted(docs, g, verb).into_iter().map(move |r| (g.to_string(), r))).collect()
    };
    let owned = |pairs: &BTreeSet<(&str, &str)>| -> BTreeSet<(String, String)> {
        pairs.iter().map(|(g, r)| (g.to_string(), r.to_string())).collect()
    };
    for (source, docs) in [
        ("manifests/10-rbac.yaml", manifest("10-rbac.yaml")),
        ("manifests/optional/rollback-rbac.yaml", manifest("optional/rollback-rbac.yaml")),
        ("the chart", chart),
    ] {
        let core = granted(&docs, kinds::POD.group, "watch");
        if source != "manifests/optional/rollback-rbac.yaml" {
            assert!(core.contains(kinds::POD.plural), "{source}: watch {core:?}");
        }
        if source != "manifests/10-rbac.yaml" {
            assert_eq!(granted_pairs(&docs, &patched, "patch"), owned(&patched), "{source}: patch");
            assert_eq!(granted_pairs(&docs, &patched, "get"), owned(&patched), "{source}: get");
            assert_eq!(granted_pairs(&docs, &listed, "list"), owned(&listed), "{source}: list");
        }
        // No other pod-bearing resource is granted anywhere.
        let read = |k: &kinds::Kind| {
            k.kind == kinds::POD.kind || patched.contains(&(k.group, k.plural)) || listed.contains(&(k.group, k.plural))
        };
        for k in KINDS.iter().filter(|k| !read(k)) {
            assert!(!granted(&docs, k.group, "get").contains(k.plural), "{source}: {}", k.plural);
            assert!(!granted(&docs, k.group, "list").contains(k.plural), "{source}: {}", k.plural);
        }
    }
}
