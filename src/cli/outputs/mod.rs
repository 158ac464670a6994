//! What `portcullis check` writes: the decision, made once, rendered by
//! each format asked for (`--output FORMAT[=FILE]`, repeatable). Every
//! renderer is a pure function from the typed [`Checked`] to bytes; only
//! [`write`] touches standard output, files and the environment.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use portcullis::policy::{Decision, EvidenceKind, Failure, Outcome, Reason, Verdict};

mod github;
pub(crate) use github::inert;
mod gitlab;
mod junit;
mod sarif;
mod text;
pub(crate) mod vsa;

/// One run of `check`: each tier's decision, the policy, the time.
pub(crate) struct Checked {
    pub(crate) tiers: Vec<Judged>,
    pub(crate) policy_digest: String,
    /// Where the policy came from, as a URI (the file as given, or the
    /// embedded default's place in the source): [`policy_uri`].
    pub(crate) policy_uri: String,
    pub(crate) evaluated_at: DateTime<Utc>,
    /// Where the attestations the verdicts cite were read from.
    pub(crate) origin: Origin,
    /// Documents read besides attestations (VEX files given with `--vex`,
    /// files the policy names), by digest, for the outputs that point at
    /// what a verdict rests on.
    pub(crate) documents: BTreeMap<String, PathBuf>,
}

/// Where the attestations a verdict cites can be fetched again, for the
/// outputs that point at them (the VSA's `inputAttestations`).
pub(crate) enum Origin {
    /// A registry: each is a blob in the repository of the image it
    /// attests, fetched as `registry/repository@sha256:…` (`crane blob`).
    Registry,
    /// Attestation files (`check --attestation`): each digest's file.
    Files(BTreeMap<String, PathBuf>),
}

/// The policy file as a URI reference ([`file_uri`]); the embedded default
/// policy as its file in the source of this version (a purl).
pub(crate) fn policy_uri(path: Option<&std::path::Path>) -> String {
    match path {
        Some(path) => file_uri(path),
        None => format!(
            "pkg:github/portcullis-dev/portcullis@v{}#src/policy/default-policy.yaml",
            env!("CARGO_PKG_VERSION")
        ),
    }
}

/// A file as a URI reference: a relative path as written (so a summary
/// names the file in the repository, not on the runner), an absolute one
/// as a `file://` URI, percent-encoded where RFC 3986 needs it.
pub(crate) fn file_uri(path: &std::path::Path) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
    // Everything but unreserved characters, sub-delims, `:`, `@` and `/`.
    const PATH: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'[')
        .add(b'\\')
        .add(b']')
        .add(b'^')
        .add(b'`')
        .add(b'{')
        .add(b'|')
        .add(b'}');
    let text = path.to_string_lossy();
    let encoded = utf8_percent_encode(&text, PATH).to_string();
    if path.is_absolute() {
        format!("file://{encoded}")
    } else if encoded.split('/').next().is_some_and(|first| first.contains(':')) {
        // `a:b/policy.yaml` would read as a scheme.
        format!("./{encoded}")
    } else {
        encoded
    }
}

/// One tier's decision on the images given.
pub(crate) struct Judged {
    pub(crate) tier: String,
    /// The kinds of evidence the tier requires, for the checks it skips.
    pub(crate) requires: Vec<EvidenceKind>,
    pub(crate) decision: Decision,
}

impl Checked {
    /// 2 when evidence could not be gathered, 1 when any tier denies, else 0.
    pub(crate) fn exit_code(&self) -> u8 {
        if self.tiers.iter().any(|t| t.decision.outcome == Outcome::Error) {
            2
        } else if self.tiers.iter().all(|t| t.decision.allowed) {
            0
        } else {
            1
        }
    }
}

/// The formats, as `--output` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Text,
    Json,
    Sarif,
    Junit,
    Github,
    Markdown,
    Gitlab,
    Vsa,
}

impl Format {
    pub(crate) const ALL: [(&'static str, Format); 8] = [
        ("text", Format::Text),
        ("json", Format::Json),
        ("sarif", Format::Sarif),
        ("junit", Format::Junit),
        ("github", Format::Github),
        ("markdown", Format::Markdown),
        ("gitlab", Format::Gitlab),
        ("vsa", Format::Vsa),
    ];

    fn parse(name: &str) -> Option<Format> {
        Format::ALL.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }
}

/// One `--output`: a format, and the file it goes to (standard output when
/// `None`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) format: Format,
    pub(crate) file: Option<PathBuf>,
}

/// Reads the `--output` values: the targets, and what is wrong with the
/// others (an unknown format, a second one to standard output, no file
/// after `=`).
pub(crate) fn targets(specs: &[String]) -> (Vec<Target>, Vec<String>) {
    let (mut ok, mut bad) = (Vec::<Target>::new(), Vec::new());
    for spec in specs {
        let (name, file) = match spec.split_once('=') {
            Some((name, file)) => (name, Some(file)),
            None => (spec.as_str(), None),
        };
        let Some(format) = Format::parse(name) else {
            let known: Vec<&str> = Format::ALL.iter().map(|(n, _)| *n).collect();
            bad.push(format!("--output {spec}: unknown format {name:?} (known: {})", known.join(", ")));
            continue;
        };
        match file {
            Some("") => bad.push(format!("--output {spec}: no file after `=` (FORMAT=FILE, or FORMAT for stdout)")),
            Some(f) => ok.push(Target { format, file: Some(PathBuf::from(f)) }),
            None if ok.iter().any(|t| t.file.is_none()) => bad.push(format!(
                "--output {spec}: only one format can go to standard output; write this one to a file ({name}=FILE)"
            )),
            None => ok.push(Target { format, file: None }),
        }
    }
    (ok, bad)
}

/// The bytes of one format, or why this decision cannot be written in it
/// (a VSA of an image whose digest is unknown).
pub(crate) fn render(format: Format, c: &Checked) -> Result<Vec<u8>, String> {
    Ok(match format {
        Format::Text => text::text(c).into_bytes(),
        Format::Json => text::json(c),
        Format::Sarif => sarif::sarif(c),
        Format::Junit => junit::junit(c),
        Format::Github => github::commands(c).into_bytes(),
        Format::Markdown => github::summary(c).into_bytes(),
        Format::Gitlab => gitlab::code_quality(c),
        Format::Vsa => vsa::statements(c)?,
    })
}

/// Writes every output asked for; the ones that cannot be written are said
/// on standard error after the others are written. False when any failed.
/// A closed standard output is an error returned (see `cli::run`).
pub(crate) fn write(c: &Checked, specs: &[String]) -> anyhow::Result<bool> {
    let (targets, mut bad) = targets(specs);
    for t in &targets {
        let bytes = match render(t.format, c) {
            Ok(bytes) => bytes,
            // Nothing written: not a summary of some of the images.
            Err(why) => {
                bad.push(format!("--output {}: {why}", name(t.format)));
                continue;
            }
        };
        match &t.file {
            None => {
                use std::io::Write as _;
                let mut out = std::io::stdout().lock();
                out.write_all(&bytes)?;
                out.flush()?;
            }
            Some(path) => {
                if let Err(e) = std::fs::write(path, &bytes) {
                    bad.push(format!("--output {}: writing {}: {e}", name(t.format), path.display()));
                }
            }
        }
        // GitHub's job summary: appended, as each step's is.
        if t.format == Format::Github {
            if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
                if let Err(e) = append(&PathBuf::from(&path), github::summary(c).as_bytes()) {
                    bad.push(format!(
                        "--output github: appending to GITHUB_STEP_SUMMARY {}: {e}",
                        path.to_string_lossy()
                    ));
                }
            }
        }
    }
    for b in &bad {
        eprintln!("error: {b}");
    }
    Ok(bad.is_empty())
}

fn append(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::OpenOptions::new().create(true).append(true).open(path)?.write_all(bytes)
}

fn name(f: Format) -> &'static str {
    Format::ALL.iter().find(|(_, g)| *g == f).map(|(n, _)| *n).unwrap_or_default()
}

/// What a check a tier makes of an image is about, as the CI formats file
/// problems (JUnit's testcases, the summary's rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Check {
    /// The reference, its digest, the registry, the platforms.
    Image,
    Scan,
    Tests,
    Provenance,
    /// Attestations of other predicate types the tier requires.
    Attestations,
    /// The licences of the packages an SBOM lists.
    Licenses,
    /// The base image the image is built on (`baseImage`).
    BaseImage,
    Signers,
    Freshness,
}

impl Check {
    pub(crate) const ALL: [Check; 9] = [
        Check::Image,
        Check::Scan,
        Check::Tests,
        Check::Provenance,
        Check::Attestations,
        Check::Licenses,
        Check::BaseImage,
        Check::Signers,
        Check::Freshness,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Check::Image => "image",
            Check::Scan => "scan",
            Check::Tests => "tests",
            Check::Provenance => "provenance",
            Check::Attestations => "attestations",
            Check::Licenses => "licenses",
            Check::BaseImage => "base-image",
            Check::Signers => "signers",
            Check::Freshness => "freshness",
        }
    }

    /// The check for evidence of `kind`.
    fn of_kind(kind: EvidenceKind) -> Check {
        match kind {
            // VEX only ever takes findings out of the scan's count.
            EvidenceKind::Vulnerabilities | EvidenceKind::Vex => Check::Scan,
            EvidenceKind::Tests => Check::Tests,
            EvidenceKind::Provenance => Check::Provenance,
            EvidenceKind::Attestation => Check::Attestations,
            EvidenceKind::Licenses => Check::Licenses,
            EvidenceKind::BaseImage => Check::BaseImage,
        }
    }

    /// The checks a problem fails: no attestations at all fails every kind
    /// the tier requires.
    pub(crate) fn of(f: &Failure, requires: &[EvidenceKind]) -> Vec<Check> {
        if f.signers {
            return vec![Check::Signers];
        }
        match (f.reason, f.kind) {
            (Reason::StaleEvidence, _) => vec![Check::Freshness],
            (Reason::NoAttestations, _) => requires.iter().map(|k| Check::of_kind(*k)).collect(),
            (_, Some(kind)) => vec![Check::of_kind(kind)],
            (Reason::Vulnerabilities, None) => vec![Check::Scan],
            (Reason::Tests, None) => vec![Check::Tests],
            (Reason::Provenance, None) => vec![Check::Provenance],
            (Reason::Licenses, None) => vec![Check::Licenses],
            (Reason::BaseImage, None) => vec![Check::BaseImage],
            _ => vec![Check::Image],
        }
    }

    /// Whether the tier makes this check at all.
    pub(crate) fn made(self, requires: &[EvidenceKind]) -> bool {
        match self {
            Check::Image => true,
            // Attested evidence; the base image is read from the manifest.
            Check::Signers | Check::Freshness => requires.iter().any(|k| *k != EvidenceKind::BaseImage),
            Check::Scan => requires.contains(&EvidenceKind::Vulnerabilities),
            Check::Tests => requires.contains(&EvidenceKind::Tests),
            Check::Provenance => requires.contains(&EvidenceKind::Provenance),
            Check::Attestations => requires.contains(&EvidenceKind::Attestation),
            Check::Licenses => requires.contains(&EvidenceKind::Licenses),
            Check::BaseImage => requires.contains(&EvidenceKind::BaseImage),
        }
    }
}

/// A verdict's problems, each filed. A verdict made outside the evaluation
/// (an image reference that does not parse) has problems and no filing:
/// each is then a problem of the image.
pub(crate) fn failures(v: &Verdict) -> Vec<Failure> {
    if v.failures.len() == v.problems.len() {
        return v.failures.clone();
    }
    let reason = v.reason().unwrap_or(Reason::Digest);
    v.problems.iter().map(|p| Failure { reason, kind: None, signers: false, problem: p.clone() }).collect()
}

/// How a verdict stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Standing {
    Admitted,
    /// Admitted in a tier in warn mode despite problems (or an error the
    /// tier tolerates).
    Warned,
    Denied,
    /// Evidence could not be gathered, and the tier fails closed.
    Error,
}

pub(crate) fn standing(v: &Verdict) -> Standing {
    if v.error.is_some() && !v.admitted {
        Standing::Error
    } else if !v.admitted {
        Standing::Denied
    } else if !v.problems.is_empty() || v.error.is_some() {
        Standing::Warned
    } else {
        Standing::Admitted
    }
}

/// The image as judged: `registry/repo@sha256:…` once resolved, else as
/// written.
pub(crate) fn judged(v: &Verdict) -> String {
    match &v.digest {
        Some(d) if !v.name.is_empty() => format!("{}@{d}", v.name),
        _ => v.image.clone(),
    }
}

/// The image's repository (`registry/repo`), or the reference as written:
/// what stays the same from one build to the next.
pub(crate) fn repository(v: &Verdict) -> String {
    if v.name.is_empty() {
        v.image.clone()
    } else {
        v.name.clone()
    }
}

#[cfg(test)]
mod tests;
