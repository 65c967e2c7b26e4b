//! Discord webhooks: `content` (the headline, what notifications show) and one embed with the
//! facts as fields. Discord's own format at the webhook's URL, rather than Flagger's Slack
//! compatibility path (`/slack`), which drops blocks.

use serde_json::{Value, json};

use super::message::{Format, Message, Sender, clip};

pub struct Discord;

/// Discord's limits: content, an embed's title and description, fields, a field's name and
/// value.
const CONTENT_CHARS: usize = 2000;
const TITLE_CHARS: usize = 256;
const DESCRIPTION_CHARS: usize = 4096;
const FIELDS: usize = 25;
const NAME_CHARS: usize = 256;
const VALUE_CHARS: usize = 1024;

impl Format for Discord {
    fn payload(&self, message: &Message, sender: Sender<'_>) -> Value {
        let mut fields: Vec<Value> = message
            .facts
            .iter()
            .map(|(k, v)| json!({"name": clip(k, NAME_CHARS), "value": clip(v, VALUE_CHARS), "inline": true}))
            .collect();
        for evidence in &message.evidence {
            fields.push(
                json!({"name": "Evidence", "value": clip(evidence, VALUE_CHARS), "inline": false}),
            );
        }
        for (k, v) in &message.links {
            fields.push(json!({"name": clip(k, NAME_CHARS), "value": clip(&format!("`{v}`"), VALUE_CHARS), "inline": false}));
        }
        fields.truncate(FIELDS);
        json!({
            "username": sender.username,
            "content": clip(&message.headline, CONTENT_CHARS),
            "embeds": [{
                "title": clip(&message.title, TITLE_CHARS),
                "description": clip(&message.headline, DESCRIPTION_CHARS),
                "color": message.colour(),
                "fields": fields,
            }]
        })
    }
}
