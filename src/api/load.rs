//! Reading Canaries and MetricTemplates from YAML files, with errors that name the file, the
//! field and what is wrong with it.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::{Canary, MetricTemplate};

/// The apiVersions accepted in files: sluice's own, and Flagger's so that its manifests can be
/// replayed as they are.
const API_VERSIONS: [&str; 2] = ["sluice.dev/v1alpha1", "flagger.app/v1beta1"];

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
}

/// Reads the one Canary in `path`.
pub fn canary_from_file(path: &Path) -> Result<Canary, LoadError> {
    let text = read(path)?;
    let mut canaries = documents_of_kind::<Canary>(path, &text, "Canary")?;
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
        templates.extend(documents_of_kind::<MetricTemplate>(
            file,
            &text,
            "MetricTemplate",
        )?);
    }
    if templates.is_empty() {
        return Err(LoadError::NotFound {
            path: path.to_path_buf(),
            kind: "MetricTemplate",
        });
    }
    Ok(templates)
}

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })
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
