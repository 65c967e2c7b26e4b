//! `kubectl sluice get [NAME]`: one line per Canary, with the verdict so far of each comparison;
//! or, with `-o json|yaml`, the Canaries as kubectl prints objects, for scripts.

use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use sluice_core::api::Canary;

use super::super::exit::Exit;
use super::{Connection, KubectlError, now, show};

#[derive(clap::Args)]
pub struct Args {
    /// One Canary (default: every Canary in the namespace).
    name: Option<String>,
    #[command(flatten)]
    connection: Connection,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with = "name")]
    all_namespaces: bool,
    /// The Canaries as objects rather than a table: one Canary for a NAME, else a `List`.
    #[arg(short = 'o', long, value_enum)]
    output: Option<Format>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Format {
    Json,
    Yaml,
}

pub fn run(args: Args) -> Exit {
    super::block_on(async {
        let canaries = get(&args).await?;
        let Some(format) = args.output else {
            for line in show::get_table(&canaries, args.all_namespaces, now()) {
                println!("{line}");
            }
            return Ok(Exit::SUCCESS);
        };
        let objects: Vec<Value> = canaries.iter().map(object).collect();
        let shown = match (&args.name, objects.as_slice()) {
            (Some(_), [one]) => one.clone(),
            _ => json!({
                "apiVersion": "v1",
                "kind": "List",
                "metadata": {"resourceVersion": ""},
                "items": objects,
            }),
        };
        let text = match format {
            Format::Json => serde_json::to_string_pretty(&shown).map_err(|e| e.to_string()),
            Format::Yaml => serde_yaml_ng::to_string(&shown).map_err(|e| e.to_string()),
        }
        .map_err(|e| KubectlError::Refused(format!("cannot print the Canaries: {e}")))?;
        println!("{}", text.trim_end());
        Ok(Exit::SUCCESS)
    })
}

/// A Canary as kubectl prints it: without `managedFields`, which kubectl hides too.
fn object(canary: &Canary) -> Value {
    let mut value = serde_json::to_value(canary).unwrap_or(Value::Null);
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    value
}

async fn get(args: &Args) -> Result<Vec<Canary>, KubectlError> {
    let cluster = args.connection.connect().await?;
    let mut canaries = match (&args.name, args.all_namespaces) {
        (Some(name), _) => vec![cluster.canary(name).await?],
        (None, all) => {
            let api: Api<Canary> = if all {
                Api::all(cluster.client.clone())
            } else {
                cluster.canaries()
            };
            api.list(&ListParams::default())
                .await
                .map_err(|e| KubectlError::from_kube("listing canaries", e))?
                .items
        }
    };
    if canaries.is_empty() {
        // As kubectl: on stderr, so that a script reading the table reads nothing.
        if args.all_namespaces {
            eprintln!("No Canaries found.");
        } else {
            eprintln!("No Canaries found in namespace {}.", cluster.namespace);
        }
        return Ok(Vec::new());
    }
    canaries.sort_by_key(|c| (c.metadata.namespace.clone(), c.metadata.name.clone()));
    Ok(canaries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_is_printed_as_kubectl_prints_it() {
        let canary: Canary = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Canary",
            "metadata": {
                "name": "podinfo", "namespace": "test",
                "managedFields": [{"manager": "sluice", "operation": "Apply"}]
            },
            "spec": {"targetRef": {"kind": "Deployment", "name": "podinfo"},
                     "analysis": {"interval": "1m"}},
            "status": {"phase": "Progressing", "canaryWeight": 20}
        }))
        .unwrap();
        let shown = object(&canary);
        assert_eq!(shown["apiVersion"], "sluice.dev/v1alpha1");
        assert_eq!(shown["kind"], "Canary");
        assert_eq!(shown["status"]["canaryWeight"], 20);
        assert!(shown["metadata"].get("managedFields").is_none(), "{shown}");
        assert_eq!(shown["metadata"]["name"], "podinfo");
    }
}
