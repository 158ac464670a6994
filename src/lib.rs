//! Portcullis: a Kubernetes validating admission webhook that admits a container
//! image into an environment tier only on signed evidence (a vulnerability scan
//! and integration test results attached as cosign in-toto attestations).
//!
//! Data flows one way:
//! `webhook` (HTTP, Kubernetes) -> `engine` (per image, cached) -> `registry`
//! (OCI I/O) -> `attest` (DSSE, signatures) -> `evidence` (predicates) ->
//! `policy` (pure evaluation). Nothing below `policy` knows about HTTP or
//! Kubernetes, and `policy` does no I/O and reads no clock.
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
