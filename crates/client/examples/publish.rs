//! Publishes `COUNT` events of project `PROJ` through a batching
//! [`Publisher`], one task per event, then sends the first one again: the
//! server stores an id once, so a retry (or this) stores nothing twice.
//!
//! ```sh
//! CDS_EVENTS_URL=http://127.0.0.1:8090 CDS_EVENTS_TOKEN=… \
//!   cargo run -p cds-events-client --example publish -- PROJ 100
//! ```
//!
//! Prints `<seq> <id>` per event in the order they were stored, then
//! `again <seq> duplicate=<bool>`.

use cds_events_client::{Client, ClientError, ClientOptions, Publisher, PublisherOptions};
use cds_events_model::{EventType, FullEvent};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let project = args.next().unwrap_or_else(|| "PROJ".to_owned());
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(100);
    let client = Client::with_options(
        &std::env::var("CDS_EVENTS_URL").unwrap_or_else(|_| "http://127.0.0.1:8090".into()),
        ClientOptions {
            token: std::env::var("CDS_EVENTS_TOKEN").ok(),
            pool: 8,
            ..ClientOptions::default()
        },
    )?;
    let publisher = Publisher::new(client.clone(), PublisherOptions::default());

    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let publisher = publisher.clone();
            let mut event = FullEvent::new(EventType::ProjectUpdated);
            event.project_key = project.clone();
            event.user_id = format!("u{i}");
            event.username = format!("user{i}");
            tokio::spawn(async move { publisher.send(event).await })
        })
        .collect();
    let mut stored = Vec::with_capacity(count);
    for task in tasks {
        stored.push(task.await.expect("the task ran")?);
    }
    stored.sort_by_key(|a| a.seq);
    for a in &stored {
        println!("{} {}", a.seq, a.id);
    }

    // The same event again, as a retry after a lost answer would send it.
    let mut first = FullEvent::new(EventType::ProjectUpdated);
    first.project_key = project;
    (first.user_id, first.username) = ("u0".into(), "user0".into());
    first.id = stored[0].id.clone();
    let again = client.publish(&[first]).await?;
    println!("again {} duplicate={}", again[0].seq, again[0].duplicate);
    Ok(())
}
