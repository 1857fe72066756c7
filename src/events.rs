//! Behavioural events, shipped to the origin without delaying any answer and without loss.
//!
//! A request collects its events in an [`Events`] sink; when the answer is ready they are sent
//! to the `EVENTS` Workers Queue inside `ctx.wait_until`. Usage records (one per API request)
//! wait in the isolate for up to a second or a batch's worth, so a busy isolate makes one queue
//! send per hundred requests instead of one per request (`domain::wire::event::ship_now`); a
//! sign-in, security or account event leaves at once and takes them along. A usage record can
//! thus be lost only if its isolate dies within that second, as a `wait_until` send can. The queue's consumer (in this same
//! Worker) forwards each batch to the origin as one signed call; if the origin is unreachable
//! or fails, the whole batch is retried later, so an outage means delay, not loss. Every event
//! carries a random id and the origin stores each id once: delivery is at-least-once, storage
//! exactly-once.

use std::cell::RefCell;
use std::time::Duration;

use domain::identity::Actor;
pub use domain::wire::event::Event;
use domain::wire::event::{ship_now, EventBatch, EventKind, USAGE_BATCH_DELAY_MS, USAGE_BATCH_MAX};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use worker::{
    console_error, BatchMessageBuilder, Context, Delay, Env, MessageBatch, Method, Queue,
    QueueRetryOptionsBuilder,
};

use crate::bindings::QUEUE_EVENTS;
use crate::http::forward;
use crate::origin_client::now;

/// An event as it waits in the queue. The queue's JavaScript bridge (serde-wasm-bindgen) turns
/// a `serde_json::Value` object into a JS `Map`, which the queue then stores as `{}`: the event's
/// data would arrive empty. So the data travels as JSON text and is parsed back by the consumer.
/// (`data` is read too, for messages queued in the older shape.)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedEvent {
    pub id: String,
    pub kind: EventKind,
    pub user_id: Option<String>,
    pub class: Option<String>,
    pub at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_json: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl From<Event> for QueuedEvent {
    fn from(e: Event) -> Self {
        QueuedEvent {
            id: e.id,
            kind: e.kind,
            user_id: e.user_id,
            class: e.class,
            at: e.at,
            data_json: Some(e.data.to_string()),
            data: None,
        }
    }
}

impl From<QueuedEvent> for Event {
    fn from(q: QueuedEvent) -> Self {
        let data = match (q.data_json, q.data) {
            (Some(text), _) => serde_json::from_str(&text).unwrap_or(Value::Null),
            (None, Some(value)) => value,
            (None, None) => Value::Null,
        };
        Event { id: q.id, kind: q.kind, user_id: q.user_id, class: q.class, at: q.at, data }
    }
}

/// The events of one request.
#[derive(Default)]
pub struct Events(RefCell<Vec<Event>>);

impl Events {
    pub fn push(&self, kind: EventKind, user_id: Option<&str>, class: Option<&str>, data: Value) {
        let mut id = [0u8; 16];
        if getrandom::getrandom(&mut id).is_err() {
            console_error!("no randomness for an event id; event {kind} dropped");
            return;
        }
        self.0.borrow_mut().push(Event {
            id: hex::encode(id),
            kind,
            user_id: user_id.map(str::to_owned),
            class: class.map(str::to_owned),
            at: now().0,
            data,
        });
    }

    /// [`Events::push`] with typed data (`domain::wire::event::RequestData`, ...).
    pub fn record<T: Serialize>(
        &self,
        kind: EventKind,
        user_id: Option<&str>,
        class: Option<&str>,
        data: &T,
    ) {
        match serde_json::to_value(data) {
            Ok(data) => self.push(kind, user_id, class, data),
            Err(e) => console_error!("the data of event {kind} is not serialisable: {e}"),
        }
    }

    /// Sends the request's events to the queue after the answer, without delaying it: at once
    /// when one of them may not wait or a batch is full, else with the next that leaves or
    /// within [`USAGE_BATCH_DELAY_MS`].
    pub fn ship(self, env: &Env, ctx: &Context) {
        // The isolate's metric aggregate rides along when its interval is up.
        if let Some(aggregate) = crate::metrics::take_due(env, now().0) {
            self.record(EventKind::EdgeMetrics, None, None, &aggregate);
        }
        let events = self.0.into_inner();
        if events.is_empty() {
            return;
        }
        let (leaving, schedule) = WAITING.with(|waiting| {
            let mut waiting = waiting.borrow_mut();
            waiting.events.extend(events.into_iter().map(QueuedEvent::from));
            let kinds: Vec<EventKind> = waiting.events.iter().map(|e| e.kind).collect();
            if ship_now(&kinds) {
                (std::mem::take(&mut waiting.events), false)
            } else {
                let first = !waiting.flush_scheduled;
                waiting.flush_scheduled = true;
                (Vec::new(), first)
            }
        });
        let queue = match env.queue(QUEUE_EVENTS) {
            Ok(q) => q,
            Err(e) => {
                console_error!("no events queue: {e}");
                return;
            }
        };
        if !leaving.is_empty() {
            let queue = queue.clone();
            ctx.wait_until(send(queue, leaving));
        }
        if schedule {
            ctx.wait_until(async move {
                Delay::from(Duration::from_millis(USAGE_BATCH_DELAY_MS)).await;
                let due = WAITING.with(|waiting| {
                    let mut waiting = waiting.borrow_mut();
                    waiting.flush_scheduled = false;
                    std::mem::take(&mut waiting.events)
                });
                send(queue, due).await;
            });
        }
    }
}

/// The usage events waiting in this isolate (a Worker isolate runs one thread).
#[derive(Default)]
struct Waiting {
    events: Vec<QueuedEvent>,
    /// Whether a send of them is already due within [`USAGE_BATCH_DELAY_MS`].
    flush_scheduled: bool,
}

thread_local! {
    static WAITING: RefCell<Waiting> = RefCell::new(Waiting::default());
}

/// Sends `events` in batches the queue accepts.
async fn send(queue: Queue, events: Vec<QueuedEvent>) {
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let batch: Vec<QueuedEvent> = events.by_ref().take(USAGE_BATCH_MAX).collect();
        if let Err(e) = queue.send_batch(batch).await {
            console_error!("queueing events failed: {e}");
        }
    }
}

/// Seconds before a failed batch is offered again.
const RETRY_DELAY_SECS: u32 = 2;

/// Puts a batch the origin could not take back on the queue as new messages (delayed), then
/// acknowledges it; if even that fails, the queue retries the batch itself. A queue's own
/// retries are capped (100), re-queueing is not: however long the origin is away, nothing is
/// dropped.
async fn requeue(batch: &MessageBatch<QueuedEvent>, events: Vec<Event>, env: &Env) {
    let queued: Vec<QueuedEvent> = events.into_iter().map(QueuedEvent::from).collect();
    let again = BatchMessageBuilder::new().messages(queued).delay_seconds(RETRY_DELAY_SECS).build();
    match env.queue(QUEUE_EVENTS) {
        Ok(queue) if queue.send_batch(again).await.is_ok() => batch.ack_all(),
        _ => batch.retry_all_with_options(
            &QueueRetryOptionsBuilder::new().with_delay_seconds(RETRY_DELAY_SECS).build(),
        ),
    }
}

/// The queue consumer: one signed call per batch; the batch is acknowledged only when the
/// origin has stored it (or it is safely back on the queue).
pub async fn consume(batch: MessageBatch<QueuedEvent>, env: &Env) {
    let events: Vec<Event> = match batch.messages() {
        Ok(messages) => messages.into_iter().map(|m| Event::from(m.into_body())).collect(),
        Err(e) => {
            console_error!("unreadable event batch, retrying: {e}");
            batch.retry_all_with_options(
                &QueueRetryOptionsBuilder::new().with_delay_seconds(RETRY_DELAY_SECS).build(),
            );
            return;
        }
    };
    let batch_body = EventBatch { events };
    let body = match serde_json::to_value(&batch_body) {
        Ok(body) => body,
        Err(e) => {
            console_error!("event batch not serialisable, retrying: {e}");
            requeue(&batch, batch_body.events, env).await;
            return;
        }
    };
    let events = batch_body.events;
    match forward(env, &Actor::System, Method::Post, "/internal/events", Some(&body)).await {
        Ok(_) => batch.ack_all(),
        Err(e) => {
            console_error!("the origin did not store {} events; retrying: {e:?}", events.len());
            requeue(&batch, events, env).await;
        }
    }
}
