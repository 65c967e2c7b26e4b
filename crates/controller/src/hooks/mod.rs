//! Webhooks, as Flagger calls them: a JSON POST per hook of a type, 2xx meaning yes.
//!
//! Gates and checks (`check`) return a `HookOutcome` for the rollout to decide on; notifications
//! (`notify`) are fire-and-log, because a receiver that is down must not hold up a release that
//! has already been decided.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use kube::ResourceExt;
use serde::Serialize;

use crate::error_chain::error_chain;
use sluice_core::api::{Canary, HookType, Phase, Webhook};
use sluice_core::rollout::HookOutcome;

/// Per attempt, when a webhook sets no `timeout` (Flagger's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The wait before the first retry; it doubles with every further retry.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
/// No wait between retries grows past this, so a hook with many retries still ends.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How much of a failing answer's body goes into the reason: enough for a receiver's message,
/// not so much that an HTML error page floods the Canary's status.
const BODY_EXCERPT_CHARS: usize = 200;

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
struct Payload<'a> {
    name: &'a str,
    namespace: &'a str,
    phase: Phase,
    checksum: &'a str,
    metadata: BTreeMap<String, String>,
}

/// Why one attempt failed, kept apart from its wording so that retries can say how many there
/// were.
enum AttemptError {
    Status(String),
    Timeout(Duration, String),
    Connect(String),
    Other(String),
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptError::Status(text) => write!(f, "answered {text}"),
            AttemptError::Timeout(limit, cause) => {
                write!(f, "no answer within {limit:?}: {cause}")
            }
            AttemptError::Connect(cause) => write!(f, "cannot connect: {cause}"),
            AttemptError::Other(cause) => write!(f, "request failed: {cause}"),
        }
    }
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
        let mut wait = self.backoff;
        let mut attempt = 1;
        loop {
            tracing::debug!(
                canary = %name,
                namespace = %namespace,
                hook = %hook.name,
                url = %hook.url,
                attempt,
                attempts,
                "calling webhook"
            );
            let error = match self.attempt(&hook.url, &payload, timeout).await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            if attempt >= attempts {
                let mut reason = error.to_string();
                if attempts > 1 {
                    let _ = write!(reason, " (after {attempts} attempts)");
                }
                return Err(reason);
            }
            tracing::debug!(
                canary = %name,
                hook = %hook.name,
                attempt,
                error = %error,
                retry_in = ?wait,
                "webhook attempt failed, retrying"
            );
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2).min(MAX_BACKOFF);
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        url: &str,
        payload: &Payload<'_>,
        timeout: Duration,
    ) -> Result<(), AttemptError> {
        // The URL is left out of reasons: webhook URLs sometimes carry tokens, and reasons end
        // up in the Canary's status and Events.
        let classify = |e: reqwest::Error| {
            let timed_out = e.is_timeout();
            let connect = e.is_connect();
            let cause = error_chain(&e.without_url());
            if timed_out {
                AttemptError::Timeout(timeout, cause)
            } else if connect {
                AttemptError::Connect(cause)
            } else {
                AttemptError::Other(cause)
            }
        };
        let response = self
            .client
            .post(url)
            .timeout(timeout)
            .json(payload)
            .send()
            .await
            .map_err(classify)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = body_start(response).await;
        let body = body.trim();
        let excerpt: String = body.chars().take(BODY_EXCERPT_CHARS).collect();
        let mut text = format!("HTTP {status}");
        if !excerpt.is_empty() {
            let _ = write!(text, ": {excerpt}");
            if excerpt.len() < body.len() {
                text.push('…');
            }
        }
        Err(AttemptError::Status(text))
    }
}

/// The first bytes of a failing answer's body, read no further than the excerpt needs: a
/// receiver may answer an error with a large page. The body is only a hint for the reason, so a
/// failure to read it gives what was read so far rather than hiding the status.
async fn body_start(mut response: reqwest::Response) -> String {
    // Four bytes per char at most, so this always holds the excerpt.
    const LIMIT: usize = BODY_EXCERPT_CHARS * 4;
    let mut bytes = Vec::new();
    while bytes.len() < LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(LIMIT);
    String::from_utf8_lossy(&bytes).into_owned()
}

fn hooks_of(canary: &Canary, kind: HookType) -> impl Iterator<Item = &Webhook> {
    canary
        .spec
        .analysis
        .webhooks
        .iter()
        .filter(move |hook| hook.kind == kind)
}

/// The Canary's own webhooks of the notification's kind, as a notifier.
impl crate::notify::Notifier for Hooks {
    fn notify<'a>(
        &'a self,
        n: crate::notify::Notification<'a>,
    ) -> crate::providers::BoxFuture<'a, ()> {
        Box::pin(Hooks::notify(
            self, n.canary, n.kind, n.phase, n.revision, n.message,
        ))
    }
}
