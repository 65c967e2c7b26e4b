//! `sluice crd`: the CustomResourceDefinitions as YAML.

use kube::CustomResourceExt;
use sluice_core::api::{AlertProvider, Canary, MetricTemplate};

use super::exit::Exit;

pub fn run() -> Exit {
    print!("{}", yaml());
    Exit::SUCCESS
}

/// Also what `sluice demo --cluster` installs, so the demo runs on the CRDs this binary prints.
pub fn yaml() -> String {
    let mut out = String::new();
    for crd in [Canary::crd(), MetricTemplate::crd(), AlertProvider::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd).unwrap_or_default());
    }
    out
}
