//! An alert in words, before any service's format: every format says the same things (the
//! headline first, then the facts, the evidence and where to look), each in its service's shape.

use kube::ResourceExt;
use serde_json::Value;

use sluice_core::api::{AlertProviderKind, AlertSeverity, Canary, CanaryStatus, Phase, Strategy};
use sluice_core::rollout::{AlertEvent, AlertKind};

/// What one alert says.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub kind: AlertKind,
    pub severity: AlertSeverity,
    pub name: String,
    pub namespace: String,
    /// Short: `podinfo.test rolled back`.
    pub title: String,
    /// The first line: what happened, and for a rollback what failed and by how much.
    pub headline: String,
    pub phase: Phase,
    pub revision: String,
    /// Facts, as (name, value): the target, the traffic when it happened, the revision.
    pub facts: Vec<(String, String)>,
    /// Each metric's last outcome, in the words of the status.
    pub evidence: Vec<String>,
    /// Where the evidence is, as (label, command or URL).
    pub links: Vec<(String, String)>,
    /// Unix milliseconds, for Flagger's event payload.
    pub at_millis: i64,
}

impl Message {
    /// `canary` is the Canary as the step found it (the traffic it had), `status` the status
    /// the step wrote (the evidence it judged); `report` a report of the release, when one
    /// exists.
    pub fn new(
        canary: &Canary,
        alert: &AlertEvent,
        phase: Phase,
        status: &CanaryStatus,
        revision: &str,
        report: Option<&str>,
        at_millis: i64,
    ) -> Self {
        let name = canary.name_any();
        let namespace = canary.namespace().unwrap_or_else(|| "default".into());
        let what = match alert.kind {
            AlertKind::Started => "release started",
            AlertKind::Waiting(_) => "waits for approval",
            AlertKind::Promoted => "promoted",
            AlertKind::RolledBack => "rolled back",
            AlertKind::Inconclusive => "rolled back, inconclusive",
        };
        let title = format!("{name}.{namespace} {what}");
        let headline = format!("{title}: {}", alert.reason);
        let spec = &canary.spec;
        let before = canary.status.clone().unwrap_or_default();
        let mut facts = vec![(
            "Target".to_string(),
            format!("{}/{}", spec.target_ref.kind, spec.target_ref.name),
        )];
        let traffic = match spec.strategy() {
            Strategy::Canary => format!("canary weight {}%", before.canary_weight),
            Strategy::ABTesting => "A/B testing (analysis.match)".to_string(),
            Strategy::BlueGreen => "blue/green".to_string(),
        };
        facts.push(("Traffic".to_string(), traffic));
        facts.push(("Phase".to_string(), format!("{phase:?}")));
        let short: String = revision.chars().take(12).collect();
        if !short.is_empty() {
            facts.push(("Revision".to_string(), short));
        }
        let evidence = match alert.kind {
            // The evidence matters where a verdict fell; a start has none yet.
            AlertKind::Started | AlertKind::Waiting(_) => Vec::new(),
            _ => status
                .evidence
                .metrics
                .iter()
                .filter_map(|m| m.last_outcome.as_ref().map(|o| format!("{}: {o}", m.name)))
                .collect(),
        };
        let mut links = vec![(
            "Status".to_string(),
            format!("kubectl get canary {name} -n {namespace} -o yaml"),
        )];
        if let Some(report) = report {
            links.push(("Report".to_string(), report.to_string()));
        }
        Self {
            kind: alert.kind,
            severity: alert.kind.severity(),
            name,
            namespace,
            title,
            headline,
            phase,
            revision: revision.to_string(),
            facts,
            evidence,
            links,
            at_millis,
        }
    }

    /// The whole message as plain text: the headline, then one line per fact, evidence and
    /// link. Fallbacks and services without layout use it.
    pub fn text(&self) -> String {
        let mut lines = vec![self.headline.clone()];
        lines.extend(self.facts.iter().map(|(k, v)| format!("{k}: {v}")));
        lines.extend(self.evidence.iter().map(|e| format!("Evidence: {e}")));
        lines.extend(self.links.iter().map(|(k, v)| format!("{k}: {v}")));
        lines.join("\n")
    }

    /// A colour per kind, as `0xRRGGBB`: red for rollbacks, amber for gates, green for a
    /// promotion, blue for a start.
    pub fn colour(&self) -> u32 {
        match self.kind {
            AlertKind::RolledBack | AlertKind::Inconclusive => 0xCF222E,
            AlertKind::Waiting(_) => 0xD29922,
            AlertKind::Promoted => 0x2DA44E,
            AlertKind::Started => 0x1F6FEB,
        }
    }

    /// `#RRGGBB`.
    pub fn colour_hex(&self) -> String {
        format!("#{:06X}", self.colour())
    }
}

/// Who a message is posted as, and where, for services that let a webhook choose.
#[derive(Clone, Copy, Debug)]
pub struct Sender<'a> {
    pub channel: &'a str,
    pub username: &'a str,
}

/// One service's message format.
pub trait Format: Sync {
    /// The JSON body to POST.
    fn payload(&self, message: &Message, sender: Sender<'_>) -> Value;
}

/// The format of each provider type: one line per format.
pub fn format(kind: AlertProviderKind) -> &'static dyn Format {
    match kind {
        AlertProviderKind::Slack => &super::slack::Slack,
        AlertProviderKind::Msteams => &super::msteams::MsTeams,
        AlertProviderKind::Discord => &super::discord::Discord,
        AlertProviderKind::Gchat => &super::gchat::GChat,
        AlertProviderKind::Rocket => &super::rocket::Rocket,
        AlertProviderKind::Webhook => &super::webhook::Webhook,
    }
}

/// `text` cut to at most `max` characters, with an ellipsis when cut: services refuse or
/// truncate fields past their limits, and a refused alert is worse than a shortened one.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A rollback of podinfo in test at weight 20, with the evidence of one comparison.
    pub(crate) fn rollback() -> Message {
        let canary: Canary = serde_json::from_value(serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "targetRef": {"kind": "Deployment", "name": "podinfo"},
                "analysis": {"stepWeight": 10, "maxWeight": 50}
            },
            "status": {"canaryWeight": 20}
        }))
        .unwrap();
        let status: CanaryStatus = serde_json::from_value(serde_json::json!({
            "phase": "Failed",
            "metrics": [{"name": "error-rate", "kind": "errorRate", "lastOutcome": "errors: canary 6.000% (60/1000) vs primary 1.000% (90/9000)"}]
        }))
        .unwrap();
        let alert = AlertEvent {
            kind: AlertKind::RolledBack,
            key: "rolled-back".into(),
            reason: "error-rate: errors: canary 6.000% (60/1000) vs primary 1.000% (90/9000); canary/primary ≈ 6.00 [3.10, 12]; e-value 1e4.2 (rollback at 100)".into(),
        };
        Message::new(
            &canary,
            &alert,
            Phase::Failed,
            &status,
            "5f6d7c8b9a0e1234",
            None,
            1_800_000_000_000,
        )
    }

    #[test]
    fn a_rollback_says_what_failed_and_by_how_much_first_and_where_to_look() {
        let message = rollback();
        let text = message.text();
        let first = text.lines().next().unwrap();
        assert!(
            first.starts_with("podinfo.test rolled back: error-rate: errors: canary 6.000%"),
            "{first}"
        );
        assert!(first.contains("vs primary 1.000%") && first.contains("e-value"));
        assert!(text.contains("Traffic: canary weight 20%"), "{text}");
        assert!(text.contains("Revision: 5f6d7c8b9a0e\n"), "{text}");
        assert!(
            text.contains("Status: kubectl get canary podinfo -n test -o yaml"),
            "{text}"
        );
        assert_eq!(message.severity, AlertSeverity::Error);
        assert_eq!(message.colour_hex(), "#CF222E");
    }

    #[test]
    fn a_report_is_linked_where_one_exists_and_a_start_carries_no_evidence() {
        let rolled_back = rollback();
        let canary: Canary = serde_json::from_value(serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {"targetRef": {"kind": "Deployment", "name": "podinfo"}, "analysis": {"iterations": 3}}
        }))
        .unwrap();
        let started = AlertEvent {
            kind: AlertKind::Started,
            key: "started".into(),
            reason: "new revision detected: starting the release of podinfo".into(),
        };
        let status: CanaryStatus = serde_json::from_value(serde_json::json!({
            "metrics": [{"name": "errors", "kind": "errorRate", "lastOutcome": "from the last release"}]
        }))
        .unwrap();
        let message = Message::new(
            &canary,
            &started,
            Phase::Progressing,
            &status,
            "",
            Some("target/sluice-demo/report.html"),
            0,
        );
        assert_eq!(
            message.headline,
            "podinfo.test release started: new revision detected: starting the release of podinfo"
        );
        assert!(message.evidence.is_empty());
        assert_eq!(
            message.links.last(),
            Some(&(
                "Report".to_string(),
                "target/sluice-demo/report.html".to_string()
            ))
        );
        assert!(message.text().contains("Traffic: blue/green"));
        assert!(!message.text().contains("Revision"));
        assert!(!rolled_back.links.iter().any(|(k, _)| k == "Report"));
    }

    #[test]
    fn clip_keeps_short_text_and_marks_a_cut() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}
