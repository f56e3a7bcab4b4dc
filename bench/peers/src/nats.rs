//! NATS: JetStream ingest (async publish with bounded acknowledgements in
//! flight, or one awaited acknowledgement per event), the ordered consumer's
//! replay, and the stream's clean-up. Core publish/subscribe is in
//! `latency.rs`.

use crate::{Brokers, Budget, Load, new_hist, report};
use anyhow::Context;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use cds_events_traffic::project_key;
use futures_util::StreamExt;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// The run's stream: named after the tag, every subject under it, file
/// storage, everything else JetStream's defaults (no fsync per message).
pub fn stream_config(tag: &str) -> stream::Config {
    stream::Config {
        name: tag.to_owned(),
        subjects: vec![format!("{tag}.>")],
        storage: stream::StorageType::File,
        ..Default::default()
    }
}

/// One subject per project (`<tag>.events.<PROJECT>`), as a user routing by
/// project would publish.
pub fn subjects(tag: &str, projects: usize, kind: &str) -> Arc<Vec<async_nats::Subject>> {
    Arc::new(
        (0..projects)
            .map(|p| format!("{tag}.{kind}.{}", project_key(p)).into())
            .collect(),
    )
}

pub async fn ingest(load: &Load, b: &Brokers, in_flight: usize) -> anyhow::Result<()> {
    let first = async_nats::connect(&b.nats).await?;
    jetstream::new(first)
        .get_or_create_stream(stream_config(&b.tag))
        .await
        .context("creating the JetStream stream")?;
    let subjects = subjects(&b.tag, load.projects, "events");
    let per_conn = (in_flight / load.connections).max(1);
    let budget = Arc::new(Budget::new(load.events));
    // Connections and templates first: the clock starts when all are ready.
    let mut ready = Vec::new();
    for w in 0..load.connections {
        let client = async_nats::connect(&b.nats).await?;
        // The client's own bound must be above ours: its permits come back
        // only once the acknowledgements we hold are awaited.
        let js = jetstream::context::ContextBuilder::new()
            .max_ack_inflight(per_conn + 1)
            .build(client);
        ready.push((js, load.templates(w)));
    }
    let started = Instant::now();
    let mut workers = Vec::new();
    for (js, mut templates) in ready {
        let (budget, subjects, batch) = (Arc::clone(&budget), Arc::clone(&subjects), load.batch);
        workers.push(tokio::spawn(async move {
            let mut hist = new_hist();
            let mut pending = VecDeque::with_capacity(per_conn);
            let mut sent = 0u64;
            loop {
                let n = budget.take(batch as u64);
                if n == 0 {
                    break;
                }
                for _ in 0..n {
                    let mut body = String::with_capacity(700);
                    let project = templates.write(&mut body);
                    let t0 = Instant::now();
                    let ack = js
                        .publish(subjects[project as usize].clone(), Bytes::from(body))
                        .await?;
                    if batch == 1 {
                        // One acknowledgement per event, awaited.
                        ack.await?;
                        let _ = hist.record(t0.elapsed().as_micros().max(1) as u64);
                    } else {
                        if pending.len() == per_conn {
                            let oldest: jetstream::context::PublishAckFuture =
                                pending.pop_front().context("pending ack")?;
                            oldest.await?;
                        }
                        pending.push_back(ack);
                    }
                }
                sent += n;
            }
            for ack in pending {
                ack.await?;
            }
            anyhow::Ok((sent, hist))
        }));
    }
    let (sent, hist) = crate::gather(workers).await?;
    let secs = started.elapsed().as_secs_f64();
    let what = if load.batch == 1 {
        "nats-jetstream-sync"
    } else {
        "nats-jetstream-async"
    };
    report(what, sent, secs, Some(&hist));
    Ok(())
}

/// Reads the tag's stream from its first message with an ordered (pull)
/// consumer, as JetStream's client offers it, until `events` have arrived.
pub async fn replay(b: &Brokers, events: u64) -> anyhow::Result<()> {
    let client = async_nats::connect(&b.nats).await?;
    let js = jetstream::new(client);
    let started = Instant::now();
    let stream = js.get_stream(&b.tag).await?;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let mut messages = consumer.messages().await?;
    let (mut got, mut bytes) = (0u64, 0u64);
    while got < events {
        let m = messages
            .next()
            .await
            .context("the ordered consumer ended")??;
        bytes += m.payload.len() as u64;
        got += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("nats replay: {bytes} payload bytes");
    report("nats-ordered-consumer", got, secs, None);
    Ok(())
}

/// Deletes the tag's stream, if any.
pub async fn cleanup(b: &Brokers) -> anyhow::Result<()> {
    let client = async_nats::connect(&b.nats).await?;
    let js = jetstream::new(client);
    if js.get_stream(&b.tag).await.is_ok() {
        js.delete_stream(&b.tag).await?;
    }
    Ok(())
}
