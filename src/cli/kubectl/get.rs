//! `kubectl sluice get [NAME]`: one line per Canary, with the verdict so far of each comparison.

use kube::api::{Api, ListParams};
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
}

pub fn run(args: Args) -> Exit {
    super::block_on(async {
        for line in get(&args).await? {
            println!("{line}");
        }
        Ok(Exit::SUCCESS)
    })
}

async fn get(args: &Args) -> Result<Vec<String>, KubectlError> {
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
    Ok(show::get_table(&canaries, args.all_namespaces, now()))
}
