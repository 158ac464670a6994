//! The gate: every decision, whatever door it comes through (`/validate`,
//! `/mutate`, `check`, `report`, re-evaluation), is taken here, the same
//! way. A door translates what it was given into an [`Ask`] and the
//! [`Judgement`] back into its own answer; it decides nothing itself.
//!
//! The flow, in order: the tier (named, or the namespace's), the
//! references (parsed once, each bad one a denial of its own, at most so
//! many per ask), the evidence and its evaluation ([`Engine`], one lookup
//! per digest however many ask), break-glass (a carried grant opened and
//! checked against exactly what was judged), and the decision
//! ([`policy::decide`], pure).

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::cluster::TierSource;
use crate::engine::{Engine, Keychain};
use crate::image::{Digest, ImageRef};
use crate::policy::{
    self, BreakGlassRequest, Decision, GrantKeys, Judged, ObjectId, Policy, Presented, Presenter, TierName, Verdict,
};

#[cfg(test)]
mod tests;

/// What tells the time of a decision.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The time of a decision, in milliseconds, as recorded (so that a replay
/// at `evaluatedAt` is exact).
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

/// Where the images of an ask are to run.
#[derive(Clone, Copy, Debug)]
pub enum Place<'a> {
    /// In this namespace: its tier is the tier source's to say.
    Namespace(&'a str),
    /// In this tier, named (`check --tier`, or a namespace's tier already
    /// read by the door).
    Tier(&'a str),
}

/// An image as the object writes it, and where.
#[derive(Clone, Debug)]
pub struct Written<'a> {
    pub image: &'a str,
    /// Where it is written (`spec.containers[0].image`), for messages.
    pub path: &'a str,
    /// Already parsed by the door (`check`'s arguments, which may also name
    /// a bare digest).
    pub parsed: Option<ImageRef>,
}

impl<'a> Written<'a> {
    pub fn new(image: &'a str, path: &'a str) -> Self {
        Written { image, path, parsed: None }
    }

    /// An image the door has parsed already.
    pub fn parsed(image: &'a ImageRef) -> Self {
        Written { image: &image.original, path: "", parsed: Some(image.clone()) }
    }
}

/// A grant an object carries, and what it is presented on.
#[derive(Clone, Debug)]
pub struct CarriedGrant<'a> {
    pub token: &'a str,
    /// The object it is presented on.
    pub object: ObjectId,
    /// That object's controller owner, if any.
    pub controller: Option<ObjectId>,
    /// Who sends the request that presents it.
    pub by: Presenter<'a>,
}

/// What a request asks of break-glass.
#[derive(Default)]
pub struct BreakGlassAsk<'a> {
    /// Asked directly (its `grant` is ignored: see [`BreakGlassAsk::grant`]).
    pub request: BreakGlassRequest<'a>,
    /// A grant the object carries.
    pub grant: Option<CarriedGrant<'a>>,
    /// The object is a pod template that carries no grant (named so).
    pub template_without_grant: Option<String>,
}

/// The logins to look images up with: given, or read only when there is
/// something to look up (a review's pull secrets are read from the cluster).
pub enum Keys<'a> {
    Given(Keychain),
    Later(futures::future::BoxFuture<'a, Keychain>),
}

impl Default for Keys<'_> {
    fn default() -> Self {
        Keys::Given(Keychain::default())
    }
}

impl<'a> Keys<'a> {
    /// Read by `read` when the gate has an image to look up.
    pub fn later(read: impl std::future::Future<Output = Keychain> + Send + 'a) -> Self {
        Keys::Later(Box::pin(read))
    }

    async fn get(self) -> Keychain {
        match self {
            Keys::Given(k) => k,
            Keys::Later(f) => f.await,
        }
    }
}

/// One question to the gate: may these images run there?
pub struct Ask<'a> {
    pub place: Place<'a>,
    /// What is asked about, for messages (`Deployment web`).
    pub what: String,
    /// Every image as written (the same image twice is judged once).
    pub images: Vec<Written<'a>>,
    /// Most distinct images it may name (a review's bound,
    /// `--max-images-per-review`); more are refused before any lookup.
    pub max_images: Option<usize>,
    /// The logins to look images up with.
    pub keychain: Keys<'a>,
    pub break_glass: BreakGlassAsk<'a>,
    /// When the answer is due, whatever the registries do.
    pub deadline: Instant,
    /// VEX documents given for every image outside its attestations
    /// (`check --vex`); empty for every other door.
    pub vex: &'a [crate::evidence::vex::Source],
}

/// The gate's answer.
#[derive(Debug)]
pub struct Judgement {
    /// The tier judged in; `None` when there is none (the decision says
    /// why).
    pub tier: Option<TierName>,
    pub decision: Decision,
    /// The policy that decided.
    pub policy: Arc<Policy>,
    /// When it was decided.
    pub now: DateTime<Utc>,
}

impl Judgement {
    /// The verdict on `image` (as written), if it was judged.
    pub fn verdict(&self, image: &str) -> Option<&Verdict> {
        self.decision.verdicts.iter().find(|v| v.image == image)
    }
}

/// What every decision needs, held once: the policy in force (and its
/// reload), the tier source, the engine, the grant keys and the clock.
pub struct Gate {
    engine: Arc<Engine>,
    policy: RwLock<Arc<Policy>>,
    tiers: TierSource,
    grant_keys: GrantKeys,
    clock: Clock,
}

impl Gate {
    pub fn new(engine: Arc<Engine>, policy: impl Into<Arc<Policy>>, tiers: TierSource, grant_keys: GrantKeys) -> Gate {
        Gate { engine, policy: RwLock::new(policy.into()), tiers, grant_keys, clock: Arc::new(now) }
    }

    /// Decisions at the time `clock` tells (`check --at`).
    pub fn with_clock(mut self, clock: Clock) -> Gate {
        self.clock = clock;
        self
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.read().map(|p| p.clone()).unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Puts `p` in force, for the next decision on.
    pub fn set_policy(&self, p: impl Into<Arc<Policy>>) {
        let p = p.into();
        match self.policy.write() {
            Ok(mut g) => *g = p,
            Err(e) => *e.into_inner() = p,
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn tiers(&self) -> &TierSource {
        &self.tiers
    }

    pub fn grant_keys(&self) -> &GrantKeys {
        &self.grant_keys
    }

    /// The time of a decision taken now.
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// The tier of `place` under `policy`, or why there is none (in the
    /// words of a denial).
    pub async fn tier(&self, place: Place<'_>, policy: &Policy) -> Result<TierName, String> {
        let named = match place {
            Place::Tier(t) => t.to_string(),
            Place::Namespace(ns) => self.tiers.tier_of(ns, policy).await.map_err(|e| e.to_string())?,
        };
        policy.tier_name(&named).ok_or_else(|| format!("tier {named} is not defined in the policy"))
    }

    /// Judges `ask` under the policy in force, at the gate's time.
    pub async fn judge(&self, ask: Ask<'_>) -> Judgement {
        let (policy, now) = (self.policy(), self.now());
        let refuse = |tier, reason, why: &str| Judgement {
            tier,
            decision: policy::decide::refuse(&policy.digest, reason, why),
            policy: policy.clone(),
            now,
        };
        let distinct: BTreeSet<&str> = ask.images.iter().map(|w| w.image).collect();
        if let Some(max) = ask.max_images.filter(|max| distinct.len() > *max) {
            let why = format!(
                "{} names {} distinct images, more than the limit of {max} per review (--max-images-per-review); \
                 split it into several objects",
                ask.what,
                distinct.len(),
            );
            return refuse(None, "too_many_images", &why);
        }
        let tier = match self.tier(ask.place, &policy).await {
            Ok(t) => t,
            Err(why) => return refuse(None, "tier", &why),
        };
        let Some(tier_spec) = policy.tier(tier.as_str()) else {
            return refuse(None, "tier", &format!("tier {tier} is not defined in the policy"));
        };

        // References, parsed once; a bad one is denied on the spot.
        let mut refs: Vec<ImageRef> = Vec::new();
        let mut verdicts: Vec<Verdict> = Vec::new();
        let mut seen = BTreeSet::new();
        for w in &ask.images {
            if !seen.insert(w.image) {
                continue;
            }
            let parsed = match &w.parsed {
                Some(r) => Ok(r.clone()),
                None => ImageRef::parse(w.image),
            };
            match parsed {
                Ok(r) => refs.push(r),
                Err(e) => verdicts.push(Verdict {
                    image: w.image.to_string(),
                    tier: tier.to_string(),
                    problems: vec![format!("{}: {e}", w.path)],
                    reasons: vec![policy::Reason::Digest],
                    ..Verdict::default()
                }),
            }
        }
        let keychain = if refs.is_empty() { Keychain::default() } else { ask.keychain.get().await };
        verdicts
            .extend(self.engine.evaluate_images(&policy, &tier, &refs, &keychain, now, ask.deadline, ask.vex).await);

        // A carried grant counts only against exactly what was judged here.
        let bg = ask.break_glass;
        let grant = bg.grant.map(|carried| {
            let presented = Presented {
                namespace: match ask.place {
                    Place::Namespace(ns) => ns,
                    Place::Tier(_) => "",
                },
                tier: &tier,
                object: carried.object,
                controller: carried.controller,
                images: verdicts
                    .iter()
                    .map(|v| (v.image.clone(), v.digest.as_deref().and_then(|d| Digest::parse(d).ok())))
                    .collect(),
                by: carried.by,
            };
            self.grant_keys.open(carried.token).and_then(|g| {
                policy::check_grant(&g, &presented, policy::break_glass_max_duration(tier_spec), now).map(|()| g)
            })
        });
        let decision = policy::decide(Judged {
            policy_digest: &policy.digest,
            tier: &tier,
            tier_spec,
            verdicts,
            break_glass: BreakGlassRequest { grant, ..bg.request },
            template_without_grant: bg.template_without_grant,
            now,
        });
        Judgement { tier: Some(tier), decision, policy: policy.clone(), now }
    }
}
