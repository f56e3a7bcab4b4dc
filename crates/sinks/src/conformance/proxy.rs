//! A TCP proxy for tests: forwards every connection to a broker and can
//! cut them all at once, as a dropped network link or a broker's restart
//! would, while the broker itself keeps running (so the test's reader,
//! connected directly, sees exactly what the sink got through).
//!
//! A cut resets both sides (`SO_LINGER` 0, so an RST rather than a polite
//! FIN): what was in flight is lost, as on a real broken link.
//! [`Proxy::cut_at_next_reply`] cuts when the broker next answers, before
//! the answer reaches the client: the broker has done the work, the client
//! never hears of it (a lost acknowledgement, the case that makes
//! duplicates). For a while after [`Proxy::refuse_for`] new connections
//! are accepted and reset at once, which a client sees as a refused
//! connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A running proxy; dropping it closes the listener and every connection.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    inner: Arc<Inner>,
    /// Cancelled on drop: the accept loop and every connection end.
    root: CancellationToken,
}

#[derive(Debug)]
struct Inner {
    upstream: String,
    /// The live connections' token; a cut cancels it and puts a fresh one
    /// in its place for the connections that come after.
    generation: Mutex<CancellationToken>,
    refuse_until: Mutex<Option<Instant>>,
    /// Set by `cut_at_next_reply`; the first connection to get bytes from
    /// the broker clears it and is cut instead of passing them on.
    cut_at_reply: AtomicBool,
    live: AtomicU64,
    accepted: AtomicU64,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`
    /// (`host:port`).
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let root = CancellationToken::new();
        let inner = Arc::new(Inner {
            upstream: upstream.to_owned(),
            generation: Mutex::new(root.child_token()),
            refuse_until: Mutex::new(None),
            cut_at_reply: AtomicBool::new(false),
            live: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        });
        tokio::spawn(accept(listener, Arc::clone(&inner), root.clone()));
        Proxy { addr, inner, root }
    }

    /// Where clients connect (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Resets every live connection; answers how many there were.
    pub fn cut(&self) -> u64 {
        let n = self.inner.live.load(Ordering::SeqCst);
        let mut generation = self
            .inner
            .generation
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        generation.cancel();
        *generation = self.root.child_token();
        n
    }

    /// Cuts the connection that next gets bytes from the broker, which the
    /// client then never receives.
    pub fn cut_at_next_reply(&self) {
        self.inner.cut_at_reply.store(true, Ordering::SeqCst);
    }

    /// Whether a [`cut_at_next_reply`](Proxy::cut_at_next_reply) is still
    /// waiting for its reply.
    pub fn reply_cut_pending(&self) -> bool {
        self.inner.cut_at_reply.load(Ordering::SeqCst)
    }

    /// Resets every new connection for `d` (a broker that is away).
    pub fn refuse_for(&self, d: Duration) {
        *self
            .inner
            .refuse_until
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + d);
    }

    /// Connections accepted and forwarded so far (refused ones not counted).
    pub fn accepted(&self) -> u64 {
        self.inner.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.root.cancel();
    }
}

async fn accept(listener: TcpListener, inner: Arc<Inner>, root: CancellationToken) {
    loop {
        let client = tokio::select! {
            _ = root.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(_) => continue,
            },
        };
        let refusing = inner
            .refuse_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|until| Instant::now() < until);
        if refusing {
            reset(&client);
            continue;
        }
        let cut = inner
            .generation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        inner.accepted.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(forward(client, Arc::clone(&inner), cut));
    }
}

/// Copies both ways until either side closes or the connection is cut.
/// Both sockets reset when dropped, whichever way it ends.
async fn forward(client: TcpStream, inner: Arc<Inner>, cut: CancellationToken) {
    let Ok(server) = TcpStream::connect(&inner.upstream).await else {
        reset(&client);
        return;
    };
    for s in [&client, &server] {
        let _ = s.set_nodelay(true);
        reset(s);
    }
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let up = tokio::io::copy(&mut from_client, &mut to_server);
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = from_server.read(&mut buf).await?;
            if n == 0 || inner.cut_at_reply.swap(false, Ordering::SeqCst) {
                return Ok::<(), std::io::Error>(());
            }
            to_client.write_all(&buf[..n]).await?;
        }
    };
    inner.live.fetch_add(1, Ordering::SeqCst);
    tokio::select! {
        _ = cut.cancelled() => {}
        _ = up => {}
        _ = down => {}
    }
    inner.live.fetch_sub(1, Ordering::SeqCst);
}

/// Makes the coming drop send an RST: the peer's next read or write fails
/// at once, as when a link breaks, instead of reading a clean end.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}
