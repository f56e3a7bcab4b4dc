//! Batched publishing: a [`Publisher`] gathers the events that any number of
//! tasks send into batches, so that a producer emitting one event at a time
//! still pays one request per batch.
//!
//! A batch leaves when it holds `max_events` or when its first event has
//! waited `linger`. Batches are sent one after the other, so the events of
//! one publisher are stored in the order they were sent. Each event gets its
//! id before the first try (a UUID v7 when it has none), so retries of a
//! batch whose answer was lost store nothing twice.

use crate::{Appended, Client, ClientError};
use cds_events_model::FullEvent;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How a [`Publisher`] batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublisherOptions {
    /// The most events in one request.
    pub max_events: usize,
    /// The longest an event waits for others to fill its batch.
    pub linger: Duration,
    /// Events waiting for a batch before [`Publisher::send`] waits too.
    pub queue: usize,
}

impl Default for PublisherOptions {
    /// Batches of up to 500 events, 20 ms of linger, 10,000 queued.
    fn default() -> Self {
        PublisherOptions {
            max_events: 500,
            linger: Duration::from_millis(20),
            queue: 10_000,
        }
    }
}

struct Queued {
    event: FullEvent,
    answer: oneshot::Sender<Result<Appended, ClientError>>,
}

/// Sends events in batches through a [`Client`] (with its [`crate::Retry`]).
/// Cheap to clone: clones share the batches. The batching task ends when
/// every clone is dropped, after sending what was queued.
///
/// ```no_run
/// # async fn demo(client: cds_events_client::Client) -> Result<(), cds_events_client::ClientError> {
/// use cds_events_client::{Publisher, PublisherOptions};
/// use cds_events_model::{EventType, FullEvent};
/// let publisher = Publisher::new(client, PublisherOptions::default());
/// let mut event = FullEvent::new(EventType::ProjectCreated);
/// event.project_key = "PROJ".into();
/// let stored = publisher.send(event).await?;
/// println!("stored at {}", stored.seq);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Publisher {
    queue: mpsc::Sender<Queued>,
}

impl Publisher {
    /// A publisher sending through `client`; its task runs on the current
    /// Tokio runtime.
    pub fn new(client: Client, options: PublisherOptions) -> Publisher {
        let (queue, rx) = mpsc::channel(options.queue.max(1));
        tokio::spawn(batches(client, options, rx));
        Publisher { queue }
    }

    /// Queues `event` (given a UUID v7 id if it has none) and waits until
    /// its batch is stored: the answer is this event's.
    ///
    /// When the server refuses a batch as bad input, its events are sent
    /// again one by one, so that one bad event fails alone. A failure the
    /// whole batch shared comes as [`ClientError::Batch`].
    pub async fn send(&self, mut event: FullEvent) -> Result<Appended, ClientError> {
        if event.id.is_empty() {
            event.id = uuid::Uuid::now_v7().to_string();
        }
        let (answer, rx) = oneshot::channel();
        self.queue
            .send(Queued { event, answer })
            .await
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)?
    }
}

async fn batches(client: Client, options: PublisherOptions, mut rx: mpsc::Receiver<Queued>) {
    let max = options.max_events.max(1);
    while let Some(first) = rx.recv().await {
        let deadline = tokio::time::Instant::now() + options.linger;
        let mut batch = vec![first];
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(q)) => batch.push(q),
                Ok(None) | Err(_) => break,
            }
        }
        send_batch(&client, batch).await;
    }
}

async fn send_batch(client: &Client, batch: Vec<Queued>) {
    let (events, answers): (Vec<FullEvent>, Vec<_>) =
        batch.into_iter().map(|q| (q.event, q.answer)).unzip();
    match client.publish(&events).await {
        Ok(stored) => {
            for (answer, appended) in answers.into_iter().zip(stored) {
                let _ = answer.send(Ok(appended));
            }
        }
        Err(e) if events.len() > 1 && e.is_bad_input() => {
            for (event, answer) in events.into_iter().zip(answers) {
                let one = client.publish(std::slice::from_ref(&event)).await;
                let _ = answer.send(one.and_then(|mut v| v.pop().ok_or(ClientError::Closed)));
            }
        }
        Err(e) => {
            let shared = Arc::new(e);
            for answer in answers {
                let _ = answer.send(Err(ClientError::Batch(shared.clone())));
            }
        }
    }
}
