//! Follows project `PROJ`'s events live and prints `COUNT` of them, then
//! exits. The stream reconnects by itself (a server restart, a cut
//! connection) and resumes after the last event it printed: no gap, no
//! duplicate. `AFTER` (a sequence number) starts after it instead of now.
//!
//! ```sh
//! CDS_EVENTS_URL=http://127.0.0.1:8090 CDS_EVENTS_TOKEN=… \
//!   cargo run -p cds-events-client --example tail -- PROJ 10 [AFTER]
//! ```
//!
//! Prints `<seq> <type> <id>` per event, and each reconnection on stderr.

use cds_events_client::{Client, ClientError, ClientOptions};
use futures_util::TryStreamExt;

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let project = args.next().unwrap_or_else(|| "PROJ".to_owned());
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10);
    let after: Option<u64> = args.next().and_then(|n| n.parse().ok());
    let client = Client::with_options(
        &std::env::var("CDS_EVENTS_URL").unwrap_or_else(|_| "http://127.0.0.1:8090".into()),
        ClientOptions {
            token: std::env::var("CDS_EVENTS_TOKEN").ok(),
            ..ClientOptions::default()
        },
    )?;
    let filter = [("project_key".to_owned(), project)];
    let live = client.live_reporting(&filter, after, |r| {
        eprintln!("{}: resuming after {:?} in {:?}", r.reason, r.after, r.wait);
    });
    let mut live = std::pin::pin!(live);
    for _ in 0..count {
        let Some(stored) = live.try_next().await? else {
            break;
        };
        let event = stored.decode().expect("the server sends valid events");
        println!("{} {} {}", stored.seq, event.event_type.as_str(), event.id);
    }
    Ok(())
}
