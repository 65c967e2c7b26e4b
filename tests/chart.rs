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
