//! The crate map's import rule (src/lib.rs): doors -> gate -> adapters ->
//! core, and anything may tell an observer. A module never imports from a
//! layer above its own, so the flow the README describes is the code's.

use std::collections::BTreeMap;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Each top-level module's layer (higher is nearer the doors).
fn layers() -> BTreeMap<&'static str, (u8, &'static str)> {
    let mut m = BTreeMap::new();
    for (module, layer) in [
        ("webhook", (4, "doors")),
        ("watch", (4, "doors")),
        ("gate", (3, "gate")),
        ("engine", (2, "adapters")),
        ("registry", (2, "adapters")),
        ("cluster", (2, "adapters")),
        ("kinds", (1, "core")),
        ("image", (1, "core")),
        ("platform", (1, "core")),
        ("attest", (1, "core")),
        ("evidence", (1, "core")),
        ("policy", (1, "core")),
        ("notes", (1, "core")),
        // Observers: anything may tell them; they tell nothing above the core.
        ("audit", (0, "observers")),
        ("metrics", (0, "observers")),
        ("timelines", (0, "observers")),
    ] {
        m.insert(module, layer);
    }
    m
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file of src/ belongs to.
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(format!("{ROOT}/src")).ok()?;
    let first = rel.components().next()?.as_os_str().to_string_lossy().into_owned();
    Some(first.trim_end_matches(".rs").to_string())
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let layers = layers();
    let mut files = Vec::new();
    sources(Path::new(&format!("{ROOT}/src")), &mut files);
    let mut wrong = Vec::new();
    let mut unmapped = Vec::new();
    for f in &files {
        let Some(module) = module_of(f) else { continue };
        // The binary (main.rs, cli/) is a door of its own and may use anything.
        if matches!(module.as_str(), "main" | "cli" | "lib") {
            continue;
        }
        let Some(&(mine, my_layer)) = layers.get(module.as_str()) else {
            unmapped.push(module.clone());
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        // Code only: a test module may build what it tests from any layer.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                let used: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                let Some(&(theirs, their_layer)) = layers.get(used.as_str()) else { continue };
                // Observers read the core's typed outcomes and nothing above it;
                // anyone else uses its own layer and below, and any observer.
                let allowed =
                    if my_layer == "observers" { theirs <= 1 } else { their_layer == "observers" || theirs <= mine };
                if !allowed {
                    wrong.push(format!(
                        "{}:{}: {module} ({my_layer}) uses crate::{used} ({their_layer})",
                        f.strip_prefix(ROOT).unwrap().display(),
                        n + 1
                    ));
                }
            }
        }
    }
    unmapped.sort();
    unmapped.dedup();
    assert!(
        unmapped.is_empty(),
        "modules without a layer in the crate map: {unmapped:?} (add them to src/lib.rs and here)"
    );
    assert!(wrong.is_empty(), "imports against the rule doors -> gate -> adapters -> core:\n{}", wrong.join("\n"));
}

/// The root of src/ holds only the crate map, the binary, and modules of one
/// file; everything with parts of its own is a folder.
#[test]
fn the_root_of_src_is_short() {
    let mut root: Vec<String> = std::fs::read_dir(format!("{ROOT}/src"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    root.sort();
    let want = ["audit.rs", "image.rs", "kinds.rs", "lib.rs", "main.rs", "metrics.rs", "platform.rs", "timelines.rs"];
    assert_eq!(root, want, "files at the root of src/: keep the crate map (src/lib.rs) in step");
}

/// Every package `cargo tree` shows and its features: `name version` -> `features`.
fn features_of(edges: &str) -> BTreeMap<String, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["tree", "--locked", "--offline", "--prefix", "none", "--format", "{p}|{f}", "-e", edges])
        .arg("--manifest-path")
        .arg(format!("{ROOT}/Cargo.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo tree: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (package, features) = l.trim_end_matches(" (*)").split_once('|')?;
            // `name vX.Y.Z (path or proc-macro)`: the name and version.
            let package = package.split(' ').take(2).collect::<Vec<_>>().join(" ");
            Some((package, features.to_string()))
        })
        .collect()
}

/// The tests and examples need the dev-dependencies, which may turn on
/// features of crates the binary has too; a crate with other features is
/// built again, and so is everything above it (tokio's `test-util` alone
/// rebuilt hyper, kube, the library and the binary: minutes of `make test`,
/// and the binary the tests ran was not the image's). Cargo.toml turns those
/// features on for every build instead.
#[test]
fn the_dev_dependencies_turn_on_no_feature_the_binary_lacks() {
    let shipped = features_of("normal,build");
    let tested = features_of("normal,build,dev");
    let drift: Vec<String> = shipped
        .iter()
        .filter_map(|(package, features)| {
            let more = tested.get(package).filter(|t| *t != features)?;
            Some(format!("{package}: [{features}] in the binary, [{more}] in the tests"))
        })
        .collect();
    assert!(
        drift.is_empty(),
        "features the dev-dependencies add (turn them on in Cargo.toml's [dependencies], beside ahash's):\n{}",
        drift.join("\n")
    );
}

/// Cargo.toml builds some crates only the tests use without optimisation
/// (`[profile.release.package.NAME]`): a crate the binary has must never be
/// among them, or the image would ship it unoptimised.
#[test]
fn the_crates_built_without_optimisation_are_not_in_the_binary() {
    let manifest = std::fs::read_to_string(format!("{ROOT}/Cargo.toml")).unwrap();
    let lowered: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("[profile.release.package.")?.strip_suffix(']'))
        .map(|name| name.trim_matches('"'))
        .collect();
    assert!(lowered.contains(&"jsonschema"), "the overrides this test reads: {lowered:?}");
    let shipped = features_of("normal,build");
    let tested = features_of("normal,build,dev");
    let in_binary: Vec<&String> =
        shipped.keys().filter(|package| lowered.iter().any(|name| package.split(' ').next() == Some(*name))).collect();
    assert!(in_binary.is_empty(), "crates of the binary built without optimisation: {in_binary:?}");
    for name in &lowered {
        assert!(
            tested.keys().any(|package| package.split(' ').next() == Some(*name)),
            "{name}: an override for a crate no build has"
        );
    }
}
