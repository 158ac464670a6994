//! The command line's arguments: every subcommand and flag, with its `--help` text.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use portcullis::cluster::TIER_LABEL;
use portcullis::policy::parse_duration;
use portcullis::webhook::{self, PinImages};

/// `0.1.0 (revision 1a2b3c4d5e6f)`: the version, and the commit it was built
/// from when the build said (`make` sets `PORTCULLIS_REVISION`).
pub(crate) fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| match option_env!("PORTCULLIS_REVISION").filter(|r| !r.is_empty() && *r != "unknown") {
        Some(r) => format!("{} (revision {})", env!("CARGO_PKG_VERSION"), &r[..r.len().min(12)]),
        None => format!("{} (revision unknown: built outside make)", env!("CARGO_PKG_VERSION")),
    })
}

/// Admit container images into an environment tier only on signed evidence:
/// a cosign-attested vulnerability scan and test results, checked against the
/// tier's thresholds in a PromotionPolicy.
#[derive(Parser)]
#[command(name = "portcullis", version = version(), about, long_about = None)]
pub(crate) struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "PORTCULLIS_LOG_FORMAT")]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the validating admission webhook over HTTPS.
    Serve(Box<ServeArgs>),
    /// Decide whether images may enter a tier, as admission would (exit 0 admit, 1 deny, 2 error).
    Check(Box<CheckArgs>),
    /// Release notes from evidence: what promoting IMAGE brings, from its verified attestations only (exit 0
    /// written, 2 when the evidence could not be gathered).
    ///
    /// Both digests; the source repository, commit and builder from the provenance; the vulnerabilities new,
    /// fixed and still open since --previous (with the exceptions and VEX that apply, named); each test suite's
    /// counts and what newly fails or passes; the signers; the verdict in each tier, with the policy digest. An
    /// attestation that does not verify is never quoted: the notes list it as left out, and why.
    Notes(Box<NotesArgs>),
    /// What is running that would not be admitted today: every running Pod's images, by workload, judged
    /// against its namespace's tier with the evidence in the registry now (exit 0 all pass, 1 some fail, 2 error).
    Report(Box<ReportArgs>),
    /// Work with policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Work with the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Send one AdmissionReview to a running Portcullis over HTTPS and check how it answers (exit 0 as
    /// expected, 1 otherwise, 2 no answer).
    ///
    /// The review is a dry-run CREATE of a ConfigMap, which Portcullis answers without judging, auditing
    /// or looking anything up. The chart's `helm test` runs it against the webhook Service.
    Ping(PingArgs),
    /// What attestation files say and who signed them: each attestation's predicate type, subjects and, signed
    /// keyless, the identity its certificate names (issuer, subject, source repository); then whether it verifies
    /// under the policy, as which signer, or why not (exit 0 when every one verifies, 1 otherwise, 2 on an error).
    ///
    /// Reads DSSE envelopes, sigstore bundles and the JSON Lines of bundles `gh attestation download` writes.
    /// Before a policy trusts a signer, its output shows what to write in it (`keyless.identities`).
    Inspect {
        /// Attestation files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// PromotionPolicy whose signers to verify against; the embedded default when absent.
        #[arg(long, env = "PORTCULLIS_POLICY")]
        policy: Option<PathBuf>,
        /// `text` for people; `json`: one object per attestation (`form`, `predicateType`, `subjects`,
        /// `identity`, `verifiedAs`, `notVerified`) with its `file`.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Show a scanner report as the gate sees it: counts per severity, fixable counts, the worst findings.
    ///
    /// Reads Trivy JSON, Grype JSON, SARIF 2.1.0 (Trivy, Grype), CycloneDX 1.4-1.6 with `vulnerabilities`
    /// (`grype -o cyclonedx-json`, `trivy --format cyclonedx --scanners vuln`), a cosign vuln predicate, an
    /// in-toto vulns predicate, or an in-toto Statement (also of type https://cyclonedx.org/bom) or DSSE
    /// envelope wrapping one; the format is detected.
    Normalize {
        /// The report file, or `-` for standard input.
        report: PathBuf,
        /// `text` for people; `json`: the counts per severity, fixable counts and every finding.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// How many of the worst findings to list (text output).
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// VEX documents (OpenVEX, CycloneDX VEX) to apply: the counts are then those after VEX, and each
        /// suppressed finding is listed with its status, justification and author. Needs --image. Repeatable.
        #[arg(long, value_name = "FILE", requires = "image", num_args = 1..)]
        vex: Vec<PathBuf>,
        /// The image the report is of, by digest (`registry.example.com/shop/api@sha256:…`): VEX products name
        /// images by digest and repository.
        #[arg(long, value_name = "NAME@sha256:…")]
        image: Option<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum PolicyCommand {
    /// Validate a PromotionPolicy file and report every problem with its location.
    Lint {
        /// The policy file.
        file: PathBuf,
        /// `text`: one line per problem, `FILE:LINE:COLUMN: field: problem`; `json`: `{file, ok, digest, tiers,
        /// signers, problems: [{line, column, path, message}], warnings}`.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Check the hash chain of an audit trail: exit 0 intact, 1 broken (the first broken record is named) or
    /// incomplete, 2 unreadable.
    ///
    /// Give the files oldest first: the rotated ones in order, then the current one
    /// (`audit.log.000001 audit.log.000002 audit.log`). A trail that does not start at its first record (seq 0) is
    /// incomplete, unless --after names the head it continues from (its older files shipped away). The chain alone
    /// cannot show records cut off its end, or a chain recomputed from any record on: --head (a head the writer
    /// logged, kept off the node) and --key (a keyed trail) do.
    Verify {
        /// The trail's files, oldest first.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// A head anchored outside the node (`SEQ:HASH`, as the writer logs it in `audit head`): the trail must
        /// hold that record with that hash. Repeatable.
        #[arg(long = "head", value_name = "SEQ:HASH", value_parser = parse_head)]
        heads: Vec<portcullis::audit::Head>,
        /// The head the files given continue from (`SEQ:HASH`), when the older files were shipped away.
        #[arg(long, value_name = "SEQ:HASH", value_parser = parse_head)]
        after: Option<portcullis::audit::Head>,
        /// The audit key file the trail was written with (--audit-key): every record must carry a mac that
        /// verifies with one of its keys.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
}

#[derive(Args)]
pub(crate) struct RegistryArgs {
    /// A registry (host[:port]) to reach over plain HTTP; loopback registries always are. Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub(crate) insecure_registries: Vec<String>,
    /// PEM CA bundle trusted for HTTPS registries, besides the system roots; `HOST[:PORT]=FILE` trusts it for
    /// that registry only (which is then always reached over HTTPS, loopback too). Repeatable.
    #[arg(long = "registry-ca", value_name = "[HOST=]FILE")]
    pub(crate) registry_cas: Vec<String>,
    /// Docker config.json with Portcullis' own registry credentials: `auths`, and `credHelpers` / `credsStore`,
    /// which run `docker-credential-<name> get` as docker does (ECR, GCR, ACR helpers on PATH).
    #[arg(long, value_name = "FILE", env = "PORTCULLIS_REGISTRY_AUTH")]
    pub(crate) registry_auth: Option<PathBuf>,
    /// Timeout for one registry request.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub(crate) registry_timeout: Duration,
    /// Largest attestation (envelope or bundle) read from a registry, in bytes; a larger one is not read (and
    /// said so), nor are older ones claiming its predicate type.
    #[arg(long, default_value_t = 16 << 20)]
    pub(crate) max_attestation_bytes: usize,
    /// Most bytes of attestations read for one image digest (each platform of a multi-arch image is its own),
    /// across both schemes: the newest of each predicate type first, then the rest newest first; what does not
    /// fit is not read (and said so).
    #[arg(long, default_value_t = 32 << 20)]
    pub(crate) max_lookup_bytes: usize,
    /// Most bytes of registry bodies held at once across all lookups, each charged its size until verified and
    /// dropped; half for registries that answer, half for the others. At least twice --max-attestation-bytes.
    #[arg(long, default_value_t = 32 << 20)]
    pub(crate) registry_max_bytes_in_flight: usize,
    /// Most image lookups in flight at once, across all registries (protects registries and their rate limits).
    #[arg(long, default_value_t = 32)]
    pub(crate) registry_max_concurrency: usize,
    /// Most image lookups in flight at once against one registry, so one that hangs cannot take every slot.
    #[arg(long, default_value_t = 8)]
    pub(crate) registry_max_concurrency_per_host: usize,
    /// Of --registry-max-concurrency, most held at once by registries not known to answer (never heard from, or
    /// one of whose requests timed out in the last 5 minutes), so that any number of them cannot starve
    /// registries that answer.
    #[arg(long, default_value_t = 16)]
    pub(crate) registry_max_concurrency_unproven: usize,
    /// Most image lookups waiting for one registry; past it, lookups fail at once.
    #[arg(long, default_value_t = 64)]
    pub(crate) registry_max_queue_per_host: usize,
    /// Budget for one whole lookup (tag resolution, or attestation search), waiting included.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub(crate) registry_lookup_timeout: Duration,
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443", env = "PORTCULLIS_LISTEN")]
    pub(crate) listen: SocketAddr,
    /// Serving certificate (PEM); reloaded when it changes.
    #[arg(long, default_value = "certs-dev/tls.crt")]
    pub(crate) tls_cert: PathBuf,
    /// Serving key (PEM).
    #[arg(long, default_value = "certs-dev/tls.key")]
    pub(crate) tls_key: PathBuf,
    /// Only clients with a certificate from these CAs (PEM bundle) may ask for reviews (/validate, /mutate):
    /// the API server, configured to present a client certificate (README, "Client authentication").
    /// /healthz, /readyz and /metrics stay open for probes and scrapers. Reloaded when it changes.
    /// Without it, anyone who can reach the port may ask.
    #[arg(long, value_name = "FILE", env = "PORTCULLIS_CLIENT_CA")]
    pub(crate) client_ca: Option<PathBuf>,
    /// With --client-ca: the client certificate must also carry this name, as its subject CN or a DNS
    /// subject alternative name (needed when the CA also signs other clients, e.g. the cluster's CA).
    /// Repeatable; absent: any certificate from the CA.
    #[arg(long = "client-name", value_name = "NAME", requires = "client_ca")]
    pub(crate) client_names: Vec<String>,
    /// Also serve /metrics, /healthz and /readyz on this address (HTTPS, the serving certificate, never a
    /// client certificate), so that the webhook port can be opened to the API server alone.
    #[arg(long, value_name = "ADDR", env = "PORTCULLIS_METRICS_LISTEN")]
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// PromotionPolicy file, reloaded when it changes; the embedded default when absent.
    #[arg(long, env = "PORTCULLIS_POLICY")]
    pub(crate) policy: Option<PathBuf>,
    /// Time budget for one decision; keep it below the webhook's timeoutSeconds.
    #[arg(long, default_value = "8s", value_parser = parse_duration)]
    pub(crate) deadline: Duration,
    /// kubeconfig to use; else $KUBECONFIG, ~/.kube/config, or the in-cluster configuration.
    #[arg(long, value_name = "FILE")]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// Where namespace tiers come from: the cluster (namespace label), the policy's static map, or auto (cluster when a kubeconfig or in-cluster config exists).
    #[arg(long, value_enum, default_value_t = ClusterMode::Auto)]
    pub(crate) cluster: ClusterMode,
    /// Namespace label naming the tier.
    #[arg(long, default_value = TIER_LABEL)]
    pub(crate) tier_label: String,
    /// Look images up with the pull secrets of the object under review and of its service account (read from
    /// its own namespace; needs `get` on secrets and serviceaccounts, see manifests/optional/), before
    /// Portcullis' own credentials. Off: only Portcullis' own credentials and anonymous access.
    /// Needs --client-ca: without client authentication, anyone who reaches the port can send a forged review
    /// naming any namespace's secrets and make Portcullis log in with them.
    #[arg(long)]
    pub(crate) pull_secrets: bool,
    /// Allow --pull-secrets without --client-ca, accepting that anyone who can reach the webhook port can make
    /// Portcullis use any namespace's pull secrets (keep the port reachable from the API server only).
    #[arg(long, requires = "pull_secrets")]
    pub(crate) pull_secrets_without_client_auth: bool,
    /// How often one replica (the holder of the Lease portcullis-reevaluation) re-judges every running image,
    /// give or take a tenth, and at once when it takes the lead or the policy changes; writes PolicyReports, Events
    /// on workloads whose status changes, and metrics. `0s`: never. Needs a cluster and a --policy (never on the
    /// embedded default).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub(crate) reevaluate_every: Duration,
    /// A namespace re-evaluation never judges: those the webhook configurations do not send (the cluster's own
    /// control plane). Portcullis' own (--lease-namespace) is always left out. Repeatable; replaces the default.
    #[arg(long = "exclude-namespace", value_name = "NAMESPACE", default_values_t = default_excluded())]
    pub(crate) exclude_namespaces: Vec<String>,
    /// Namespace of the re-evaluation Lease (Portcullis' own).
    #[arg(long, default_value = "portcullis-system", env = "POD_NAMESPACE")]
    pub(crate) lease_namespace: String,
    /// How long the break-glass Events of one grant's copies (a ReplicaSet's Pods) gather: the first is an Event at
    /// once, the rest one Event with a series count when the window closes.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub(crate) event_series_window: Duration,
    /// How long a pull secret or service account read from the API is reused.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) pull_secret_ttl: Duration,
    /// How long a tag -> digest resolution is reused.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) tag_cache_ttl: Duration,
    /// How long verified evidence for a digest is reused.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub(crate) evidence_cache_ttl: Duration,
    /// How long a digest without verified evidence is remembered.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub(crate) negative_cache_ttl: Duration,
    /// How long a registry error is remembered before the registry is asked again.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub(crate) error_cache_ttl: Duration,
    /// Audit log: `-` for stdout, or a file to append JSON lines to; each line is a link of a hash chain
    /// (`portcullis audit verify`).
    #[arg(long, default_value = "-")]
    pub(crate) audit_log: String,
    /// Rotate the audit log file when it would grow past this many bytes: it is renamed PATH.000001,
    /// PATH.000002, … and a new PATH started; the chain runs on across files. 0: never rotate. Rotated files are
    /// never deleted: ship them off the node (a sidecar or log collector) and delete them there.
    #[arg(long, default_value_t = portcullis::audit::DEFAULT_MAX_BYTES)]
    pub(crate) audit_max_bytes: u64,
    /// How often the audit chain's head (seq and hash) is logged (`audit head`), to anchor it outside the node;
    /// it is also logged at shutdown. 0s: only at shutdown.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub(crate) audit_anchor_interval: Duration,
    /// Key file for a keyed audit trail (one key of 32+ bytes per line; the first macs, any verifies): each record
    /// then carries an HMAC of its hash, so that the chain cannot be recomputed from any record on without the
    /// key. Keep it like the grant key (a Secret); `audit verify --key` checks it.
    #[arg(long, value_name = "FILE", env = "PORTCULLIS_AUDIT_KEY")]
    pub(crate) audit_key: Option<PathBuf>,
    /// When a decision's audit record counts as kept: `batch` once queued (written within milliseconds; a graceful
    /// shutdown drains the queue, a hard kill loses what was queued), `always` once written and fdatasynced (the
    /// decision is answered only then; records waiting together share one sync).
    #[arg(long, value_enum, default_value_t = AuditSync::Batch)]
    pub(crate) audit_sync: AuditSync,
    /// Write every AdmissionReview received into this directory (debugging;
    /// the files hold whole objects).
    #[arg(long, value_name = "DIR")]
    pub(crate) record_dir: Option<PathBuf>,
    /// How often the policy file and certificate are checked for changes.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub(crate) reload_interval: Duration,
    /// Key file for break-glass grants (one key of 32+ bytes per line; the first signs, any verifies).
    /// Every replica must have the same file (a Secret); without one, a random key known to this process only.
    #[arg(long, value_name = "FILE", env = "PORTCULLIS_GRANT_KEY")]
    pub(crate) grant_key: Option<PathBuf>,
    /// A user a workload controller acts as, besides kube-controller-manager's own (its controllers' kube-system
    /// service accounts, `system:kube-controller-manager`): it may present a break-glass grant on the copies it makes
    /// of a granted workload (e.g. `system:serviceaccount:argo-rollouts:argo-rollouts`). Repeatable.
    #[arg(long = "controller-user", value_name = "USER")]
    pub(crate) controller_users: Vec<String>,
    /// What /mutate pins to digests: `pods` (the kubelet pulls what was judged), `all` (also the pod templates
    /// users apply), or `never`. In tiers with `requireDigest`, the pod templates users apply are pinned unless `never`.
    #[arg(long, value_enum, default_value_t = PinImages::Pods)]
    pub(crate) pin_images: PinImages,
    /// Most distinct images judged in one review; an object naming more is denied.
    #[arg(long, default_value_t = 64)]
    pub(crate) max_images_per_review: usize,
    /// Most bytes of AdmissionReview bodies held at once while they are read and decoded, across requests, past
    /// each body's first 64 KiB (every real review fits in those); a body past the budget waits for its share, at
    /// most --body-timeout. Bounds the memory requests can hold together.
    #[arg(long, default_value_t = webhook::READING_BYTES)]
    pub(crate) review_bytes_in_flight: usize,
    /// Most client connections open at once; more wait to be accepted.
    #[arg(long, default_value_t = 1024)]
    pub(crate) max_connections: usize,
    /// Most connections open at once from one source address; more from it are closed at once. An API server
    /// speaking HTTP/1.1 opens one per concurrent call, and several may share an address (NAT, a tunnel).
    #[arg(long, default_value_t = 256)]
    pub(crate) max_connections_per_peer: usize,
    /// A connection that has answered no request this long after its TLS handshake is closed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) first_request_timeout: Duration,
    /// Longest wait for a request's headers (and for the next request on a kept-alive connection).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) header_timeout: Duration,
    /// Longest wait for a request's whole body.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) body_timeout: Duration,
    /// A connection with no request in flight and none started this long is closed; HTTP/2 PINGs and other
    /// frames do not count (keep above the API server's 90s).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub(crate) idle_timeout: Duration,
    #[command(flatten)]
    pub(crate) registry: RegistryArgs,
}

/// The namespaces the shipped webhook configurations do not send, besides
/// Portcullis' own.
pub(crate) fn default_excluded() -> Vec<String> {
    ["kube-system", "kube-public", "kube-node-lease"].map(String::from).to_vec()
}

/// [`default_excluded`], and Portcullis' own namespace.
pub(crate) fn default_excluded_with_own() -> Vec<String> {
    let mut v = default_excluded();
    v.push("portcullis-system".into());
    v
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AuditSync {
    Batch,
    Always,
}

impl From<AuditSync> for portcullis::audit::Sync {
    fn from(s: AuditSync) -> Self {
        match s {
            AuditSync::Batch => portcullis::audit::Sync::Batch,
            AuditSync::Always => portcullis::audit::Sync::Always,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ClusterMode {
    Auto,
    Always,
    Never,
}

#[derive(Args)]
pub(crate) struct CheckArgs {
    /// Images to check (any form: name, name:tag, name@sha256:…; with
    /// --attestation, sha256:<hex> or name@sha256:<hex>).
    #[arg(required = true)]
    pub(crate) images: Vec<String>,
    /// Decide from these attestation files alone, contacting no registry: a
    /// DSSE envelope, a sigstore bundle, or JSON Lines of bundles (what `gh
    /// attestation download` writes). Repeat for several files.
    #[arg(long = "attestation", value_name = "FILE")]
    pub(crate) attestations: Vec<PathBuf>,
    /// VEX documents (OpenVEX, CycloneDX VEX) to apply to the images' scans, as if attested: only in a tier
    /// that trusts VEX (`vulnerabilities.vex`), and said to be unsigned, since admission applies only VEX
    /// attested on the image and signed by one of `vulnerabilities.vex.signedBy`. Repeatable.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub(crate) vex: Vec<PathBuf>,
    /// PromotionPolicy file; the embedded default when absent.
    #[arg(long, env = "PORTCULLIS_POLICY")]
    pub(crate) policy: Option<PathBuf>,
    /// The tier to check against (a tier the policy defines); several, comma-separated
    /// (`--tier staging,production`), are judged in one run: exit 1 when any of them denies.
    #[arg(long, value_name = "TIER[,TIER…]")]
    pub(crate) tier: String,
    /// What to write, as FORMAT (to standard output) or FORMAT=FILE; repeat for several, at most one to
    /// standard output. The decision is made once and each format renders it. An unknown format or a file
    /// that cannot be written is an error (exit 2), said after the other outputs are written.
    ///
    /// Formats: `text`: one line per image (ADMIT, WARN, DENY, ERROR) and the policy digest; `json`: the
    /// decision (`allowed`, `result`, `reason`, `message`, `warnings`) and every verdict with its reasons and
    /// attestations; `sarif`: SARIF 2.1.0 for GitHub code scanning (each denial reason and each counted
    /// vulnerability a result); `junit`: JUnit XML, a testsuite per image and a testcase per tier and check;
    /// `github`: GitHub workflow commands (`::error`, `::warning`), and with GITHUB_STEP_SUMMARY set, the
    /// Markdown summary appended to it; `markdown`: that summary alone; `gitlab`: a GitLab code-quality
    /// report; `vsa`: a SLSA verification summary (predicate type https://slsa.dev/verification_summary/v1)
    /// in an in-toto Statement per image, one a line, for `cosign attest` to sign and attach (PASSED only
    /// when every tier admits the image without a problem; an image whose digest is not known is an error).
    #[arg(long = "output", value_name = "FORMAT[=FILE]", default_value = "text")]
    pub(crate) outputs: Vec<String>,
    /// Overall time budget.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// Evaluate as of this time (RFC 3339), to replay a recorded decision.
    #[arg(long)]
    pub(crate) at: Option<chrono::DateTime<chrono::Utc>>,
    #[command(flatten)]
    pub(crate) registry: RegistryArgs,
}

#[derive(Args)]
pub(crate) struct NotesArgs {
    /// The image promoted (any form; with --attestation, sha256:<hex> or name@sha256:<hex>).
    pub(crate) image: String,
    /// The image it replaces, to compare with (the one running in the tier, or the last release).
    #[arg(long, value_name = "IMAGE")]
    pub(crate) previous: Option<String>,
    /// Read the attestations from these files alone, contacting no registry (as `check --attestation`).
    /// Repeatable.
    #[arg(long = "attestation", value_name = "FILE")]
    pub(crate) attestations: Vec<PathBuf>,
    /// PromotionPolicy file, whose signers the attestations must verify against; the embedded default when
    /// absent.
    #[arg(long, env = "PORTCULLIS_POLICY")]
    pub(crate) policy: Option<PathBuf>,
    /// The tiers whose verdicts the notes give, comma-separated; every tier of the policy when absent.
    #[arg(long, value_name = "TIER[,TIER…]")]
    pub(crate) tier: Option<String>,
    /// `markdown` (for a release or a merge request) or `json`.
    #[arg(long, value_enum, default_value_t = NotesFormat::Markdown)]
    pub(crate) output: NotesFormat,
    /// Overall time budget.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// Write the notes as of this time (RFC 3339).
    #[arg(long)]
    pub(crate) at: Option<chrono::DateTime<chrono::Utc>>,
    #[command(flatten)]
    pub(crate) registry: RegistryArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum NotesFormat {
    Markdown,
    Json,
}

#[derive(Args)]
pub(crate) struct ReportArgs {
    /// kubeconfig to use; else $KUBECONFIG, ~/.kube/config, or the in-cluster configuration.
    #[arg(long, value_name = "FILE")]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// Only this namespace; every namespace when absent.
    #[arg(long, short = 'n')]
    pub(crate) namespace: Option<String>,
    /// A namespace left out (those the webhook is not sent). Repeatable; replaces the default. Ignored for the
    /// namespace given with -n.
    #[arg(long = "exclude-namespace", value_name = "NAMESPACE", default_values_t = default_excluded_with_own())]
    pub(crate) exclude_namespaces: Vec<String>,
    /// PromotionPolicy file; the embedded default when absent.
    #[arg(long, env = "PORTCULLIS_POLICY")]
    pub(crate) policy: Option<PathBuf>,
    /// Namespace label naming the tier.
    #[arg(long, default_value = TIER_LABEL)]
    pub(crate) tier_label: String,
    /// `text`: a table of what fails (with --all, everything); `json`: every row, and the count failing.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,
    /// List the images that pass too (text output; JSON lists every one).
    #[arg(long)]
    pub(crate) all: bool,
    /// Overall time budget.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// Judge as of this time (RFC 3339): what will have aged out by then.
    #[arg(long)]
    pub(crate) at: Option<chrono::DateTime<chrono::Utc>>,
    /// Look each image up with its Pods' pull secrets (and their service account's), then the registry
    /// credentials given, as admission does with `serve --pull-secrets`: an image only a namespace's secret can
    /// read is judged rather than reported as an error. Needs `get` on secrets and service accounts.
    #[arg(long)]
    pub(crate) pull_secrets: bool,
    #[command(flatten)]
    pub(crate) registry: RegistryArgs,
}

#[derive(Args)]
pub(crate) struct PingArgs {
    /// The review endpoint, e.g. https://portcullis.portcullis-system.svc/validate.
    pub(crate) url: String,
    /// Trust only this CA bundle (PEM) for the server's certificate, e.g. the webhooks' caBundle; the
    /// system roots when absent.
    #[arg(long, value_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// `answer`: an AdmissionReview answer to this review; `refused`: the 403 a client without a
    /// certificate gets from a server with --client-ca.
    #[arg(long, value_enum, default_value_t = Expect::Answer)]
    pub(crate) expect: Expect,
    /// Overall time budget.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Expect {
    Answer,
    Refused,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Text,
    Json,
}

/// `SEQ:HASH`, as `audit head` logs it (`41:sha256:c07a…`).
fn parse_head(s: &str) -> Result<portcullis::audit::Head, String> {
    let (seq, hash) = s.split_once(':').ok_or("expected SEQ:HASH, e.g. 41:sha256:c07a…")?;
    let seq = seq.parse().map_err(|_| format!("{seq:?} is not a seq (a whole number)"))?;
    let hex = hash.strip_prefix("sha256:").ok_or("the hash starts sha256:")?;
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err("the hash is sha256: and 64 lowercase hex digits".into());
    }
    Ok(portcullis::audit::Head { seq, hash: hash.to_string() })
}
