//! The demo's live view. On a terminal, a screen redrawn in place once a second; otherwise (CI,
//! a pipe) a plain line whenever the release moves and every ten seconds in between. Rendering
//! is pure (snapshot in, text out) so it is tested without a terminal.

use std::io::Write;

use super::release::Verdict;
use super::timeline::{ArmStats, EvidencePoint, Snapshot, Timeline};

/// Lines are cut to this many characters: a wrapped line would break the redraw in place, which
/// moves the cursor up by the number of lines drawn.
const WIDTH: usize = 79;

/// Cells of the evidence bar, which fills as the e-value goes from 1 to the rollback threshold.
const BAR: usize = 16;

/// Seconds between plain lines when nothing moves.
const PLAIN_EVERY: f64 = 10.0;

/// Minutes and seconds since the start.
pub fn clock(seconds: f64) -> String {
    let seconds = seconds.max(0.0).round() as u64;
    format!("{}:{:02}", seconds / 60, seconds % 60)
}

fn cut(line: String) -> String {
    if line.chars().count() <= WIDTH {
        return line;
    }
    let mut cut: String = line.chars().take(WIDTH - 1).collect();
    cut.push('…');
    cut
}

fn rps(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{v:.1}"))
}

fn percent(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{:.2}%", v * 100.0))
}

fn millis(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{v:.0} ms"))
}

/// An e-value for people: plain when moderate, in powers of ten when huge or tiny.
pub fn e_value(log10_e: f64) -> String {
    if (-3.0..4.0).contains(&log10_e) {
        format!("{:.3}", 10f64.powf(log10_e))
    } else {
        format!("1e{log10_e:.1}")
    }
}

fn bar(log10_e: f64, threshold: f64) -> String {
    let filled = if threshold > 0.0 {
        ((log10_e / threshold).clamp(0.0, 1.0) * BAR as f64).round() as usize
    } else {
        0
    };
    format!("▕{}{}▏", "█".repeat(filled), "░".repeat(BAR - filled))
}

fn evidence_line(point: &EvidencePoint, threshold: f64) -> String {
    format!(
        "  {:<12} {:>9} {} {}/{} vs {}/{} {}",
        point.metric,
        e_value(point.log10_e),
        bar(point.log10_e, threshold),
        point.canary_events,
        point.canary_requests,
        point.primary_events,
        point.primary_requests,
        point.events
    )
}

fn arm_row(label: &str, primary: String, canary: String) -> String {
    format!("{label:<12}{primary:>12}{canary:>12}")
}

/// The screen for `snapshot`.
pub fn frame(timeline: &Timeline, snapshot: &Snapshot) -> Vec<String> {
    let threshold = (1.0 / timeline.alpha).log10();
    let weight_cells = (snapshot.weight as usize * 20).div_ceil(100).min(20);
    let title = timeline
        .title
        .clone()
        .unwrap_or_else(|| format!("sluice demo · scenario {}", timeline.scenario));
    let mut lines = vec![
        format!(
            "{title} · Canary {} · {}",
            timeline.canary,
            clock(snapshot.at - timeline.started_at)
        ),
        format!(
            "phase       {:<13} canary weight {:>3}% ▕{}{}▏",
            snapshot.phase,
            snapshot.weight,
            "█".repeat(weight_cells),
            "░".repeat(20 - weight_cells)
        ),
        format!("            {}", snapshot.message),
        String::new(),
        arm_row("", "primary".into(), "canary".into()),
        row(snapshot, "requests/s", |a| rps(a.rps)),
        row(snapshot, "error rate", |a| percent(a.error_rate)),
        row(snapshot, "p99", |a| millis(a.p99_ms)),
    ];
    if let Some(error) = &snapshot.traffic_error {
        lines.push(format!("            ({error})"));
    }
    lines.push(String::new());
    lines.push(format!(
        "evidence       e-value (rollback at {:.0})  canary vs primary so far",
        10f64.powf(threshold)
    ));
    if snapshot.evidence.is_empty() {
        lines.push(
            "  (none yet: the first look comes one interval after the canary gets traffic)".into(),
        );
    }
    for point in &snapshot.evidence {
        lines.push(evidence_line(point, threshold));
    }
    lines.push(format!(
        "analysed intervals: {} (one every {} s)",
        snapshot.analysed_intervals, timeline.interval_seconds
    ));
    if !snapshot.objects.is_empty() {
        lines.push(String::new());
        lines.push("objects (kubectl get)".into());
        for object in &snapshot.objects {
            lines.push(format!("  {object}"));
        }
    }
    lines.into_iter().map(cut).collect()
}

fn row(snapshot: &Snapshot, label: &str, value: impl Fn(&ArmStats) -> String) -> String {
    arm_row(label, value(&snapshot.primary), value(&snapshot.canary))
}

/// One line for logs.
pub fn plain_line(timeline: &Timeline, snapshot: &Snapshot) -> String {
    let evidence: Vec<String> = snapshot
        .evidence
        .iter()
        .map(|p| format!("{}={}", p.metric, e_value(p.log10_e)))
        .collect();
    format!(
        "[{}] {} weight {}% | req/s {}/{} | errors {}/{} | p99 {}/{} (primary/canary) | e {} | {}",
        clock(snapshot.at - timeline.started_at),
        snapshot.phase,
        snapshot.weight,
        rps(snapshot.primary.rps),
        rps(snapshot.canary.rps),
        percent(snapshot.primary.error_rate),
        percent(snapshot.canary.error_rate),
        millis(snapshot.primary.p99_ms),
        millis(snapshot.canary.p99_ms),
        if evidence.is_empty() {
            "-".into()
        } else {
            evidence.join(" ")
        },
        snapshot.message
    )
}

/// The closing lines: the verdict, why, the weights applied and where the report is.
pub fn verdict_lines(timeline: &Timeline, report: &str) -> Vec<String> {
    let mut lines = vec![String::new()];
    match &timeline.decision {
        Some(decision) => {
            lines.push(format!(
                "Verdict: {} at {}, after {} analysed interval(s)",
                decision.verdict.headline(),
                clock(decision.at - timeline.started_at),
                decision.analysed_intervals
            ));
            lines.push(format!("Reason:  {}", decision.reason));
        }
        None => lines.push("Verdict: none (the demo stopped before the release ended)".into()),
    }
    let weights: Vec<String> = timeline
        .routes
        .iter()
        .map(|r| r.routes.canary.to_string())
        .collect();
    lines.push(format!(
        "Weights: {} (canary %, as the router applied them)",
        weights.join(" → ")
    ));
    lines.push(format!("Report:  {report}"));
    lines
}

/// Draws snapshots on a terminal or as plain lines.
pub struct View {
    interactive: bool,
    drawn: usize,
    last_plain: Option<(String, u32, u32, f64)>,
}

impl View {
    pub fn new(interactive: bool) -> Self {
        Self {
            interactive,
            drawn: 0,
            last_plain: None,
        }
    }

    pub fn draw(&mut self, out: &mut impl Write, timeline: &Timeline, snapshot: &Snapshot) {
        if self.interactive {
            let lines = frame(timeline, snapshot);
            let mut text = String::new();
            if self.drawn > 0 {
                // Back to the first line of the previous frame, then overwrite line by line.
                text.push_str(&format!("\x1b[{}A\r", self.drawn));
            }
            for line in &lines {
                text.push_str(line);
                text.push_str("\x1b[K\n");
            }
            // A shorter frame leaves no trace of a longer one.
            text.push_str("\x1b[J");
            self.drawn = lines.len();
            let _ = out.write_all(text.as_bytes());
        } else {
            let key = (
                snapshot.phase.clone(),
                snapshot.weight,
                snapshot.analysed_intervals,
            );
            let moved = self
                .last_plain
                .as_ref()
                .is_none_or(|(p, w, a, _)| (p, *w, *a) != (&key.0, key.1, key.2));
            let quiet_for = self
                .last_plain
                .as_ref()
                .map_or(f64::INFINITY, |(_, _, _, at)| snapshot.at - at);
            if !moved && quiet_for < PLAIN_EVERY {
                return;
            }
            self.last_plain = Some((key.0, key.1, key.2, snapshot.at));
            let _ = writeln!(out, "{}", plain_line(timeline, snapshot));
        }
        let _ = out.flush();
    }

    /// A message between frames (on a terminal, the next frame is drawn below it).
    pub fn note(&mut self, out: &mut impl Write, message: &str) {
        let _ = writeln!(out, "{message}");
        let _ = out.flush();
        self.drawn = 0;
    }
}

/// Exit code of `sluice demo` for a verdict, as `sluice analyse` has them.
pub fn exit_code(verdict: Option<Verdict>) -> u8 {
    match verdict {
        Some(Verdict::Promoted) => 0,
        Some(Verdict::RolledBack) => 1,
        Some(Verdict::Inconclusive) | None => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline() -> Timeline {
        Timeline {
            scenario: "errors".into(),
            title: None,
            canary: "demo/podinfo".into(),
            interval_seconds: 10,
            alpha: 0.01,
            rate: 150.0,
            started_at: 1000.0,
            snapshots: Vec::new(),
            routes: Vec::new(),
            decision: None,
            status: None,
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            at: 1042.0,
            phase: "Progressing".into(),
            weight: 20,
            analysed_intervals: 2,
            message: "advance podinfo canary weight 20".into(),
            primary: ArmStats {
                rps: Some(118.2),
                error_rate: Some(0.0102),
                p99_ms: Some(121.0),
            },
            canary: ArmStats {
                rps: Some(29.6),
                error_rate: Some(0.0612),
                p99_ms: None,
            },
            evidence: vec![EvidencePoint {
                metric: "error-rate".into(),
                events: "errors".into(),
                log10_e: 1.0,
                canary_events: 9,
                canary_requests: 148,
                primary_events: 14,
                primary_requests: 1350,
                rejected: false,
            }],
            traffic_error: None,
            objects: Vec::new(),
        }
    }

    #[test]
    fn the_frame_shows_phase_weight_arms_and_evidence() {
        let lines = frame(&timeline(), &snapshot());
        let text = lines.join("\n");
        assert!(lines[0].ends_with("0:42"), "{}", lines[0]);
        assert!(text.contains("Progressing"));
        assert!(text.contains(" 20% ▕████░"), "{text}");
        assert!(text.contains("118.2") && text.contains("29.6"));
        assert!(text.contains("1.02%") && text.contains("6.12%"));
        assert!(text.contains("121 ms") && text.contains("–"));
        // e = 10 of a threshold of 100: half the bar.
        assert!(text.contains("10.000 ▕████████░░░░░░░░▏"), "{text}");
        assert!(text.contains("9/148 vs 14/1350 errors"), "{text}");
        assert!(text.contains("rollback at 100)"), "{text}");
        assert!(lines.iter().all(|l| l.chars().count() <= WIDTH));
    }

    #[test]
    fn plain_lines_only_when_something_moves_or_ten_seconds_pass() {
        let timeline = timeline();
        let mut view = View::new(false);
        let mut out = Vec::new();
        let mut s = snapshot();
        view.draw(&mut out, &timeline, &s);
        s.at += 1.0;
        view.draw(&mut out, &timeline, &s);
        s.weight = 30;
        view.draw(&mut out, &timeline, &s);
        s.at += 10.0;
        view.draw(&mut out, &timeline, &s);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn the_terminal_view_redraws_in_place() {
        let timeline = timeline();
        let mut view = View::new(true);
        let mut out = Vec::new();
        view.draw(&mut out, &timeline, &snapshot());
        let first = out.len();
        view.draw(&mut out, &timeline, &snapshot());
        let second = String::from_utf8(out[first..].to_vec()).unwrap();
        let lines = frame(&timeline, &snapshot()).len();
        assert!(
            second.starts_with(&format!("\x1b[{lines}A\r")),
            "{second:?}"
        );
    }

    #[test]
    fn e_values_read_well() {
        assert_eq!(e_value(0.0), "1.000");
        assert_eq!(e_value(2.0), "100.000");
        assert_eq!(e_value(9.3), "1e9.3");
        assert_eq!(e_value(-5.0), "1e-5.0");
        assert_eq!(clock(75.4), "1:15");
    }
}
