//! The demo's HTML report opened in a real browser, Debian's Chromium in headless mode: its
//! screenshot must show the charts drawn (each series' colour over many pixels, the decision
//! marker), not only present in the markup. The report comes from a made-up timeline, so no
//! Prometheus is needed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice_core::rollout::Routes;
use sluice_demo::proxy::RouteChange;
use sluice_demo::release::Verdict;
use sluice_demo::report::{
    self, CANARY_COLOUR, EVIDENCE_COLOURS, PRIMARY_COLOUR, WEIGHT_COLOUR, verdict_colour,
};
use sluice_demo::timeline::{ArmStats, Decision, EvidencePoint, Snapshot, Timeline};

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 1600;

/// A series' line is hundreds of pixels long; a legend swatch is 56 pixels. Fewer than this many
/// pixels of a colour means its line was not drawn.
const MIN_LINE_PIXELS: usize = 300;

fn chromium() -> PathBuf {
    let debian = PathBuf::from("/usr/bin/chromium");
    if debian.is_file() {
        return debian;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromium is missing: install Debian's package (apt-get install chromium); this test opens the demo's report in it, and .ci/run installs it"
            )
        })
}

/// A release of 90 seconds rolled back at 62 s, with every chart's data.
fn timeline() -> Timeline {
    let started_at = 1_800_000_000.0;
    let weight_at = |t: f64| -> u32 {
        if !(5.0..62.0).contains(&t) {
            0
        } else {
            (10 * (1 + ((t - 5.0) / 10.0) as u32)).min(50)
        }
    };
    let snapshots = (0..90)
        .map(|i| {
            let t = f64::from(i);
            let wobble = (t * 0.7).sin();
            let weight = weight_at(t);
            Snapshot {
                at: started_at + t,
                phase: if t < 62.0 { "Progressing" } else { "Failed" }.into(),
                weight,
                analysed_intervals: (t / 10.0) as u32,
                message: String::new(),
                primary: ArmStats {
                    rps: Some(150.0 * f64::from(100 - weight) / 100.0),
                    error_rate: Some(0.01 + 0.002 * wobble),
                    p99_ms: Some(160.0 + 10.0 * wobble),
                },
                canary: ArmStats {
                    rps: Some(150.0 * f64::from(weight) / 100.0),
                    error_rate: (weight > 0).then_some(0.02 + 0.004 * t / 10.0),
                    p99_ms: (weight > 0).then_some(200.0 + 2.0 * t),
                },
                evidence: if t < 15.0 {
                    Vec::new()
                } else {
                    vec![
                        EvidencePoint {
                            metric: "error-rate".into(),
                            events: "errors".into(),
                            log10_e: (t - 15.0) / 20.0,
                            canary_events: 0,
                            canary_requests: 0,
                            primary_events: 0,
                            primary_requests: 0,
                            rejected: t >= 62.0,
                        },
                        EvidencePoint {
                            metric: "latency".into(),
                            events: "slow requests".into(),
                            log10_e: -(t - 15.0) / 25.0,
                            canary_events: 0,
                            canary_requests: 0,
                            primary_events: 0,
                            primary_requests: 0,
                            rejected: false,
                        },
                    ]
                },
                traffic_error: None,
                objects: Vec::new(),
            }
        })
        .collect();
    let mut routes = vec![RouteChange {
        at: started_at + 2.0,
        routes: Routes::all_primary(),
    }];
    for (i, weight) in [10, 20, 30, 40, 50].into_iter().enumerate() {
        routes.push(RouteChange {
            at: started_at + 5.0 + 10.0 * i as f64,
            routes: Routes::canary_weight(weight),
        });
    }
    routes.push(RouteChange {
        at: started_at + 62.0,
        routes: Routes::all_primary(),
    });
    Timeline {
        scenario: "errors".into(),
        title: None,
        canary: "demo/podinfo".into(),
        interval_seconds: 10,
        alpha: 0.01,
        rate: 150.0,
        started_at,
        snapshots,
        routes,
        decision: Some(Decision {
            at: started_at + 62.0,
            verdict: Verdict::RolledBack,
            reason: "rolling back podinfo: error-rate: errors: canary 3.1% vs primary 1.0%".into(),
            analysed_intervals: 6,
        }),
        status: None,
    }
}

/// Chromium, killed if the test ends (or fails) while it runs.
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn screenshot(page: &Path, png: &Path, profile: &Path) {
    let child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("--window-size={WIDTH},{HEIGHT}"))
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut browser = Browser(child);
    let started = Instant::now();
    loop {
        if let Some(status) = browser.0.try_wait().expect("wait for chromium") {
            assert!(status.success(), "chromium failed: {status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "chromium took more than 90 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(png.is_file(), "chromium wrote no screenshot");
}

/// The screenshot's pixels as RGB.
fn pixels(png_path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let file = std::fs::File::open(png_path).expect("open the screenshot");
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buffer = vec![0; reader.output_buffer_size().expect("a buffer size")];
    let info = reader.next_frame(&mut buffer).expect("a frame");
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        other => panic!("unexpected colour type {other:?}"),
    };
    let data = &buffer[..info.buffer_size()];
    let pixels = data
        .chunks_exact(channels)
        .map(|p| match channels {
            1 | 2 => [p[0], p[0], p[0]],
            _ => [p[0], p[1], p[2]],
        })
        .collect();
    (info.width, info.height, pixels)
}

fn rgb(hex: &str) -> [u8; 3] {
    let value = u32::from_str_radix(hex.trim_start_matches('#'), 16).expect("a hex colour");
    [(value >> 16) as u8, (value >> 8) as u8, value as u8]
}

/// Pixels within a small distance of `colour` (antialiasing blends the edges of lines).
fn count_near(pixels: &[[u8; 3]], colour: [u8; 3]) -> usize {
    pixels
        .iter()
        .filter(|p| {
            p.iter()
                .zip(colour)
                .map(|(a, b)| (i32::from(*a) - i32::from(b)).abs())
                .sum::<i32>()
                <= 30
        })
        .count()
}

#[test]
fn the_report_draws_its_charts_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    std::fs::write(&page, report::html(&timeline())).unwrap();
    let png_path = dir.path().join("report.png");
    screenshot(&page, &png_path, &dir.path().join("profile"));
    let (width, height, pixels) = pixels(&png_path);
    assert_eq!((width, height), (WIDTH, HEIGHT));

    let distinct: HashSet<[u8; 3]> = pixels.iter().copied().collect();
    assert!(
        distinct.len() > 100,
        "a blank page? {} colours",
        distinct.len()
    );
    let counts: Vec<(&str, usize)> = [
        ("primary", PRIMARY_COLOUR),
        ("canary", CANARY_COLOUR),
        ("weight", WEIGHT_COLOUR),
        ("error-rate evidence", EVIDENCE_COLOURS[0]),
        ("latency evidence", EVIDENCE_COLOURS[1]),
        ("decision marker", verdict_colour(Verdict::RolledBack)),
    ]
    .into_iter()
    .map(|(name, colour)| (name, count_near(&pixels, rgb(colour))))
    .collect();
    eprintln!("pixels per series colour: {counts:?}");
    for (name, count) in &counts {
        assert!(
            *count >= MIN_LINE_PIXELS,
            "the {name} line is not drawn: {count} pixels of its colour ({counts:?}); screenshot: {}",
            png_path.display()
        );
    }
}
