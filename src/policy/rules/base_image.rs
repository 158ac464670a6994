//! `baseImage`: an image may not be built on a base whose tag has pointed
//! to a newer digest for longer than `maxBehind`. Not an attestation: the
//! base is what the image's manifest names (its annotations, under the
//! image's own digest, so covered by it), and what the base's tag points to
//! now is looked up by the engine ([`crate::evidence::base`]).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::super::eval::{Reason, Verdict};
use super::super::model::{BaseImageRule, OnUnknownBase, TierName};
use crate::evidence::base::{BaseImage, DIGEST, NAME};
use crate::evidence::ImageEvidence;
use crate::image::ImageRef;

/// Where an image stands against its base, worst last (an index judged by
/// its platforms takes its worst platform's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum BaseState {
    /// Built on the digest the base's tag points to now.
    Current,
    /// The tag has moved on, for less than `maxBehind`.
    Behind,
    /// The base is not known: not named, or not resolved.
    Unknown,
    /// The tag has moved on for longer than `maxBehind`.
    Outdated,
}

impl BaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            BaseState::Current => "current",
            BaseState::Behind => "behind",
            BaseState::Unknown => "unknown",
            BaseState::Outdated => "outdated",
        }
    }
}

/// The base image a verdict judged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BaseImageStatus {
    /// The base's name as the manifest writes it (empty when none is named).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The digest built on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub built_on: Option<String>,
    /// The digest the base's name points to now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Since when the newer digest has been available (when it has moved on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    pub status: BaseState,
}

/// Judges `ev`'s base against `rule` at `now`, recording the status, and a
/// problem, a note and a remedy as the case may be.
pub(in crate::policy) fn judge(
    rule: &BaseImageRule,
    tier: &TierName,
    image: &ImageRef,
    ev: &ImageEvidence,
    now: DateTime<Utc>,
    v: &mut Verdict,
) {
    let unknown = |v: &mut Verdict, status: BaseImageStatus, why: String| {
        v.base_image = Some(status);
        match rule.on_unknown {
            OnUnknownBase::Deny => {
                v.fail(
                    Reason::BaseImage,
                    format!("{why}; tier {tier} requires a known base (baseImage.onUnknown: deny)"),
                );
                v.fix(format!(
                    "build with the base annotations ({NAME}, {DIGEST}): buildah, podman and ko write them; \
                     docker buildx build --annotation \"manifest:{NAME}=<base>\" --annotation \"manifest:{DIGEST}=<digest>\""
                ));
            }
            OnUnknownBase::Warn => v.notes.push(format!("{why} (baseImage.onUnknown: warn)")),
            OnUnknownBase::Allow => {}
        }
    };
    let Some(BaseImage { name, built_on, now: current }) = &ev.base else {
        let status = BaseImageStatus {
            name: String::new(),
            built_on: None,
            current: None,
            since: None,
            status: BaseState::Unknown,
        };
        let why =
            format!("{} names no base image: its manifest has no {NAME} and {DIGEST} annotations", image.original);
        return unknown(v, status, why);
    };
    let mut status = BaseImageStatus {
        name: name.clone(),
        built_on: built_on.as_ref().ok().map(|d| d.to_string()),
        current: current.as_ref().ok().map(|c| c.digest.to_string()),
        since: None,
        status: BaseState::Unknown,
    };
    let (on, cur) = match (built_on, current) {
        (Ok(on), Ok(cur)) => (on, cur),
        (Err(e), _) | (_, Err(e)) => {
            let why = format!("the base image {name} of {} is not known: {e}", image.original);
            return unknown(v, status, why);
        }
    };
    if *on == cur.digest {
        status.status = BaseState::Current;
        v.base_image = Some(status);
        return;
    }
    let since = cur.since().min(now);
    status.since = Some(since);
    let behind = now - since;
    let days = behind.num_days();
    let when = since.format("%Y-%m-%d");
    if behind > rule.max_behind.delta() {
        status.status = BaseState::Outdated;
        v.base_image = Some(status);
        v.fail(
            Reason::BaseImage,
            format!(
                "built on {name} {}, but {name} has pointed to {} since {when} ({days} days), longer than tier {tier} \
                 allows (baseImage.maxBehind: {})",
                on.short(),
                cur.digest.short(),
                rule.max_behind
            ),
        );
        v.fix(format!(
            "rebuild {} on the current {name} ({}): docker buildx build --pull …, then attest the new image",
            image.name(),
            cur.digest.short()
        ));
    } else {
        status.status = BaseState::Behind;
        v.base_image = Some(status);
        let left = rule.max_behind.delta() - behind;
        v.notes.push(format!(
            "{name} moved on to {} on {when}: rebuild on it within {} days (baseImage.maxBehind: {})",
            cur.digest.short(),
            left.num_days(),
            rule.max_behind
        ));
    }
}

#[cfg(test)]
mod tests {
    //! The base image rule as a table.
    use super::*;
    use crate::evidence::base::Current;
    use crate::image::Digest;
    use crate::policy::eval::tests::{evidence, name, now, policy};
    use crate::policy::evaluate;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// An image built on `alpine:3.20` at `on`, whose tag points now to `cur`.
    fn built(on: &str, now_: Result<(&str, Option<&str>, &str), &str>) -> ImageEvidence {
        let mut ev = evidence(vec![]);
        ev.base = Some(BaseImage {
            name: "docker.io/library/alpine:3.20".into(),
            built_on: Ok(Digest::of(on.as_bytes())),
            now: now_
                .map(|(d, created, seen)| Current {
                    digest: Digest::of(d.as_bytes()),
                    created: created.map(at),
                    first_seen: at(seen),
                })
                .map_err(str::to_string),
        });
        ev
    }

    #[test]
    fn how_far_behind_the_base_may_be() {
        let rule = |on_unknown: &str| format!("baseImage: {{maxBehind: 14d, onUnknown: {on_unknown}}}");
        // now() is 2026-06-15T12:00:00Z.
        let cases: Vec<(&str, &str, ImageEvidence, bool, BaseState, &str)> = vec![
            ("current", "deny", built("a", Ok(("a", None, "2026-01-01T00:00:00Z"))), true, BaseState::Current, ""),
            (
                "moved 10 days ago, by its config",
                "deny",
                built("a", Ok(("b", Some("2026-06-05T12:00:00Z"), "2026-06-14T00:00:00Z"))),
                true,
                BaseState::Behind,
                "rebuild on it within 4 days",
            ),
            (
                "moved 20 days ago, by its config",
                "deny",
                built("a", Ok(("b", Some("2026-05-26T12:00:00Z"), "2026-06-14T00:00:00Z"))),
                false,
                BaseState::Outdated,
                "since 2026-05-26 (20 days), longer than tier t allows (baseImage.maxBehind: 336h)",
            ),
            (
                "seen before its config says it was made: since the first sight",
                "deny",
                built("a", Ok(("b", Some("2026-06-14T00:00:00Z"), "2026-06-10T00:00:00Z"))),
                true,
                BaseState::Behind,
                "moved on to",
            ),
            (
                "no config time: the first sight, 30 days ago",
                "deny",
                built("a", Ok(("b", None, "2026-05-16T12:00:00Z"))),
                false,
                BaseState::Outdated,
                "(30 days)",
            ),
            (
                "a config time in the future counts from the first sight",
                "deny",
                built("a", Ok(("b", Some("2030-01-01T00:00:00Z"), "2026-06-15T11:00:00Z"))),
                true,
                BaseState::Behind,
                "within 13 days",
            ),
            (
                "unresolvable, denied",
                "deny",
                built("a", Err("registry refused")),
                false,
                BaseState::Unknown,
                "is not known: registry refused; tier t requires a known base (baseImage.onUnknown: deny)",
            ),
            (
                "unresolvable, warned",
                "warn",
                built("a", Err("registry refused")),
                true,
                BaseState::Unknown,
                "(baseImage.onUnknown: warn)",
            ),
            ("unresolvable, allowed", "allow", built("a", Err("registry refused")), true, BaseState::Unknown, ""),
            (
                "no base named, denied",
                "deny",
                evidence(vec![]),
                false,
                BaseState::Unknown,
                "names no base image: its manifest has no org.opencontainers.image.base.name",
            ),
        ];
        for (what, on_unknown, ev, admitted, state, said) in cases {
            let p = policy(&rule(on_unknown), "");
            let image = ImageRef::parse(
                "r.example/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            )
            .unwrap();
            let v = evaluate(&p, &name("t"), &image, Ok(&ev), now());
            assert_eq!(v.admitted, admitted, "{what}: {v:?}");
            assert_eq!(v.base_image.as_ref().map(|b| b.status), Some(state), "{what}");
            let text = format!("{} {}", v.problems.join("; "), v.notes.join("; "));
            assert!(text.contains(said), "{what}: {text}");
            assert_eq!(v.reasons.contains(&Reason::BaseImage), !admitted, "{what}: {:?}", v.reasons);
            if !admitted {
                assert!(!v.remedies.is_empty(), "{what}");
            }
        }
    }

    #[test]
    fn the_policy_reads_the_rule_and_refuses_what_it_cannot_use() {
        let p = policy("baseImage: {maxBehind: 14d}", "");
        assert!(p.base_images);
        let rule = p.tier("t").unwrap().base_image.as_ref().unwrap();
        assert_eq!(rule.on_unknown, OnUnknownBase::Deny, "unknown is denied unless the policy says otherwise");
        assert!(!policy("mode: enforce", "").base_images);
        for (rule, ok) in [
            ("baseImage: {maxBehind: 14d, onUnknown: warn}", true),
            ("baseImage: {maxBehind: soon}", false),
            ("baseImage: {maxBehind: 14d, onUnknown: maybe}", false),
            ("baseImage: {}", false),
            ("baseImage: {maxBehind: 14d, maxAge: 1d}", false),
        ] {
            let y = format!(
                "apiVersion: portcullis.dev/v1alpha1\nkind: PromotionPolicy\nspec:\n  signers: {{}}\n  tiers:\n    t:\n      {rule}\n"
            );
            assert_eq!(crate::policy::Policy::from_yaml(&y, "rule").is_ok(), ok, "{rule}");
        }
    }

    #[test]
    fn a_multi_arch_image_is_judged_per_platform_by_its_own_base() {
        use crate::policy::eval::tests::index;
        let mut ev = index(vec![], vec![("linux/amd64", Ok(vec![])), ("linux/arm64", Ok(vec![]))]);
        let bases = [
            built("a", Ok(("a", None, "2026-01-01T00:00:00Z"))).base,
            built("a", Ok(("b", None, "2026-05-01T00:00:00Z"))).base,
        ];
        for (p, base) in ev.platforms.iter_mut().zip(bases) {
            std::sync::Arc::make_mut(p.evidence.as_mut().unwrap()).base = base;
        }
        let p = policy("baseImage: {maxBehind: 14d}", "");
        let image = ImageRef::parse("r.example/app:1").unwrap();
        let v = evaluate(&p, &name("t"), &image, Ok(&ev), now());
        assert!(!v.admitted, "{v:?}");
        assert_eq!(v.base_image.as_ref().unwrap().status, BaseState::Outdated, "the worst platform's");
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
        assert!(v.problems[0].starts_with("platform linux/arm64"), "{:?}", v.problems);
    }
}
