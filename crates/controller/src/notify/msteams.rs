//! Microsoft Teams through Workflows (Power Automate's "Post to a channel when a webhook
//! request is received"), which replaced the retired Office 365 connectors: a `message` with
//! one Adaptive Card attachment. Flagger's `msteams` sent connector MessageCards, which
//! Workflows do not take.

use serde_json::{Value, json};

use super::message::{Format, Message, Sender};

pub struct MsTeams;

impl Format for MsTeams {
    fn payload(&self, message: &Message, _: Sender<'_>) -> Value {
        // Adaptive Cards name colours rather than take them: Attention is red, Warning amber.
        let colour = match message.severity {
            sluice_core::api::AlertSeverity::Error => "Attention",
            sluice_core::api::AlertSeverity::Warn => "Warning",
            sluice_core::api::AlertSeverity::Info => "Good",
        };
        let mut body = vec![
            json!({"type": "TextBlock", "text": message.title, "weight": "Bolder", "size": "Medium", "color": colour, "wrap": true}),
            json!({"type": "TextBlock", "text": message.headline, "wrap": true}),
            json!({"type": "FactSet", "facts": message.facts.iter().map(|(k, v)| json!({"title": k, "value": v})).collect::<Vec<_>>()}),
        ];
        for evidence in &message.evidence {
            body.push(
                json!({"type": "TextBlock", "text": evidence, "wrap": true, "isSubtle": true}),
            );
        }
        body.push(json!({"type": "FactSet", "facts": message.links.iter().map(|(k, v)| json!({"title": k, "value": v})).collect::<Vec<_>>()}));
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "msteams": {"width": "Full"},
                    "body": body,
                }
            }]
        })
    }
}
