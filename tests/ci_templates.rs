//! The CI templates against the binary they drive: the GitHub Action
//! (action.yml, a composite action, and its shell in ci/github/) and the
//! GitLab CI template (ci/gitlab/portcullis.gitlab-ci.yml), each read as
//! YAML for its contract: the inputs or variables it takes, a `portcullis
//! check` command line using only flags `portcullis check --help` lists,
//! report paths that are the files it writes. Then each is run for real,
//! installing a release from a file:// URL (its archive and SHA-256 file
//! laid out as a GitHub release; the binary in it runs the one under test)
//! and checking images in the test registry: the exit code is the step's
//! or job's.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_yaml_ng::Value as Yaml;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn yaml(path: &str) -> Yaml {
    let text = std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn text(v: &Yaml) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

/// The flags `portcullis check --help` lists, as the real binary prints them.
fn check_flags() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis")).args(["check", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let flags: BTreeSet<String> = help
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .flat_map(|l| l.split([' ', ',', '=', '<', '[']).filter(|w| w.starts_with("--")).take(1).map(String::from))
        .collect();
    assert!(flags.contains("--output") && flags.contains("--tier"), "{help}");
    flags
}

/// The `--output FORMAT=FILE` of a command line, by format.
fn outputs_of(args: &[String]) -> BTreeMap<String, String> {
    args.windows(2)
        .filter(|w| w[0] == "--output")
        .filter_map(|w| w[1].split_once('=').map(|(f, p)| (f.to_string(), p.to_string())))
        .collect()
}

fn assert_known_flags(args: &[String], what: &str) {
    let known = check_flags();
    for a in args.iter().filter(|a| a.starts_with("--")) {
        let flag = a.split('=').next().unwrap();
        assert!(known.contains(flag), "{what}: {flag} is not a flag of portcullis check ({known:?})");
    }
}

fn target() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86_64-unknown-linux-gnu",
        "aarch64" => "aarch64-unknown-linux-gnu",
        other => panic!("no release target for {other}"),
    }
}

/// A release laid out as GitHub serves one (`v<version>/portcullis-<version>-<target>.tar.gz`
/// and its `.sha256`), under `dir`; its `portcullis` records its arguments in
/// $PORTCULLIS_ARGV, one a line, and runs the binary under test. Returns the
/// URL releases are fetched from.
fn fake_release(dir: &Path, version: &str) -> String {
    let stage = dir.join("stage");
    std::fs::create_dir_all(&stage).unwrap();
    let wrapper = format!(
        "#!/bin/sh\nif [ -n \"${{PORTCULLIS_ARGV:-}}\" ]; then printf '%s\\n' \"$@\" > \"$PORTCULLIS_ARGV\"; fi\nexec '{}' \"$@\"\n",
        env!("CARGO_BIN_EXE_portcullis")
    );
    let bin = stage.join("portcullis");
    std::fs::write(&bin, wrapper).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let releases = dir.join("releases");
    let at = releases.join(format!("v{version}"));
    std::fs::create_dir_all(&at).unwrap();
    let archive = format!("portcullis-{version}-{}.tar.gz", target());
    let tar = Command::new("tar").arg("-czf").arg(at.join(&archive)).arg("-C").arg(&stage).arg("portcullis").status();
    assert!(tar.unwrap().success());
    let sum = Command::new("sha256sum").arg(&archive).current_dir(&at).output().unwrap();
    assert!(sum.status.success());
    std::fs::write(at.join(format!("{archive}.sha256")), sum.stdout).unwrap();
    format!("file://{}", releases.display())
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output { status, stdout, stderr } = cmd.output().unwrap();
    (status.code().unwrap_or(-1), String::from_utf8_lossy(&stdout).into(), String::from_utf8_lossy(&stderr).into())
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn the_action_declares_its_inputs_and_passes_them_as_environment() {
    let a = yaml("action.yml");
    for input in ["image", "policy", "tiers", "outputs", "version"] {
        assert!(!text(&a["inputs"][input]["description"]).is_empty(), "{input}");
    }
    for required in ["image", "policy", "tiers"] {
        assert_eq!(a["inputs"][required]["required"].as_bool(), Some(true), "{required}");
    }
    for optional in ["outputs", "version"] {
        assert_eq!(a["inputs"][optional]["required"].as_bool(), Some(false), "{optional}");
    }
    assert_eq!(text(&a["runs"]["using"]), "composite");
    let steps = a["runs"]["steps"].as_sequence().unwrap();
    for step in steps {
        assert_eq!(text(&step["shell"]), "bash", "{step:?}");
        let run = text(&step["run"]);
        // No input spliced into the shell's text: they come as environment variables.
        assert!(!run.contains("${{"), "{run}");
        let script = run.trim_matches('"').strip_prefix("$GITHUB_ACTION_PATH/").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(Path::new(ROOT).join(script)).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{script} is not executable");
    }
    let check = steps.iter().find(|s| s["id"].as_str() == Some("check")).unwrap();
    // (variable, input)
    let rows = [
        ("PORTCULLIS_IMAGE", "image"),
        ("PORTCULLIS_POLICY", "policy"),
        ("PORTCULLIS_TIERS", "tiers"),
        ("PORTCULLIS_OUTPUTS", "outputs"),
    ];
    for (var, input) in rows {
        assert_eq!(text(&check["env"][var]), format!("${{{{ inputs.{input} }}}}"), "{var}");
    }
    assert_eq!(text(&steps[0]["env"]["PORTCULLIS_VERSION"]), "${{ inputs.version }}");
    assert_eq!(text(&a["outputs"]["exit-code"]["value"]), "${{ steps.check.outputs.exit-code }}");
}

/// The action's two steps, as a runner would run them (no network: the
/// release comes from a file:// URL): installed at the version of the
/// action's Cargo.toml, checked against its sum; `portcullis check` with
/// the inputs, GitHub's annotations and summary and each report asked for;
/// its exit code the step's and the output `exit-code`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_action_installs_the_release_and_its_exit_code_is_the_steps() {
    let w = world().await;
    let clean_img = w.image("shop/api", "clean", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let crit_img = w.image("shop/api", "crit", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("policy.yaml"), &w.policy).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    let releases = fake_release(d, version);
    let (github_path, github_output, summary, argv) =
        (d.join("github-path"), d.join("github-output"), d.join("summary.md"), d.join("argv"));
    let runner = |script: &str| {
        let mut c = Command::new("bash");
        c.arg(Path::new(ROOT).join("ci/github").join(script))
            .current_dir(d)
            .env("GITHUB_ACTION_PATH", ROOT)
            .env("RUNNER_TEMP", d.join("runner"))
            .env("GITHUB_PATH", &github_path)
            .env("GITHUB_OUTPUT", &github_output)
            .env("GITHUB_STEP_SUMMARY", &summary)
            .env("PORTCULLIS_RELEASES", &releases)
            .env("PORTCULLIS_ARGV", &argv)
            .env_remove("PORTCULLIS_POLICY");
        c
    };

    // Install: the version of the action's own Cargo.toml (the input left empty).
    let (code, out, err) = run(runner("install.sh").env("PORTCULLIS_VERSION", ""));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("portcullis {version}")), "{out}");
    let bin_dir = read(&github_path).trim().to_string();
    assert_eq!(Path::new(&bin_dir), d.join("runner/portcullis/bin"));
    let path = format!("{bin_dir}:{}", std::env::var("PATH").unwrap());

    // (case, images, exit code)
    let rows = [("admitted", clean_img.clone(), 0), ("one denied", format!("{clean_img}\n{crit_img}"), 1)];
    for (case, images, want) in rows {
        let _ = std::fs::remove_file(&github_output);
        let (code, out, err) = run(runner("check.sh")
            .env("PATH", &path)
            .env("PORTCULLIS_IMAGE", &images)
            .env("PORTCULLIS_POLICY", "policy.yaml")
            .env("PORTCULLIS_TIERS", "development,production")
            .env("PORTCULLIS_OUTPUTS", "sarif=out.sarif, junit=out.xml\nvsa=out.vsa.jsonl\n"));
        assert_eq!(code, want, "{case}: {out}\n{err}");
        assert_eq!(read(&github_output), format!("exit-code={want}\n"), "{case}");
        // The command line: the images, then only flags `check --help` lists.
        let args: Vec<String> = read(&argv).lines().map(String::from).collect();
        assert_eq!(args[0], "check", "{case}: {args:?}");
        let given: Vec<&str> = images.split_whitespace().collect();
        assert_eq!(args[1..=given.len()].iter().map(String::as_str).collect::<Vec<_>>(), given, "{case}");
        assert_known_flags(&args, "check.sh");
        let outputs = outputs_of(&args);
        assert_eq!(outputs.len(), 3, "{case}: {args:?}");
        for file in outputs.values() {
            assert!(d.join(file).exists(), "{case}: {file} not written");
        }
        assert!(args.windows(2).any(|w| w == ["--output", "github"]), "{case}: {args:?}");
        if want == 1 {
            assert!(out.contains("::error title=portcullis%3A "), "{case}: {out}");
        }
        assert!(read(&summary).contains("## Portcullis: "), "{case}");
    }
}

#[test]
fn the_action_refuses_a_release_that_does_not_match_its_sum() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let releases = fake_release(d, "9.9.9");
    let archive = d.join(format!("releases/v9.9.9/portcullis-9.9.9-{}.tar.gz", target()));
    let mut bytes = std::fs::read(&archive).unwrap();
    bytes.push(0);
    std::fs::write(&archive, bytes).unwrap();
    let github_path = d.join("github-path");
    let (code, out, err) = run(Command::new("bash")
        .arg(Path::new(ROOT).join("ci/github/install.sh"))
        .env("GITHUB_ACTION_PATH", ROOT)
        .env("RUNNER_TEMP", d.join("runner"))
        .env("GITHUB_PATH", &github_path)
        .env("PORTCULLIS_RELEASES", &releases)
        .env("PORTCULLIS_VERSION", "v9.9.9"));
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(format!("{out}{err}").contains("FAILED"), "{out}\n{err}");
    assert!(!github_path.exists());
    assert!(!d.join("runner/portcullis/bin/portcullis").exists());
}

/// The template's job, its `portcullis check` line split into words as a
/// shell would (its variables left as they are).
fn gitlab_job() -> (Yaml, Vec<String>) {
    let t = yaml("ci/gitlab/portcullis.gitlab-ci.yml");
    let job = t[".portcullis-check"].clone();
    assert!(job.is_mapping(), "no hidden job .portcullis-check");
    let script: Vec<&str> = job["script"].as_sequence().unwrap().iter().map(text).collect();
    let line = script.iter().find(|l| l.starts_with("portcullis check ")).expect("a portcullis check line");
    let words = line.split_whitespace().map(|w| w.trim_matches('"').to_string()).collect();
    (job, words)
}

#[test]
fn the_gitlab_template_writes_the_reports_it_declares() {
    let (job, words) = gitlab_job();
    for var in ["PORTCULLIS_IMAGE", "PORTCULLIS_POLICY", "PORTCULLIS_TIERS"] {
        assert!(job["variables"].get(var).is_some(), "{var} is not a variable of .portcullis-check");
        assert!(words.iter().any(|w| w.contains(&format!("${var}"))), "{var} is not used: {words:?}");
    }
    assert_known_flags(&words, "the GitLab template");
    let outputs = outputs_of(&words);
    let reports = &job["artifacts"]["reports"];
    // (report, format)
    for (report, format) in [("codequality", "gitlab"), ("junit", "junit")] {
        assert_eq!(text(&reports[report]), outputs[format], "{report}");
        let paths: Vec<&str> = job["artifacts"]["paths"].as_sequence().unwrap().iter().map(text).collect();
        assert!(paths.contains(&outputs[format].as_str()), "{paths:?}");
    }
    // Kept when the check fails: that is when they matter.
    assert_eq!(text(&job["artifacts"]["when"]), "always");
}

/// The template's job as a runner runs it (before_script and script in one
/// shell, the release from a file:// URL): the reports at the paths it
/// declares, and the job failing when an image is denied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gitlab_job_runs_portcullis_check() {
    let w = world().await;
    let clean_img = w.image("shop/api", "clean", Some(("scanner", clean())), Some(("ci", passed()))).await;
    let crit_img = w.image("shop/api", "crit", Some(("scanner", criticals())), Some(("ci", passed()))).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("policy.yaml"), &w.policy).unwrap();
    let (job, words) = gitlab_job();
    let version = text(&job["variables"]["PORTCULLIS_VERSION"]).to_string();
    let releases = fake_release(d, &version);
    let mut shell = String::new();
    for part in ["before_script", "script"] {
        for line in job[part].as_sequence().unwrap() {
            shell.push_str(text(line));
            shell.push('\n');
        }
    }
    let outputs = outputs_of(&words);
    // (case, images, exit code)
    let rows = [("admitted", clean_img.clone(), 0), ("one denied", format!("{clean_img} {crit_img}"), 1)];
    for (case, images, want) in rows {
        let tmp = PathBuf::from(d).join(format!("tmp-{want}"));
        std::fs::create_dir_all(&tmp).unwrap();
        let (code, out, err) = run(Command::new("bash")
            .args(["-e", "-c", &shell])
            .current_dir(d)
            .env("TMPDIR", &tmp)
            .env("PORTCULLIS_RELEASES", &releases)
            .env("PORTCULLIS_VERSION", &version)
            .env("PORTCULLIS_IMAGE", &images)
            .env("PORTCULLIS_POLICY", "policy.yaml")
            .env("PORTCULLIS_TIERS", "production")
            .env("PORTCULLIS_ARGS", "--output vsa=portcullis.vsa.jsonl"));
        assert_eq!(code, want, "{case}: {out}\n{err}");
        assert!(out.contains(&format!("portcullis {version}")), "{case}: {out}");
        let quality: serde_json::Value = serde_json::from_str(&read(&d.join(&outputs["gitlab"]))).unwrap();
        assert_eq!(quality.as_array().unwrap().is_empty(), want == 0, "{case}: {quality}");
        let junit = std::fs::File::open(d.join(&outputs["junit"])).unwrap();
        let suites = junit_parser::from_reader(std::io::BufReader::new(junit)).unwrap();
        assert_eq!(suites.suites.len(), images.split_whitespace().count(), "{case}");
        assert_eq!(read(&d.join("portcullis.vsa.jsonl")).lines().count(), suites.suites.len(), "{case}");
    }
}
