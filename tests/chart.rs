//! The Helm chart ships the CRDs in charts/sluice/crds/; they must be the generated ones.
//! (Linting, rendering and validating the chart is `.ci/chart-check`, which needs helm.)

#[test]
fn chart_crds_match_the_generated_crds() {
    let root = env!("CARGO_MANIFEST_DIR");
    let generated =
        std::fs::read(format!("{root}/crds/sluice.yaml")).expect("read crds/sluice.yaml");
    let chart = std::fs::read(format!("{root}/charts/sluice/crds/sluice.yaml")).unwrap_or_default();
    assert!(
        generated == chart,
        "charts/sluice/crds/sluice.yaml differs from crds/sluice.yaml: \
         run `cp crds/sluice.yaml charts/sluice/crds/`"
    );
}

/// The rules of the chart's ClusterRole as `(apiGroup, resource) -> verbs`, with the template's
/// directives (names and labels only) left out.
fn cluster_role_rules() -> Vec<(String, String, Vec<String>)> {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/charts/sluice/templates/clusterrole.yaml"))
        .expect("read the chart's ClusterRole");
    let plain: String = text
        .lines()
        .filter(|line| !line.contains("{{"))
        .map(|line| format!("{line}\n"))
        .collect();
    let role: serde_json::Value = serde_yaml_ng::from_str(&plain).expect("ClusterRole YAML");
    let strings = |value: &serde_json::Value| -> Vec<String> {
        value
            .as_array()
            .expect("a list")
            .iter()
            .map(|v| v.as_str().expect("a string").to_string())
            .collect()
    };
    let mut out = Vec::new();
    for rule in role["rules"].as_array().expect("rules") {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                out.push((group.clone(), resource, strings(&rule["verbs"])));
            }
        }
    }
    out
}

#[test]
fn the_cluster_role_grants_what_sluice_manages_and_no_more() {
    let rules = cluster_role_rules();
    let managed = sluice_controller::router::managed_resources();
    for resource in &managed {
        // sluice reads its own resources (and writes only the Canary's status); everything else
        // it creates and server-side applies.
        let needed: &[&str] = if resource.group() == "sluice.dev" {
            &["get", "list", "watch"]
        } else {
            &["get", "list", "watch", "create", "update", "patch"]
        };
        let granted: Vec<&String> = rules
            .iter()
            .filter(|(group, plural, _)| group == resource.group() && plural == resource.plural)
            .flat_map(|(_, _, verbs)| verbs)
            .collect();
        for verb in needed {
            assert!(
                granted.iter().any(|v| v == verb),
                "the chart's ClusterRole does not grant {verb} on {} ({:?}): add it to \
                 charts/sluice/templates/clusterrole.yaml (and .ci/chart-check)",
                resource.plural,
                resource.group()
            );
        }
    }
    // The reverse: a grant no resource needs is a grant too many. Events and the Canary's
    // subresources are written through their own APIs, not the table.
    for (group, plural, _) in &rules {
        let extra = plural == "events" || plural.starts_with("canaries/");
        assert!(
            extra
                || managed
                    .iter()
                    .any(|r| r.group() == group && r.plural == plural),
            "the chart's ClusterRole grants {plural} ({group:?}), which no router or core \
             resource declares"
        );
    }
}
