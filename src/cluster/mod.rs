//! What the cluster knows and is told: namespace tiers ([`tiers`]), pull
//! secrets ([`pull_secrets`]), the Events written on objects ([`events`]),
//! and the Lease that makes one replica the re-evaluating one ([`leader`]).
//! Kubernetes I/O only; what is decided from it is decided elsewhere.

pub mod events;
pub mod leader;
pub mod pull_secrets;
pub mod tiers;

pub use pull_secrets::{PullSecrets, MAX_PULL_SECRETS};
pub use tiers::{tier_named, TierError, TierSource, TIER_LABEL};
