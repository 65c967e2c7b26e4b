//! A generic webhook: the payload Flagger POSTs to event webhooks (`name`, `namespace`, `phase`,
//! `checksum`, `metadata` with `eventMessage`, `eventType` and `timestamp` in milliseconds), so
//! receivers written for Flagger read it, plus what an alert adds (`severity`, `alert`, the
//! whole text).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::message::{Format, Message, Sender};
use crate::hooks::Payload;
use sluice_core::api::AlertSeverity;

pub struct Webhook;

impl Format for Webhook {
    fn payload(&self, message: &Message, _: Sender<'_>) -> Value {
        let event_type = if message.severity == AlertSeverity::Info {
            "Normal"
        } else {
            "Warning"
        };
        let metadata = BTreeMap::from([
            ("eventMessage".to_string(), message.headline.clone()),
            ("eventType".to_string(), event_type.to_string()),
            ("timestamp".to_string(), message.at_millis.to_string()),
            ("severity".to_string(), message.severity.name().to_string()),
            ("alert".to_string(), message.kind.name().to_string()),
            ("text".to_string(), message.text()),
        ]);
        let payload = Payload {
            name: &message.name,
            namespace: &message.namespace,
            phase: message.phase,
            checksum: &message.revision,
            metadata,
        };
        json!(payload)
    }
}
