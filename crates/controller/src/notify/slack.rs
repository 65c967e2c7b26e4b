//! Slack incoming webhooks: Block Kit `blocks` (a header, the headline, the facts as fields,
//! the evidence, the links as context), with `text` as the fallback that notifications and
//! clients without blocks show. `channel` and `username` are honoured by legacy webhooks only;
//! an app's webhook posts where and as it was installed.

use serde_json::{Value, json};

use super::message::{Format, Message, Sender, clip};

pub struct Slack;

/// Block Kit's limits: a header's text, a section's text, a field's text, fields per section.
const HEADER_CHARS: usize = 150;
const SECTION_CHARS: usize = 3000;
const FIELD_CHARS: usize = 2000;
const FIELDS: usize = 10;

impl Format for Slack {
    fn payload(&self, message: &Message, sender: Sender<'_>) -> Value {
        let mrkdwn = |text: String| json!({"type": "mrkdwn", "text": text});
        let mut blocks = vec![
            json!({"type": "header", "text": {"type": "plain_text", "text": clip(&message.title, HEADER_CHARS)}}),
            json!({"type": "section", "text": mrkdwn(clip(&message.headline, SECTION_CHARS))}),
        ];
        let fields: Vec<Value> = message
            .facts
            .iter()
            .take(FIELDS)
            .map(|(k, v)| mrkdwn(clip(&format!("*{k}*\n{v}"), FIELD_CHARS)))
            .collect();
        blocks.push(json!({"type": "section", "fields": fields}));
        if !message.evidence.is_empty() {
            let lines: Vec<String> = message.evidence.iter().map(|e| format!("• {e}")).collect();
            blocks.push(json!({"type": "section", "text": mrkdwn(clip(&format!("*Evidence*\n{}", lines.join("\n")), SECTION_CHARS))}));
        }
        let links: Vec<Value> = message
            .links
            .iter()
            .map(|(k, v)| mrkdwn(format!("{k}: `{v}`")))
            .collect();
        blocks.push(json!({"type": "context", "elements": links}));
        json!({
            "channel": sender.channel,
            "username": sender.username,
            "text": message.headline,
            "blocks": blocks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::message::tests::rollback;

    #[test]
    fn blocks_have_the_types_and_texts_slack_requires() {
        let body = Slack.payload(
            &rollback(),
            Sender {
                channel: "on-call",
                username: "sluice",
            },
        );
        assert!(
            body["text"]
                .as_str()
                .unwrap()
                .starts_with("podinfo.test rolled back: error-rate")
        );
        let blocks = body["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["type"], "plain_text");
        for block in blocks {
            assert!(block["type"].is_string(), "{block}");
        }
    }
}
