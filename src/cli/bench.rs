//! `sluice bench`: the verdict benchmark (BENCHMARK.md).

use std::path::PathBuf;

use sluice_bench::{self as bench, POLICIES, report, scenario};

use super::exit::Exit;

#[derive(clap::Args)]
pub struct Args {
    /// The CI mode: 1,000 seeds for sluice and 300 for the other policies, and --check.
    #[arg(long)]
    quick: bool,
    /// Seeded runs per scenario and policy (the full mode uses at least 2,000).
    #[arg(long, default_value_t = 2000)]
    seeds: u64,
    /// Only these scenarios (comma-separated ids, e.g. S1,S3).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Only these policies: sluice, flagger, argo, kayenta, oracle.
    #[arg(long, value_delimiter = ',')]
    policies: Vec<String>,
    /// Folder for verdicts.md and verdicts.json.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Fail (exit 1) when sluice breaks its CI claims: a false-rollback upper bound above 1.5%
    /// on a healthy scenario, or detection below 99% on S3 or S4.
    #[arg(long)]
    check: bool,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// sluice's `analysis.checkInterval` in seconds (default 15): a multiple of the simulator's
    /// 15-s scrape. Not with --quick, whose claims are made at the default.
    #[arg(long, value_name = "SECONDS")]
    check_interval: Option<u64>,
}

pub fn run(args: Args) -> Exit {
    let all = scenario::all();
    let scenarios: Vec<_> = if args.scenarios.is_empty() {
        all.clone()
    } else {
        all.iter()
            .filter(|s| args.scenarios.iter().any(|id| id == s.id))
            .cloned()
            .collect()
    };
    let unknown: Vec<&String> = args
        .scenarios
        .iter()
        .filter(|id| !all.iter().any(|s| s.id == id.as_str()))
        .collect();
    let bad_policy: Vec<&String> = args
        .policies
        .iter()
        .filter(|p| !POLICIES.contains(&p.as_str()))
        .collect();
    if !unknown.is_empty() || !bad_policy.is_empty() {
        let ids: Vec<&str> = all.iter().map(|s| s.id).collect();
        return Exit::USAGE.fail(format!(
            "unknown --scenarios {unknown:?} or --policies {bad_policy:?}; scenarios: {}; policies: {}",
            ids.join(","),
            POLICIES.join(",")
        ));
    }
    let policies: Vec<&str> = if args.policies.is_empty() {
        POLICIES.to_vec()
    } else {
        POLICIES
            .iter()
            .copied()
            .filter(|p| args.policies.iter().any(|a| a == p))
            .collect()
    };
    let scrape = bench::sim::SCRAPE as u64;
    if let Some(seconds) = args.check_interval
        && (seconds == 0 || seconds % scrape != 0 || seconds > 60)
    {
        return Exit::USAGE.fail(format!(
            "--check-interval {seconds}: the simulator scrapes every {scrape} s and steps every 60 s, so give 15, 30, 45 or 60"
        ));
    }
    if args.quick && args.check_interval.is_some() {
        return Exit::USAGE.fail(
            "--check-interval with --quick: the CI claims are made at the default 15-s checks; drop one of them",
        );
    }
    let started = std::time::Instant::now();
    let cells = if args.quick {
        bench::quick(&scenarios, &policies, args.threads)
    } else {
        bench::run_checking(
            &scenarios,
            &policies,
            args.seeds,
            args.threads,
            args.check_interval,
        )
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let titles: Vec<(String, String)> = scenarios
        .iter()
        .map(|s| (s.id.to_string(), s.title.to_string()))
        .collect();
    let markdown = report::markdown(&cells, &titles, &command);
    println!("{markdown}");
    eprintln!("benchmark took {:.0} s", started.elapsed().as_secs_f64());
    if let Some(dir) = &args.out {
        let json = serde_json::to_string_pretty(&cells).unwrap_or_default();
        let written = std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(dir.join("verdicts.md"), &markdown))
            .and_then(|_| std::fs::write(dir.join("verdicts.json"), json));
        if let Err(e) = written {
            return Exit::NO_INPUT.fail(format!("cannot write {}: {e}", dir.display()));
        }
    }
    if args.check || args.quick {
        let failures = bench::check(&cells);
        for failure in &failures {
            eprintln!("claim failed: {}", failure.0);
        }
        if !failures.is_empty() {
            return Exit::FAILURE;
        }
        eprintln!("sluice's CI claims hold");
    }
    Exit::SUCCESS
}
