//! The smaller tools: `ping`, `inspect`, `normalize`, `audit verify`, `policy lint`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use portcullis::engine::{MAX_ATTESTATION_FILE, MAX_FILE_ATTESTATIONS};
use portcullis::policy::Policy;
use portcullis::webhook;

use super::args::*;
use super::load_policy;

pub(crate) async fn ping(a: PingArgs) -> anyhow::Result<ExitCode> {
    use webhook::ping::Answer;
    let ca = match &a.ca {
        Some(p) => {
            Some((p.display().to_string(), std::fs::read(p).with_context(|| format!("reading {}", p.display()))?))
        }
        None => None,
    };
    let answer =
        webhook::ping::ping(&a.url, ca.as_ref().map(|(p, pem)| (p.as_str(), pem.as_slice())), a.timeout).await?;
    let (said, expected) = match &answer {
        Answer::Answered { allowed } => {
            (format!("answered the review (allowed: {allowed})"), a.expect == Expect::Answer)
        }
        Answer::Refused { message } => {
            (format!("refused a client without a certificate (403: {message})"), a.expect == Expect::Refused)
        }
    };
    if expected {
        outln!("ok: {} {said}", a.url);
        Ok(ExitCode::SUCCESS)
    } else {
        let wanted = match a.expect {
            Expect::Answer => "an answer",
            Expect::Refused => "a refusal (the server should ask for a client certificate: --client-ca)",
        };
        outln!("unexpected: {} {said}; expected {wanted}", a.url);
        Ok(ExitCode::from(1))
    }
}

/// `portcullis inspect`: each attestation of each file, what it claims and
/// whether it verifies under the policy.
pub(crate) fn inspect(files: &[PathBuf], policy: Option<&PathBuf>, output: Output) -> anyhow::Result<ExitCode> {
    use portcullis::attest::inspect::inspect;
    use portcullis::attest::Signed;
    let policy = load_policy(policy)?;
    let mut all = Vec::new();
    for path in files {
        let len = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
        anyhow::ensure!(len <= MAX_ATTESTATION_FILE, "{}: larger than {MAX_ATTESTATION_FILE} bytes", path.display());
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let items =
            Signed::from_file(&bytes, MAX_FILE_ATTESTATIONS).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for signed in &items {
            all.push((path.display().to_string(), inspect(signed, &policy.trust)));
        }
    }
    let every_one_verifies = all.iter().all(|(_, i)| i.not_verified.is_none());
    match output {
        Output::Json => {
            let out: Vec<serde_json::Value> = all
                .iter()
                .map(|(file, i)| {
                    let mut v = serde_json::to_value(i).unwrap_or_default();
                    v["file"] = serde_json::json!(file);
                    v
                })
                .collect();
            outln!("{}", serde_json::to_string_pretty(&out)?);
        }
        Output::Text => {
            let total = all.len();
            for (n, (file, i)) in all.iter().enumerate() {
                outln!("{file}: attestation {} of {total} ({})", n + 1, i.form);
                outln!("  predicate type  {}", i.predicate_type.as_deref().unwrap_or("(none)"));
                for s in &i.subjects {
                    outln!("  subject         {} {}", s.digest.as_deref().unwrap_or("(no sha256)"), s.name);
                }
                if let Some(id) = &i.identity {
                    outln!("  signed by       {}", id.subject);
                    outln!("  issuer          {}", id.issuer);
                    if let Some(repo) = &id.source_repository {
                        let at = id.source_repository_ref.as_deref().map(|r| format!(" at {r}")).unwrap_or_default();
                        outln!("  source          {repo}{at}");
                    }
                    if let Some(wf) = &id.build_config {
                        outln!("  workflow        {wf}");
                    }
                }
                match &i.not_verified {
                    None => outln!("  verified        yes, as {} (policy {})", i.verified_as.join(", "), policy.digest),
                    Some(why) => outln!("  verified        no: {why}"),
                }
            }
        }
    }
    Ok(ExitCode::from(if every_one_verifies { 0 } else { 1 }))
}

/// The VEX files given for an image on the command line, read: each bound
/// to the image (given for it), unsigned, named by its file's digest.
pub(crate) fn vex_files(files: &[PathBuf]) -> anyhow::Result<Vec<portcullis::evidence::vex::Source>> {
    use portcullis::evidence::vex;
    files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            let document = vex::parse(&bytes).map_err(|e| anyhow::anyhow!("VEX {}: {e}", f.display()))?;
            Ok(vex::Source {
                document: std::sync::Arc::new(document),
                digest: portcullis::image::Digest::of(&bytes).to_string(),
                signer: None,
                bound: true,
            })
        })
        .collect()
}

/// The image a VEX applies to, from `NAME@sha256:…`.
pub(crate) fn vex_image(image: &str) -> anyhow::Result<portcullis::evidence::vex::Image> {
    let r = portcullis::image::ImageRef::parse(image).map_err(|e| anyhow::anyhow!("--image {image}: {e}"))?;
    let Some(digest) = &r.digest else {
        anyhow::bail!("--image {image}: name the image by digest (NAME@sha256:…): VEX products name images by digest");
    };
    Ok(portcullis::evidence::vex::Image { digest: digest.to_string(), repository: Some(r.name()) })
}

pub(crate) fn normalize(
    path: &PathBuf,
    output: Output,
    top: usize,
    vex_paths: &[PathBuf],
    image: Option<&str>,
) -> anyhow::Result<ExitCode> {
    use portcullis::evidence::{parse_report, vex, Severity};
    let bytes = if path.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b).context("reading standard input")?;
        b
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
    };
    let mut report = parse_report(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut suppressed = Vec::new();
    let mut ignored = Vec::new();
    // The scan's own analysis (CycloneDX), then the VEX files for the image.
    let mut sources: Vec<vex::Source> = Vec::new();
    if let Some(own) = &report.vex {
        ignored.extend(own.ignored.iter().map(|why| format!("{} (the scan's own analysis): {why}", path.display())));
        let digest = portcullis::image::Digest::of(&bytes).to_string();
        sources.push(vex::Source { document: own.clone(), digest, signer: None, bound: true });
    }
    let files = vex_files(vex_paths)?;
    for (s, p) in files.iter().zip(vex_paths) {
        ignored.extend(s.document.ignored.iter().map(|why| format!("{}: {why}", p.display())));
    }
    sources.extend(files);
    if !sources.is_empty() {
        let image = match image {
            Some(image) => vex_image(image)?,
            None => vex::Image { digest: String::new(), repository: None },
        };
        let (kept, gone) = vex::apply(std::mem::take(&mut report.findings), &image, &sources);
        report.findings = kept;
        suppressed = gone;
    }
    let counts: Vec<(Severity, usize, usize)> = Severity::ALL
        .iter()
        .map(|s| {
            let of: Vec<_> = report.findings.iter().filter(|f| f.severity == *s).collect();
            (*s, of.len(), of.iter().filter(|f| f.fixable()).count())
        })
        .collect();
    let finished = report.finished_on.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    match output {
        Output::Json => {
            let by_sev: serde_json::Map<String, serde_json::Value> = counts
                .iter()
                .map(|(s, n, f)| (s.as_str().to_string(), serde_json::json!({"total": n, "fixable": f})))
                .collect();
            let out = serde_json::json!({
                "scanner": report.scanner,
                "finishedOn": finished,
                "total": report.findings.len(),
                "fixable": report.findings.iter().filter(|f| f.fixable()).count(),
                "counts": by_sev,
                "findings": report.findings,
                "vexSuppressed": suppressed,
                "vexIgnored": ignored,
            });
            outln!("{}", serde_json::to_string_pretty(&out)?);
        }
        Output::Text => {
            outln!(
                "scanner {}, finished {}, {} findings{} ({} fixable)",
                if report.scanner.is_empty() { "unknown" } else { &report.scanner },
                finished.as_deref().unwrap_or("(no time recorded)"),
                report.findings.len(),
                if sources.is_empty() { "" } else { " after VEX" },
                report.findings.iter().filter(|f| f.fixable()).count()
            );
            outln!("\n{:<10} {:>6} {:>8}", "severity", "count", "fixable");
            for (s, n, f) in &counts {
                outln!("{:<10} {n:>6} {f:>8}", s.as_str());
            }
            if !report.findings.is_empty() && top > 0 {
                outln!("\nworst findings:");
                // Findings come most severe first.
                for f in report.findings.iter().take(top) {
                    let target = if f.target.is_empty() { String::new() } else { format!("  [{}]", f.target) };
                    outln!("  {:<8} {}{target}", f.severity.as_str().to_uppercase(), f.describe());
                }
                if report.findings.len() > top {
                    outln!("  … and {} more (--top N, or --output json)", report.findings.len() - top);
                }
            }
            if !sources.is_empty() {
                outln!("\nsuppressed by VEX: {}", suppressed.len());
                for s in &suppressed {
                    outln!("  {:<8} {}", s.finding.severity.as_str().to_uppercase(), s.describe());
                }
                for why in &ignored {
                    outln!("  ignored: {why}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `audit verify`: 0 intact, 1 broken, 2 (an error) unreadable.
pub(crate) fn audit_verify(
    files: &[PathBuf],
    heads: &[portcullis::audit::Head],
    after: Option<portcullis::audit::Head>,
    key: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    use portcullis::audit::{verify_with, AuditKeys, Expect, Trail, GENESIS};
    let keys = match key {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Some(AuditKeys::from_text(&text).with_context(|| format!("audit key {}", p.display()))?)
        }
        None => None,
    };
    let open = || -> anyhow::Result<Vec<(String, std::io::BufReader<std::fs::File>)>> {
        let mut trail = Vec::new();
        for f in files {
            let file = std::fs::File::open(f).with_context(|| format!("reading {}", f.display()))?;
            trail.push((f.display().to_string(), std::io::BufReader::new(file)));
        }
        Ok(trail)
    };
    // Each anchored head is a pass of its own over the files (they are read
    // as a stream, never held).
    let mut expects: Vec<Expect<'_>> =
        heads.iter().map(|h| Expect { keys: keys.as_ref(), head: Some(h.clone()), after: after.clone() }).collect();
    if expects.is_empty() {
        expects.push(Expect { keys: keys.as_ref(), head: None, after: after.clone() });
    }
    let mut trail: Option<Trail> = None;
    for expect in &expects {
        match verify_with(open()?, expect) {
            Ok(t) => trail = Some(t),
            Err(e) if e.is_broken() => {
                let word = match e {
                    portcullis::audit::VerifyError::Incomplete { .. } => "incomplete",
                    _ => "broken",
                };
                outln!("{word}: {e}");
                return Ok(ExitCode::from(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let Some(t) = trail else { return Ok(ExitCode::SUCCESS) };
    match &t.head {
        None => outln!("intact: no records"),
        Some(head) => {
            let s = if t.records == 1 { "" } else { "s" };
            outln!("intact: {} record{s}, seq {}..{}, head {}", t.records, t.first_seq, head.seq, head.hash);
            if t.first_seq > 0 || t.anchor != GENESIS {
                outln!("the trail starts at seq {}, continuing from prev {} as --after says", t.first_seq, t.anchor);
            }
        }
    }
    for h in heads {
        outln!("holds the anchored head seq {} ({})", h.seq, h.hash);
    }
    match (&keys, t.keyed) {
        (Some(_), n) => outln!("keyed: the mac of each of the {n} records verifies with the audit key"),
        (None, 0) if heads.is_empty() => outln!(
            "no anchored head and no key: records cut off the end, or a chain recomputed from any record on, would \
             verify too; give --head with a head the writer logged, or write the trail with --audit-key"
        ),
        (None, 0) => {}
        (None, n) => outln!("keyed ({n} records carry a mac), not checked: give --key to check it"),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn lint(file: &std::path::Path, output: Output) -> anyhow::Result<ExitCode> {
    use portcullis::policy::PolicyFileError;
    let (policy, problems) = match Policy::from_file(file) {
        Ok(p) => (Some(p), vec![]),
        Err(PolicyFileError::Invalid(e)) => (None, e.problems),
        Err(e) => return Err(e.into()),
    };
    let warnings = policy.as_ref().map(|p| p.warnings(chrono::Utc::now(), portcullis::attest::keyless::EXPIRY_WARNING));
    match output {
        Output::Json => {
            let problems: Vec<serde_json::Value> = problems
                .iter()
                .map(|p| serde_json::json!({"line": p.line, "column": p.column, "path": p.path, "message": p.message}))
                .collect();
            let out = serde_json::json!({
                "file": file.display().to_string(),
                "ok": policy.is_some(),
                "digest": policy.as_ref().map(|p| p.digest.to_string()),
                "tiers": policy.as_ref().map(|p| p.tier_names()),
                "signers": policy.as_ref().map(|p| p.file.spec.signers.keys().collect::<Vec<_>>()),
                "problems": problems,
                "warnings": warnings.clone().unwrap_or_default(),
            });
            outln!("{}", serde_json::to_string_pretty(&out)?);
        }
        Output::Text => match &policy {
            Some(p) => {
                let n = |count: usize, what: &str| format!("{count} {what}{}", if count == 1 { "" } else { "s" });
                outln!(
                    "{}: ok ({}, {}, digest {})",
                    file.display(),
                    n(p.file.spec.tiers.len(), "tier"),
                    n(p.file.spec.signers.len(), "signer"),
                    p.digest
                );
                for w in warnings.iter().flatten() {
                    outln!("{}: warning: {w}", file.display());
                }
            }
            None => {
                for p in &problems {
                    outln!("{}:{p}", file.display());
                }
            }
        },
    }
    Ok(ExitCode::from(if policy.is_some() { 0 } else { 1 }))
}
