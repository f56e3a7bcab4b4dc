//! Reading many events: every page of a query ([`Client::query_all`]) and
//! the live stream that reconnects and resumes ([`Client::live`]), both as
//! a `futures` [`Stream`].

use crate::{Client, ClientError, PageItem, Retry, StreamItem};
use cds_events_model::{DecodeError, FullEvent, decode_stored};
use futures_util::Stream;
use serde_json::value::RawValue;
use std::time::Duration;

/// One stored event and its sequence number.
#[derive(Debug)]
pub struct Stored {
    /// Its place in the log: strictly increasing, the resume point.
    pub seq: u64,
    /// The event as stored, byte for byte.
    pub event: Box<RawValue>,
}

impl Stored {
    /// The event as the model's typed [`FullEvent`].
    pub fn decode(&self) -> Result<FullEvent, DecodeError> {
        decode_stored(self.event.get())
    }
}

impl PageItem {
    /// The event as the model's typed [`FullEvent`].
    pub fn decode(&self) -> Result<FullEvent, DecodeError> {
        decode_stored(self.event.get())
    }
}

impl Client {
    /// The log's head: the highest sequence number stored (`/mon/status`).
    pub async fn head(&self) -> Result<u64, ClientError> {
        let status = self.get_json("/mon/status").await?;
        status["storage"]["head_seq"]
            .as_u64()
            .ok_or_else(|| ClientError::Unexpected {
                status: 200,
                text: status.to_string(),
            })
    }

    /// Every event the query matches, page after page (following
    /// `next_cursor`), as one stream. `params` are the query API's
    /// parameters (`project_key`, `type`, `since`, `limit` as the page
    /// size, `order`, …); a `cursor` among them is where it starts.
    ///
    /// ```no_run
    /// # async fn demo(client: cds_events_client::Client) -> Result<(), cds_events_client::ClientError> {
    /// use futures_util::TryStreamExt;
    /// let params = [("project_key".to_owned(), "PROJ".to_owned())];
    /// let mut events = std::pin::pin!(client.query_all(&params));
    /// while let Some(e) = events.try_next().await? {
    ///     println!("{} {}", e.seq, e.event.get());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn query_all(
        &self,
        params: &[(String, String)],
    ) -> impl Stream<Item = Result<Stored, ClientError>> + Send + 'static {
        let client = self.clone();
        let mut params: Vec<(String, String)> = params.to_vec();
        let cursor = take_param(&mut params, "cursor");
        let state = (
            client,
            params,
            cursor,
            Vec::<PageItem>::new().into_iter(),
            false,
        );
        futures_util::stream::try_unfold(
            state,
            |(client, params, cursor, mut page, last)| async move {
                let mut cursor = cursor;
                let mut last = last;
                loop {
                    if let Some(item) = page.next() {
                        let stored = Stored {
                            seq: item.seq,
                            event: item.event,
                        };
                        return Ok(Some((stored, (client, params, cursor, page, last))));
                    }
                    if last {
                        return Ok(None);
                    }
                    let mut p = params.clone();
                    if let Some(c) = &cursor {
                        p.push(("cursor".to_owned(), c.clone()));
                    }
                    let next = client.retry.run(|| client.query(&p)).await?;
                    last = next.next_cursor.is_none();
                    cursor = next.next_cursor.map(|c| c.to_string());
                    page = next.events.into_iter();
                }
            },
        )
    }

    /// The live stream (`GET /v2/events/stream`, Server-Sent Events) with
    /// the query API's filters, as one stream that never ends by itself:
    /// when the connection breaks, the server restarts, or the server says
    /// this subscriber `lagged`, it reconnects (waiting 200 ms, doubling up
    /// to 10 s) and resumes after the last event it yielded, so nothing is
    /// missed and nothing comes twice. `after` is a sequence number to
    /// start after; `None` is the log's head as the stream first connects
    /// ([`Client::head`]), fixed then, so that a reconnection even before
    /// the first event (a crash, a cut connection) misses nothing.
    ///
    /// It ends with an error only when the server refuses the subscription
    /// itself (a bad filter, a token without the grant).
    ///
    /// ```no_run
    /// # async fn demo(client: cds_events_client::Client) -> Result<(), cds_events_client::ClientError> {
    /// use futures_util::TryStreamExt;
    /// let params = [("type".to_owned(), "RunJob*".to_owned())];
    /// let mut live = std::pin::pin!(client.live(&params, None));
    /// while let Some(e) = live.try_next().await? {
    ///     println!("{} {}", e.seq, e.decode().map(|e| e.id).unwrap_or_default());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn live(
        &self,
        params: &[(String, String)],
        after: Option<u64>,
    ) -> impl Stream<Item = Result<Stored, ClientError>> + Send + 'static {
        self.live_reporting(params, after, |_| {})
    }

    /// [`Client::live`], calling `report` before each wait to reconnect
    /// (to log it, or to count reconnections).
    pub fn live_reporting(
        &self,
        params: &[(String, String)],
        after: Option<u64>,
        report: impl FnMut(&Reconnect) + Send + 'static,
    ) -> impl Stream<Item = Result<Stored, ClientError>> + Send + 'static {
        let state = Live {
            client: self.clone(),
            params: params.to_vec(),
            last: after,
            open: None,
            failures: 0,
            report: Box::new(report),
        };
        futures_util::stream::try_unfold(state, |mut live| async move {
            let stored = live.next().await?;
            Ok(Some((stored, live)))
        })
    }
}

fn take_param(params: &mut Vec<(String, String)>, key: &str) -> Option<String> {
    let i = params.iter().position(|(k, _)| k == key)?;
    Some(params.remove(i).1)
}

/// Why [`Client::live`] reconnects, and from where.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconnect {
    /// What happened: `server says lagged`, `stream closed`,
    /// `stream broken (…)`, `cannot connect (…)`.
    pub reason: String,
    /// The sequence number it resumes after (`None`: from now).
    pub after: Option<u64>,
    /// How long it waits before connecting again.
    pub wait: Duration,
}

/// The state of [`Client::live`]: where it is and the connection it reads.
struct Live {
    client: Client,
    params: Vec<(String, String)>,
    last: Option<u64>,
    open: Option<crate::EventStream>,
    /// Connection attempts that failed in a row (for the backoff).
    failures: u32,
    report: Box<dyn FnMut(&Reconnect) + Send>,
}

/// The live stream's reconnection: 200 ms doubling to 10 s, forever.
const RECONNECT: Retry = Retry {
    retries: u32::MAX,
    backoff: Duration::from_millis(200),
    max_backoff: Duration::from_secs(10),
};

impl Live {
    async fn next(&mut self) -> Result<Stored, ClientError> {
        loop {
            let Some(stream) = self.open.as_mut() else {
                if self.last.is_none() {
                    // "From now": the head, fixed before the first connection.
                    match self.client.head().await {
                        Ok(head) => self.last = Some(head),
                        Err(e) if !e.is_transient() => return Err(e),
                        Err(e) => {
                            self.wait(format!("cannot connect ({e})")).await;
                            continue;
                        }
                    }
                }
                match self.client.stream(&self.params, self.last).await {
                    Ok(s) => {
                        self.open = Some(s);
                        self.failures = 0;
                    }
                    Err(e) if !e.is_transient() => return Err(e),
                    Err(e) => self.wait(format!("cannot connect ({e})")).await,
                }
                continue;
            };
            match stream.next().await {
                Ok(Some(StreamItem::Event { seq, event })) => {
                    self.last = Some(seq);
                    return Ok(Stored { seq, event });
                }
                // `lagged`, `shutdown`: the server closes this stream; a
                // `resume_from` it names is where to go on.
                Ok(Some(StreamItem::Control { name, data })) => {
                    if let Some(r) = data.get("resume_from").and_then(serde_json::Value::as_u64) {
                        self.last = Some(r);
                    }
                    self.open = None;
                    self.wait(format!("server says {name}")).await;
                }
                Ok(None) => {
                    self.open = None;
                    self.wait("stream closed".to_owned()).await;
                }
                Err(e) => {
                    self.open = None;
                    self.wait(format!("stream broken ({e})")).await;
                }
            }
        }
    }

    async fn wait(&mut self, reason: String) {
        self.failures += 1;
        let wait = RECONNECT.delay(self.failures);
        (self.report)(&Reconnect {
            reason,
            after: self.last,
            wait,
        });
        tokio::time::sleep(wait).await;
    }
}
