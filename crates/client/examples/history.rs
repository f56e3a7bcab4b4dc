//! Reads every stored event of project `PROJ`, oldest first, page after
//! page (the query iterator follows the cursors), and prints a count per
//! type.
//!
//! ```sh
//! CDS_EVENTS_URL=http://127.0.0.1:8090 CDS_EVENTS_TOKEN=… \
//!   cargo run -p cds-events-client --example history -- PROJ
//! ```
//!
//! Prints `<seq> <id>` per event, then `<type> <count>` per type.

use cds_events_client::{Client, ClientError, ClientOptions};
use futures_util::TryStreamExt;
use std::collections::BTreeMap;

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let project = std::env::args().nth(1).unwrap_or_else(|| "PROJ".to_owned());
    let client = Client::with_options(
        &std::env::var("CDS_EVENTS_URL").unwrap_or_else(|_| "http://127.0.0.1:8090".into()),
        ClientOptions {
            token: std::env::var("CDS_EVENTS_TOKEN").ok(),
            ..ClientOptions::default()
        },
    )?;
    let params = [
        ("project_key".to_owned(), project),
        ("order".to_owned(), "asc".to_owned()),
        ("limit".to_owned(), "40".to_owned()),
    ];
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    let mut events = std::pin::pin!(client.query_all(&params));
    while let Some(stored) = events.try_next().await? {
        let event = stored.decode().expect("the server sends valid events");
        println!("{} {}", stored.seq, event.id);
        *by_type
            .entry(event.event_type.as_str().to_owned())
            .or_default() += 1;
    }
    for (t, n) in by_type {
        println!("{t} {n}");
    }
    Ok(())
}
