//! Every integration suite in one test binary: each file of tests/ is a
//! module here, not a crate of its own (Cargo.toml: `autotests = false`).
//! Twenty crates built the shared helpers (`common`) and every generic
//! function of serde, tokio and reqwest they use twenty times over, at the
//! release profile's optimisation, and linked twenty binaries; one crate
//! builds them once. Run one suite with its module's name:
//! `cargo test --release --test integration check::`.

mod common;

mod admission;
mod audit_cli;
mod base_image;
mod bench;
mod caches;
mod chart;
mod check;
mod ci_outputs;
mod ci_templates;
mod conformance;
mod e2e;
mod fuzz;
mod keyless;
mod layout;
mod licenses;
mod memory;
mod monitoring;
mod notes;
mod private_registry;
mod security;

/// With `autotests = false` Cargo builds no file of tests/ by itself: a
/// suite not declared above would never run, and nothing would say so.
#[test]
fn every_file_of_tests_is_a_module_of_this_binary() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let this = std::fs::read_to_string(format!("{root}/integration.rs")).unwrap();
    let mut missing: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".rs").map(String::from))
        .filter(|name| name != "integration" && !this.lines().any(|l| l == format!("mod {name};")))
        .collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "files of tests/ that no test runs (add `mod <name>;` to tests/integration.rs): {missing:?}"
    );
}
