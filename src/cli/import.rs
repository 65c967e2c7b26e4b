//! `sluice import flagger FILE…`: Flagger's Canaries, MetricTemplates and AlertProviders as
//! sluice's, on stdout, and what changed or could not be mapped, on stderr.

mod flagger;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sluice_controller::load::{self, LoadError};

use self::flagger::{Converted, Object, Options, Source};
use super::exit::Exit;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    tool: Tool,
}

#[derive(clap::Subcommand)]
enum Tool {
    /// Flagger's flagger.app/v1beta1 Canaries, MetricTemplates and AlertProviders.
    ///
    /// Prints the sluice.dev/v1alpha1 objects as YAML on stdout and, on stderr, per object and
    /// field, what was changed, added or could not be mapped. Documents of other apiVersions
    /// are left out. Exit codes: 0 everything mapped, 2 output produced but something could
    /// not be mapped (or a produced Canary is invalid), 65 input that is not a Flagger object
    /// (the file, document and field named), 66 unreadable file.
    Flagger(FlaggerArgs),
}

#[derive(clap::Args)]
struct FlaggerArgs {
    /// YAML files, `-` for standard input.
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// The metrics-templates/ file for Flagger's built-in metrics (request-success-rate,
    /// request-duration); default: the provider's (istio, linkerd, nginx; app otherwise, as
    /// Flagger reads the application's metrics for the Gateway API and kubernetes).
    #[arg(long, value_enum, value_name = "SOURCE")]
    metrics: Option<Source>,
}

/// Why nothing was printed.
#[derive(Debug, thiserror::Error)]
enum ImportError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("cannot read standard input: {0}")]
    Stdin(std::io::Error),
    #[error("{path}: document {document}{title}: {source}")]
    Input {
        path: String,
        document: usize,
        title: String,
        source: flagger::InputError,
    },
    #[error("cannot write the output: {0}")]
    Write(String),
}

impl ImportError {
    fn exit(&self) -> Exit {
        match self {
            ImportError::Load(LoadError::Read { .. }) | ImportError::Stdin(_) => Exit::NO_INPUT,
            ImportError::Write(_) => Exit::FAILURE,
            _ => Exit::INVALID_INPUT,
        }
    }
}

pub fn run(args: Args) -> Exit {
    let Tool::Flagger(args) = args.tool;
    match import(&args) {
        Ok(exit) => exit,
        Err(e) => e.exit().fail(e),
    }
}

fn import(args: &FlaggerArgs) -> Result<Exit, ImportError> {
    // Every document is read and checked before anything is printed, so that a script never
    // applies half of a set.
    let mut documents: Vec<(String, usize, Value)> = Vec::new();
    for path in &args.files {
        let (label, text) = read(path)?;
        load::check_depth(Path::new(&label), &text)?;
        for (index, document) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let value = <Value as serde::Deserialize>::deserialize(document).map_err(|e| {
                LoadError::Yaml {
                    path: PathBuf::from(&label),
                    document: index + 1,
                    message: e.to_string(),
                }
            })?;
            if !value.is_null() {
                documents.push((label.clone(), index + 1, value));
            }
        }
    }
    let options = Options {
        metrics: args.metrics,
        ingress_templates: documents
            .iter()
            .filter_map(|(_, _, value)| flagger::uses_ingress(value))
            .collect(),
    };
    let mut converted = Vec::new();
    let mut skipped = Vec::new();
    for (path, document, value) in documents {
        let title = describe(&value);
        match flagger::convert(value, &options) {
            Ok(Some(result)) => converted.push((path, document, result)),
            Ok(None) => skipped.push(format!("{path}: document {document}{title}")),
            Err(source) => {
                return Err(ImportError::Input {
                    path,
                    document,
                    title,
                    source,
                });
            }
        }
    }
    let mut stdout = String::new();
    for (_, _, result) in &converted {
        let yaml = match &result.object {
            Some(Object::Canary(canary)) => serde_yaml_ng::to_string(canary),
            Some(Object::MetricTemplate(template)) => serde_yaml_ng::to_string(template),
            Some(Object::AlertProvider(provider)) => serde_yaml_ng::to_string(provider),
            None => continue,
        }
        .map_err(|e| ImportError::Write(e.to_string()))?;
        stdout.push_str("---\n");
        stdout.push_str(&yaml);
    }
    std::io::stdout()
        .write_all(stdout.as_bytes())
        .map_err(|e| ImportError::Write(e.to_string()))?;
    eprint!("{}", report(&converted, &skipped));
    let lossy = converted
        .iter()
        .any(|(_, _, c)| c.object.is_none() || c.findings.iter().any(|f| f.kind.is_loss()));
    Ok(if lossy { Exit::PARTIAL } else { Exit::SUCCESS })
}

fn read(path: &Path) -> Result<(String, String), ImportError> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(load::MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(ImportError::Stdin)?;
        let label = "<stdin>".to_string();
        if bytes.len() as u64 > load::MAX_FILE_BYTES {
            return Err(LoadError::TooLarge {
                path: PathBuf::from(&label),
                limit: load::MAX_FILE_BYTES,
            }
            .into());
        }
        let text = String::from_utf8(bytes).map_err(|e| LoadError::NotText {
            path: PathBuf::from(&label),
            source: e.utf8_error(),
        })?;
        return Ok((label, text));
    }
    Ok((path.display().to_string(), load::read(path)?))
}

/// ` (Canary test/podinfo)`, for messages about a document.
fn describe(value: &Value) -> String {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    let kind = text(value.get("kind"));
    let name = text(value.get("metadata").and_then(|m| m.get("name")));
    if kind.is_empty() && name.is_empty() {
        return String::new();
    }
    let namespace = text(value.get("metadata").and_then(|m| m.get("namespace")));
    let namespace = if namespace.is_empty() {
        namespace
    } else {
        format!("{namespace}/")
    };
    format!(" ({kind} {namespace}{name})")
}

/// The report: one block per object, one line per field.
fn report(converted: &[(String, usize, Converted)], skipped: &[String]) -> String {
    let mut out = String::new();
    for (path, document, result) in converted {
        let outcome = if result.object.is_none() {
            "not imported"
        } else if result.findings.iter().any(|f| f.kind.is_loss()) {
            "imported, with losses"
        } else {
            "imported"
        };
        out.push_str(&format!(
            "{} ({path}, document {document}): {outcome}\n",
            result.title
        ));
        for finding in &result.findings {
            out.push_str(&format!(
                "  {:<11} {}: {}\n",
                finding.kind.label(),
                finding.field,
                finding.message
            ));
        }
    }
    for document in skipped {
        out.push_str(&format!(
            "{document}: left out, not {}\n",
            flagger::FLAGGER_API_VERSION
        ));
    }
    out
}
