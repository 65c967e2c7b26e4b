//! `analysis.alerts`: each alert the rollout raises goes to the `AlertProvider`s the Canary
//! names, filtered by severity as Flagger does, in each service's format.
//!
//! The reconcile only hands the alert to a bounded queue and returns: a worker task reads the
//! provider and its Secret, formats and POSTs, with retries. So a chat service that is slow or
//! down never delays a rollback; a full queue drops the alert with a warning, an Event and a
//! `failed` count rather than wait. Every alert sent or failed is an Event on the Canary
//! (`AlertSent`, `AlertFailed`, naming the provider, never its address) and a count in
//! `sluice_alerts_total`. Addresses and tokens are kept out of every reason, log line, Event and
//! status: webhook URLs are credentials.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use tokio::sync::{Notify, mpsc};
use tracing::Instrument;

use super::message::{self, Message, Sender};
use super::{Happened, Notification, Notifier};
use crate::cluster::{Cause, Cluster, ClusterError, Event, ObjectRef};
use crate::error_chain::error_chain;
use crate::http::Post;
use crate::providers::{BoxFuture, CredentialsError, secret_text};
use crate::telemetry::Metrics;
use sluice_core::api::{AlertProvider, AlertProviderKind, AlertSeverity, TemplateRef};
use sluice_core::rollout::AlertEvent;

/// How the queue and the sending behave.
#[derive(Clone)]
pub struct AlertOptions {
    /// Alerts waiting to be sent before new ones are dropped.
    pub capacity: usize,
    /// Tries per provider and alert.
    pub attempts: u32,
    /// The wait before the first retry; it doubles after that.
    pub backoff: Duration,
    /// Per try.
    pub timeout: Duration,
    pub metrics: Option<Arc<Metrics>>,
    /// A report of the release to link to, where one exists (the demo's HTML report).
    pub report: Option<String>,
}

impl Default for AlertOptions {
    /// Three tries, 1 s then 2 s apart, 5 s each (Flagger's per-request timeout): an alert is
    /// sent or given up within about 18 s, and 256 may wait.
    fn default() -> Self {
        Self {
            capacity: 256,
            attempts: 3,
            backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            metrics: None,
            report: None,
        }
    }
}

/// Why one alert did not reach one provider. No variant carries an address or a token.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("AlertProvider {provider} not found; create it or fix analysis.alerts[].providerRef")]
    NoProvider { provider: String },
    #[error("AlertProvider {provider} is not valid: {message}")]
    InvalidProvider {
        provider: String,
        message: String,
        #[source]
        source: Option<Cause>,
    },
    #[error("AlertProvider {provider}: Secret {secret} (spec.secretRef) not found")]
    NoSecret { provider: String, secret: String },
    #[error("AlertProvider {provider}: {source}")]
    Secret {
        provider: String,
        #[source]
        source: CredentialsError,
    },
    #[error(
        "AlertProvider {provider} has no address: set spec.address, or the key address in the Secret of spec.secretRef"
    )]
    NoAddress { provider: String },
    #[error("AlertProvider {provider}: spec.proxy is not a usable proxy URL")]
    Proxy { provider: String },
    #[error("AlertProvider {provider}: {source}")]
    Cluster {
        provider: String,
        #[source]
        source: ClusterError,
    },
    /// The receiver's answer, or why there was none, after the retries.
    #[error("AlertProvider {provider} ({kind}): {reason}")]
    Send {
        provider: String,
        kind: &'static str,
        reason: String,
    },
}

/// One alert on its way: the message and the providers that want it.
struct Job {
    message: Message,
    providers: Vec<TemplateRef>,
}

/// Alerts queued or being sent, so that tests and a stopping controller can wait for them.
#[derive(Default)]
struct Pending {
    count: AtomicUsize,
    idle: Notify,
}

impl Pending {
    fn done(&self) {
        if self.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}

/// The notifier of `analysis.alerts`.
pub struct Alerts {
    queue: mpsc::Sender<Job>,
    pending: Arc<Pending>,
    delivery: Arc<Delivery>,
    report: Option<String>,
}

/// What the worker needs to send.
struct Delivery {
    cluster: Arc<dyn Cluster>,
    client: reqwest::Client,
    options: AlertOptions,
}

impl Alerts {
    /// Starts the worker on the current tokio runtime. `client` is the webhooks' (one
    /// connection pool); a provider with `spec.proxy` gets a client of its own.
    pub fn start(
        cluster: Arc<dyn Cluster>,
        client: reqwest::Client,
        options: AlertOptions,
    ) -> Arc<Self> {
        let (queue, jobs) = mpsc::channel(options.capacity.max(1));
        let pending = Arc::new(Pending::default());
        let report = options.report.clone();
        let delivery = Arc::new(Delivery {
            cluster,
            client,
            options,
        });
        tokio::spawn(work(jobs, delivery.clone(), pending.clone()));
        Arc::new(Self {
            queue,
            pending,
            delivery,
            report,
        })
    }

    /// Returns once every alert handed over so far is sent or given up.
    pub async fn settled(&self) {
        loop {
            // Registered before the count is read, so a wake-up in between is not lost.
            let idle = self.pending.idle.notified();
            if self.pending.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Queues `alert` for the providers whose severity admits it; never waits.
    fn hand_over(&self, n: Notification<'_>, alert: &AlertEvent) {
        let severity = alert.kind.severity();
        let providers: Vec<TemplateRef> = n
            .canary
            .spec
            .analysis
            .alerts
            .iter()
            .filter(|a| a.severity.unwrap_or(AlertSeverity::Info).admits(severity))
            .map(|a| a.provider_ref.clone())
            .collect();
        if providers.is_empty() {
            return;
        }
        let at_millis = (crate::clock::unix_seconds_f64() * 1000.0) as i64;
        let message = Message::new(
            n.canary,
            alert,
            n.phase,
            n.status,
            n.revision,
            self.report.as_deref(),
            at_millis,
        );
        self.pending.count.fetch_add(1, Ordering::SeqCst);
        let job = Job { message, providers };
        if let Err(error) = self.queue.try_send(job) {
            self.pending.done();
            let (job, why) = match error {
                mpsc::error::TrySendError::Full(job) => (job, "the alert queue is full"),
                mpsc::error::TrySendError::Closed(job) => (job, "the alert sender has stopped"),
            };
            tracing::warn!(
                canary = %job.message.name,
                namespace = %job.message.namespace,
                alert = job.message.kind.name(),
                why,
                "alert dropped"
            );
            // The Event is written by a task of its own: the reconcile does not wait for it.
            let delivery = self.delivery.clone();
            tokio::spawn(async move {
                for provider in &job.providers {
                    let name = provider_name(provider, &job.message.namespace);
                    delivery
                        .failed(&job.message, &name, "unknown", &format!("dropped: {why}"))
                        .await;
                }
            });
        }
    }
}

impl Notifier for Alerts {
    fn notify<'a>(&'a self, n: Notification<'a>) -> BoxFuture<'a, ()> {
        if let Happened::Alert(alert) = n.happened {
            self.hand_over(n, alert);
        }
        Box::pin(std::future::ready(()))
    }
}

/// `namespace/name` of a provider reference; the namespace defaults to the Canary's.
fn provider_name(reference: &TemplateRef, canary_namespace: &str) -> String {
    let namespace = reference.namespace.as_deref().unwrap_or(canary_namespace);
    format!("{namespace}/{}", reference.name)
}

/// The worker: one alert at a time, in the order raised, so that a release's start arrives
/// before its rollback.
async fn work(mut jobs: mpsc::Receiver<Job>, delivery: Arc<Delivery>, pending: Arc<Pending>) {
    while let Some(job) = jobs.recv().await {
        let span = tracing::info_span!(
            "alert",
            canary.namespace = %job.message.namespace,
            canary.name = %job.message.name,
            alert = job.message.kind.name(),
        );
        async {
            for provider in &job.providers {
                delivery.deliver(&job.message, provider).await;
            }
        }
        .instrument(span)
        .await;
        pending.done();
    }
}

/// A provider resolved for one send: the address and token stay in here.
struct Resolved {
    kind: AlertProviderKind,
    address: String,
    token: Option<String>,
    channel: String,
    username: String,
    proxy: Option<String>,
}

impl Delivery {
    async fn deliver(&self, message: &Message, reference: &TemplateRef) {
        let name = provider_name(reference, &message.namespace);
        let mut kind = "unknown";
        let result = async {
            let resolved = self.resolve(reference, &message.namespace, &name).await?;
            kind = resolved.kind.name();
            self.send(message, &resolved, &name).await
        }
        .await;
        match result {
            Ok(()) => {
                tracing::info!(provider = %name, kind, "alert sent");
                self.record(message, &name, kind, "sent");
                let text = format!(
                    "{} alert sent to AlertProvider {name} ({kind})",
                    message.kind.name()
                );
                self.event(message, false, "AlertSent", text).await;
            }
            Err(error) => {
                self.failed(message, &name, kind, &error_chain(&error))
                    .await
            }
        }
    }

    /// Records a failure everywhere it is reported; `reason` has no address or token in it.
    async fn failed(&self, message: &Message, provider: &str, kind: &str, reason: &str) {
        tracing::warn!(provider, kind, %reason, "alert failed");
        self.record(message, provider, kind, "failed");
        let text = format!(
            "{} alert to AlertProvider {provider} failed: {reason}",
            message.kind.name()
        );
        self.event(message, true, "AlertFailed", text).await;
    }

    fn record(&self, message: &Message, provider: &str, kind: &str, outcome: &str) {
        if let Some(metrics) = &self.options.metrics {
            metrics.record_alert(provider, kind, message.kind.name(), outcome);
        }
    }

    async fn event(&self, message: &Message, warning: bool, reason: &str, text: String) {
        let event = Event {
            warning,
            reason: reason.into(),
            message: text,
            key: None,
        };
        if let Err(e) = self
            .cluster
            .event(&message.namespace, &message.name, &event)
            .await
        {
            tracing::warn!(error = %error_chain(&e), "cannot record the alert's Event");
        }
    }

    /// The provider, with its address and token from its Secret (Flagger's semantics: the
    /// Secret's `address` wins over `spec.address`).
    async fn resolve(
        &self,
        reference: &TemplateRef,
        canary_namespace: &str,
        name: &str,
    ) -> Result<Resolved, AlertError> {
        let namespace = reference.namespace.as_deref().unwrap_or(canary_namespace);
        let cluster = |source| AlertError::Cluster {
            provider: name.to_string(),
            source,
        };
        let object = ObjectRef::new(
            "sluice.dev/v1alpha1",
            "AlertProvider",
            namespace,
            &reference.name,
        );
        let Some(value) = self.cluster.get(&object).await.map_err(cluster)? else {
            return Err(AlertError::NoProvider {
                provider: name.to_string(),
            });
        };
        let provider: AlertProvider =
            serde_json::from_value(value).map_err(|e| AlertError::InvalidProvider {
                provider: name.to_string(),
                message: e.to_string(),
                source: Cause::of(e),
            })?;
        let spec = provider.spec;
        let mut address = spec.address.clone();
        let mut token = None;
        if let Some(secret_ref) = &spec.secret_ref {
            let secret_object = ObjectRef::new("v1", "Secret", namespace, &secret_ref.name);
            let Some(value) = self.cluster.get(&secret_object).await.map_err(cluster)? else {
                return Err(AlertError::NoSecret {
                    provider: name.to_string(),
                    secret: secret_ref.name.clone(),
                });
            };
            let secret: Secret =
                serde_json::from_value(value).map_err(|e| AlertError::InvalidProvider {
                    provider: name.to_string(),
                    message: format!("Secret {}: {e}", secret_ref.name),
                    source: Cause::of(e),
                })?;
            let text = |key| {
                secret_text(&secret, key).map_err(|source| AlertError::Secret {
                    provider: name.to_string(),
                    source,
                })
            };
            if let Some(from_secret) = text("address")? {
                address = Some(from_secret);
            }
            token = text("token")?;
        }
        let address =
            address
                .filter(|a| !a.trim().is_empty())
                .ok_or_else(|| AlertError::NoAddress {
                    provider: name.to_string(),
                })?;
        Ok(Resolved {
            kind: spec.kind,
            address: address.trim().to_string(),
            token: token.filter(|t| !t.is_empty()),
            channel: spec.channel.unwrap_or_else(|| "general".into()),
            username: spec.username.unwrap_or_else(|| "sluice".into()),
            proxy: spec.proxy.filter(|p| !p.is_empty()),
        })
    }

    async fn send(
        &self,
        message: &Message,
        provider: &Resolved,
        name: &str,
    ) -> Result<(), AlertError> {
        let client = match &provider.proxy {
            None => self.client.clone(),
            Some(proxy) => reqwest::Proxy::all(proxy.as_str())
                .and_then(|proxy| reqwest::Client::builder().proxy(proxy).build())
                .map_err(|_| AlertError::Proxy {
                    provider: name.to_string(),
                })?,
        };
        let body = message::format(provider.kind).payload(
            message,
            Sender {
                channel: &provider.channel,
                username: &provider.username,
            },
        );
        let post = Post {
            client: &client,
            url: &provider.address,
            bearer: provider.token.as_deref(),
            body: &body,
            timeout: self.options.timeout,
            attempts: self.options.attempts,
            backoff: self.options.backoff,
        };
        post.send()
            .instrument(tracing::debug_span!("provider", provider = %name))
            .await
            .map_err(|reason| AlertError::Send {
                provider: name.to_string(),
                kind: provider.kind.name(),
                reason: redact(&reason, provider),
            })
    }
}

/// `reason` without the provider's address or token, should a receiver quote them back in its
/// answer (reqwest's own errors have had the URL taken out already). The parts of an address
/// that carry the secret go too: a Slack or Discord URL's path, a Teams Workflows URL's query
/// (its signature), a password in it.
fn redact(reason: &str, provider: &Resolved) -> String {
    let mut secrets = vec![provider.address.clone()];
    if let Ok(url) = reqwest::Url::parse(&provider.address) {
        if url.path().len() > 1 {
            secrets.push(url.path().to_string());
        }
        secrets.extend(url.query().map(str::to_string));
        // Each long value alone too (a signature); short ones such as `api-version=1` would
        // blank out every digit of the reason.
        secrets.extend(
            url.query_pairs()
                .map(|(_, value)| value.into_owned())
                .filter(|value| value.len() >= 8),
        );
        secrets.extend(url.password().map(str::to_string));
    }
    secrets.extend(provider.token.clone());
    let mut out = reason.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret.as_str(), "[redacted]");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_takes_out_every_part_of_an_address_that_carries_a_secret() {
        let provider = Resolved {
            kind: AlertProviderKind::Msteams,
            address: "https://user:pw-1234@prod.example.test/workflows/abc123/triggers?api-version=1&sig=SIGNATURE".into(),
            token: Some("TOKEN-9".into()),
            channel: String::new(),
            username: String::new(),
            proxy: None,
        };
        let reason = format!(
            "answered HTTP 404: {} not found; path /workflows/abc123/triggers; sig=SIGNATURE; TOKEN-9; pw-1234",
            provider.address
        );
        let out = redact(&reason, &provider);
        for secret in ["abc123", "SIGNATURE", "TOKEN-9", "pw-1234"] {
            assert!(!out.contains(secret), "{out}");
        }
        assert!(
            out.starts_with("answered HTTP 404: [redacted] not found"),
            "{out}"
        );
    }
}
