//! `LISTEN` on a dedicated connection.

use super::PgOptions;
use crate::Error;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

/// A message sent with `NOTIFY channel, payload` (or `pg_notify`) by any
/// session of the database, delivered after that session's commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub channel: String,
    pub payload: String,
}

/// One connection of its own (never from a pool: a pooled connection would
/// be handed to others with its `LISTEN`s) listening on some channels.
///
/// [`Listener::recv`] answers `None` once the connection is gone (the server
/// restarted, the network broke): notifications sent meanwhile are lost, so
/// a user re-reads what it follows (a head, a table) after opening a new
/// one.
#[derive(Debug)]
pub struct Listener {
    messages: mpsc::Receiver<Notification>,
    // Kept so that the connection lives as long as the listener.
    _client: tokio_postgres::Client,
}

impl Listener {
    /// Connects and listens on `channels` (plain identifiers).
    pub async fn open(options: &PgOptions, channels: &[&str]) -> Result<Listener, Error> {
        let (client, mut connection) = options.config()?.connect(NoTls).await?;
        let (tx, messages) = mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                let next = std::future::poll_fn(|cx| connection.poll_message(cx)).await;
                match next {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        let n = Notification {
                            channel: n.channel().to_owned(),
                            payload: n.payload().to_owned(),
                        };
                        // A full queue means the user is behind: it reads
                        // the current state anyway, one wake is enough.
                        if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(n) {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "PostgreSQL notification connection lost");
                        return;
                    }
                    None => return,
                }
            }
        });
        for channel in channels {
            client
                .batch_execute(&format!("LISTEN {}", quote_ident(channel)))
                .await?;
        }
        Ok(Listener {
            messages,
            _client: client,
        })
    }

    /// The next notification; `None` when the connection is gone.
    pub async fn recv(&mut self) -> Option<Notification> {
        self.messages.recv().await
    }
}

/// `name` as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
