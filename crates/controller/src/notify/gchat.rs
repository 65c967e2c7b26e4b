//! Google Chat incoming webhooks: `text` (what notifications show) and a `cardsV2` card with a
//! header, the headline and the facts as decorated text. Flagger sent the deprecated `cards`
//! (v1).

use serde_json::{Value, json};

use super::message::{Format, Message, Sender};

pub struct GChat;

impl Format for GChat {
    fn payload(&self, message: &Message, _: Sender<'_>) -> Value {
        let mut widgets = vec![json!({"textParagraph": {"text": message.headline}})];
        for (k, v) in &message.facts {
            widgets.push(json!({"decoratedText": {"topLabel": k, "text": v}}));
        }
        for evidence in &message.evidence {
            widgets.push(json!({"decoratedText": {"topLabel": "Evidence", "text": evidence, "wrapText": true}}));
        }
        for (k, v) in &message.links {
            widgets.push(json!({"decoratedText": {"topLabel": k, "text": v, "wrapText": true}}));
        }
        json!({
            "text": message.headline,
            "cardsV2": [{
                "cardId": format!("sluice-{}-{}", message.namespace, message.name),
                "card": {
                    "header": {"title": message.title, "subtitle": "sluice"},
                    "sections": [{"widgets": widgets}],
                }
            }]
        })
    }
}
