//! The durable outbox. Every email and SMS is first a row of the `outbox` table (sealed with
//! the user's data key), written in the same transaction as what caused it where that is one
//! transaction (a reset code and its email, a reset and its notice); only then is it sent.
//!
//! Sending is the dispatcher's: a task of `origin serve` (`spawn_dispatcher`) that tries a
//! message as soon as a request asks it to, and sweeps the table every second for messages
//! due again. An attempt first claims the message (a lease, see `domain::delivery`), so two
//! origins never try the same message at once; a message is marked sent in one statement right
//! after the provider took it, and its id travels as the provider's idempotency key. A
//! failure schedules the next attempt (backoff from `domain::delivery`); after a day, or on a
//! permanent refusal, the message is marked failed and kept. So a message is never lost while
//! the provider is down, and never sent again once the provider has answered.
//!
//! The request that caused a message waits for its first attempt for at most
//! [`FIRST_ATTEMPT_WAIT`] (so a code is usually in the mailbox when the answer arrives), but
//! never for longer: a slow provider delays the message, not the answer.

use std::sync::Arc;
use std::time::Duration;

use domain::delivery::{after_failure, AfterFailure, ATTEMPT_TIMEOUT_MS, LEASE_MS};
use domain::messages::{render, Language, Template};
use domain::time::UnixMillis;
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::config::{Config, EmailDelivery, SmsDelivery};
use crate::crypto::{random_16, WrappedKey};
use crate::delivery::{FileSender, Message, Sender, SmsHttpSender, SmtpSender};
use crate::errors::ApiError;
use crate::store::{ClaimedMessage, OutboxRow};
use crate::users::{Account, Accounts};

/// How long a request waits for its message's first attempt.
pub const FIRST_ATTEMPT_WAIT: Duration = Duration::from_secs(2);
/// How often the dispatcher looks for messages due again.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How many due messages one sweep claims.
const SWEEP_BATCH: u32 = 32;

/// A request to the dispatcher: try message `id` now, and say when done.
struct Kick {
    id: String,
    done: oneshot::Sender<()>,
}

pub struct Outbox {
    email: Box<dyn Sender>,
    sms: Box<dyn Sender>,
    kicks: mpsc::UnboundedSender<Kick>,
    /// Taken by the dispatcher when it starts (only `origin serve` runs one; the CLI's jobs
    /// leave what they queue to it).
    pending_kicks: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Kick>>>,
    /// Whether a dispatcher runs in this process.
    dispatching: std::sync::atomic::AtomicBool,
}

impl Outbox {
    /// The senders the configuration names for each channel (the local file by default).
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let file = || Box::new(FileSender::new(config.outbox_path.clone())) as Box<dyn Sender>;
        let email: Box<dyn Sender> = match &config.email_delivery {
            EmailDelivery::File => file(),
            EmailDelivery::Smtp { endpoint, from } => {
                Box::new(SmtpSender::new(endpoint, from).map_err(|e| anyhow::anyhow!("SMTP: {e}"))?)
            }
        };
        let sms: Box<dyn Sender> = match &config.sms_delivery {
            SmsDelivery::File => file(),
            SmsDelivery::Http { base_url, account_sid, auth_token, from } => Box::new(
                SmsHttpSender::new(base_url, account_sid, auth_token, from)
                    .map_err(|e| anyhow::anyhow!("SMS: {e}"))?,
            ),
        };
        let (kicks, receiver) = mpsc::unbounded_channel();
        Ok(Self {
            email,
            sms,
            kicks,
            pending_kicks: std::sync::Mutex::new(Some(receiver)),
            dispatching: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn sender(&self, channel: &str) -> &dyn Sender {
        if channel == "sms" {
            self.sms.as_ref()
        } else {
            self.email.as_ref()
        }
    }
}

fn message_context(user_id: &str, id: &str) -> String {
    format!("{user_id}/outbox/{id}")
}

impl Accounts {
    /// A message to `to` on `channel` (`email`, `sms`), rendered in the account's language and
    /// sealed with its data key, ready to be stored.
    pub(crate) fn message(
        &self,
        account: &Account,
        channel: &str,
        to: &str,
        template: &Template<'_>,
        code: Option<&str>,
        now: UnixMillis,
    ) -> Result<OutboxRow, ApiError> {
        self.message_from(account, channel, to, template, code, None, now)
    }

    /// [`Accounts::message`] under another sender name (an organization's white label).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn message_from(
        &self,
        account: &Account,
        channel: &str,
        to: &str,
        template: &Template<'_>,
        code: Option<&str>,
        sender_name: Option<&str>,
        now: UnixMillis,
    ) -> Result<OutboxRow, ApiError> {
        let rendered = render(template, Language::of_tag(Some(&account.profile.language)));
        let id = format!("msg_{}", hex::encode(random_16()));
        let message = Message {
            id: id.clone(),
            channel: channel.to_owned(),
            to: to.to_owned(),
            subject: rendered.subject,
            text: rendered.text,
            code: code.map(str::to_owned),
            language: rendered.language.as_str().to_owned(),
            created_at: now.0,
            sender_name: sender_name.map(str::to_owned),
        };
        let json = serde_json::to_vec(&message).map_err(|e| ApiError::Internal(e.to_string()))?;
        let sealed = account.data_key.seal(&json, &message_context(&account.row.id, &id));
        Ok(OutboxRow {
            id,
            user_id: account.row.id.clone(),
            channel: channel.to_owned(),
            message_sealed: sealed,
            created_at: now,
        })
    }

    /// Stores a message and has it sent (see [`Self::deliver_soon`]).
    pub(crate) async fn send_message(&self, row: OutboxRow) -> Result<(), ApiError> {
        self.store.enqueue_message(&row).await?;
        self.deliver_soon(&row.id, true).await;
        Ok(())
    }

    /// Asks the dispatcher to try a stored message now; with `wait`, waits for that first
    /// attempt for at most [`FIRST_ATTEMPT_WAIT`]. Without a dispatcher (the CLI), the message
    /// waits in the table for the next `origin serve`.
    pub(crate) async fn deliver_soon(&self, id: &str, wait: bool) {
        if !self.outbox.dispatching.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let (done, attempted) = oneshot::channel();
        if self.outbox.kicks.send(Kick { id: id.to_owned(), done }).is_err() || !wait {
            return;
        }
        let _ = tokio::time::timeout(FIRST_ATTEMPT_WAIT, attempted).await;
    }

    /// Claims message `id` and tries it, if no one else holds it and it is still to send.
    async fn deliver_now(&self, id: &str, now: UnixMillis) -> Result<(), ApiError> {
        if let Some(claimed) = self.store.claim_message(id, now, now.saturating_add_ms(LEASE_MS)).await? {
            self.attempt(claimed, now).await?;
        }
        Ok(())
    }

    /// Claims the messages due at `now` and tries each; answers how many were tried.
    pub async fn dispatch_due(self: &Arc<Self>, now: UnixMillis) -> Result<usize, ApiError> {
        let claimed = self.store.claim_due(now, now.saturating_add_ms(LEASE_MS), SWEEP_BATCH).await?;
        let n = claimed.len();
        let mut attempts = tokio::task::JoinSet::new();
        for message in claimed {
            let accounts = Arc::clone(self);
            attempts.spawn(async move { accounts.attempt(message, now).await });
        }
        while let Some(done) = attempts.join_next().await {
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "an outbox attempt could not be recorded");
            }
        }
        Ok(n)
    }

    /// One attempt at a claimed message: unseal, send, record the outcome.
    async fn attempt(&self, claimed: ClaimedMessage, now: UnixMillis) -> Result<(), ApiError> {
        let ClaimedMessage { row, attempts } = claimed;
        let message = match self.unseal_message(&row).await? {
            Ok(m) => m,
            Err(reason) => {
                // Unreadable (the user's key is gone): nothing can ever send it.
                tracing::warn!(id = %row.id, reason, "an outbox message cannot be opened; given up");
                self.store.message_failed(&row.id, "unreadable", None, now).await?;
                return Ok(());
            }
        };
        let sender = self.outbox.sender(&row.channel);
        let outcome = tokio::time::timeout(Duration::from_millis(ATTEMPT_TIMEOUT_MS), sender.send(&message))
            .await
            .unwrap_or_else(|_| {
                Err(crate::delivery::SendError::Temporary(format!("{} timeout", sender.name())))
            });
        let at = Clock::System.now().max(now);
        crate::metrics::outbox_sent(&row.channel, outcome.is_ok());
        match outcome {
            Ok(()) => {
                self.store.message_sent(&row.id, at).await?;
                tracing::info!(id = %row.id, via = sender.name(), attempt = attempts + 1, "message sent");
            }
            Err(e) => {
                let retry = match after_failure(attempts + 1, row.created_at, at, e.is_permanent()) {
                    AfterFailure::RetryAt(t) => Some(t),
                    AfterFailure::GiveUp => None,
                };
                tracing::warn!(
                    id = %row.id, via = sender.name(), attempt = attempts + 1, error = e.kind(),
                    retry_at = retry.map(|t| t.0), "message not sent"
                );
                self.store.message_failed(&row.id, e.kind(), retry, at).await?;
            }
        }
        Ok(())
    }

    /// The message, or why it can never be read; `Err` when the store failed (the claim then
    /// runs out and the message is tried again).
    async fn unseal_message(&self, row: &OutboxRow) -> Result<Result<Message, &'static str>, ApiError> {
        let Some(user) = self.store.user_by_id(&row.user_id).await? else { return Ok(Err("no user")) };
        let wrapped = WrappedKey { master_key_id: user.data_key_master_id, sealed: user.data_key_sealed };
        let Ok(key) = self.keyring.unwrap(&wrapped, &row.user_id) else { return Ok(Err("data key")) };
        let Ok(json) = key.open(&row.message_sealed, &message_context(&row.user_id, &row.id)) else {
            return Ok(Err("seal"));
        };
        Ok(serde_json::from_slice(&json).map_err(|_| "format"))
    }
}

/// Runs the dispatcher until the process ends: each request's message at once (in a task of
/// its own), and every second the messages due again.
pub fn spawn_dispatcher(accounts: Arc<Accounts>, clock: Clock) {
    let Some(mut kicks) = accounts.outbox.pending_kicks.lock().unwrap_or_else(|e| e.into_inner()).take()
    else {
        return;
    };
    accounts.outbox.dispatching.store(true, std::sync::atomic::Ordering::Release);
    tokio::spawn(async move {
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // One sweep at a time, in a task of its own, so a slow provider never holds up kicks.
        let mut sweeping: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            tokio::select! {
                kick = kicks.recv() => {
                    let Some(Kick { id, done }) = kick else { break };
                    let accounts = Arc::clone(&accounts);
                    tokio::spawn(async move {
                        if let Err(e) = accounts.deliver_now(&id, clock.now()).await {
                            tracing::warn!(error = %e, "an outbox attempt failed");
                        }
                        let _ = done.send(());
                    });
                }
                _ = sweep.tick() => {
                    if sweeping.as_ref().is_some_and(|s| !s.is_finished()) {
                        continue;
                    }
                    let accounts = Arc::clone(&accounts);
                    sweeping = Some(tokio::spawn(async move {
                        if let Err(e) = accounts.dispatch_due(clock.now()).await {
                            tracing::warn!(error = %e, "the outbox sweep failed");
                        }
                    }));
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use domain::delivery::{LEASE_MS, SWEEP_GRACE_MS};
    use domain::identity::Actor;
    use domain::time::UnixMillis;

    use crate::testing::TestOrigin;
    use crate::users::CreateUser;

    #[tokio::test]
    async fn a_stored_message_is_claimed_once_sent_once_and_lands_in_the_file() {
        let origin = TestOrigin::start().await;
        let accounts = Arc::clone(&origin.state.accounts);
        let now = UnixMillis(1_800_000_000_000);
        let request = CreateUser {
            email: "Outbox.Test@example.com".into(),
            password: "correct horse battery staple".into(),
            tier: None,
            role: None,
            profile: Some(serde_json::json!({"language": "fr"})),
            birth_date: None,
            parent_email: None,
        };
        accounts.create(&Actor::Anonymous, request, now).await.unwrap();
        let store = &origin.state.store;
        // No dispatcher runs here: the verification email waits in the table, not yet due to
        // the sweep (the storing origin's first attempt has the grace period).
        assert_eq!(store.outbox_counts().await.unwrap(), (1, 0, 0));
        assert!(store.claim_due(now, now.saturating_add_ms(LEASE_MS), 10).await.unwrap().is_empty());
        let later = now.saturating_add_ms(SWEEP_GRACE_MS);
        let claimed = store.claim_due(later, later.saturating_add_ms(LEASE_MS), 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        // Claimed: no one else gets it until the lease ends.
        let id = claimed[0].row.id.clone();
        assert!(store.claim_message(&id, later, later.saturating_add_ms(LEASE_MS)).await.unwrap().is_none());
        let after_lease = later.saturating_add_ms(LEASE_MS);
        let again =
            store.claim_message(&id, after_lease, after_lease.saturating_add_ms(LEASE_MS)).await.unwrap();
        assert_eq!(again.map(|c| c.row.id), Some(id.clone()));
        assert!(store.message_sent(&id, after_lease).await.unwrap());
        assert!(!store.message_sent(&id, after_lease).await.unwrap(), "marked sent once");
        assert!(store
            .claim_message(&id, UnixMillis(u64::MAX / 2), UnixMillis(u64::MAX / 2))
            .await
            .unwrap()
            .is_none());
        assert_eq!(store.outbox_counts().await.unwrap(), (0, 1, 0));
        // The table holds no address in clear.
        let db = origin.sqlite().await;
        let sealed: Vec<u8> =
            sqlx::query_scalar("SELECT message_sealed FROM outbox").fetch_one(db.pool()).await.unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("outbox.test@example.com"));
    }

    #[tokio::test]
    async fn the_sweep_sends_due_messages_through_the_file_sender_in_the_users_language() {
        let origin = TestOrigin::start().await;
        let accounts = Arc::clone(&origin.state.accounts);
        let now = UnixMillis(1_800_000_000_000);
        let request = CreateUser {
            email: "sweep@example.com".into(),
            password: "correct horse battery staple".into(),
            tier: None,
            role: None,
            profile: Some(serde_json::json!({"language": "fr-CA"})),
            birth_date: None,
            parent_email: None,
        };
        accounts.create(&Actor::Anonymous, request, now).await.unwrap();
        assert_eq!(accounts.dispatch_due(now.saturating_add_ms(SWEEP_GRACE_MS)).await.unwrap(), 1);
        let file = std::fs::read_to_string(origin.dir.path().join("outbox.jsonl")).unwrap();
        let line: serde_json::Value = serde_json::from_str(file.lines().next().unwrap()).unwrap();
        assert_eq!(line["to"], "sweep@example.com");
        assert_eq!(line["language"], "fr");
        assert_eq!(line["subject"], "Confirmez votre adresse");
        assert!(line["text"].as_str().unwrap().contains(line["code"].as_str().unwrap()));
        assert_eq!(origin.state.store.outbox_counts().await.unwrap(), (0, 1, 0));
        // Nothing is due any more.
        assert_eq!(accounts.dispatch_due(now.saturating_add_ms(60 * SWEEP_GRACE_MS)).await.unwrap(), 0);
    }
}
