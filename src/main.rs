//! The `portcullis` command line: `serve` (admission webhook), `check` (the
//! same decision from a CI pipeline), `policy lint`, `audit verify`, `ping`
//! (does a running webhook answer).
#![deny(rust_2018_idioms)]
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use portcullis::audit::{AuditLog, AuditOptions};
use portcullis::cluster::{TierSource, TIER_LABEL};
use portcullis::engine::{Engine, EngineConfig, Files, Source, MAX_ATTESTATION_FILE, MAX_FILE_ATTESTATIONS};
use portcullis::image::ImageRef;
use portcullis::metrics::Metrics;
use portcullis::policy::{parse_duration, GrantKeys, Policy, EMBEDDED_DEFAULT};
use portcullis::registry::{Credentials, Limits, Registry};
use portcullis::webhook::{self, AppState, PinImages};

/// Writes to standard output. A closed pipe (`portcullis check … | head -1`)
/// is an error the command returns, never a panic; see [`main`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// [`out!`], with a newline.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// `0.1.0 (revision 1a2b3c4d5e6f)`: the version, and the commit it was built
/// from when the build said (`make` sets `PORTCULLIS_REVISION`).
fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| match option_env!("PORTCULLIS_REVISION").filter(|r| !r.is_empty() && *r != "unknown") {
        Some(r) => format!("{} (revision {})", env!("CARGO_PKG_VERSION"), &r[..r.len().min(12)]),
        None => format!("{} (revision unknown: built outside make)", env!("CARGO_PKG_VERSION")),
    })
}

/// mimalloc rather than the system allocator: deciding a request allocates
/// many small objects on several threads at once, where glibc's allocator
/// contends on its arena locks (BENCHMARKS.md says what it bought).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Admit container images into an environment tier only on signed evidence:
/// a cosign-attested vulnerability scan and test results, checked against the
/// tier's thresholds in a PromotionPolicy.
#[derive(Parser)]
#[command(name = "portcullis", version = version(), about, long_about = None)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "PORTCULLIS_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the validating admission webhook over HTTPS.
    Serve(Box<ServeArgs>),
    /// Decide whether images may enter a tier, as admission would (exit 0 admit, 1 deny, 2 error).
    Check(Box<CheckArgs>),
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
    /// Reads Trivy JSON, Grype JSON, SARIF 2.1.0 (Trivy, Grype), a cosign vuln predicate, an in-toto
    /// vulns predicate, or an in-toto Statement or DSSE envelope wrapping one; the format is detected.
    Normalize {
        /// The report file, or `-` for standard input.
        report: PathBuf,
        /// `text` for people; `json`: the counts per severity, fixable counts and every finding.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// How many of the worst findings to list (text output).
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
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
enum AuditCommand {
    /// Check the hash chain of an audit trail: exit 0 intact, 1 broken (the first broken record is named), 2
    /// unreadable.
    ///
    /// Give the files oldest first: the rotated ones in order, then the current one
    /// (`audit.log.000001 audit.log.000002 audit.log`). A trail whose older files were shipped away is checked
    /// from its first record on.
    Verify {
        /// The trail's files, oldest first.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Args)]
struct RegistryArgs {
    /// A registry (host[:port]) to reach over plain HTTP; loopback registries always are. Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure_registries: Vec<String>,
    /// PEM CA bundle trusted for HTTPS registries, besides the system roots; `HOST[:PORT]=FILE` trusts it for
    /// that registry only (which is then always reached over HTTPS, loopback too). Repeatable.
    #[arg(long = "registry-ca", value_name = "[HOST=]FILE")]
    registry_cas: Vec<String>,
    /// Docker config.json with Portcullis' own registry credentials: `auths`, and `credHelpers` / `credsStore`,
    /// which run `docker-credential-<name> get` as docker does (ECR, GCR, ACR helpers on PATH).
    #[arg(long, value_name = "FILE", env = "PORTCULLIS_REGISTRY_AUTH")]
    registry_auth: Option<PathBuf>,
    /// Timeout for one registry request.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    registry_timeout: Duration,
    /// Largest attestation (envelope or bundle) read from a registry, in bytes; a larger one is not read (and
    /// said so), nor are older ones claiming its predicate type.
    #[arg(long, default_value_t = 16 << 20)]
    max_attestation_bytes: usize,
    /// Most bytes of attestations read for one image digest (each platform of a multi-arch image is its own),
    /// across both schemes: the newest of each predicate type first, then the rest newest first; what does not
    /// fit is not read (and said so).
    #[arg(long, default_value_t = 32 << 20)]
    max_lookup_bytes: usize,
    /// Most bytes of registry bodies held at once across all lookups, each charged its size until verified and
    /// dropped; half for registries that answer, half for the others. At least twice --max-attestation-bytes.
    #[arg(long, default_value_t = 32 << 20)]
    registry_max_bytes_in_flight: usize,
    /// Most image lookups in flight at once, across all registries (protects registries and their rate limits).
    #[arg(long, default_value_t = 32)]
    registry_max_concurrency: usize,
    /// Most image lookups in flight at once against one registry, so one that hangs cannot take every slot.
    #[arg(long, default_value_t = 8)]
    registry_max_concurrency_per_host: usize,
    /// Of --registry-max-concurrency, most held at once by registries not known to answer (never heard from, or
    /// one of whose requests timed out in the last 5 minutes), so that any number of them cannot starve
    /// registries that answer.
    #[arg(long, default_value_t = 16)]
    registry_max_concurrency_unproven: usize,
    /// Most image lookups waiting for one registry; past it, lookups fail at once.
    #[arg(long, default_value_t = 64)]
    registry_max_queue_per_host: usize,
    /// Budget for one whole lookup (tag resolution, or attestation search), waiting included.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    registry_lookup_timeout: Duration,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443", env = "PORTCULLIS_LISTEN")]
    listen: SocketAddr,
    /// Serving certificate (PEM); reloaded when it changes.
    #[arg(long, default_value = "certs-dev/tls.crt")]
    tls_cert: PathBuf,
    /// Serving key (PEM).
    #[arg(long, default_value = "certs-dev/tls.key")]
    tls_key: PathBuf,
    /// Only clients with a certificate from these CAs (PEM bundle) may ask for reviews (/validate, /mutate):
    /// the API server, configured to present a client certificate (README, "Client authentication").
    /// /healthz, /readyz and /metrics stay open for probes and scrapers. Reloaded when it changes.
    /// Without it, anyone who can reach the port may ask.
    #[arg(long, value_name = "FILE", env = "PORTCULLIS_CLIENT_CA")]
    client_ca: Option<PathBuf>,
    /// With --client-ca: the client certificate must also carry this name, as its subject CN or a DNS
    /// subject alternative name (needed when the CA also signs other clients, e.g. the cluster's CA).
    /// Repeatable; absent: any certificate from the CA.
    #[arg(long = "client-name", value_name = "NAME", requires = "client_ca")]
    client_names: Vec<String>,
    /// Also serve /metrics, /healthz and /readyz on this address (HTTPS, the serving certificate, never a
    /// client certificate), so that the webhook port can be opened to the API server alone.
    #[arg(long, value_name = "ADDR", env = "PORTCULLIS_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// PromotionPolicy file, reloaded when it changes; the embedded default when absent.
    #[arg(long, env = "PORTCULLIS_POLICY")]
    policy: Option<PathBuf>,
    /// Time budget for one decision; keep it below the webhook's timeoutSeconds.
    #[arg(long, default_value = "8s", value_parser = parse_duration)]
    deadline: Duration,
    /// kubeconfig to use; else $KUBECONFIG, ~/.kube/config, or the in-cluster configuration.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Where namespace tiers come from: the cluster (namespace label), the policy's static map, or auto (cluster when a kubeconfig or in-cluster config exists).
    #[arg(long, value_enum, default_value_t = ClusterMode::Auto)]
    cluster: ClusterMode,
    /// Namespace label naming the tier.
    #[arg(long, default_value = TIER_LABEL)]
    tier_label: String,
    /// Look images up with the pull secrets of the object under review and of its service account (read from
    /// its own namespace; needs `get` on secrets and serviceaccounts, see manifests/optional/), before
    /// Portcullis' own credentials. Off: only Portcullis' own credentials and anonymous access.
    /// Needs --client-ca: without client authentication, anyone who reaches the port can send a forged review
    /// naming any namespace's secrets and make Portcullis log in with them.
    #[arg(long)]
    pull_secrets: bool,
    /// Allow --pull-secrets without --client-ca, accepting that anyone who can reach the webhook port can make
    /// Portcullis use any namespace's pull secrets (keep the port reachable from the API server only).
    #[arg(long, requires = "pull_secrets")]
    pull_secrets_without_client_auth: bool,
    /// How often one replica (the holder of the Lease portcullis-reevaluation) re-judges every running image,
    /// give or take a tenth, and at once when it takes the lead or the policy changes; writes PolicyReports, Events
    /// on workloads whose status changes, and metrics. `0s`: never. Needs a cluster and a --policy (never on the
    /// embedded default).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    reevaluate_every: Duration,
    /// A namespace re-evaluation never judges: those the webhook configurations do not send (the cluster's own
    /// control plane). Portcullis' own (--lease-namespace) is always left out. Repeatable; replaces the default.
    #[arg(long = "exclude-namespace", value_name = "NAMESPACE", default_values_t = default_excluded())]
    exclude_namespaces: Vec<String>,
    /// Namespace of the re-evaluation Lease (Portcullis' own).
    #[arg(long, default_value = "portcullis-system", env = "POD_NAMESPACE")]
    lease_namespace: String,
    /// How long a pull secret or service account read from the API is reused.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pull_secret_ttl: Duration,
    /// How long a tag -> digest resolution is reused.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    tag_cache_ttl: Duration,
    /// How long verified evidence for a digest is reused.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    evidence_cache_ttl: Duration,
    /// How long a digest without verified evidence is remembered.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    negative_cache_ttl: Duration,
    /// How long a registry error is remembered before the registry is asked again.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    error_cache_ttl: Duration,
    /// Audit log: `-` for stdout, or a file to append JSON lines to; each line is a link of a hash chain
    /// (`portcullis audit verify`).
    #[arg(long, default_value = "-")]
    audit_log: String,
    /// Rotate the audit log file when it would grow past this many bytes: it is renamed PATH.000001,
    /// PATH.000002, … and a new PATH started; the chain runs on across files. 0: never rotate. Rotated files are
    /// never deleted: ship them off the node (a sidecar or log collector) and delete them there.
    #[arg(long, default_value_t = portcullis::audit::DEFAULT_MAX_BYTES)]
    audit_max_bytes: u64,
    /// How often the audit chain's head (seq and hash) is logged (`audit head`), to anchor it outside the node;
    /// it is also logged at shutdown. 0s: only at shutdown.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    audit_anchor_interval: Duration,
    /// Write every AdmissionReview received into this directory (debugging;
    /// the files hold whole objects).
    #[arg(long, value_name = "DIR")]
    record_dir: Option<PathBuf>,
    /// How often the policy file and certificate are checked for changes.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    reload_interval: Duration,
    /// Key file for break-glass grants (one key of 32+ bytes per line; the first signs, any verifies).
    /// Every replica must have the same file (a Secret); without one, a random key known to this process only.
    #[arg(long, value_name = "FILE", env = "PORTCULLIS_GRANT_KEY")]
    grant_key: Option<PathBuf>,
    /// A user a workload controller acts as, besides kube-controller-manager's own (its controllers' kube-system
    /// service accounts, `system:kube-controller-manager`): it may present a break-glass grant on the copies it makes
    /// of a granted workload (e.g. `system:serviceaccount:argo-rollouts:argo-rollouts`). Repeatable.
    #[arg(long = "controller-user", value_name = "USER")]
    controller_users: Vec<String>,
    /// What /mutate pins to digests: `pods` (the kubelet pulls what was judged), `all` (also the pod templates
    /// users apply), or `never`. In tiers with `requireDigest`, the pod templates users apply are pinned unless `never`.
    #[arg(long, value_enum, default_value_t = PinImages::Pods)]
    pin_images: PinImages,
    /// Most distinct images judged in one review; an object naming more is denied.
    #[arg(long, default_value_t = 64)]
    max_images_per_review: usize,
    /// Most bytes of AdmissionReview bodies held at once while they are read and decoded, across requests, past
    /// each body's first 64 KiB (every real review fits in those); a body past the budget waits for its share, at
    /// most --body-timeout. Bounds the memory requests can hold together.
    #[arg(long, default_value_t = webhook::READING_BYTES)]
    review_bytes_in_flight: usize,
    /// Most client connections open at once; more wait to be accepted.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Most connections open at once from one source address; more from it are closed at once. An API server
    /// speaking HTTP/1.1 opens one per concurrent call, and several may share an address (NAT, a tunnel).
    #[arg(long, default_value_t = 256)]
    max_connections_per_peer: usize,
    /// A connection that has answered no request this long after its TLS handshake is closed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    first_request_timeout: Duration,
    /// Longest wait for a request's headers (and for the next request on a kept-alive connection).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    header_timeout: Duration,
    /// Longest wait for a request's whole body.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    body_timeout: Duration,
    /// A connection with no request in flight and none started this long is closed; HTTP/2 PINGs and other
    /// frames do not count (keep above the API server's 90s).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    idle_timeout: Duration,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// The namespaces the shipped webhook configurations do not send, besides
/// Portcullis' own.
fn default_excluded() -> Vec<String> {
    ["kube-system", "kube-public", "kube-node-lease"].map(String::from).to_vec()
}

/// [`default_excluded`], and Portcullis' own namespace.
fn default_excluded_with_own() -> Vec<String> {
    let mut v = default_excluded();
    v.push("portcullis-system".into());
    v
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ClusterMode {
    Auto,
    Always,
    Never,
}

#[derive(Args)]
struct CheckArgs {
    /// Images to check (any form: name, name:tag, name@sha256:…; with
    /// --attestation, sha256:<hex> or name@sha256:<hex>).
    #[arg(required = true)]
    images: Vec<String>,
    /// Decide from these attestation files alone, contacting no registry: a
    /// DSSE envelope, a sigstore bundle, or JSON Lines of bundles (what `gh
    /// attestation download` writes). Repeat for several files.
    #[arg(long = "attestation", value_name = "FILE")]
    attestations: Vec<PathBuf>,
    /// PromotionPolicy file; the embedded default when absent.
    #[arg(long, env = "PORTCULLIS_POLICY")]
    policy: Option<PathBuf>,
    /// The tier to check against (a tier the policy defines).
    #[arg(long)]
    tier: String,
    /// `text`: one line per image (ADMIT, WARN, DENY, ERROR) and the policy digest; `json`: the decision
    /// (`allowed`, `result`, `reason`, `message`, `warnings`) and every verdict with its reasons and attestations.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Overall time budget.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Evaluate as of this time (RFC 3339), to replay a recorded decision.
    #[arg(long)]
    at: Option<chrono::DateTime<chrono::Utc>>,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args)]
struct ReportArgs {
    /// kubeconfig to use; else $KUBECONFIG, ~/.kube/config, or the in-cluster configuration.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Only this namespace; every namespace when absent.
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// A namespace left out (those the webhook is not sent). Repeatable; replaces the default. Ignored for the
    /// namespace given with -n.
    #[arg(long = "exclude-namespace", value_name = "NAMESPACE", default_values_t = default_excluded_with_own())]
    exclude_namespaces: Vec<String>,
    /// PromotionPolicy file; the embedded default when absent.
    #[arg(long, env = "PORTCULLIS_POLICY")]
    policy: Option<PathBuf>,
    /// Namespace label naming the tier.
    #[arg(long, default_value = TIER_LABEL)]
    tier_label: String,
    /// `text`: a table of what fails (with --all, everything); `json`: every row, and the count failing.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// List the images that pass too (text output; JSON lists every one).
    #[arg(long)]
    all: bool,
    /// Overall time budget.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    /// Judge as of this time (RFC 3339): what will have aged out by then.
    #[arg(long)]
    at: Option<chrono::DateTime<chrono::Utc>>,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args)]
struct PingArgs {
    /// The review endpoint, e.g. https://portcullis.portcullis-system.svc/validate.
    url: String,
    /// Trust only this CA bundle (PEM) for the server's certificate, e.g. the webhooks' caBundle; the
    /// system roots when absent.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// `answer`: an AdmissionReview answer to this review; `refused`: the 403 a client without a
    /// certificate gets from a server with --client-ca.
    #[arg(long, value_enum, default_value_t = Expect::Answer)]
    expect: Expect,
    /// Overall time budget.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Expect {
    Answer,
    Refused,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    portcullis::install_crypto_provider();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Serve(a) => serve(*a).await.map(|_| ExitCode::SUCCESS),
            Command::Check(a) => check(*a).await,
            Command::Report(a) => report(*a).await,
            Command::Policy(PolicyCommand::Lint { file, output }) => lint(&file, output),
            Command::Audit(AuditCommand::Verify { files }) => audit_verify(&files),
            Command::Normalize { report, output, top } => normalize(&report, output, top),
            Command::Inspect { files, policy, output } => inspect(&files, policy.as_ref(), output),
            Command::Ping(a) => ping(a).await,
        }
    });
    match result {
        Ok(code) => code,
        // The reader of the output went away (`| head -1`): stop quietly, as
        // the tools that die of SIGPIPE do (128 + 13).
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) => {
            ExitCode::from(141)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    use std::io::IsTerminal as _;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

/// A client of the cluster `kubeconfig` names; without one, of the one
/// `$KUBECONFIG`, `~/.kube/config` or the in-cluster configuration names.
async fn cluster_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            // Read here, so that a missing file is said once (kube's error
            // repeats its cause).
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let kc = kube::config::Kubeconfig::from_yaml(&text)
                .map_err(|e| anyhow::anyhow!("{}: not a kubeconfig: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer().await.context("no Kubernetes configuration")?,
    };
    Ok(kube::Client::try_from(config)?)
}

fn load_policy(path: Option<&PathBuf>) -> anyhow::Result<Policy> {
    match path {
        Some(p) => Ok(Policy::from_file(p)?),
        None => Ok(Policy::from_yaml(EMBEDDED_DEFAULT, "embedded default policy")?),
    }
}

fn registry(a: &RegistryArgs) -> anyhow::Result<Registry> {
    anyhow::ensure!(
        a.registry_max_bytes_in_flight / 2 >= a.max_attestation_bytes,
        "--registry-max-bytes-in-flight ({}) must be at least twice --max-attestation-bytes ({}): half of it is for \
         registries that answer, half for the others, and each half must hold the largest attestation",
        a.registry_max_bytes_in_flight,
        a.max_attestation_bytes
    );
    anyhow::ensure!(
        a.registry_max_concurrency_unproven >= 1
            && (a.registry_max_concurrency_unproven < a.registry_max_concurrency || a.registry_max_concurrency == 1),
        "--registry-max-concurrency-unproven ({}) must be at least 1 and less than --registry-max-concurrency ({}), \
         so that registries that answer keep a share",
        a.registry_max_concurrency_unproven,
        a.registry_max_concurrency
    );
    let limits = Limits {
        request_timeout: a.registry_timeout,
        attestation_bytes: a.max_attestation_bytes,
        lookup_bytes: a.max_lookup_bytes,
        bytes_in_flight: a.registry_max_bytes_in_flight,
        concurrent_lookups: a.registry_max_concurrency,
        concurrent_lookups_per_registry: a.registry_max_concurrency_per_host,
        concurrent_lookups_unproven: a.registry_max_concurrency_unproven,
        queued_lookups_per_registry: a.registry_max_queue_per_host,
        lookup_timeout: a.registry_lookup_timeout,
        ..Limits::default()
    };
    let credentials = match &a.registry_auth {
        Some(p) => {
            Credentials::from_docker_config(&std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)?
        }
        None => Credentials::default(),
    };
    let read = |p: &str| std::fs::read(p).with_context(|| format!("reading {p}"));
    let (mut roots, mut per_host) = (Vec::new(), Vec::new());
    for ca in &a.registry_cas {
        match ca.split_once('=') {
            Some((host, file)) => per_host.push((host.to_string(), read(file)?)),
            None => roots.push(read(ca)?),
        }
    }
    let mut r = Registry::new(limits, a.insecure_registries.clone(), credentials, &roots)?;
    for (host, pem) in per_host {
        r = r.with_host_ca(&host, &pem)?;
    }
    Ok(r)
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    if a.pull_secrets && a.client_ca.is_none() && !a.pull_secrets_without_client_auth {
        anyhow::bail!(
            "--pull-secrets needs --client-ca: Portcullis logs in to registries with the pull secrets an \
             AdmissionReview names, and without client authentication anyone who can reach the webhook port can \
             send a forged review naming any namespace's secrets. Give --client-ca (the CA of the API server's \
             client certificate), or accept the risk with --pull-secrets-without-client-auth"
        );
    }
    let policy = load_policy(a.policy.as_ref()).context("refusing to start on an invalid policy")?;
    let source = a.policy.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "embedded default".into());
    tracing::info!(digest = %policy.digest, source = %source, "policy loaded");
    for w in policy.warnings(webhook::portcullis_now(), portcullis::attest::keyless::EXPIRY_WARNING) {
        tracing::warn!("{w}");
    }
    let mut pull_secrets = None;
    let mut events = None;
    let mut reevaluation = None;
    let tiers = match a.cluster {
        ClusterMode::Never => TierSource::Static,
        mode => match cluster_client(a.kubeconfig.as_deref()).await {
            Ok(client) => {
                tracing::info!(label = %a.tier_label, "tiers from namespace labels (cluster)");
                if a.pull_secrets {
                    tracing::info!("images looked up with the pull secrets of each object's namespace, then Portcullis' own credentials");
                    pull_secrets = Some(portcullis::cluster::PullSecrets::new(client.clone(), a.pull_secret_ttl));
                }
                let instance = std::env::var("POD_NAME")
                    .ok()
                    .or_else(|| std::env::var("HOSTNAME").ok())
                    .unwrap_or_else(|| "portcullis".into());
                events = Some(portcullis::cluster::events::Events::start(client.clone(), instance.clone()));
                if a.policy.is_none() && !a.reevaluate_every.is_zero() {
                    tracing::info!(
                        "no re-evaluation on the embedded default policy: give --policy to re-judge running workloads"
                    );
                }
                reevaluation = (!a.reevaluate_every.is_zero() && a.policy.is_some()).then(|| {
                    (
                        client.clone(),
                        portcullis::watch::reevaluate::Config {
                            every: a.reevaluate_every,
                            lease_namespace: a.lease_namespace.clone(),
                            identity: instance,
                            skip: a.exclude_namespaces.clone(),
                        },
                    )
                });
                TierSource::cluster(client, a.tier_label.clone())
            }
            Err(e) if mode == ClusterMode::Always || a.kubeconfig.is_some() => {
                return Err(anyhow::anyhow!("no Kubernetes configuration: {e:#}"))
            }
            Err(_) => {
                tracing::info!("no Kubernetes configuration: tiers from the policy's namespaceTiers and defaultTier");
                TierSource::Static
            }
        },
    };
    if a.pull_secrets && pull_secrets.is_none() {
        anyhow::bail!(
            "--pull-secrets needs a cluster to read the secrets from (no Kubernetes configuration, or --cluster never)"
        );
    }
    let metrics = Arc::new(Metrics::new());
    metrics.policy_info(policy.digest.as_str(), &source);
    let cfg = EngineConfig {
        tag_ttl: a.tag_cache_ttl,
        evidence_ttl: a.evidence_cache_ttl,
        negative_ttl: a.negative_cache_ttl,
        error_ttl: a.error_cache_ttl,
        ..EngineConfig::default()
    };
    let engine = Engine::new(registry(&a.registry)?.with_metrics(metrics.clone()), &cfg, metrics.clone());
    let grant_keys = match &a.grant_key {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading grant key {}", p.display()))?;
            GrantKeys::from_text(&text).with_context(|| format!("grant key {}", p.display()))?
        }
        None => {
            tracing::warn!(
                "no --grant-key: break-glass grants are signed with a random key of this process; \
                 with several replicas, give them all the same key file"
            );
            GrantKeys::random()?
        }
    };
    let state = Arc::new(AppState {
        engine,
        policy: RwLock::new(Arc::new(policy)),
        tiers,
        metrics,
        audit: AuditLog::open_with(
            &a.audit_log,
            AuditOptions {
                max_bytes: a.audit_max_bytes,
                anchor_interval: a.audit_anchor_interval,
                ..AuditOptions::default()
            },
        )
        .with_context(|| format!("opening audit log {}", a.audit_log))?,
        deadline: a.deadline,
        record_dir: a.record_dir.clone(),
        grant_keys,
        max_images: a.max_images_per_review,
        pin: a.pin_images,
        body_timeout: a.body_timeout,
        pull_secrets,
        events,
        timelines: Default::default(),
        controller_users: a.controller_users.clone(),
        reading: Arc::new(tokio::sync::Semaphore::new(a.review_bytes_in_flight.max(webhook::MAX_BODY))),
    });
    let client_auth = a.client_ca.clone().map(|ca| webhook::ClientAuth { ca, names: a.client_names.clone() });
    match &client_auth {
        Some(c) => {
            tracing::info!(client_ca = %c.ca.display(), names = ?c.names, "only clients with a certificate from the client CA may ask for reviews")
        }
        None => tracing::warn!(
            "no --client-ca: anyone who can reach the webhook port may ask for reviews; \
             keep the port reachable from the API server only (README, Security model)"
        ),
    }
    let tls = webhook::ServingTls::load(&a.tls_cert, &a.tls_key, client_auth)
        .await
        .context("loading the serving certificate and key (`make certs` makes dev ones) and the client CA")?;
    if let Some((client, cfg)) = reevaluation {
        tracing::info!(every = ?cfg.every, lease = %cfg.lease_namespace, "re-evaluating running workloads (one replica)");
        portcullis::watch::reevaluate::start(state.clone(), client, cfg);
    }
    webhook::spawn_reloader(state.clone(), a.policy.clone(), tls.clone(), a.reload_interval);
    let limits = webhook::ServerLimits {
        max_connections: a.max_connections,
        max_connections_per_peer: a.max_connections_per_peer,
        first_request_timeout: a.first_request_timeout,
        header_timeout: a.header_timeout,
        body_timeout: a.body_timeout,
        idle_timeout: a.idle_timeout,
        ..Default::default()
    };
    let mut handles = Vec::new();
    if let Some(listen) = a.metrics_listen {
        let metrics = webhook::serve_metrics(state.clone(), listen, &tls, limits.clone())
            .await
            .with_context(|| format!("listening on {listen} (metrics)"))?;
        tracing::info!(metrics_addr = %metrics.addr, "metrics on https://{}/metrics", metrics.addr);
        handles.push(metrics.handle.clone());
    }
    let server = webhook::serve(state.clone(), a.listen, &tls, limits)
        .await
        .with_context(|| format!("listening on {}", a.listen))?;
    tracing::info!(addr = %server.addr, "portcullis serving https://{}/validate", server.addr);
    handles.push(server.handle.clone());
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        for handle in handles {
            handle.graceful_shutdown(Some(Duration::from_secs(10)));
        }
    });
    let served = server.task.await.context("server task").and_then(|r| r.context("server"));
    // Every decision made is written before the process ends, unless the
    // audit destination takes none of it for AUDIT_CLOSE_WAIT (a pipe no
    // one reads): then the process ends all the same, saying so.
    if tokio::time::timeout(AUDIT_CLOSE_WAIT, state.audit.close()).await.is_err() {
        tracing::error!(
            waited = ?AUDIT_CLOSE_WAIT,
            "the audit destination took nothing for the whole wait at shutdown: the records still queued are not written"
        );
    }
    served
}

/// Longest wait at shutdown for the audit writer to write what is queued.
const AUDIT_CLOSE_WAIT: Duration = Duration::from_secs(10);

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let policy = Arc::new(load_policy(a.policy.as_ref())?);
    let Some(tier) = policy.tier_name(&a.tier) else {
        anyhow::bail!("tier {:?} is not defined in the policy (defined: {})", a.tier, policy.tier_names().join(", "));
    };
    let now = a.at.unwrap_or_else(webhook::portcullis_now);
    // One engine whatever the evidence's source: the registry, or the files given.
    let (source, refs): (Arc<dyn Source>, Vec<ImageRef>) = if a.attestations.is_empty() {
        let refs = a.images.iter().map(|i| ImageRef::parse(i)).collect::<Result<Vec<_>, _>>()?;
        (Arc::new(registry(&a.registry)?), refs)
    } else {
        (Arc::new(Files::read(&a.attestations)?), pinned_images(&a.images)?)
    };
    let engine = Engine::with_source(source, &EngineConfig::default(), Arc::new(Metrics::new()));
    let deadline = tokio::time::Instant::now() + a.timeout;
    let verdicts = engine.evaluate_images(&policy, &tier, &refs, &Default::default(), now, deadline).await;
    // The same decision as at admission (no break-glass in a pipeline).
    let tier_spec = policy.tier(&a.tier).context("the tier vanished")?;
    let decision = portcullis::policy::decide(portcullis::policy::Judged {
        policy_digest: &policy.digest,
        tier: &tier,
        tier_spec,
        verdicts,
        break_glass: Default::default(),
        template_without_grant: None,
        now,
    });
    let verdicts = &decision.verdicts;
    match a.output {
        Output::Json => {
            let out = serde_json::json!({
                "allowed": decision.allowed,
                "result": decision.outcome,
                "reason": decision.reason,
                "message": decision.message,
                // In full: a pipeline has no 256-byte bound on a warning.
                "warnings": decision.recorded_warnings,
                "tier": a.tier,
                "policyDigest": policy.digest.to_string(),
                "evaluatedAt": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "verdicts": verdicts,
            });
            outln!("{}", serde_json::to_string_pretty(&out)?);
        }
        Output::Text => {
            for v in verdicts {
                // An image written with its digest (or as the digest alone) already names it.
                let digest =
                    v.digest.as_deref().filter(|d| !v.image.ends_with(d)).map(|d| format!("@{d}")).unwrap_or_default();
                if v.error.is_some() && !v.admitted {
                    outln!("ERROR  {}", v.denial_message());
                } else if !v.admitted {
                    outln!("DENY   {}", v.denial_message());
                } else if !v.problems.is_empty() {
                    outln!(
                        "WARN   {}{digest} admitted in tier {} (mode warn) despite: {}",
                        v.image,
                        v.tier,
                        v.problems.join("; ")
                    );
                } else {
                    outln!("ADMIT  {}{digest} for tier {}", v.image, v.tier);
                }
                for n in &v.notes {
                    outln!("       note: {n}");
                }
                for e in &v.exceptions {
                    outln!("       exception: {e}");
                }
            }
            outln!("policy {} evaluated at {}", policy.digest, now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
    }
    Ok(ExitCode::from(match decision.outcome {
        portcullis::policy::Outcome::Error => 2,
        _ if decision.allowed => 0,
        _ => 1,
    }))
}

/// `portcullis report`: lists the Pods and namespaces once, judges every
/// distinct running image in its namespace's tier, prints the rows.
async fn ping(a: PingArgs) -> anyhow::Result<ExitCode> {
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

async fn report(a: ReportArgs) -> anyhow::Result<ExitCode> {
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use portcullis::watch::report::table;
    let policy = Arc::new(load_policy(a.policy.as_ref())?);
    let client = cluster_client(a.kubeconfig.as_deref()).await?;
    let list = kube::api::ListParams::default();
    let pods = match &a.namespace {
        Some(ns) => kube::Api::<Pod>::namespaced(client.clone(), ns).list(&list).await,
        None => kube::Api::<Pod>::all(client.clone()).list(&list).await,
    }
    .context("listing Pods")?
    .items;
    let namespaces: std::collections::HashMap<String, Option<String>> = kube::Api::<Namespace>::all(client)
        .list(&list)
        .await
        .context("listing namespaces")?
        .items
        .into_iter()
        .map(|n| {
            let tier = n.metadata.labels.as_ref().and_then(|l| l.get(&a.tier_label).cloned());
            (n.metadata.name.unwrap_or_default(), tier)
        })
        .collect();
    let now = a.at.unwrap_or_else(webhook::portcullis_now);
    let engine = Engine::new(registry(&a.registry)?, &EngineConfig::default(), Arc::new(Metrics::default()));
    let deadline = tokio::time::Instant::now() + a.timeout;
    let running = portcullis::watch::running::images(&pods)
        .into_iter()
        .filter(|r| a.namespace.is_some() || !a.exclude_namespaces.contains(&r.namespace))
        .map(|r| {
            let labelled = namespaces.get(&r.namespace).cloned().flatten();
            let tier = portcullis::cluster::tier_named(&r.namespace, labelled, &a.tier_label, &policy);
            (r, tier.map_err(|e| e.to_string()))
        })
        .collect();
    let rows = portcullis::watch::report::judge(&engine, &policy, running, now, deadline).await;
    let failing = rows.iter().filter(|r| !r.status.passes()).count();
    match a.output {
        Output::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "policyDigest": policy.digest.to_string(),
                "evaluatedAt": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "failing": failing,
                "rows": rows,
            }))?
        ),
        Output::Text => out!("{}", table(&rows, a.all)),
    }
    Ok(ExitCode::from(if failing == 0 { 0 } else { 1 }))
}

/// `check --attestation`: the images, each named by digest (no registry is
/// asked what a tag means).
fn pinned_images(images: &[String]) -> anyhow::Result<Vec<ImageRef>> {
    use portcullis::image::Digest;
    images
        .iter()
        .map(|i| {
            let r = match Digest::parse(i) {
                Ok(d) => ImageRef::digest_only(d),
                Err(_) => ImageRef::parse(i)?,
            };
            anyhow::ensure!(
                r.digest.is_some(),
                "{i}: with --attestation, name images by digest (sha256:<hex> or {}@sha256:<hex>), since no registry is asked what a tag means",
                r.name()
            );
            Ok(r)
        })
        .collect()
}

/// `portcullis inspect`: each attestation of each file, what it claims and
/// whether it verifies under the policy.
fn inspect(files: &[PathBuf], policy: Option<&PathBuf>, output: Output) -> anyhow::Result<ExitCode> {
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

fn normalize(path: &PathBuf, output: Output, top: usize) -> anyhow::Result<ExitCode> {
    use portcullis::evidence::{parse_report, Severity};
    let bytes = if path.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b).context("reading standard input")?;
        b
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
    };
    let report = parse_report(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
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
            });
            outln!("{}", serde_json::to_string_pretty(&out)?);
        }
        Output::Text => {
            outln!(
                "scanner {}, finished {}, {} findings ({} fixable)",
                if report.scanner.is_empty() { "unknown" } else { &report.scanner },
                finished.as_deref().unwrap_or("(no time recorded)"),
                report.findings.len(),
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
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `audit verify`: 0 intact, 1 broken, 2 (an error) unreadable.
fn audit_verify(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    use portcullis::audit::{verify, VerifyError, GENESIS};
    let mut trail = Vec::new();
    for f in files {
        let file = std::fs::File::open(f).with_context(|| format!("reading {}", f.display()))?;
        trail.push((f.display().to_string(), std::io::BufReader::new(file)));
    }
    match verify(trail) {
        Ok(t) => {
            match &t.head {
                None => outln!("intact: no records"),
                Some(head) => {
                    let s = if t.records == 1 { "" } else { "s" };
                    outln!("intact: {} record{s}, seq {}..{}, head {}", t.records, t.first_seq, head.seq, head.hash);
                    if t.first_seq > 0 || t.anchor != GENESIS {
                        outln!(
                            "the trail starts at seq {}, anchored at prev {} (the records before are not in the files given)",
                            t.first_seq, t.anchor
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ VerifyError::Broken { .. }) => {
            outln!("broken: {e}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

fn lint(file: &std::path::Path, output: Output) -> anyhow::Result<ExitCode> {
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
