//! The gate's flow on a source in memory: the tier, the references, the
//! bound on images, and a carried grant checked against what was judged.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Ask, BreakGlassAsk, CarriedGrant, Gate, Place, Written};
use crate::cluster::TierSource;
use crate::engine::{Engine, EngineConfig, Memory, Source};
use crate::image::Digest;
use crate::metrics::Metrics;
use crate::policy::{
    new_grant, BreakGlassRequest, GrantKeys, ObjectId, Outcome, Policy, Presenter, Reason, EMBEDDED_DEFAULT,
};

fn gate() -> (Arc<Memory>, Gate) {
    let memory = Arc::new(Memory::new());
    memory.tag("r.example/app:v1", &Digest::of(b"app v1"));
    let engine =
        Engine::with_source(memory.clone() as Arc<dyn Source>, &EngineConfig::default(), Arc::new(Metrics::new()));
    let policy = Policy::from_yaml(EMBEDDED_DEFAULT, "default").unwrap();
    let keys = GrantKeys::random().unwrap();
    (memory, Gate::new(engine, policy, TierSource::Static, keys))
}

fn ask<'a>(place: Place<'a>, images: &[&'a str]) -> Ask<'a> {
    Ask {
        place,
        what: "Deployment web".into(),
        images: images.iter().map(|i| Written::new(i, "spec.containers[0].image")).collect(),
        max_images: Some(3),
        keychain: Default::default(),
        break_glass: BreakGlassAsk::default(),
        deadline: Instant::now() + Duration::from_secs(10),
        vex: &[],
    }
}

#[tokio::test]
async fn one_flow_for_every_ask() {
    // (case, place, images, allowed, reason, tier judged in, message contains, source requests)
    type Row<'a> = (&'a str, Place<'a>, Vec<&'a str>, bool, &'a str, Option<&'a str>, &'a str, u64);
    let rows: Vec<Row<'_>> = vec![
        (
            "a warn tier admits",
            Place::Namespace("dev"),
            vec!["r.example/app:v1"],
            true,
            "no_attestations",
            Some("development"),
            "",
            2,
        ),
        (
            "the default tier",
            Place::Namespace("elsewhere"),
            vec!["r.example/app:v1"],
            true,
            "no_attestations",
            Some("development"),
            "",
            2,
        ),
        (
            "an enforcing tier denies",
            Place::Namespace("prod"),
            vec!["r.example/app:v1"],
            false,
            "no_attestations",
            Some("production"),
            "r.example/app@sha256:",
            2,
        ),
        (
            "a tier by name",
            Place::Tier("staging"),
            vec!["r.example/app:v1"],
            false,
            "no_attestations",
            Some("staging"),
            "",
            2,
        ),
        (
            "an undefined tier",
            Place::Tier("qa"),
            vec!["r.example/app:v1"],
            false,
            "tier",
            None,
            "tier qa is not defined in the policy",
            0,
        ),
        (
            "too many images: refused before any lookup",
            Place::Namespace("prod"),
            vec!["r.example/a:1", "r.example/b:1", "r.example/c:1", "r.example/d:1"],
            false,
            "too_many_images",
            None,
            "Deployment web names 4 distinct images, more than the limit of 3",
            0,
        ),
        (
            "the same image twice is one",
            Place::Namespace("prod"),
            vec!["r.example/app:v1", "r.example/app:v1"],
            false,
            "no_attestations",
            Some("production"),
            "",
            2,
        ),
        (
            "a bad reference is a denial of its own, with where it is written",
            Place::Namespace("dev"),
            vec!["r.example/App:v1"],
            false,
            "digest",
            Some("development"),
            "spec.containers[0].image: ",
            0,
        ),
    ];
    for (case, place, images, allowed, reason, tier, says, requests) in rows {
        let (memory, gate) = gate();
        let j = gate.judge(ask(place, &images)).await;
        assert_eq!(j.decision.allowed, allowed, "{case}: {:?}", j.decision.message);
        assert_eq!(j.decision.reason, reason, "{case}: {:?}", j.decision);
        assert_eq!(j.tier.as_ref().map(|t| t.as_str()), tier, "{case}");
        let message = j.decision.message.clone().unwrap_or_default();
        assert!(message.contains(says), "{case}: {message}");
        assert_eq!(memory.requests(), requests, "{case}");
        let distinct: BTreeSet<&&str> = images.iter().collect();
        if tier.is_some() {
            assert_eq!(j.decision.verdicts.len(), distinct.len(), "{case}");
            assert!(images.iter().all(|i| j.verdict(i).is_some()), "{case}");
        }
    }
}

#[tokio::test]
async fn a_carried_grant_counts_only_for_the_user_it_names_and_what_was_judged() {
    let (_, gate) = gate();
    let policy = gate.policy();
    let tier = policy.tier_name("production").unwrap();
    let object = ObjectId { kind: "Deployment".into(), name: "web".into() };
    let groups = vec!["sre-oncall".to_string()];
    let asked = BreakGlassRequest {
        justification: Some("INC-1: the payment outage"),
        ticket: Some("INC-1"),
        written: true,
        user: "bob",
        groups: &groups,
        ..Default::default()
    };
    let judged = BTreeSet::from([Digest::of(b"app v1").to_string()]);
    let mint = |digests: BTreeSet<String>| {
        let g =
            new_grant("prod", &tier, policy.tier("production").unwrap(), object.clone(), digests, &asked, gate.now())
                .unwrap();
        gate.grant_keys().sign(&g)
    };
    let (for_app, for_other) = (mint(judged), mint(BTreeSet::from([Digest::of(b"other").to_string()])));
    // (case, token, presented by, break-glass)
    let rows = [
        ("bob presents his grant", &for_app, "bob", true),
        ("alice presents bob's grant", &for_app, "alice", false),
        ("a grant for other digests", &for_other, "bob", false),
        ("a forged token", &"v1.forged".to_string(), "bob", false),
    ];
    for (case, token, by, broken) in rows {
        let mut a = ask(Place::Namespace("prod"), &["r.example/app:v1"]);
        a.break_glass.grant = Some(CarriedGrant {
            token,
            object: object.clone(),
            controller: None,
            by: Presenter { user: by, controller: false },
        });
        let j = gate.judge(a).await;
        assert_eq!(j.decision.outcome == Outcome::BreakGlass, broken, "{case}: {:?}", j.decision);
        assert_eq!(j.decision.allowed, broken, "{case}");
        assert!(j.decision.verdicts[0].reasons.contains(&Reason::NoAttestations), "{case}");
    }
}
