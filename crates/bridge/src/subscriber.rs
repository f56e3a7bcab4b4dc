//! The subscriber: one named connection to CDS's Redis, subscribed to the
//! channel, reconnected with a capped backoff when it is lost.
//!
//! It speaks RESP3 (Redis 6 and later), so that one connection carries the
//! messages, `CLIENT SETNAME` (an operator, or a test, can find and kill this
//! connection alone) and the PINGs that detect a silent network. Messages go
//! to the writer through a bounded buffer without ever waiting: when it is
//! full, the subscription is dropped and a gap opened, so that a stalled log
//! costs a reported window, never an unbounded queue. It only subscribes:
//! it never pops CDS's `events_v2` list, which belongs to CDS's own
//! dequeuers.

use crate::config::BridgeConfig;
use crate::status::Shared;
use chrono::Utc;
use redis::aio::{AsyncPushSender, MultiplexedConnection, SendError};
use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// Why a subscription ended, set once by whoever saw it first.
#[derive(Debug, Default)]
struct Signals {
    lost: AtomicBool,
    reason: Mutex<Option<&'static str>>,
    notify: Notify,
}

impl Signals {
    fn lose(&self, reason: &'static str) {
        if !self.lost.swap(true, Ordering::SeqCst) {
            *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
            self.notify.notify_one();
        }
    }

    fn reason(&self) -> &'static str {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or("connection lost")
    }
}

/// Hands each message of one connection to the buffer (called on the
/// connection's own task: it must never wait).
struct Forwarder {
    tx: mpsc::Sender<Vec<u8>>,
    signals: Arc<Signals>,
    shared: Arc<Shared>,
}

impl AsyncPushSender for Forwarder {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        match info.kind {
            PushKind::Message => {
                self.shared.received.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("cds_events_bridge_received_total").increment(1);
                // After a loss nothing more is taken from this connection:
                // the gap's start must stay before every message dropped.
                if self.signals.lost.load(Ordering::SeqCst) {
                    self.drop_one();
                    return Err(SendError);
                }
                let payload = match info.data.into_iter().nth(1) {
                    Some(Value::BulkString(b)) => b,
                    Some(Value::SimpleString(s)) => s.into_bytes(),
                    Some(other) => format!("{other:?}").into_bytes(),
                    None => Vec::new(),
                };
                match self.tx.try_send(payload) {
                    Ok(()) => {
                        self.shared.alive(Utc::now());
                        Ok(())
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        self.drop_one();
                        self.signals
                            .lose("buffer full: the log did not keep up with CDS");
                        Err(SendError)
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError),
                }
            }
            PushKind::Disconnection => {
                self.signals.lose("connection closed");
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl Forwarder {
    fn drop_one(&self) {
        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("cds_events_bridge_dropped_total").increment(1);
    }
}

pub(crate) struct Subscriber {
    pub(crate) client: redis::Client,
    pub(crate) config: Arc<BridgeConfig>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) secrets: Vec<String>,
}

impl Subscriber {
    /// Subscribes, and again after every loss, until `shutdown`.
    pub(crate) async fn run(self, tx: mpsc::Sender<Vec<u8>>, shutdown: CancellationToken) {
        let cfg = Arc::clone(&self.config);
        let started = Utc::now();
        let mut ever_subscribed = false;
        let mut delay = cfg.reconnect_min;
        let url = cfg.masked_url();
        loop {
            // After an overflow, resubscribing into a full buffer would only
            // drop again: wait until the writer has made room.
            while tx.capacity() < tx.max_capacity() / 2 {
                tokio::select! {
                    _ = shutdown.cancelled() => return self.shared.stopped(),
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
            let signals = Arc::new(Signals::default());
            let attempt = tokio::select! {
                r = self.connect(&tx, &signals) => r,
                _ = shutdown.cancelled() => break,
            };
            match attempt {
                Err(e) => {
                    let error = self.describe(&e);
                    if ever_subscribed {
                        self.shared.attempt_failed(error.clone());
                    } else {
                        self.shared.first_attempt_failed(started, error.clone());
                    }
                    tracing::warn!(redis = %url, error = %error, retry_in_ms = delay.as_millis() as u64,
                        "bridge: cannot subscribe to CDS's Redis; CDS events are being missed");
                }
                Ok(mut con) => {
                    ever_subscribed = true;
                    delay = cfg.reconnect_min;
                    match self.shared.subscribed(Utc::now()) {
                        Some(w) => tracing::warn!(
                            start = %w.start, end = %w.end, seconds = w.seconds, reason = %w.reason,
                            channel = %cfg.channel,
                            "bridge: subscribed again; CDS events published in this window may be missing"
                        ),
                        None => {
                            tracing::info!(redis = %url, channel = %cfg.channel, "bridge: subscribed to CDS's events")
                        }
                    }
                    let Some(reason) = self.watch(&mut con, &signals, &shutdown).await else {
                        break;
                    };
                    signals.lose(reason);
                    drop(con);
                    let start = self.shared.lost(reason, Utc::now());
                    tracing::warn!(since = %start, reason, channel = %cfg.channel,
                        "bridge: subscription lost; CDS events published from now until it is back may be missing");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(cfg.reconnect_max);
        }
        self.shared.stopped();
    }

    /// Connects, names the connection and subscribes; Ok once Redis has
    /// confirmed the subscription.
    async fn connect(
        &self,
        tx: &mpsc::Sender<Vec<u8>>,
        signals: &Arc<Signals>,
    ) -> Result<MultiplexedConnection, redis::RedisError> {
        let cfg = &self.config;
        let forwarder = Forwarder {
            tx: tx.clone(),
            signals: Arc::clone(signals),
            shared: Arc::clone(&self.shared),
        };
        let conf = AsyncConnectionConfig::new()
            .set_push_sender(forwarder)
            .set_connection_timeout(Some(cfg.connect_timeout))
            .set_response_timeout(Some(cfg.ping_timeout));
        let steps = async {
            let mut con = self
                .client
                .get_multiplexed_async_connection_with_config(&conf)
                .await?;
            redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg(&cfg.client_name)
                .exec_async(&mut con)
                .await?;
            con.subscribe(&cfg.channel).await?;
            Ok(con)
        };
        // Each step has its own timeout; this bounds them together.
        match tokio::time::timeout(cfg.connect_timeout + cfg.ping_timeout * 2, steps).await {
            Ok(r) => r,
            Err(_) => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "timed out connecting and subscribing",
            ))),
        }
    }

    /// Waits for the subscription to end; PINGs a quiet connection. None
    /// on shutdown, else why it ended.
    async fn watch(
        &self,
        con: &mut MultiplexedConnection,
        signals: &Signals,
        shutdown: &CancellationToken,
    ) -> Option<&'static str> {
        let every = self.config.ping_interval;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = signals.notify.notified() => return Some(signals.reason()),
                _ = tick.tick() => {
                    let ping = redis::cmd("PING");
                    match tokio::time::timeout(self.config.ping_timeout, ping.query_async::<String>(con)).await {
                        Ok(Ok(_)) => self.shared.alive(Utc::now()),
                        Ok(Err(_)) => return Some("PING failed"),
                        Err(_) => return Some("no answer to PING"),
                    }
                }
            }
        }
    }

    /// An error as it may be shown: secrets masked, and the likely cause
    /// named when the server is too old for RESP3.
    fn describe(&self, e: &redis::RedisError) -> String {
        let mut text = e.to_string();
        for s in &self.secrets {
            text = text.replace(s.as_str(), "***");
        }
        if text.contains("HELLO") {
            text.push_str(" (the bridge needs Redis 6 or later: it speaks RESP3)");
        }
        text
    }
}
