//! Reading Canaries and MetricTemplates from YAML files, with errors that name the file, the
//! field and what is wrong with it.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use sluice_core::api::{Canary, MetricTemplate};

/// The apiVersions accepted in files: sluice's own, and Flagger's so that its manifests can be
/// replayed as they are.
const API_VERSIONS: [&str; 2] = ["sluice.dev/v1alpha1", "flagger.app/v1beta1"];

/// The largest file read: Kubernetes stores an object in at most 1.5 MiB, and a Canary or a
/// template file is a few KiB. Reading stops there, so `/dev/zero` or a 50 MB list costs 2 MiB.
pub const MAX_FILE_BYTES: u64 = 2 * 1024 * 1024;

/// The deepest nesting of collections accepted. A Canary nests about 8 deep; the YAML parser's
/// time grows with depth times size, so a deep 200 KB file is refused before it is parsed.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: document {document} is not valid YAML: {message}")]
    Yaml {
        path: PathBuf,
        document: usize,
        message: String,
    },
    #[error("{path}: document {document}, field {field}: {message}")]
    Field {
        path: PathBuf,
        document: usize,
        field: String,
        message: String,
    },
    #[error("{path}: document {document} has apiVersion {found:?}; use one of {expected:?}")]
    ApiVersion {
        path: PathBuf,
        document: usize,
        found: String,
        expected: [&'static str; 2],
    },
    #[error("{path}: no {kind} found (each document needs `kind: {kind}`)")]
    NotFound { path: PathBuf, kind: &'static str },
    #[error("{path}: {count} Canaries found; put the one to analyse in a file of its own")]
    SeveralCanaries { path: PathBuf, count: usize },
    #[error(
        "{path}: larger than {limit} bytes, more than any Canary or MetricTemplate needs; pass the file itself (not a device or a stream without end)"
    )]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{path}: not UTF-8 text ({source}); save the file as UTF-8")]
    NotText {
        path: PathBuf,
        source: std::str::Utf8Error,
    },
    #[error(
        "{path}: line {line} nests collections more than {limit} deep; no Canary or MetricTemplate does, so the file is refused before parsing"
    )]
    TooDeep {
        path: PathBuf,
        line: usize,
        limit: usize,
    },
}

/// Reads the one Canary in `path`.
pub fn canary_from_file(path: &Path) -> Result<Canary, LoadError> {
    let text = read(path)?;
    canary_from_str(path, &text)
}

/// The one Canary in `text`, read from `path` (for messages).
pub fn canary_from_str(path: &Path, text: &str) -> Result<Canary, LoadError> {
    check_depth(path, text)?;
    let mut canaries = documents_of_kind::<Canary>(path, text, "Canary")?;
    match canaries.len() {
        0 => Err(LoadError::NotFound {
            path: path.to_path_buf(),
            kind: "Canary",
        }),
        1 => Ok(canaries.remove(0)),
        count => Err(LoadError::SeveralCanaries {
            path: path.to_path_buf(),
            count,
        }),
    }
}

/// Reads every MetricTemplate in `path`: a YAML file, or a folder searched recursively for
/// `.yaml` and `.yml` files. Documents of other kinds are skipped.
pub fn templates_from_path(path: &Path) -> Result<Vec<MetricTemplate>, LoadError> {
    let mut files = Vec::new();
    collect_yaml_files(path, &mut files)?;
    let mut templates = Vec::new();
    for file in &files {
        let text = read(file)?;
        templates.extend(templates_from_str(file, &text)?);
    }
    if templates.is_empty() {
        return Err(LoadError::NotFound {
            path: path.to_path_buf(),
            kind: "MetricTemplate",
        });
    }
    Ok(templates)
}

/// The MetricTemplates in `text`, read from `path` (for messages); other kinds are skipped.
pub fn templates_from_str(path: &Path, text: &str) -> Result<Vec<MetricTemplate>, LoadError> {
    check_depth(path, text)?;
    documents_of_kind::<MetricTemplate>(path, text, "MetricTemplate")
}

/// Reads at most `MAX_FILE_BYTES` (and one byte more, to know it was too many).
pub fn read(path: &Path) -> Result<String, LoadError> {
    let read_err = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(LoadError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_FILE_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|e| LoadError::NotText {
        path: path.to_path_buf(),
        source: e.utf8_error(),
    })
}

/// Refuses text whose collections nest deeper than `MAX_DEPTH`, before the parser sees it.
///
/// The count is an upper bound, cheap and linear: flow brackets (`[`, `{`) outside quotes and
/// comments, plus the block levels opened by deeper indentation and by each `- ` or `? ` that
/// starts an entry. Lines of a block scalar (`|`, `>`) are content and are skipped.
pub fn check_depth(path: &Path, text: &str) -> Result<(), LoadError> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    let mut quote: Option<char> = None;
    // The indentation of the line that opened a block scalar, while inside it.
    let mut scalar_parent: Option<usize> = None;
    for (number, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let content = &line[indent..];
        if let Some(parent) = scalar_parent {
            if content.is_empty() || indent > parent {
                continue;
            }
            scalar_parent = None;
        }
        if quote.is_none() && flow == 0 {
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            while indents.last().is_some_and(|&top| top >= indent) {
                indents.pop();
            }
            indents.push(indent);
        }
        let mut entries = 0;
        let mut rest = content;
        while quote.is_none() && flow == 0 {
            let after = rest
                .strip_prefix("- ")
                .or_else(|| rest.strip_prefix("? "))
                .or_else(|| (rest == "-").then_some(""));
            match after {
                Some(after) => {
                    entries += 1;
                    rest = after.trim_start_matches(' ');
                }
                None => break,
            }
        }
        let mut deepest_flow = flow;
        let mut previous = ' ';
        // The last character outside quotes that is not a space: a quote opens a scalar only
        // where a scalar may start, so the apostrophe in `name: it's` is text.
        let mut significant: Option<char> = None;
        let mut escaped = false;
        for c in content.chars() {
            if escaped {
                // The character after a backslash in a double-quoted scalar never ends it.
                escaped = false;
                previous = c;
                continue;
            }
            let scalar_may_start =
                matches!(significant, None | Some(':' | ',' | '[' | '{' | '-' | '?'));
            match (quote, c) {
                (Some('"'), '\\') => escaped = true,
                (Some('\''), '\'') | (Some('"'), '"') => quote = None,
                (Some(_), _) => {}
                (None, '#') if previous == ' ' || previous == '\t' => break,
                (None, '\'' | '"') if scalar_may_start => quote = Some(c),
                (None, '[' | '{') => {
                    flow += 1;
                    deepest_flow = deepest_flow.max(flow);
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
            if quote.is_none() && c != ' ' && c != '\t' {
                significant = Some(c);
            }
            previous = c;
        }
        if indents.len() + entries + deepest_flow > MAX_DEPTH {
            return Err(LoadError::TooDeep {
                path: path.to_path_buf(),
                line: number + 1,
                limit: MAX_DEPTH,
            });
        }
        let opens_block_scalar = quote.is_none()
            && flow == 0
            && content
                .trim_end()
                .rsplit([' ', ':', '-'])
                .next()
                .is_some_and(|last| {
                    let mut chars = last.chars();
                    matches!(chars.next(), Some('|' | '>'))
                        && chars.all(|c| c.is_ascii_digit() || c == '+' || c == '-')
                });
        if opens_block_scalar {
            scalar_parent = Some(indent);
        }
    }
    Ok(())
}

fn collect_yaml_files(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let read_err = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    if !path.is_dir() {
        // Let the read report a missing file with its own error.
        files.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(read_err)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read_err)?;
    entries.sort();
    for entry in entries {
        let is_yaml = entry
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml");
        if entry.is_dir() {
            collect_yaml_files(&entry, files)?;
        } else if is_yaml {
            files.push(entry);
        }
    }
    Ok(())
}

/// Parses the documents of `text` whose `kind` is `kind` into `T`. Documents are numbered from 1
/// in errors, as a person counts them.
fn documents_of_kind<T: DeserializeOwned>(
    path: &Path,
    text: &str,
    kind: &'static str,
) -> Result<Vec<T>, LoadError> {
    let mut found = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let number = index + 1;
        let value =
            <serde_yaml_ng::Value as serde::Deserialize>::deserialize(document).map_err(|e| {
                LoadError::Yaml {
                    path: path.to_path_buf(),
                    document: number,
                    message: e.to_string(),
                }
            })?;
        if value.is_null() || value.get("kind").and_then(|k| k.as_str()) != Some(kind) {
            continue;
        }
        let api_version = value
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        if !API_VERSIONS.contains(&api_version.as_str()) {
            return Err(LoadError::ApiVersion {
                path: path.to_path_buf(),
                document: number,
                found: api_version,
                expected: API_VERSIONS,
            });
        }
        let parsed: T = serde_path_to_error::deserialize(value).map_err(|e| {
            let field = e.path().to_string();
            LoadError::Field {
                path: path.to_path_buf(),
                document: number,
                field: if field == "." {
                    "(top level)".into()
                } else {
                    field
                },
                message: e.into_inner().to_string(),
            }
        })?;
        found.push(parsed);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    const CANARY: &str = r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  analysis:
    interval: 1m
    threshold: 5
    maxWeight: 50
    stepWeight: 10
    metrics:
      - name: request-success-rate
        templateRef: {name: success-rate}
        thresholdRange: {min: 99}
"#;

    #[test]
    fn reads_a_flagger_canary() {
        let file = file_with(CANARY);
        let canary = canary_from_file(file.path()).unwrap();
        assert_eq!(canary.spec.analysis.max_weight, Some(50));
        assert_eq!(canary.spec.analysis.interval.as_secs(), 60);
        assert_eq!(canary.spec.analysis.alpha, 0.01);
        let range = canary.spec.analysis.metrics[0]
            .threshold_range
            .as_ref()
            .unwrap();
        assert_eq!(range.min, Some(99.0));
    }

    #[test]
    fn a_misspelt_field_is_named_with_its_path() {
        let file = file_with(&CANARY.replace("thresholdRange", "tresholdRange"));
        let err = canary_from_file(file.path()).unwrap_err().to_string();
        assert!(err.contains("spec.analysis.metrics[0]"), "{err}");
        assert!(err.contains("unknown field `tresholdRange`"), "{err}");
    }

    #[test]
    fn a_wrong_type_is_named_with_its_path() {
        let file = file_with(&CANARY.replace("maxWeight: 50", "maxWeight: fifty"));
        let err = canary_from_file(file.path()).unwrap_err().to_string();
        assert!(err.contains("spec.analysis.maxWeight"), "{err}");
        assert!(err.contains("invalid type"), "{err}");
    }

    #[test]
    fn a_bad_interval_says_how_to_write_one() {
        let file = file_with(&CANARY.replace("interval: 1m", "interval: 1 minute"));
        let err = canary_from_file(file.path()).unwrap_err().to_string();
        assert!(err.contains("spec.analysis.interval"), "{err}");
        assert!(err.contains("write it like 30s, 1m or 1h30m"), "{err}");
    }

    #[test]
    fn an_unknown_api_version_is_refused() {
        let file = file_with(&CANARY.replace("flagger.app/v1beta1", "example.com/v1"));
        let err = canary_from_file(file.path()).unwrap_err().to_string();
        assert!(err.contains("example.com/v1"), "{err}");
    }

    #[test]
    fn templates_are_read_from_a_folder_and_other_kinds_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let body = |name: &str| {
            format!(
                "apiVersion: sluice.dev/v1alpha1\nkind: MetricTemplate\nmetadata: {{name: {name}}}\nspec:\n  provider: {{type: prometheus, address: 'http://127.0.0.1:9090'}}\n  query: up\n"
            )
        };
        std::fs::write(dir.path().join("a.yaml"), body("a")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let two = format!("{}---\nkind: ConfigMap\napiVersion: v1\n", body("b"));
        std::fs::write(dir.path().join("sub/b.yml"), two).unwrap();
        std::fs::write(dir.path().join("README.md"), "not yaml").unwrap();
        let templates = templates_from_path(dir.path()).unwrap();
        let names: Vec<_> = templates
            .iter()
            .map(|t| t.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn a_bad_provider_type_is_named() {
        let text = "apiVersion: sluice.dev/v1alpha1\nkind: MetricTemplate\nmetadata: {name: a}\nspec:\n  provider: {type: datadog}\n  query: up\n";
        let file = file_with(text);
        let err = templates_from_path(file.path()).unwrap_err().to_string();
        assert!(err.contains("spec.provider.type"), "{err}");
        assert!(err.contains("datadog"), "{err}");
    }
}
