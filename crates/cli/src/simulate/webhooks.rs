//! `simulate --notifications N`: a webhook receiver in this process, N
//! project notifications pointing at it, and what arrived: deliveries per
//! second, event-created → webhook-received latency, duplicates and losses.
//!
//! The server must be allowed to call loopback
//! (`CDS_EVENTS_WEBHOOK_ALLOW_PRIVATE=1`).

use anyhow::Context;
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Seen {
    ids: HashSet<String>,
    duplicates: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    latency: Option<Histogram<u64>>,
}

/// The receiver and the notifications made for the run.
pub struct Sink {
    seen: Arc<Mutex<Seen>>,
    created: Vec<(String, String)>,
}

/// What the receiver saw.
pub struct Report {
    pub deliveries: u64,
    pub duplicates: u64,
    pub per_second: f64,
    pub latency: Histogram<u64>,
}

impl Sink {
    /// Starts the receiver and creates `n` notifications, notification i on
    /// project i mod `projects`, each for every event of its project.
    pub async fn start(
        client: &cds_events_client::Client,
        n: usize,
        projects: usize,
    ) -> anyhow::Result<Sink> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let seen: Arc<Mutex<Seen>> = Arc::new(Mutex::new(Seen {
            latency: Some(super::new_hist()),
            ..Seen::default()
        }));
        let s = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let s = Arc::clone(&s);
                        async move { receive(req, &s).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let stamp = std::process::id();
        let mut created = Vec::with_capacity(n);
        for i in 0..n {
            let project = super::project_key(i % projects);
            let name = format!("sim-{stamp}-{i}");
            let input = cds_events_api::NotificationIn {
                name: name.clone(),
                webhook_url: url.clone(),
                ..Default::default()
            };
            client
                .create_notification(&project, &input)
                .await
                .context("creating a notification (is CDS_EVENTS_WEBHOOK_ALLOW_PRIVATE=1 set on the server?)")?;
            created.push((project, name));
        }
        Ok(Sink { seen, created })
    }

    /// Waits until `expected` deliveries have arrived or none for 10 s (if
    /// some are missing then, says where they are and waits up to a minute
    /// more for late ones), then deletes the notifications.
    pub async fn finish(
        self,
        client: &cds_events_client::Client,
        expected: u64,
    ) -> anyhow::Result<Report> {
        let count = self.wait(expected, Duration::from_secs(10)).await;
        if count < expected {
            self.explain_shortfall(client, expected - count).await;
            // Late or lost? Late ones still come while the notifications
            // exist; lost ones never do.
            let waited = Instant::now();
            let late = self.wait(expected, Duration::from_secs(60)).await - count;
            eprintln!(
                "webhooks: {late} of them arrived in the next {:.0} s",
                waited.elapsed().as_secs_f64()
            );
        }
        for (project, name) in &self.created {
            client.delete_notification(project, name).await?;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let deliveries = seen.ids.len() as u64;
        let span = match (seen.first, seen.last) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64().max(1e-3),
            _ => 1.0,
        };
        Ok(Report {
            deliveries,
            duplicates: seen.duplicates,
            per_second: deliveries as f64 / span,
            latency: seen.latency.take().unwrap_or_else(super::new_hist),
        })
    }
}

impl Sink {
    fn received(&self) -> u64 {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ids
            .len() as u64
    }

    /// Waits until `expected` deliveries have arrived, or none for `quiet`;
    /// answers how many have.
    async fn wait(&self, expected: u64, quiet: Duration) -> u64 {
        let mut last_count = self.received();
        let mut quiet_since = Instant::now();
        loop {
            let count = self.received();
            if count >= expected || quiet_since.elapsed() > quiet {
                return count;
            }
            if count != last_count {
                last_count = count;
                quiet_since = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Says where deliveries the receiver has not seen are (before the
    /// notifications, and their deliveries with them, are deleted): still
    /// pending (how many, the oldest's attempts and when it is due), failed,
    /// or never created (the dispatcher behind the log).
    async fn explain_shortfall(&self, client: &cds_events_client::Client, missing: u64) {
        let (mut pending, mut failed) = (0u64, 0u64);
        let mut oldest: Option<cds_events_api::DeliveryOut> = None;
        for (project, name) in &self.created {
            if let Ok(h) = client.notification_health(project, name).await {
                pending += h.pending;
                failed += h.failed;
            }
            let query = cds_events_api::DeliveriesQuery {
                status: Some("pending".into()),
                limit: Some(1000),
                ..Default::default()
            };
            if let Ok(page) = client.deliveries(project, name, &query).await {
                for d in page.deliveries {
                    if oldest.as_ref().is_none_or(|o| d.event_seq < o.event_seq) {
                        oldest = Some(d);
                    }
                }
            }
        }
        eprintln!(
            "webhooks: {missing} deliveries not received when the wait ended: {pending} pending, {failed} failed, the rest not created yet"
        );
        if let Some(d) = oldest {
            eprintln!(
                "webhooks: oldest pending: event seq {} created {}, {} attempts, next attempt {}",
                d.event_seq,
                d.created_at,
                d.attempts,
                d.next_attempt_at
                    .map_or("unset".to_owned(), |t| t.to_string())
            );
        }
    }
}

async fn receive(
    req: hyper::Request<hyper::body::Incoming>,
    seen: &Mutex<Seen>,
) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, hyper::Error> {
    let id = req
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = req.into_body().collect().await?.to_bytes();
    let now = Instant::now();
    let text = std::str::from_utf8(&body).unwrap_or("");
    // The notifications' own events (NotificationCreated…) are not traffic.
    if !text.contains(r#""type":"Notification"#) {
        // The event's timestamp was set by the publisher when it sent it.
        let sent = text
            .rfind(r#""timestamp":""#)
            .and_then(|at| text[at + 13..].split('"').next())
            .and_then(|t| cds_events_model::Timestamp::parse(t).ok())
            .map(|t| t.unix_nanos());
        let wall_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
        s.first.get_or_insert(now);
        s.last = Some(now);
        if s.ids.insert(id) {
            if let (Some(sent), Some(h)) = (sent, s.latency.as_mut()) {
                let _ = h.record(((wall_now - sent) / 1000).max(1) as u64);
            }
        } else {
            s.duplicates += 1;
        }
    }
    Ok(hyper::Response::new(http_body_util::Full::new(
        bytes::Bytes::new(),
    )))
}
