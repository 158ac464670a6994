//! Portcullis: a Kubernetes validating admission webhook that admits a container
//! image into an environment tier only on signed evidence (a vulnerability scan
//! and integration test results attached as cosign in-toto attestations).
//!
//! # The crate map
//!
//! One gate, many doors: every decision is one call, [`gate::Gate::judge`],
//! and a door only translates what it was given into an [`gate::Ask`] and
//! the [`gate::Judgement`] back into its own answer.
//!
//! | layer | modules | what they do |
//! |---|---|---|
//! | doors | [`webhook`] (`/validate`, `/mutate`), [`watch`] (re-evaluation, `report`'s rows, rollback), and the binary's `cli/` (`check`, `report`, `serve`'s wiring, the tools) | HTTP, Kubernetes and the command line in and out |
//! | gate | [`gate`] | the policy in force and its reload, the tier source, the engine, the grant keys, the clock; the flow: tier, references, evidence, evaluation, break-glass, decision |
//! | adapters | [`engine`] (caches, single flight, deadlines, over one `Source`: the registry, attestation files, memory), [`registry`] (OCI), [`cluster`] (tiers, pull secrets, Events, the Lease) | I/O |
//! | core | [`kinds`], [`image`], [`platform`], [`attest`], [`evidence`], [`policy`], [`notes`] (release notes from evidence) | pure: no network, no clock |
//! | observers | [`audit`], [`metrics`], [`timelines`] | typed outcomes in, no decisions |
//!
//! The import rule: doors -> gate -> adapters -> core, and anything may
//! tell an observer. A module never imports from a layer above its own
//! (`tests/layout.rs` checks it).
#![deny(rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod attest;
pub mod audit;
pub mod cluster;
pub mod engine;
pub mod evidence;
pub mod gate;
pub mod image;
pub mod kinds;
pub mod metrics;
pub mod notes;
pub mod platform;
pub mod policy;
pub mod registry;
pub mod timelines;
pub mod watch;
pub mod webhook;

/// Installs the process-wide rustls crypto provider (aws-lc-rs). Every TLS
/// user in the process (the webhook server, the registry and Kubernetes
/// clients) then agrees on one provider. Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
