//! Redis Streams: `XADD`s pipelined `--batch` at a time on each connection
//! (with `--batch 1`, one round trip per event), and the key's clean-up.

use crate::{Brokers, Budget, Load, new_hist, report};
use std::sync::Arc;
use std::time::Instant;

/// The run's stream key.
pub fn key(tag: &str) -> String {
    format!("{tag}:events")
}

pub async fn ingest(load: &Load, b: &Brokers) -> anyhow::Result<()> {
    let client = redis::Client::open(b.redis.as_str())?;
    let key = Arc::new(key(&b.tag));
    let budget = Arc::new(Budget::new(load.events));
    let mut ready = Vec::new();
    for w in 0..load.connections {
        // A connection of its own each (not one shared multiplexed one).
        let con = client.get_multiplexed_async_connection().await?;
        ready.push((con, load.templates(w)));
    }
    let started = Instant::now();
    let mut workers = Vec::new();
    for (mut con, mut templates) in ready {
        let (budget, key, batch) = (Arc::clone(&budget), Arc::clone(&key), load.batch);
        workers.push(tokio::spawn(async move {
            let mut hist = new_hist();
            let mut sent = 0u64;
            let mut body = String::with_capacity(700);
            loop {
                let n = budget.take(batch as u64);
                if n == 0 {
                    break;
                }
                let mut pipe = redis::pipe();
                for _ in 0..n {
                    body.clear();
                    templates.write(&mut body);
                    pipe.cmd("XADD")
                        .arg(key.as_str())
                        .arg("*")
                        .arg("event")
                        .arg(body.as_str())
                        .ignore();
                }
                let t0 = Instant::now();
                pipe.query_async::<()>(&mut con).await?;
                let _ = hist.record(t0.elapsed().as_micros().max(1) as u64);
                sent += n;
            }
            anyhow::Ok((sent, hist))
        }));
    }
    let (sent, hist) = crate::gather(workers).await?;
    let secs = started.elapsed().as_secs_f64();
    let what = if load.batch == 1 {
        "redis-xadd-single"
    } else {
        "redis-xadd-pipelined"
    };
    report(what, sent, secs, Some(&hist));
    Ok(())
}

/// Deletes the tag's stream key.
pub async fn cleanup(b: &Brokers) -> anyhow::Result<()> {
    let client = redis::Client::open(b.redis.as_str())?;
    let mut con = client.get_multiplexed_async_connection().await?;
    redis::cmd("DEL")
        .arg(key(&b.tag))
        .query_async::<()>(&mut con)
        .await?;
    Ok(())
}
