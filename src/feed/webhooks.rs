//! Webhooks: each configured URL gets every change feed entry as a JSON POST
//! ([`super::Change`], plus `X-Aina-Sequence` and `X-Aina-Feed`), one at a
//! time and in order. A delivery that fails (no answer in 10 s, or not 2xx)
//! is retried with exponential backoff from 1 s up to 5 minutes, forever: the
//! next entry waits, so a receiver sees the feed's order.
//!
//! Where delivery stands is in the database (`webhook_cursors`): the last
//! acknowledged sequence number, and a lease naming the one deliverer (of
//! all nodes configured with the URL) that sends. A deliverer renews its lease
//! as it goes; one that stops (a crashed node) loses it after a minute, and
//! another node goes on from the stored cursor. Delivery is at least once: an
//! entry acknowledged just before a crash may come again, and its sequence
//! number lets the receiver drop it.
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
/// How long a deliverer's claim on a URL lasts unless renewed; it is renewed
/// at least every [`RENEW`].
const LEASE: Duration = Duration::from_secs(60);
const RENEW: Duration = Duration::from_secs(15);

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
            holder: crate::auth::accounts::random_hex(8),
        };
        tokio::spawn(deliverer.run());
    }
}

struct Deliverer {
    feed: Arc<dyn ChangeFeed>,
    client: reqwest013::Client,
    url: String,
    token: Option<String>,
    /// This deliverer's name in the lease.
    holder: String,
}

/// A delivery stopped short: another deliverer holds the URL now.
struct LeaseLost;

fn lease_ms() -> i64 {
    LEASE.as_millis() as i64
}

impl Deliverer {
    async fn run(self) {
        let mut holding = false;
        loop {
            // Claiming also renews: done on every look, idle or not.
            let cursor = match self
                .feed
                .claim_webhook(&self.url, &self.holder, lease_ms())
                .await
            {
                Ok(Some(cursor)) => cursor,
                Ok(None) => {
                    if holding {
                        tracing::info!(url = %self.url, "webhook: another node delivers now");
                        holding = false;
                    }
                    tokio::time::sleep(RENEW).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(url = %self.url, error = %e, "webhook: reading its cursor failed");
                    tokio::time::sleep(POLL * 5).await;
                    continue;
                }
            };
            if !holding {
                tracing::info!(url = %self.url, after = cursor, "webhook deliveries started");
                holding = true;
            }
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
            let feed_id = self.feed.feed_id().await.ok().flatten().unwrap_or_default();
            for change in &batch {
                if let Err(LeaseLost) = self.deliver(change, &feed_id).await {
                    break;
                }
                match self
                    .feed
                    .advance_webhook(&self.url, &self.holder, change.sequence, lease_ms())
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => break,
                    // Not saved: the next claim reads the old cursor and this
                    // entry goes again (at least once, never skipped).
                    Err(e) => {
                        tracing::warn!(url = %self.url, error = %e, "webhook: saving its cursor failed");
                        break;
                    }
                }
            }
        }
    }

    /// Sends one entry until the receiver acknowledges it, keeping the lease
    /// while it retries.
    async fn deliver(&self, change: &Change, feed_id: &str) -> Result<(), LeaseLost> {
        let body = match serde_json::to_vec(change) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, "webhook: cannot encode a change");
                return Ok(());
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
                .header("x-aina-feed", feed_id)
                .body(body.clone());
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let failure = match request.send().await {
                Ok(response) if response.status().is_success() => {
                    tracing::debug!(url = %self.url, sequence = change.sequence, attempt, "webhook delivered");
                    return Ok(());
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
            // The pause, in steps short enough to keep the lease.
            let mut left = backoff;
            while !left.is_zero() {
                let step = left.min(RENEW);
                tokio::time::sleep(step).await;
                left -= step;
                match self
                    .feed
                    .claim_webhook(&self.url, &self.holder, lease_ms())
                    .await
                {
                    Ok(Some(_)) => {}
                    Ok(None) => return Err(LeaseLost),
                    // The database is away: keep trying the receiver; the
                    // cursor write after delivery tells whether we still hold it.
                    Err(e) => {
                        tracing::warn!(url = %self.url, error = %e, "webhook: renewing its lease failed")
                    }
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            attempt = attempt.saturating_add(1);
        }
    }
}
