//! The one way sluice POSTs JSON to a receiver it does not control (webhooks, alert providers):
//! a timeout per attempt, retries with a doubling backoff and a bound, and reasons that never
//! carry the URL, since webhook URLs are often credentials and reasons end up in the Canary's
//! status, its Events and the logs.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::error_chain::error_chain;

/// No wait between retries grows past this, so a receiver with many retries still ends.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How much of a failing answer's body goes into the reason: enough for a receiver's message,
/// not so much that an HTML error page floods the Canary's status.
const BODY_EXCERPT_CHARS: usize = 200;

/// One POST: where, with what, and how hard to try.
pub struct Post<'a, T: Serialize> {
    pub client: &'a reqwest::Client,
    pub url: &'a str,
    /// Sent as `Authorization: Bearer`.
    pub bearer: Option<&'a str>,
    pub body: &'a T,
    /// Per attempt.
    pub timeout: Duration,
    /// At least one.
    pub attempts: u32,
    /// The wait before the first retry; it doubles with every further one, up to `MAX_BACKOFF`.
    pub backoff: Duration,
}

/// Why one attempt failed, kept apart from its wording so that retries can say how many there
/// were.
enum AttemptError {
    /// The status code, and the status line with an excerpt of the body.
    Status(u16, String),
    Timeout(Duration, String),
    Connect(String),
    Other(String),
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptError::Status(_, text) => write!(f, "answered {text}"),
            AttemptError::Timeout(limit, cause) => {
                write!(f, "no answer within {limit:?}: {cause}")
            }
            AttemptError::Connect(cause) => write!(f, "cannot connect: {cause}"),
            AttemptError::Other(cause) => write!(f, "request failed: {cause}"),
        }
    }
}

impl AttemptError {
    /// What failed, without anything the receiver said: a receiver may quote the request's
    /// URL back, and only the final reason goes through the caller's redaction.
    fn brief(&self) -> String {
        match self {
            AttemptError::Status(code, _) => format!("HTTP {code}"),
            AttemptError::Timeout(limit, _) => format!("no answer within {limit:?}"),
            AttemptError::Connect(_) => "cannot connect".into(),
            AttemptError::Other(_) => "request failed".into(),
        }
    }
}

impl<T: Serialize> Post<'_, T> {
    /// Sends until a 2xx or the last attempt; the error is the reason to report, without the
    /// URL (the caller's span says which receiver it was).
    pub async fn send(&self) -> Result<(), String> {
        let attempts = self.attempts.max(1);
        let mut wait = self.backoff;
        let mut attempt = 1;
        loop {
            let error = match self.attempt().await {
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
            let failure = error.brief();
            tracing::debug!(attempt, attempts, %failure, retry_in = ?wait, "POST failed, retrying");
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2).min(MAX_BACKOFF);
            attempt += 1;
        }
    }

    async fn attempt(&self) -> Result<(), AttemptError> {
        let timeout = self.timeout;
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
        let mut request = self.client.post(self.url).timeout(timeout).json(self.body);
        if let Some(token) = self.bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(classify)?;
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
        Err(AttemptError::Status(status.as_u16(), text))
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
