//! Webhooks: each configured URL gets every change feed entry as a JSON POST
//! ([`super::Change`], plus `X-Aina-Sequence`), one at a time and in order.
//! A delivery that fails (no answer in 10 s, or not 2xx) is retried with
//! exponential backoff from 1 s up to 5 minutes, forever: the next entry waits,
//! so a receiver sees the feed's order. The cursor (the last acknowledged
//! sequence number) is in the database, so a restart resumes where delivery
//! stood: delivery is at least once, and the sequence number lets a receiver
//! drop the repeat of an entry it acknowledged just before a crash.
//!
//! A URL seen for the first time starts at the feed's newest entry: a new
//! receiver gets what happens from now on and catches up on history through
//! `GET /changefeed`.

use std::sync::Arc;
use std::time::Duration;

use super::{Change, ChangeFeed};

/// How often an idle deliverer looks for new entries (also written by other
/// nodes, so a local wake-up would not be enough).
const POLL: Duration = Duration::from_secs(1);
/// Entries read per look.
const BATCH: u32 = 100;
/// The first retry's pause; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// One delivery attempt's limit.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts one deliverer per URL; they run until the process ends.
pub fn spawn(feed: Arc<dyn ChangeFeed>, urls: &[String], token: Option<String>) {
    if urls.is_empty() {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest013::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        // A receiver answers; following it elsewhere would send patient IDs
        // to a host nobody configured.
        .redirect(reqwest013::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "webhooks: cannot build the HTTP client; no deliveries");
            return;
        }
    };
    for url in urls {
        let deliverer = Deliverer {
            feed: feed.clone(),
            client: client.clone(),
            url: url.clone(),
            token: token.clone(),
        };
        tokio::spawn(deliverer.run());
    }
}

struct Deliverer {
    feed: Arc<dyn ChangeFeed>,
    client: reqwest013::Client,
    url: String,
    token: Option<String>,
}

impl Deliverer {
    async fn run(self) {
        let mut cursor = loop {
            match self.start().await {
                Ok(cursor) => break cursor,
                Err(e) => {
                    tracing::warn!(url = %self.url, error = %e, "webhook: reading its cursor failed");
                    tokio::time::sleep(POLL * 5).await;
                }
            }
        };
        tracing::info!(url = %self.url, after = cursor, "webhook deliveries started");
        loop {
            let batch = match self.feed.changes(cursor, BATCH).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(url = %self.url, error = %e, "webhook: reading the change feed failed");
                    tokio::time::sleep(POLL * 5).await;
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::time::sleep(POLL).await;
                continue;
            }
            for change in &batch {
                self.deliver(change).await;
                cursor = change.sequence;
                // A cursor that fails to save is saved with the next entry;
                // meanwhile a restart re-sends (at least once, never skipped).
                if let Err(e) = self.feed.set_webhook_cursor(&self.url, cursor).await {
                    tracing::warn!(url = %self.url, error = %e, "webhook: saving its cursor failed");
                }
            }
        }
    }

    /// Where delivery stands: the saved cursor, or the feed's newest entry
    /// for a URL never seen.
    async fn start(&self) -> Result<i64, crate::index::IndexError> {
        if let Some(cursor) = self.feed.webhook_cursor(&self.url).await? {
            return Ok(cursor);
        }
        let latest = self.feed.latest().await?;
        self.feed.set_webhook_cursor(&self.url, latest).await?;
        // Another node may have started this URL first with a lower cursor.
        Ok(self.feed.webhook_cursor(&self.url).await?.unwrap_or(latest))
    }

    /// Sends one entry until the receiver acknowledges it.
    async fn deliver(&self, change: &Change) {
        let body = match serde_json::to_vec(change) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, "webhook: cannot encode a change");
                return;
            }
        };
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1u32;
        loop {
            let mut request = self
                .client
                .post(&self.url)
                .header("content-type", "application/json")
                .header("x-aina-sequence", change.sequence.to_string())
                .body(body.clone());
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let failure = match request.send().await {
                Ok(response) if response.status().is_success() => {
                    tracing::debug!(url = %self.url, sequence = change.sequence, attempt, "webhook delivered");
                    return;
                }
                Ok(response) => format!("answered {}", response.status()),
                Err(e) => format!("{e}"),
            };
            tracing::warn!(
                url = %self.url,
                sequence = change.sequence,
                attempt,
                retry_in_ms = backoff.as_millis() as u64,
                "webhook delivery failed: {failure}"
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            attempt = attempt.saturating_add(1);
        }
    }
}
