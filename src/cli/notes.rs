//! `portcullis notes`: release notes from evidence. The images' evidence is
//! gathered and judged by the same engine and gate as `check`; the notes are
//! written from it by `portcullis::notes` (pure), and rendered here.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use portcullis::cluster::TierSource;
use portcullis::engine::{Engine, EngineConfig, Files, Keychain, Source};
use portcullis::gate::{Ask, Gate, Place, Written};
use portcullis::image::ImageRef;
use portcullis::metrics::Metrics;
use portcullis::notes::{self, How, Notes, Part, Side};
use portcullis::policy::{GrantKeys, Verdict};

use super::args::*;
use super::outputs::inert;
use super::{load_policy, registry, tiers_named};

pub(crate) async fn notes(a: NotesArgs) -> anyhow::Result<ExitCode> {
    let policy = Arc::new(load_policy(a.policy.as_ref())?);
    let tiers = tiers_named(&policy, a.tier.as_deref())?;
    let now = a.at.unwrap_or_else(portcullis::gate::now);
    let written: Vec<String> = std::iter::once(a.image.clone()).chain(a.previous.clone()).collect();
    let (source, refs): (Arc<dyn Source>, Vec<ImageRef>) = if a.attestations.is_empty() {
        let refs = written.iter().map(|i| ImageRef::parse(i)).collect::<Result<Vec<_>, _>>()?;
        (Arc::new(registry(&a.registry)?), refs)
    } else {
        (Arc::new(Files::read(&a.attestations)?), super::check::pinned_images(&written)?)
    };
    let engine = Engine::with_source(source, &EngineConfig::default(), Arc::new(Metrics::new()));
    let gate = Gate::new(engine.clone(), policy.clone(), TierSource::Static, GrantKeys::random()?)
        .with_clock(Arc::new(move || now));
    let deadline = tokio::time::Instant::now() + a.timeout;
    let keys = Keychain::default();

    // Each image's evidence (looked up once; the gate's judgements below
    // find it cached), then its verdict in each tier.
    let mut sides = Vec::new();
    for (image, as_written) in refs.iter().zip(&written) {
        let evidence = match tokio::time::timeout_at(deadline, engine.gather(image, &policy, &keys)).await {
            Ok(Ok(ev)) => ev,
            Ok(Err(e)) => anyhow::bail!("{as_written}: its evidence could not be gathered: {e}"),
            Err(_) => anyhow::bail!("{as_written}: its evidence could not be gathered within {:?}", a.timeout),
        };
        let mut verdicts: Vec<Verdict> = Vec::new();
        for tier in &tiers {
            let judgement = gate
                .judge(Ask {
                    place: Place::Tier(tier),
                    what: "the image given".into(),
                    images: vec![Written::parsed(image)],
                    max_images: None,
                    keychain: Default::default(),
                    break_glass: Default::default(),
                    deadline,
                    vex: &[],
                })
                .await;
            verdicts.extend(judgement.decision.verdicts);
        }
        sides.push((as_written.clone(), image.name(), evidence, verdicts));
    }
    let sides: Vec<Side<'_>> = sides
        .iter()
        .map(|(reference, name, evidence, verdicts)| Side {
            reference: reference.clone(),
            name: name.clone(),
            evidence,
            verdicts,
        })
        .collect();
    let (image, previous) = (&sides[0], sides.get(1));
    let notes = notes::build(&policy, image, previous, now);
    match a.output {
        NotesFormat::Json => outln!("{}", serde_json::to_string_pretty(&notes)?),
        NotesFormat::Markdown => out!("{}", markdown(&notes)),
    }
    Ok(ExitCode::SUCCESS)
}

/// The notes for a release or a merge request. Text from the evidence is
/// made inert (one line, no Markdown of its own).
pub(crate) fn markdown(n: &Notes) -> String {
    let mut md = String::new();
    let short = |d: &str| d.get(..19).unwrap_or(d).to_string();
    let _ = writeln!(md, "# Release notes: {}\n", inert(&n.image.reference));
    match &n.previous {
        Some(p) => {
            let _ = writeln!(md, "| | digest | image |\n|---|---|---|");
            let _ = writeln!(md, "| this release | `{}` | {} |", n.image.digest, inert(&n.image.reference));
            let _ = writeln!(md, "| previous | `{}` | {} |", p.digest, inert(&p.reference));
        }
        None => {
            let _ = writeln!(md, "Digest: `{}` (no previous image given: nothing compared)", n.image.digest);
        }
    }
    let _ = writeln!(
        md,
        "\nWritten {} from verified attestations only, under policy `{}`.\n",
        n.generated_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        n.policy_digest
    );

    let _ = writeln!(md, "## Verdict\n\n| tier | verdict | why |\n|---|---|---|");
    for v in &n.verdicts {
        let (word, why) = match (&v.error, v.admitted) {
            (Some(e), _) => ("error", inert(e)),
            (None, true) if v.problems.is_empty() => ("admitted", String::new()),
            (None, true) => ("admitted with warnings", inert(&v.problems.join("; "))),
            (None, false) => ("denied", inert(&v.problems.join("; "))),
        };
        let mut why = why;
        if !v.exceptions.is_empty() {
            let list: Vec<String> = v.exceptions.iter().map(|e| inert(e)).collect();
            why = [why, format!("exceptions: {}", list.join(", "))]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
        }
        let _ = writeln!(md, "| {} | {word} | {why} |", inert(&v.tier));
    }

    for part in &n.parts {
        if let Some(p) = &part.platform {
            let _ = writeln!(md, "\n## {} (`{}`)", inert(p), short(&part.digest));
        }
        part_markdown(&mut md, part);
    }

    let _ = writeln!(md, "\n## Signers\n");
    if n.signers.is_empty() {
        let _ = writeln!(md, "Nothing verified was quoted.");
    }
    for s in &n.signers {
        let who = match &s.identity {
            Some(id) => format!("keyless: {} issued by {}", inert(&id.subject), inert(&id.issuer)),
            None => "key".to_string(),
        };
        let _ = writeln!(md, "- **{}** ({who}): {}", inert(&s.name), s.signed.join(", "));
    }
    if !n.left_out.is_empty() {
        let _ = writeln!(md, "\n## Left out\n\nNot quoted above:\n");
        for l in &n.left_out {
            let what =
                l.attestation.as_deref().map(|d| format!("`{}`", short(d))).unwrap_or_else(|| "attestations".into());
            let ty = l.predicate_type.as_deref().map(|t| format!(" ({})", inert(t))).unwrap_or_default();
            let platform = l.platform.as_deref().map(|p| format!(", {}", inert(p))).unwrap_or_default();
            let _ = writeln!(md, "- {what}{ty} of the {}{platform}: {}", l.of, inert(&l.why));
        }
    }
    md
}

fn part_markdown(md: &mut String, part: &Part) {
    let _ = writeln!(md, "\n### Source\n");
    match &part.provenance {
        None => {
            let _ = writeln!(md, "No verified provenance.");
        }
        Some(p) => {
            let prev = part.previous_provenance.as_ref();
            let repo = p.source_repository.as_deref().map(inert).unwrap_or_else(|| "not named".into());
            let _ = writeln!(md, "- Repository: {repo}");
            let commit =
                p.source_commit.as_deref().map(|c| format!("`{}`", inert(c))).unwrap_or_else(|| "not named".into());
            let was = prev
                .and_then(|q| q.source_commit.as_deref())
                .filter(|c| Some(*c) != p.source_commit.as_deref())
                .map(|c| format!(" (previously `{}`)", inert(c)))
                .unwrap_or_default();
            let _ = writeln!(md, "- Commit: {commit}{was}");
            let _ = writeln!(md, "- Builder: {}", inert(&p.builder_id));
            if !p.build_type.is_empty() {
                let _ = writeln!(md, "- Build type: {}", inert(&p.build_type));
            }
            let _ = writeln!(md, "- Provenance: `{}`, signed by {}", p.attestation, inert(&p.signers.join(", ")));
        }
    }

    let _ = writeln!(md, "\n### Vulnerabilities\n");
    match &part.vulnerabilities {
        None => {
            let _ = writeln!(md, "No verified vulnerability scan.");
        }
        Some(v) => {
            let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map(|t| format!(", finished {}", t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
                    .unwrap_or_default()
            };
            let _ = writeln!(
                md,
                "Scan by {}{}, signed by {} (`{}`).",
                inert(&v.scan.scanner),
                when(v.scan.finished_on),
                inert(&v.scan.signers.join(", ")),
                v.scan.attestation
            );
            match (&v.previous_scan, v.compared) {
                (Some(p), true) => {
                    let _ = writeln!(
                        md,
                        "Compared with the previous image's scan{} (`{}`).",
                        when(p.finished_on),
                        p.attestation
                    );
                }
                _ if part.previous_digest.is_some() => {
                    let _ = writeln!(md, "The previous image has no verified scan: nothing compared.");
                }
                _ => {}
            }
            if v.compared {
                findings(md, "New", &v.new);
                findings(md, "Fixed", &v.fixed);
                findings(md, "Still open", &v.open);
            } else {
                findings(md, "Open", &v.open);
            }
        }
    }

    let _ = writeln!(md, "\n### Tests\n");
    if part.tests.is_empty() {
        let _ = writeln!(md, "No verified test results.");
        return;
    }
    let _ = writeln!(
        md,
        "| suite | result | passed | warned | failed | newly failing | newly passing |\n|---|---|---|---|---|---|---|"
    );
    for t in &part.tests {
        let result = format!("{:?}", t.result).to_uppercase();
        let result = match t.previous_result {
            Some(p) if p != t.result => format!("{result} (was {})", format!("{p:?}").to_uppercase()),
            _ => result,
        };
        let list = |l: &[String]| inert(&l.join(", "));
        let (nf, np) =
            if t.compared { (list(&t.newly_failing), list(&t.newly_passing)) } else { ("n/a".into(), "n/a".into()) };
        let _ = writeln!(
            md,
            "| {} | {result} | {} | {} | {} | {nf} | {np} |",
            inert(&t.suite),
            t.passed,
            t.warned,
            t.failed
        );
    }
}

fn findings(md: &mut String, title: &str, list: &[notes::FindingNote]) {
    let _ = writeln!(md, "\n#### {title} ({})\n", list.len());
    if list.is_empty() {
        return;
    }
    let _ = writeln!(md, "| severity | id | package | version | fixed in | applied |\n|---|---|---|---|---|---|");
    for f in list {
        let version = match &f.previous_version {
            Some(p) => format!("{} (was {})", inert(&f.installed_version), inert(p)),
            None => inert(&f.installed_version),
        };
        let applied: Vec<String> = f
            .applied
            .iter()
            .map(|a| match &a.how {
                How::Exception { id, approved_by, expires, .. } => {
                    format!(
                        "{}: exception {} (approved by {}, expires {expires})",
                        inert(&a.tier),
                        inert(id),
                        inert(approved_by)
                    )
                }
                How::Vex { status, author, .. } => {
                    format!("{}: VEX {} by {}", inert(&a.tier), inert(status), inert(author))
                }
            })
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {version} | {} | {} |",
            f.severity.as_str(),
            inert(&f.id),
            inert(&f.package),
            inert(&f.fixed_versions.join(", ")),
            applied.join("; ")
        );
    }
}
