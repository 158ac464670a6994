//! Break-glass: an audited, justified override of a denial in an emergency,
//! honoured only for someone allowed to break glass in the tier, for the
//! images they broke glass for, for a limited time.
//!
//! A user in one of the tier's `breakGlass.groups` breaks glass directly, by
//! writing (adding or changing) the justification annotation in the very
//! request: a justification someone else wrote earlier is never taken for
//! theirs. Copies that controllers make of a workload's pod
//! template (a Deployment's ReplicaSets and Pods, a CronJob's Jobs) are
//! created by the controller, not by that user: they are honoured only
//! through a **grant** that Portcullis' mutating webhook stamped on the
//! workload's pod template when the allowed user applied it. A grant is a
//! token signed with the server's key (HMAC-SHA256) over the namespace,
//! tier, the object it was granted on, the exact image digests, the time it
//! was issued and when it expires, the user, justification and ticket. A
//! grant is honoured only when it verifies, names the namespace and tier,
//! covers every image digest, has not expired, and is presented either on
//! the object it was stamped on by the user it names, or on a copy of that
//! object by a workload controller: a grant made for one caller is useless
//! to any other. No one without the key can make or widen a grant.
//!
//! Everything here is pure: keys, tokens and the time are arguments.

use super::duration::Duration;
use std::collections::BTreeSet;
use std::fmt;

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::model::{TierName, TierSpec};
use crate::image::Digest;

/// The annotation whose value is the justification.
pub const ANNOTATION: &str = "portcullis.dev/break-glass";
/// Optional ticket reference annotation.
pub const TICKET_ANNOTATION: &str = "portcullis.dev/break-glass-ticket";
/// The signed grant the mutating webhook stamps on a pod template.
pub const GRANT_ANNOTATION: &str = "portcullis.dev/break-glass-grant";
/// How long a grant lasts when the tier sets no `breakGlass.maxDuration`.
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Shortest justification accepted.
const MIN_JUSTIFICATION: usize = 10;
/// Longest justification or ticket carried in a grant.
const MAX_TEXT: usize = 1024;
/// Longest grant token read (an annotation value).
const MAX_TOKEN: usize = 16 << 10;
/// Domain separation for the MAC: a grant can never be confused with
/// anything else the key might sign.
const MAC_CONTEXT: &[u8] = b"portcullis.dev/break-glass-grant/v1\n";
const TOKEN_PREFIX: &str = "v1.";

pub use crate::kinds::ObjectId;

/// What a grant says. Signed as a whole; nothing in it can change without
/// the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    #[serde(rename = "ns")]
    pub namespace: String,
    pub tier: String,
    /// The object the allowed user applied (`Deployment/web`).
    pub object: ObjectId,
    /// Exactly the image digests the user broke glass for.
    pub digests: BTreeSet<String>,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
    pub user: String,
    pub justification: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// Why a grant is not honoured on an object.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("the grant is not a Portcullis grant ({0})")]
    Malformed(String),
    #[error(
        "the grant's signature does not verify: it was edited, forged, or signed with a key this server no longer has"
    )]
    BadSignature,
    #[error("the grant was made for namespace {granted}, not {here}")]
    OtherNamespace { granted: String, here: String },
    #[error("the grant was made for tier {granted}, and namespace is now in tier {here}")]
    OtherTier { granted: String, here: String },
    #[error("the grant was made on {granted}, and {object} is neither it nor made from it")]
    OtherObject { granted: String, object: String },
    #[error(
        "the grant was made for {granted_to}, and on {object} itself it counts only on {granted_to}'s own requests, \
         not {presenter}'s"
    )]
    OtherUser { granted_to: String, object: String, presenter: String },
    #[error(
        "the grant was made on {granted}, and on {object}, a copy of it, it counts only when a workload controller \
         creates it, and {presenter} is not one"
    )]
    NotByController { granted: String, object: String, presenter: String },
    #[error("the grant expired at {0}")]
    Expired(String),
    #[error("the grant does not cover {}: it covers only {}", .missing.join(", "), .granted.join(", "))]
    DigestsNotCovered { missing: Vec<String>, granted: Vec<String> },
    #[error("the digest of {0} could not be resolved, so the grant cannot be checked against it")]
    Unresolved(String),
}

/// The server's grant keys: the first signs, any verifies (rotation).
#[derive(Clone)]
pub struct GrantKeys {
    keys: Vec<aws_lc_rs::hmac::Key>,
}

impl fmt::Debug for GrantKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GrantKeys({} keys)", self.keys.len())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GrantKeyError {
    #[error("break-glass grant key file holds no key (one key per line; the first signs)")]
    Empty,
    #[error("break-glass grant key on line {line} is {len} bytes; use at least 32 (e.g. `openssl rand -hex 32`)")]
    TooShort { line: usize, len: usize },
    #[error("could not generate a random grant key: {0}")]
    Random(String),
}

impl GrantKeys {
    /// Keys from a key file: one per line (surrounding whitespace and empty
    /// lines ignored), each at least 32 bytes; the first signs new grants.
    pub fn from_text(text: &str) -> Result<Self, GrantKeyError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let k = line.trim();
            if k.is_empty() {
                continue;
            }
            if k.len() < 32 {
                return Err(GrantKeyError::TooShort { line: i + 1, len: k.len() });
            }
            keys.push(aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, k.as_bytes()));
        }
        if keys.is_empty() {
            return Err(GrantKeyError::Empty);
        }
        Ok(GrantKeys { keys })
    }

    /// A random key known to this process only.
    pub fn random() -> Result<Self, GrantKeyError> {
        let mut raw = [0u8; 32];
        aws_lc_rs::rand::fill(&mut raw).map_err(|e| GrantKeyError::Random(e.to_string()))?;
        Ok(GrantKeys { keys: vec![aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &raw)] })
    }

    /// The token for `grant`: `v1.<payload>.<mac>`, both base64url.
    pub fn sign(&self, grant: &Grant) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = serde_json::to_vec(grant).unwrap_or_default();
        let tag = aws_lc_rs::hmac::sign(&self.keys[0], &mac_input(&payload));
        format!("{TOKEN_PREFIX}{}.{}", b64.encode(&payload), b64.encode(tag.as_ref()))
    }

    /// Verifies a token's signature and reads the grant in it. Says nothing
    /// yet about where it may be used: see [`check`].
    pub fn open(&self, token: &str) -> Result<Grant, GrantError> {
        let malformed = |why: &str| GrantError::Malformed(why.to_string());
        if token.len() > MAX_TOKEN {
            return Err(malformed("too long"));
        }
        let rest = token.trim().strip_prefix(TOKEN_PREFIX).ok_or_else(|| malformed("unknown version"))?;
        let (payload, tag) = rest.split_once('.').ok_or_else(|| malformed("no signature"))?;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = b64.decode(payload).map_err(|_| malformed("payload is not base64url"))?;
        let tag = b64.decode(tag).map_err(|_| malformed("signature is not base64url"))?;
        let msg = mac_input(&payload);
        if !self.keys.iter().any(|k| aws_lc_rs::hmac::verify(k, &msg, &tag).is_ok()) {
            return Err(GrantError::BadSignature);
        }
        serde_json::from_slice(&payload).map_err(|e| GrantError::Malformed(format!("unreadable payload: {e}")))
    }
}

fn mac_input(payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(MAC_CONTEXT.len() + payload.len());
    m.extend_from_slice(MAC_CONTEXT);
    m.extend_from_slice(payload);
    m
}

/// The object a grant is presented on.
#[derive(Clone, Debug)]
pub struct Presented<'a> {
    pub namespace: &'a str,
    pub tier: &'a str,
    pub object: ObjectId,
    /// Its controller owner reference, if any.
    pub controller: Option<ObjectId>,
    /// `(image as written, digest judged)` for each image judged; `None`
    /// when the digest could not be resolved.
    pub images: Vec<(String, Option<Digest>)>,
    /// Who presents it.
    pub by: Presenter<'a>,
}

/// Who sends the request that presents a grant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Presenter<'a> {
    pub user: &'a str,
    /// The user is one the workload controllers act as ([`is_controller`]).
    pub controller: bool,
}

/// The users kube-controller-manager's workload controllers act as: each
/// controller's own service account (`--use-service-account-credentials`,
/// the default of kubeadm and managed clusters), or the controller manager's
/// identity. Only these make the copies a grant reaches.
pub const CONTROLLER_USERS: &[&str] = &[
    "system:kube-controller-manager",
    "system:serviceaccount:kube-system:deployment-controller",
    "system:serviceaccount:kube-system:replicaset-controller",
    "system:serviceaccount:kube-system:replication-controller",
    "system:serviceaccount:kube-system:statefulset-controller",
    "system:serviceaccount:kube-system:daemon-set-controller",
    "system:serviceaccount:kube-system:job-controller",
    "system:serviceaccount:kube-system:cronjob-controller",
];

/// Whether `user` is a workload controller: one of [`CONTROLLER_USERS`], or
/// one of `extra` (other controllers that copy pod templates, named by the
/// platform team: `--controller-user`).
pub fn is_controller(user: &str, extra: &[String]) -> bool {
    CONTROLLER_USERS.contains(&user) || extra.iter().any(|u| u == user)
}

/// Whether `grant` may be honoured on `at` now: same namespace and tier;
/// presented on the object it was made on by the user it names, or on a
/// copy of that object (made from it by its controllers) by a workload
/// controller; covering every one of its image digests; and not expired (by
/// its own expiry, and by the tier's `maxDuration` now, in case that was
/// shortened since).
pub fn check(grant: &Grant, at: &Presented<'_>, max: Duration, now: DateTime<Utc>) -> Result<(), GrantError> {
    if grant.namespace != at.namespace {
        return Err(GrantError::OtherNamespace { granted: grant.namespace.clone(), here: at.namespace.to_string() });
    }
    if grant.tier != at.tier {
        return Err(GrantError::OtherTier { granted: grant.tier.clone(), here: at.tier.to_string() });
    }
    if at.object == grant.object {
        if at.by.user != grant.user {
            return Err(GrantError::OtherUser {
                granted_to: grant.user.clone(),
                object: at.object.to_string(),
                presenter: at.by.user.to_string(),
            });
        }
    } else if !made_from(&grant.object, at.controller.as_ref()) {
        return Err(GrantError::OtherObject { granted: grant.object.to_string(), object: at.object.to_string() });
    } else if !at.by.controller {
        return Err(GrantError::NotByController {
            granted: grant.object.to_string(),
            object: at.object.to_string(),
            presenter: at.by.user.to_string(),
        });
    }
    let expires = grant.exp.min(expiry(grant.iat, max));
    if now.timestamp() >= expires {
        return Err(GrantError::Expired(unix_rfc3339(expires)));
    }
    let mut missing = Vec::new();
    for (image, digest) in &at.images {
        match digest {
            None => return Err(GrantError::Unresolved(image.clone())),
            Some(d) if !grant.digests.contains(d.as_str()) => missing.push(format!("{image} ({})", d.short())),
            Some(_) => {}
        }
    }
    if !missing.is_empty() {
        let granted = grant.digests.iter().map(|d| d.chars().take("sha256:".len() + 12).collect()).collect();
        return Err(GrantError::DigestsNotCovered { missing, granted });
    }
    Ok(())
}

/// True when an object whose controller is `controller` is a copy the
/// granted object's controllers make: owned by it, or owned by the ReplicaSet a Deployment makes (`<deployment>-<hash>`)
/// or the Job a CronJob makes (`<cronjob>-<n>`).
fn made_from(granted: &ObjectId, controller: Option<&ObjectId>) -> bool {
    let Some(owner) = controller else { return false };
    owner == granted || crate::kinds::made_by(owner, granted)
}

/// When a grant issued at `iat` (Unix seconds) lasting `max` ends.
fn expiry(iat: i64, max: Duration) -> i64 {
    iat.saturating_add(max.secs())
}

fn unix_rfc3339(t: i64) -> String {
    DateTime::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| t.to_string())
}

/// What the request says about break-glass.
#[derive(Clone, Debug, Default)]
pub struct BreakGlassRequest<'a> {
    pub justification: Option<&'a str>,
    pub ticket: Option<&'a str>,
    /// This request wrote the justification: the object is created with it,
    /// or the update adds or changes it. A justification already on the
    /// object (someone's earlier request) is never a break-glass of this one.
    pub written: bool,
    pub user: &'a str,
    pub groups: &'a [String],
    /// The user is a workload controller ([`is_controller`]): it copies what
    /// others wrote and never breaks glass itself.
    pub controller: bool,
    /// The grant the object carries, opened and checked against it
    /// ([`GrantKeys::open`], then [`check`]); `None` when it carries none.
    pub grant: Option<Result<Grant, GrantError>>,
}

/// A grant carried by a copy, as the audit record shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Carried {
    /// The object the grant was made on.
    pub granted_on: String,
    pub issued_at: String,
    /// Who presented it (a controller's service account, typically).
    pub presented_by: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "breakGlass", rename_all = "camelCase")]
pub enum BreakGlass {
    NotRequested,
    #[serde(rename_all = "camelCase")]
    Granted {
        /// The user who broke glass (for a carried grant, the one it was granted to).
        user: String,
        justification: String,
        ticket: Option<String>,
        /// When the override ends.
        expires: String,
        /// Set when the override comes from a grant carried by a copy.
        #[serde(skip_serializing_if = "Option::is_none")]
        carried: Option<Carried>,
    },
    Refused {
        why: String,
    },
}

/// The longest a grant lasts in `tier`.
pub fn max_duration(tier: &TierSpec) -> Duration {
    tier.break_glass.as_ref().and_then(|b| b.max_duration).unwrap_or(DEFAULT_MAX_DURATION)
}

/// Decides whether a break-glass request may override denials in `tier`:
/// directly, for a user in the tier's groups with a justification (and a
/// ticket where required); or through a grant the object carries, checked
/// beforehand. Anything else is refused, with the reason.
pub fn break_glass(
    tier_name: &TierName,
    tier: &TierSpec,
    req: &BreakGlassRequest<'_>,
    now: DateTime<Utc>,
) -> BreakGlass {
    if req.justification.is_none() && req.grant.is_none() {
        return BreakGlass::NotRequested;
    }
    let refuse = |why: String| BreakGlass::Refused { why };
    let Some(bg) = tier.break_glass.as_ref().filter(|b| b.allowed) else {
        return refuse(format!("break-glass is not allowed in tier {tier_name}"));
    };
    let allowed_user = !req.controller && req.groups.iter().any(|g| bg.groups.contains(g));
    if allowed_user && req.justification.is_some() && !req.written && !matches!(req.grant, Some(Ok(_))) {
        let mut why = format!(
            "the {ANNOTATION} justification was not written by this request (it was already on the object); \
             to break glass, add or change it in your own request"
        );
        if let Some(Err(e)) = &req.grant {
            why.push_str(&format!("; the break-glass grant it carries is not honoured: {e}"));
        }
        return refuse(why);
    }
    if allowed_user && req.justification.is_some() && req.written {
        return match direct(tier_name, tier, req) {
            Ok((justification, ticket)) => BreakGlass::Granted {
                user: req.user.to_string(),
                justification,
                ticket,
                expires: unix_rfc3339(expiry(now.timestamp(), max_duration(tier))),
                carried: None,
            },
            Err(why) => refuse(why),
        };
    }
    match &req.grant {
        Some(Ok(g)) => BreakGlass::Granted {
            user: g.user.clone(),
            justification: g.justification.clone(),
            ticket: g.ticket.clone(),
            expires: unix_rfc3339(g.exp),
            carried: Some(Carried {
                granted_on: g.object.to_string(),
                issued_at: unix_rfc3339(g.iat),
                presented_by: req.user.to_string(),
            }),
        },
        Some(Err(e)) => refuse(format!("the break-glass grant it carries is not honoured: {e}")),
        None if req.controller => refuse(format!(
            "{} is a workload controller: it never breaks glass itself, and an object it makes from a workload \
             carries break-glass only through the {GRANT_ANNOTATION} that Portcullis stamps when an allowed user \
             applies the workload",
            req.user
        )),
        None => refuse(format!(
            "user {} is not in a group allowed to break glass in tier {tier_name} ({}); an object a controller makes \
             from a workload carries break-glass only through the {GRANT_ANNOTATION} that Portcullis stamps when an \
             allowed user applies the workload",
            req.user,
            bg.groups.join(", ")
        )),
    }
}

/// The justification and ticket of a direct break-glass, or why it is refused.
fn direct(
    tier_name: &TierName,
    tier: &TierSpec,
    req: &BreakGlassRequest<'_>,
) -> Result<(String, Option<String>), String> {
    let justification = req.justification.map(str::trim).unwrap_or("");
    if justification.chars().count() < MIN_JUSTIFICATION {
        return Err(format!(
            "the {ANNOTATION} annotation must carry a justification (at least {MIN_JUSTIFICATION} characters)"
        ));
    }
    if justification.len() > MAX_TEXT {
        return Err(format!("the {ANNOTATION} justification is longer than {MAX_TEXT} bytes"));
    }
    let ticket = req.ticket.map(str::trim).filter(|t| !t.is_empty());
    if tier.break_glass.as_ref().is_some_and(|b| b.require_ticket) && ticket.is_none() {
        return Err(format!("tier {tier_name} requires a ticket in the {TICKET_ANNOTATION} annotation"));
    }
    if ticket.is_some_and(|t| t.len() > MAX_TEXT) {
        return Err(format!("the {TICKET_ANNOTATION} is longer than {MAX_TEXT} bytes"));
    }
    Ok((justification.to_string(), ticket.map(String::from)))
}

/// The grant to stamp on `object` for a direct break-glass by `req.user`, or
/// why none is made. `digests` are those of every image of the object.
pub fn new_grant(
    namespace: &str,
    tier_name: &TierName,
    tier: &TierSpec,
    object: ObjectId,
    digests: BTreeSet<String>,
    req: &BreakGlassRequest<'_>,
    now: DateTime<Utc>,
) -> Result<Grant, String> {
    match break_glass(tier_name, tier, &BreakGlassRequest { grant: None, ..req.clone() }, now) {
        BreakGlass::Granted { user, justification, ticket, .. } => {
            let iat = now.timestamp();
            let exp = expiry(iat, max_duration(tier));
            Ok(Grant {
                namespace: namespace.to_string(),
                tier: tier_name.to_string(),
                object,
                digests,
                iat,
                exp,
                user,
                justification,
                ticket,
            })
        }
        BreakGlass::Refused { why } => Err(why),
        BreakGlass::NotRequested => Err("no break-glass requested".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::BreakGlassSpec;

    /// A tier name, as the policy would make it.
    fn name(tier: &str) -> TierName {
        TierName(tier.into())
    }

    fn tier(max: Option<Duration>) -> TierSpec {
        serde_yaml_ng::from_str::<TierSpec>("{}")
            .map(|mut t| {
                t.break_glass = Some(BreakGlassSpec {
                    allowed: true,
                    groups: vec!["sre-oncall".into()],
                    require_ticket: true,
                    max_duration: max,
                });
                t
            })
            .unwrap()
    }

    fn d(seed: &str) -> Digest {
        Digest::of(seed.as_bytes())
    }

    fn obj(kind: &str, name: &str) -> ObjectId {
        ObjectId { kind: kind.into(), name: name.into() }
    }

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn grant() -> Grant {
        Grant {
            namespace: "prod".into(),
            tier: "production".into(),
            object: obj("Deployment", "web"),
            digests: [d("a").to_string(), d("b").to_string()].into(),
            iat: t0().timestamp(),
            exp: t0().timestamp() + 3600,
            user: "alice".into(),
            justification: "payments outage, rolling forward".into(),
            ticket: Some("INC-1".into()),
        }
    }

    /// `object` presented: the granted object by its user, a copy by a controller.
    fn presented(kind: &str, name: &str, owner: Option<(&str, &str)>, images: &[&str]) -> Presented<'static> {
        let by = if owner.is_some() {
            Presenter { user: "system:serviceaccount:kube-system:replicaset-controller", controller: true }
        } else {
            Presenter { user: "alice", controller: false }
        };
        Presented {
            namespace: "prod",
            tier: "production",
            object: obj(kind, name),
            controller: owner.map(|(k, n)| obj(k, n)),
            images: images.iter().map(|s| (format!("img-{s}"), Some(d(s)))).collect(),
            by,
        }
    }

    #[test]
    fn grant_tokens_verify_only_unchanged_and_with_the_key() {
        let keys = GrantKeys::from_text("0123456789abcdef0123456789abcdef\n").unwrap();
        let token = keys.sign(&grant());
        assert_eq!(keys.open(&token).unwrap(), grant());
        // Rotation: a new first key signs, the old one still verifies.
        let rotated =
            GrantKeys::from_text("fedcba9876543210fedcba9876543210\n0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(rotated.open(&token).unwrap(), grant());
        let other = GrantKeys::from_text("ffffffffffffffffffffffffffffffff").unwrap();
        assert_eq!(other.open(&token), Err(GrantError::BadSignature));
        // Widening the digests (or anything else) breaks the signature.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (_, mac) = token.trim_start_matches(TOKEN_PREFIX).split_once('.').unwrap();
        let mut wider = grant();
        wider.digests.insert(d("evil").to_string());
        let forged = format!("{TOKEN_PREFIX}{}.{mac}", b64.encode(serde_json::to_vec(&wider).unwrap()));
        assert_eq!(keys.open(&forged), Err(GrantError::BadSignature));
        for bad in ["", "v1.", "v2.abc.def", "v1.!!.!!", &"v1.".repeat(10_000)] {
            assert!(matches!(keys.open(bad), Err(GrantError::Malformed(_))), "{bad:.20}");
        }
        assert!(matches!(GrantKeys::from_text("short"), Err(GrantKeyError::TooShort { line: 1, len: 5 })));
        assert!(matches!(GrantKeys::from_text("\n  \n"), Err(GrantKeyError::Empty)));
    }

    #[test]
    fn where_a_grant_is_honoured() {
        let max = DEFAULT_MAX_DURATION;
        let now = t0() + chrono::Duration::minutes(5);
        let ok = |p: &Presented<'_>| check(&grant(), p, max, now);
        // (case, object presented, honoured)
        let rows: Vec<(&str, Presented<'static>, bool)> = vec![
            ("the granted Deployment itself", presented("Deployment", "web", None, &["a", "b"]), true),
            ("its ReplicaSet", presented("ReplicaSet", "web-5d8f9", Some(("Deployment", "web")), &["a", "b"]), true),
            (
                "a Pod of its ReplicaSet",
                presented("Pod", "web-5d8f9-x2", Some(("ReplicaSet", "web-5d8f9")), &["a", "b"]),
                true,
            ),
            (
                "a Pod with a subset of the images",
                presented("Pod", "web-5d8f9-x3", Some(("ReplicaSet", "web-5d8f9")), &["a"]),
                true,
            ),
            (
                "a Pod with an image not granted",
                presented("Pod", "web-5d8f9-x4", Some(("ReplicaSet", "web-5d8f9")), &["a", "c"]),
                false,
            ),
            ("a Pod owned by nothing", presented("Pod", "web-5d8f9-x5", None, &["a", "b"]), false),
            ("another Deployment", presented("Deployment", "api", None, &["a", "b"]), false),
            (
                "a ReplicaSet of another Deployment",
                presented("ReplicaSet", "api-5d8f9", Some(("Deployment", "api")), &["a"]),
                false,
            ),
            (
                "a Pod owned by a ReplicaSet named like it but without a hash",
                presented("Pod", "x", Some(("ReplicaSet", "web-")), &["a"]),
                false,
            ),
            (
                "a Pod owned by a StatefulSet named web-x",
                presented("Pod", "x", Some(("StatefulSet", "web-x")), &["a"]),
                false,
            ),
        ];
        for (case, p, honoured) in rows {
            assert_eq!(ok(&p).is_ok(), honoured, "{case}: {:?}", ok(&p));
        }
        // Who presents it: the user it names on the granted object; a
        // workload controller on a copy. Anyone else gets nothing from it.
        let by = |user: &'static str, controller: bool| Presenter { user, controller };
        let mut own = presented("Deployment", "web", None, &["a"]);
        // (case, object presented, presenter, error)
        let rows: Vec<(&str, Presented<'static>, Presenter<'static>, Option<GrantError>)> = vec![
            ("its user, on the granted object", own.clone(), by("alice", false), None),
            (
                "another user, on the granted object",
                own.clone(),
                by("mallory", false),
                Some(GrantError::OtherUser {
                    granted_to: "alice".into(),
                    object: "Deployment/web".into(),
                    presenter: "mallory".into(),
                }),
            ),
            (
                "a controller, on the granted object",
                own.clone(),
                by("system:serviceaccount:kube-system:deployment-controller", true),
                Some(GrantError::OtherUser {
                    granted_to: "alice".into(),
                    object: "Deployment/web".into(),
                    presenter: "system:serviceaccount:kube-system:deployment-controller".into(),
                }),
            ),
            (
                "its user, on a copy she made herself",
                presented("ReplicaSet", "web-5d8f9", Some(("Deployment", "web")), &["a"]),
                by("alice", false),
                Some(GrantError::NotByController {
                    granted: "Deployment/web".into(),
                    object: "ReplicaSet/web-5d8f9".into(),
                    presenter: "alice".into(),
                }),
            ),
            (
                "another user, on a copy",
                presented("Pod", "web-5d8f9-x2", Some(("ReplicaSet", "web-5d8f9")), &["a"]),
                by("mallory", false),
                Some(GrantError::NotByController {
                    granted: "Deployment/web".into(),
                    object: "Pod/web-5d8f9-x2".into(),
                    presenter: "mallory".into(),
                }),
            ),
            (
                "a controller, on a copy",
                presented("Pod", "web-5d8f9-x2", Some(("ReplicaSet", "web-5d8f9")), &["a"]),
                by("system:kube-controller-manager", true),
                None,
            ),
        ];
        for (case, mut p, presenter, want) in rows {
            p.by = presenter;
            assert_eq!(ok(&p).err(), want, "{case}");
        }
        own.by = by("alice", false);
        assert!(ok(&own).is_ok());
        assert!(is_controller("system:serviceaccount:kube-system:replicaset-controller", &[]));
        assert!(!is_controller("system:serviceaccount:kube-system:coredns", &[]));
        assert!(!is_controller("system:serviceaccount:prod:replicaset-controller", &[]));
        assert!(is_controller(
            "system:serviceaccount:argo-rollouts:argo-rollouts",
            &["system:serviceaccount:argo-rollouts:argo-rollouts".into()]
        ));
        let mut p = presented("Deployment", "web", None, &["a"]);
        p.namespace = "other";
        assert!(matches!(ok(&p), Err(GrantError::OtherNamespace { .. })));
        let mut p = presented("Deployment", "web", None, &["a"]);
        p.tier = "staging";
        assert!(matches!(ok(&p), Err(GrantError::OtherTier { .. })));
        let mut p = presented("Deployment", "web", None, &["a"]);
        p.images.push(("img-unresolved".into(), None));
        assert!(matches!(ok(&p), Err(GrantError::Unresolved(_))));
        // Expiry: its own, and the tier's maxDuration if shortened since.
        let p = presented("Deployment", "web", None, &["a"]);
        assert!(check(&grant(), &p, max, t0() + chrono::Duration::minutes(59)).is_ok());
        assert_eq!(
            check(&grant(), &p, max, t0() + chrono::Duration::minutes(60)),
            Err(GrantError::Expired("2026-11-23T11:00:00Z".into()))
        );
        assert!(matches!(check(&grant(), &p, Duration::from_secs(60), now), Err(GrantError::Expired(_))));
        // CronJob -> Job -> Pod.
        let mut g = grant();
        g.object = obj("CronJob", "nightly");
        let job = presented("Job", "nightly-29001", Some(("CronJob", "nightly")), &["a"]);
        let job_pod = presented("Pod", "nightly-29001-abc", Some(("Job", "nightly-29001")), &["a"]);
        assert!(check(&g, &job, max, now).is_ok() && check(&g, &job_pod, max, now).is_ok());
    }

    #[test]
    fn who_may_break_glass() {
        let t = tier(Some(Duration::from_secs(3600)));
        let sre = vec!["sre-oncall".to_string()];
        let dev = vec!["developers".to_string()];
        let now = t0();
        let req = |groups: &'static [String],
                   j: Option<&'static str>,
                   ticket: Option<&'static str>,
                   grant: Option<Result<Grant, GrantError>>| {
            BreakGlassRequest { justification: j, ticket, written: true, user: "bob", groups, controller: false, grant }
        };
        let earlier = |r: BreakGlassRequest<'static>| BreakGlassRequest { written: false, ..r };
        let controller = |r: BreakGlassRequest<'static>| BreakGlassRequest { controller: true, ..r };
        let sre: &'static [String] = Box::leak(sre.into_boxed_slice());
        let dev: &'static [String] = Box::leak(dev.into_boxed_slice());
        let why = "payments outage, rolling forward";
        // (case, request, granted, text of the refusal)
        let rows: Vec<(&str, BreakGlassRequest<'static>, bool, &str)> = vec![
            ("nothing asked", req(dev, None, None, None), false, ""),
            ("allowed group, justified, ticket", req(sre, Some(why), Some("INC-1"), None), true, ""),
            ("allowed group, no ticket", req(sre, Some(why), None, None), false, "requires a ticket"),
            (
                "allowed group, short justification",
                req(sre, Some("because"), Some("INC-1"), None),
                false,
                "at least 10",
            ),
            ("other group, no grant", req(dev, Some(why), Some("INC-1"), None), false, "not in a group allowed"),
            ("other group, valid grant", req(dev, Some(why), None, Some(Ok(grant()))), true, ""),
            ("other group, grant alone", req(dev, None, None, Some(Ok(grant()))), true, ""),
            (
                "other group, bad grant",
                req(dev, Some(why), None, Some(Err(GrantError::BadSignature))),
                false,
                "grant it carries is not honoured: the grant's signature does not verify",
            ),
            (
                "other group, expired grant",
                req(dev, None, None, Some(Err(GrantError::Expired("x".into())))),
                false,
                "expired",
            ),
            (
                "allowed group, a justification written earlier",
                earlier(req(sre, Some(why), Some("INC-1"), None)),
                false,
                "justification was not written by this request",
            ),
            (
                "allowed group, a justification written earlier, a grant of theirs",
                earlier(req(sre, Some(why), Some("INC-1"), Some(Ok(grant())))),
                true,
                "",
            ),
            (
                "allowed group, a justification written earlier, a grant refused",
                earlier(req(sre, Some(why), Some("INC-1"), Some(Err(GrantError::Expired("x".into()))))),
                false,
                "not written by this request (it was already on the object); to break glass, add or change it in your own request; the break-glass grant it carries is not honoured: the grant expired",
            ),
            ("allowed group, a grant alone", req(sre, None, None, Some(Ok(grant()))), true, ""),
            (
                "a controller in an allowed group, justified",
                controller(req(sre, Some(why), Some("INC-1"), None)),
                false,
                "is a workload controller: it never breaks glass itself",
            ),
        ];
        for (case, r, granted, text) in rows {
            let got = break_glass(&name("production"), &t, &r, now);
            match (&got, granted) {
                (BreakGlass::Granted { .. }, true) => {}
                (BreakGlass::NotRequested, false) if case == "nothing asked" => {}
                (BreakGlass::Refused { why }, false) => assert!(why.contains(text), "{case}: {why}"),
                _ => panic!("{case}: {got:?}"),
            }
        }
        // A carried grant is audited as the grantor's, presented by the copier.
        let BreakGlass::Granted { user, carried: Some(c), .. } =
            break_glass(&name("production"), &t, &req(dev, None, None, Some(Ok(grant()))), now)
        else {
            panic!()
        };
        assert_eq!((user.as_str(), c.granted_on.as_str(), c.presented_by.as_str()), ("alice", "Deployment/web", "bob"));
        // A tier without break-glass refuses even a valid grant.
        let closed = serde_yaml_ng::from_str::<TierSpec>("{}").unwrap();
        assert!(matches!(
            break_glass(&name("production"), &closed, &req(dev, None, None, Some(Ok(grant()))), now),
            BreakGlass::Refused { .. }
        ));
        // New grants last the tier's maxDuration, and only allowed users get one.
        let g = new_grant(
            "prod",
            &name("production"),
            &t,
            obj("Deployment", "web"),
            BTreeSet::new(),
            &req(sre, Some(why), Some("INC-1"), None),
            now,
        )
        .unwrap();
        assert_eq!(g.exp - g.iat, 3600);
        assert!(new_grant(
            "prod",
            &name("production"),
            &t,
            obj("Deployment", "web"),
            BTreeSet::new(),
            &req(dev, Some(why), Some("INC-1"), None),
            now
        )
        .is_err());
    }
}
