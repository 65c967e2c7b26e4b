//! Rocket.Chat incoming webhooks: `text` and one attachment with a colour bar and the facts as
//! short fields. `alias` (the name shown) needs the webhook's bot to have the
//! message-impersonate permission, which integration bots have by default.

use serde_json::{Value, json};

use super::message::{Format, Message, Sender};

pub struct Rocket;

impl Format for Rocket {
    fn payload(&self, message: &Message, sender: Sender<'_>) -> Value {
        let mut fields: Vec<Value> = message
            .facts
            .iter()
            .map(|(k, v)| json!({"title": k, "value": v, "short": true}))
            .collect();
        for evidence in &message.evidence {
            fields.push(json!({"title": "Evidence", "value": evidence, "short": false}));
        }
        for (k, v) in &message.links {
            fields.push(json!({"title": k, "value": v, "short": false}));
        }
        json!({
            "channel": sender.channel,
            "alias": sender.username,
            "text": message.headline,
            "attachments": [{
                "title": message.title,
                "text": message.headline,
                "color": message.colour_hex(),
                "fields": fields,
            }]
        })
    }
}
