//! Webhooks, as Flagger calls them: a JSON POST per hook of a type, 2xx meaning yes.
//!
//! Gates and checks (`check`) return a `HookOutcome` for the rollout to decide on; notifications
//! (`notify`) are fire-and-log, because a receiver that is down must not hold up a release that
//! has already been decided.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::ResourceExt;
use serde::Serialize;
use tracing::Instrument;

use crate::error_chain::error_chain;
use crate::http::Post;
use sluice_core::api::{Canary, HookType, Phase, Webhook};
use sluice_core::rollout::HookOutcome;

/// Per attempt, when a webhook sets no `timeout` (Flagger's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The wait before the first retry; it doubles with every further retry.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
pub use crate::http::MAX_BACKOFF;

/// Why `Hooks` could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HooksError {
    /// reqwest is built without a TLS provider of its own and would panic without one.
    #[error(
        "no rustls crypto provider is installed; install one (rustls::crypto::ring::default_provider().install_default()) before building the webhook client"
    )]
    NoTlsProvider,
    /// The HTTP client could not be built.
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(String),
}

/// Calls a Canary's webhooks (`spec.analysis.webhooks`).
#[derive(Clone, Debug)]
pub struct Hooks {
    client: reqwest::Client,
    backoff: Duration,
}

/// The body Flagger POSTs to every webhook; receivers written for Flagger read these names.
#[derive(Serialize)]
pub(crate) struct Payload<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub phase: Phase,
    pub checksum: &'a str,
    pub metadata: BTreeMap<String, String>,
}

impl Hooks {
    /// A client of its own. The process must have installed a rustls crypto provider.
    pub fn new() -> Result<Self, HooksError> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(HooksError::NoTlsProvider);
        }
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| HooksError::Client(error_chain(&e)))?;
        Ok(Self::from_client(client))
    }

    /// Share a client built elsewhere. Its own timeout, if any, still applies on top of each
    /// webhook's.
    pub fn from_client(client: reqwest::Client) -> Self {
        Self {
            client,
            backoff: DEFAULT_BACKOFF,
        }
    }

    /// Set the wait before the first retry (it doubles after that, up to `MAX_BACKOFF`).
    pub fn with_backoff(mut self, base: Duration) -> Self {
        self.backoff = base;
        self
    }

    /// Runs every webhook of `kind` in spec order and stops at the first that still fails after
    /// its retries. A Canary with no webhook of that kind passes.
    pub async fn check(
        &self,
        canary: &Canary,
        kind: HookType,
        phase: Phase,
        checksum: &str,
    ) -> HookOutcome {
        for hook in hooks_of(canary, kind) {
            if let Err(reason) = self.call(canary, hook, phase, checksum, None).await {
                tracing::warn!(
                    canary = %canary.name_any(),
                    namespace = canary.namespace().as_deref().unwrap_or_default(),
                    hook = %hook.name,
                    kind = ?kind,
                    %reason,
                    "webhook failed"
                );
                return HookOutcome::Failed {
                    hook: hook.name.clone(),
                    reason,
                };
            }
        }
        HookOutcome::Passed
    }

    /// Fires every webhook of `kind` (meant for post-rollout, rollback and event hooks) and only
    /// logs failures. For `event` hooks, `message` goes into the metadata as `eventMessage`
    /// with `eventType` `Normal`, as Flagger does; for other kinds it is ignored.
    pub async fn notify(
        &self,
        canary: &Canary,
        kind: HookType,
        phase: Phase,
        checksum: &str,
        message: Option<&str>,
    ) {
        let event = (kind == HookType::Event).then(|| message.unwrap_or_default());
        for hook in hooks_of(canary, kind) {
            if let Err(reason) = self.call(canary, hook, phase, checksum, event).await {
                tracing::warn!(
                    canary = %canary.name_any(),
                    namespace = canary.namespace().as_deref().unwrap_or_default(),
                    hook = %hook.name,
                    kind = ?kind,
                    %reason,
                    "notification webhook failed"
                );
            }
        }
    }

    /// One webhook with its retries; the error is the reason to report.
    async fn call(
        &self,
        canary: &Canary,
        hook: &Webhook,
        phase: Phase,
        checksum: &str,
        event_message: Option<&str>,
    ) -> Result<(), String> {
        let name = canary.name_any();
        let namespace = canary.namespace().unwrap_or_default();
        let mut metadata = hook.metadata.clone();
        if let Some(message) = event_message {
            metadata.insert("eventMessage".into(), message.to_string());
            metadata.insert("eventType".into(), "Normal".into());
        }
        let payload = Payload {
            name: &name,
            namespace: &namespace,
            phase,
            checksum,
            metadata,
        };
        let timeout = hook
            .timeout
            .map(|t| t.as_duration())
            .unwrap_or(DEFAULT_TIMEOUT);
        let attempts = hook.retries.unwrap_or(0).saturating_add(1);
        tracing::debug!(
            canary = %name,
            namespace = %namespace,
            hook = %hook.name,
            url = %hook.url,
            attempts,
            "calling webhook"
        );
        let post = Post {
            client: &self.client,
            url: &hook.url,
            bearer: None,
            body: &payload,
            timeout,
            attempts,
            backoff: self.backoff,
        };
        post.send()
            .instrument(tracing::debug_span!("webhook", hook = %hook.name))
            .await
    }

    /// The client the webhooks use, for the other notifiers to share (one connection pool).
    pub fn client(&self) -> reqwest::Client {
        self.client.clone()
    }
}

fn hooks_of(canary: &Canary, kind: HookType) -> impl Iterator<Item = &Webhook> {
    canary
        .spec
        .analysis
        .webhooks
        .iter()
        .filter(move |hook| hook.kind == kind)
}

/// The Canary's own webhooks of the notification's kind, as a notifier. Alerts are not theirs.
impl crate::notify::Notifier for Hooks {
    fn notify<'a>(
        &'a self,
        n: crate::notify::Notification<'a>,
    ) -> crate::providers::BoxFuture<'a, ()> {
        use crate::notify::Happened;
        let (kind, message) = match n.happened {
            Happened::Hook(kind) => (kind, None),
            Happened::Event(message) => (HookType::Event, Some(message)),
            Happened::Alert(_) => return Box::pin(std::future::ready(())),
        };
        Box::pin(Hooks::notify(
            self, n.canary, kind, n.phase, n.revision, message,
        ))
    }
}
