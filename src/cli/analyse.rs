//! `sluice analyse`: replay a Canary's analysis against Prometheus over a past window.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use sluice_controller::load::{self, LoadError};
use sluice_controller::providers::collect::{CollectError, Collector};
use sluice_controller::providers::{self, Credentials};
use sluice_controller::providers::{Provider, QueryError};
use sluice_controller::replay::{self, Outcome, report};
use sluice_core::api::{self, ProviderSpec};

use super::args::{Format, Output, Prometheus};
use super::exit::Exit;
use super::runtime::{self, Flavour};

#[derive(clap::Args)]
#[command(mut_arg("prometheus_address", |arg| arg.help(
    "Prometheus base URL; overrides the templates' spec.provider.address (also accepted as --prometheus)"
)))]
pub struct Args {
    #[command(flatten)]
    prometheus: Prometheus,
    /// The Canary to replay (YAML; sluice.dev/v1alpha1 or flagger.app/v1beta1).
    #[arg(long, value_name = "FILE")]
    canary: PathBuf,
    /// MetricTemplate file or folder (searched for .yaml/.yml); repeatable.
    #[arg(long = "templates", value_name = "PATH", required = true)]
    templates: Vec<PathBuf>,
    /// Secret manifests named by templates' spec.provider.secretRef; repeatable.
    #[arg(long = "secret", value_name = "FILE")]
    secrets: Vec<PathBuf>,
    /// Start of the window: RFC 3339 or Unix seconds. The canary's first interval starts here.
    #[arg(long, value_parser = parse_time)]
    start: i64,
    /// End of the window: RFC 3339 or Unix seconds. Defaults to now.
    #[arg(long, value_parser = parse_time)]
    end: Option<i64>,
    /// Pods that served the canary: with the primary's, they bound what one pod's burst of
    /// errors may weigh (a burst is the canary's with probability canary / (canary + primary)).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    canary_pods: u32,
    /// Pods that served the primary.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    primary_pods: u32,
    #[command(flatten)]
    format: Format,
}

pub fn run(args: Args) -> Exit {
    let runtime = match runtime::build(Flavour::CurrentThread) {
        Ok(runtime) => runtime,
        Err(e) => return Exit::FAILURE.fail(e),
    };
    match runtime.block_on(analyse(args)) {
        Ok(exit) => exit,
        Err(e) => e.exit().fail(e),
    }
}

/// Why a replay gave no verdict; each case has its exit code (`exit`).
#[derive(Debug, thiserror::Error)]
enum AnalyseError {
    #[error(transparent)]
    Load(LoadError),
    /// The Canary cannot be analysed as given.
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    CollectorSetup { path: PathBuf, source: CollectError },
    #[error("cannot read {}: {source}", path.display())]
    ReadSecret {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a Secret: {source}", path.display())]
    NotASecret {
        path: PathBuf,
        source: serde_yaml_ng::Error,
    },
    #[error("--end ({end}) must be after --start ({start})")]
    Window { start: i64, end: i64 },
    #[error(transparent)]
    Query(QueryError),
    #[error(transparent)]
    Json(serde_json::Error),
}

impl AnalyseError {
    fn exit(&self) -> Exit {
        match self {
            AnalyseError::Load(LoadError::Read { .. }) | AnalyseError::ReadSecret { .. } => {
                Exit::NO_INPUT
            }
            AnalyseError::Load(_)
            | AnalyseError::Invalid { .. }
            | AnalyseError::CollectorSetup { .. }
            | AnalyseError::NotASecret { .. } => Exit::INVALID_INPUT,
            AnalyseError::Window { .. } => Exit::USAGE,
            AnalyseError::Query(e) if e.is_unreachable() => Exit::UNREACHABLE,
            AnalyseError::Query(_) | AnalyseError::Json(_) => Exit::QUERY_FAILED,
        }
    }
}

async fn analyse(args: Args) -> Result<Exit, AnalyseError> {
    let canary = load::canary_from_file(&args.canary).map_err(AnalyseError::Load)?;
    let invalid = |message: String| AnalyseError::Invalid {
        path: args.canary.clone(),
        message,
    };
    api::validate::validate_canary(&canary).map_err(|e| invalid(e.to_string()))?;
    if canary.spec.analysis.metrics.is_empty() {
        return Err(invalid(
            "spec.analysis.metrics is empty; there is nothing to analyse".into(),
        ));
    }
    let mut templates = Vec::new();
    for path in &args.templates {
        templates.extend(load::templates_from_path(path).map_err(AnalyseError::Load)?);
    }
    let secrets = load_secrets(&args.secrets)?;
    let end = args
        .end
        .unwrap_or_else(sluice_controller::clock::unix_seconds);
    if end <= args.start {
        return Err(AnalyseError::Window {
            start: args.start,
            end,
        });
    }
    let timeout = args.prometheus.query_timeout();
    let override_address = args.prometheus.address.clone();
    let mut addresses = Vec::new();
    let connect = |template: &str, spec: &ProviderSpec| -> Result<Arc<dyn Provider>, String> {
        let address = override_address
            .clone()
            .or_else(|| spec.address.clone())
            .ok_or("spec.provider.address is not set; set it or pass --prometheus-address URL")?;
        let credentials = credentials(spec, &secrets)?;
        let provider =
            providers::connect(spec, &address, &credentials, timeout).map_err(|e| e.to_string())?;
        tracing::debug!(template, address, "provider");
        addresses.push(address);
        Ok(provider)
    };
    let collector = Collector::new(&canary, &templates, connect).map_err(|source| {
        AnalyseError::CollectorSetup {
            path: args.canary.clone(),
            source,
        }
    })?;
    addresses.dedup();
    let analysis = &canary.spec.analysis;
    // At a terminal the progress line is redrawn in place; in a log, one line per interval.
    let interactive = std::io::stderr().is_terminal();
    let progress = |step: u32, of: u32, at: i64| {
        let line = format!(
            "querying interval {step}/{of}, first check at {}",
            report::rfc3339(at)
        );
        let mut err = std::io::stderr();
        if interactive {
            let _ = write!(err, "\r{line}\x1b[K");
        } else {
            let _ = writeln!(err, "{line}");
        }
    };
    let pods = sluice_core::analysis::sequential::Pods {
        canary: args.canary_pods,
        primary: args.primary_pods,
    };
    let result = replay::replay(&canary, &collector, args.start, end, pods, progress).await;
    if interactive {
        eprintln!();
    }
    let replay = result.map_err(AnalyseError::Query)?;
    let ctx = report::Context {
        name: canary.metadata.name.clone().unwrap_or_default(),
        namespace: canary
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        prometheus: addresses.first().cloned(),
        start: args.start,
        end,
        analysis,
    };
    let built = report::build(&ctx, &replay);
    match args.format.output {
        Output::Text => print!("{}", report::text(&built)),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&built).map_err(AnalyseError::Json)?
        ),
    }
    Ok(match replay.outcome {
        Outcome::Promote => Exit::PROMOTE,
        Outcome::Rollback => Exit::ROLLBACK,
        Outcome::Inconclusive => Exit::INCONCLUSIVE,
    })
}

/// The latest time accepted, 9999-12-31T23:59:59Z: later ones overflow the replay's clock
/// (a start near i64::MAX never reached its end) and no Prometheus holds them.
const LATEST_TIME: i64 = 253_402_300_799;

fn parse_time(text: &str) -> Result<i64, String> {
    let seconds = match text.parse::<i64>() {
        Ok(seconds) => seconds,
        Err(_) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp())
            .map_err(|e| {
                format!("{text:?} is neither RFC 3339 (2026-11-20T10:00:00Z) nor Unix seconds: {e}")
            })?,
    };
    if !(0..=LATEST_TIME).contains(&seconds) {
        return Err(format!(
            "{text:?} is outside 1970-01-01T00:00:00Z .. 9999-12-31T23:59:59Z"
        ));
    }
    Ok(seconds)
}

/// The Secrets given with --secret, by name (their metadata.name, else the file's stem).
fn load_secrets(paths: &[PathBuf]) -> Result<BTreeMap<String, Secret>, AnalyseError> {
    let mut secrets = BTreeMap::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|source| AnalyseError::ReadSecret {
            path: path.clone(),
            source,
        })?;
        let secret: Secret =
            serde_yaml_ng::from_str(&text).map_err(|source| AnalyseError::NotASecret {
                path: path.clone(),
                source,
            })?;
        let mut secret = secret;
        let name = secret
            .metadata
            .name
            .get_or_insert_with(|| file_stem(path))
            .clone();
        secrets.insert(name, secret);
    }
    Ok(secrets)
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The credentials for a template's provider: none without spec.provider.secretRef, else
/// those of the named Secret, read as the controller reads them.
fn credentials(
    spec: &ProviderSpec,
    secrets: &BTreeMap<String, Secret>,
) -> Result<Credentials, String> {
    let Some(reference) = &spec.secret_ref else {
        return Ok(Credentials::None);
    };
    let secret = secrets.get(&reference.name).ok_or_else(|| {
        format!("spec.provider.secretRef: Secret {:?} was not given; pass its manifest with --secret FILE", reference.name)
    })?;
    Credentials::from_secret(secret).map_err(|e| e.to_string())
}
