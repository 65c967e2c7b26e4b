//! `AlertProvider`: where a Canary's alerts go (a chat service's incoming webhook, or a plain
//! webhook), as in Flagger.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::metric_template::SecretReference;

/// A chat service or webhook that receives the alerts of the Canaries whose `analysis.alerts`
/// name it.
///
/// Field names follow Flagger's `flagger.app/v1beta1` `AlertProvider`, so a Flagger provider
/// moves over by changing its `apiVersion`. Either `address` or `secretRef` is needed; sluice
/// says so in an `AlertFailed` Event rather than in a CEL rule, as Flagger accepts both shapes.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "AlertProvider",
    namespaced,
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertProviderSpec {
    /// The message format: the service's own (slack, msteams, discord, gchat, rocket) or
    /// Flagger's event payload (webhook).
    #[serde(rename = "type")]
    pub kind: AlertProviderKind,
    /// The channel to post to, where the service lets a webhook choose (Slack, Discord,
    /// Rocket.Chat); default `general`, as in Flagger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The name the messages are posted under, where the service lets a webhook choose;
    /// default `sluice`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The webhook URL. Incoming-webhook URLs are credentials: prefer `secretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// An HTTP(S) proxy to send through, e.g. `http://proxy.internal:3128`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// A Secret in the provider's namespace with the key `address` (the webhook URL, which then
    /// wins over `spec.address`) and/or `token` (sent as `Authorization: Bearer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,
}

/// Flagger's provider types, and a generic webhook.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum AlertProviderKind {
    /// Slack incoming webhook: Block Kit `blocks` with a `text` fallback.
    Slack,
    /// Microsoft Teams Workflows ("Post to a channel when a webhook request is received"): an
    /// Adaptive Card.
    Msteams,
    /// Discord webhook: `embeds`.
    Discord,
    /// Google Chat incoming webhook: `cardsV2`.
    Gchat,
    /// Rocket.Chat incoming webhook: `attachments`.
    Rocket,
    /// Any HTTP receiver: Flagger's event-webhook payload (name, namespace, phase, metadata).
    Webhook,
}

impl AlertProviderKind {
    /// Every type, in the order of the docs.
    pub const ALL: [AlertProviderKind; 6] = [
        AlertProviderKind::Slack,
        AlertProviderKind::Msteams,
        AlertProviderKind::Discord,
        AlertProviderKind::Gchat,
        AlertProviderKind::Rocket,
        AlertProviderKind::Webhook,
    ];

    /// The name in `spec.type`.
    pub fn name(self) -> &'static str {
        match self {
            AlertProviderKind::Slack => "slack",
            AlertProviderKind::Msteams => "msteams",
            AlertProviderKind::Discord => "discord",
            AlertProviderKind::Gchat => "gchat",
            AlertProviderKind::Rocket => "rocket",
            AlertProviderKind::Webhook => "webhook",
        }
    }
}

/// How serious an alert is, and the least serious an `analysis.alerts` entry wants.
#[derive(
    Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum AlertSeverity {
    /// Everything: a release started, was promoted, ...
    #[default]
    Info,
    /// Waiting for an approval gate, and everything `error` gets.
    Warn,
    /// Rollbacks and releases that ended without a verdict.
    Error,
}

impl AlertSeverity {
    /// Whether an entry that asks for `self` gets an alert of `severity`, as Flagger filters:
    /// info gets everything, warn gets warnings and errors, error only errors.
    pub fn admits(self, severity: AlertSeverity) -> bool {
        severity >= self
    }

    pub fn name(self) -> &'static str {
        match self {
            AlertSeverity::Info => "info",
            AlertSeverity::Warn => "warn",
            AlertSeverity::Error => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_filter_as_flagger_does() {
        use AlertSeverity::*;
        let admitted = |wanted: AlertSeverity| -> Vec<AlertSeverity> {
            [Info, Warn, Error]
                .into_iter()
                .filter(|s| wanted.admits(*s))
                .collect()
        };
        assert_eq!(admitted(Info), [Info, Warn, Error]);
        assert_eq!(admitted(Warn), [Warn, Error]);
        assert_eq!(admitted(Error), [Error]);
    }

    #[test]
    fn the_example_reads() {
        let text = include_str!("../../../../examples/alert-provider.yaml");
        let provider = serde_yaml_ng::Deserializer::from_str(text)
            .nth(1)
            .map(|d| AlertProvider::deserialize(d).unwrap())
            .unwrap();
        assert_eq!(provider.spec.kind, AlertProviderKind::Slack);
        assert_eq!(provider.spec.secret_ref.unwrap().name, "slack-url");
    }

    #[test]
    fn a_flagger_provider_reads_as_it_is() {
        let provider: AlertProvider = serde_yaml_ng::from_str(
            "apiVersion: sluice.dev/v1alpha1\nkind: AlertProvider\nmetadata: {name: on-call, namespace: test}\n\
             spec: {type: slack, channel: on-call, username: flagger, secretRef: {name: slack-url}}\n",
        )
        .unwrap();
        assert_eq!(provider.spec.kind, AlertProviderKind::Slack);
        assert_eq!(provider.spec.secret_ref.unwrap().name, "slack-url");
        let names: Vec<&str> = AlertProviderKind::ALL.iter().map(|k| k.name()).collect();
        for name in &names {
            let kind: AlertProviderKind = serde_json::from_value(serde_json::json!(name)).unwrap();
            assert_eq!(kind.name(), *name);
        }
    }
}
