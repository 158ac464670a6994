//! The `portcullis` command line: each subcommand translates its flags to the library's parts and their answers
//! to text, JSON and exit codes; nothing is decided here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;

use portcullis::policy::{Policy, EMBEDDED_DEFAULT};
use portcullis::registry::{Credentials, Limits, Registry};

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

mod args;
mod check;
mod notes;
mod outputs;
mod report;
mod serve;
mod tools;

use args::*;

pub fn run() -> ExitCode {
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
            Command::Serve(a) => serve::serve(*a).await.map(|_| ExitCode::SUCCESS),
            Command::Check(a) => check::check(*a).await,
            Command::Report(a) => report::report(*a).await,
            Command::Notes(a) => notes::notes(*a).await,
            Command::Policy(PolicyCommand::Lint { file, output }) => tools::lint(&file, output),
            Command::Audit(AuditCommand::Verify { files, heads, after, key }) => {
                tools::audit_verify(&files, &heads, after, key.as_deref())
            }
            Command::Normalize { report, output, top, vex, image } => {
                tools::normalize(&report, output, top, &vex, image.as_deref())
            }
            Command::Inspect { files, policy, output } => tools::inspect(&files, policy.as_ref(), output),
            Command::Ping(a) => tools::ping(a).await,
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

pub(crate) fn init_logging(format: LogFormat) {
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
pub(crate) async fn cluster_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
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

pub(crate) fn load_policy(path: Option<&PathBuf>) -> anyhow::Result<Policy> {
    match path {
        Some(p) => Ok(Policy::from_file(p)?),
        None => Ok(Policy::from_yaml(EMBEDDED_DEFAULT, "embedded default policy")?),
    }
}

/// The tiers `--tier a,b` names (every tier of the policy without one),
/// each defined in `policy`: what `check` and `notes` judge in.
pub(crate) fn tiers_named(policy: &Policy, list: Option<&str>) -> anyhow::Result<Vec<String>> {
    let tiers: Vec<String> = match list {
        Some(t) => t.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect(),
        None => policy.tier_names().iter().map(|t| t.to_string()).collect(),
    };
    let defined = || policy.tier_names().join(", ");
    anyhow::ensure!(!tiers.is_empty(), "--tier names no tier (defined: {})", defined());
    for tier in &tiers {
        anyhow::ensure!(
            policy.tier_name(tier).is_some(),
            "tier {tier:?} is not defined in the policy (defined: {})",
            defined()
        );
    }
    Ok(tiers)
}

pub(crate) fn registry(a: &RegistryArgs) -> anyhow::Result<Registry> {
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
