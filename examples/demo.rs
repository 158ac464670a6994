//! `make demo`: the gate at work in a minute, on this machine alone.
//!
//! Starts a real OCI registry on loopback, pushes three small images, attests
//! two of them with the real cosign (a clean scan and passing tests; a scan
//! with critical findings), leaves the third unsigned, starts Portcullis
//! (HTTPS, a generated policy and keys) and sends it a Pod for each image in
//! a `production` namespace and a `development` one. Prints what it decided
//! and why, then stops everything. Uses the tools `make tools` builds.

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("Starting a registry on loopback and generating cosign keys for a scanner and a CI…");
    let w = world().await;
    println!("Pushing three images and attesting them with cosign…");
    let images = [
        ("clean", w.image("demo/shop", "clean", Some(("scanner", clean())), Some(("ci", passed()))).await),
        (
            "vulnerable",
            w.image("demo/shop", "vulnerable", Some(("scanner", criticals())), Some(("ci", passed()))).await,
        ),
        ("unsigned", w.image("demo/shop", "unsigned", None, None).await),
    ];
    println!("Starting Portcullis (the generated policy: production enforces, development warns)…\n");
    let hook = Webhook::start(&w.policy, Default::default()).await;

    println!("{:<22} {:<12} {:<9} WHY", "IMAGE", "TIER", "DECISION");
    for (ns, tier) in [("prod", "production"), ("dev", "development")] {
        for (name, _) in &images {
            let tag = format!("{}/demo/shop:{name}", w.reg.host);
            let resp = hook.admit_pod(ns, &[&tag], json!({}), &[]).await;
            let (decision, why) = describe(&resp);
            println!("{:<22} {:<12} {:<9} {why}", format!("demo/shop:{name}"), tier, decision);
        }
    }
    println!(
        "\nEach decision's audit record names the digest judged, the attestations it rests on and the policy digest.\n\
         In CI, `portcullis check IMAGE --policy policy.yaml --tier production` gives the same verdicts (exit 0, 1)."
    );
}

/// ADMITTED, DENIED or WARNED, and the first reason in a few words.
fn describe(resp: &Value) -> (&'static str, String) {
    let warnings: Vec<&str> = resp["warnings"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let message = resp["status"]["message"].as_str().unwrap_or_default();
    let short = |s: &str| {
        // The reasons, after "denied for tier …: " (or, warned, "would be
        // denied in …: "), without the policy digest.
        let s = match s.find("denied for tier ").or_else(|| s.find("denied in ")) {
            Some(i) => s[i..].split_once(": ").map(|(_, r)| r).unwrap_or(s),
            None => s,
        };
        let s = s.split(" [policy").next().unwrap_or(s);
        // Where attestations were looked for is in the audit record; here, what to do.
        let s = match (s.find(" (looked for "), s.find("); ")) {
            (Some(a), Some(b)) if a < b => format!("{}{}", &s[..a], &s[b + 1..]),
            (Some(a), _) => s[..a].to_string(),
            _ => s.to_string(),
        };
        if s.chars().count() > 110 {
            format!("{}…", s.chars().take(110).collect::<String>())
        } else {
            s
        }
    };
    match (resp["allowed"].as_bool(), warnings.first()) {
        (Some(false), _) => ("DENIED", short(message)),
        (Some(true), Some(w)) => ("WARNED", short(w)),
        (Some(true), None) => ("ADMITTED", "evidence verified and within the tier's limits".to_string()),
        _ => ("ERROR", message.to_string()),
    }
}
