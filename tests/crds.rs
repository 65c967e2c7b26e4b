//! The CRDs in crds/ are generated from the Rust types; this fails when they drift.

#[test]
fn crds_match_the_types() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("crd")
        .output()
        .expect("run sluice crd");
    assert!(output.status.success());
    let generated = String::from_utf8(output.stdout).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/sluice.yaml");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        generated == committed,
        "crds/sluice.yaml is out of date: run `cargo run -- crd > crds/sluice.yaml`"
    );
    for kind in [
        "kind: Canary",
        "kind: MetricTemplate",
        "kind: AlertProvider",
        "group: sluice.dev",
    ] {
        assert!(generated.contains(kind), "missing {kind}");
    }
}
