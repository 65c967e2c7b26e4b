//! The verdict benchmark's quick mode, as CI runs it: sluice on every scenario with 1,000 seeds
//! and the peers with 300, failing when sluice breaks its claims (a false-rollback upper bound
//! above 1.5% on a healthy scenario, detection below 99% on S3 or S4, or more than 12x the
//! oracle's bad requests on S3 or S4). The full mode is
//! `sluice bench --seeds 2000` (README).

use sluice_bench::{self as bench, report, scenario};

#[test]
fn sluice_keeps_its_claims_in_the_quick_benchmark() {
    let scenarios = scenario::all();
    let cells = bench::quick(
        &scenarios,
        &["sluice", "flagger", "argo", "kayenta", "oracle"],
        2,
    );
    let titles: Vec<(String, String)> = scenarios
        .iter()
        .map(|s| (s.id.to_string(), s.title.to_string()))
        .collect();
    println!(
        "{}",
        report::markdown(&cells, &titles, "cargo test --test bench_quick")
    );
    let failures = bench::check(&cells);
    assert!(failures.is_empty(), "{failures:?}");
    // The check itself must be able to fail: a policy that always rolls back breaks it.
    let flagger_as_sluice: Vec<_> = cells
        .iter()
        .filter(|c| c.policy == "kayenta")
        .map(|c| bench::Cell {
            policy: "sluice".into(),
            rollbacks: c.runs,
            false_rollback_rate: Some(1.0),
            ..c.clone()
        })
        .collect();
    assert!(!bench::check(&flagger_as_sluice).is_empty());
    // And so does one that serves Flagger's harm (one look per interval and a threshold).
    let slow_sluice: Vec<_> = cells
        .iter()
        .filter(|c| c.policy == "flagger" && (c.scenario == "S3" || c.scenario == "S4"))
        .map(|c| bench::Cell {
            policy: "sluice".into(),
            detection_rate: Some(1.0),
            ..c.clone()
        })
        .collect();
    assert!(!bench::check(&slow_sluice).is_empty());
}

/// `sluice bench --check-interval`: sluice looks less often, so a clear failure takes longer to
/// roll back (the README's table of what longer checks cost comes from this).
#[test]
fn a_longer_check_interval_slows_the_rollback() {
    let s4: Vec<_> = scenario::all()
        .into_iter()
        .filter(|s| s.id == "S4")
        .collect();
    let median = |check| {
        let cells = bench::run_checking(&s4, &["sluice"], 50, 2, check);
        cells[0].rollback_seconds.expect("S4 is rolled back").0
    };
    let (default, minute) = (median(None), median(Some(60)));
    assert!(minute > default, "15 s: {default} s, 60 s: {minute} s");
}
