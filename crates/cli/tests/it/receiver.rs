//! A webhook receiver for the tests: a small HTTP/1.1 server on loopback
//! (keep-alive, one thread per connection) that records every request and
//! answers as the test tells it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Header names lowercased.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
    /// What it was answered (`None`: left hanging).
    pub status: Option<u16>,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// What to answer: a status, after a delay. `None` means never answer (a
/// hanging endpoint).
pub type Behaviour = dyn Fn(&Received) -> Option<(u16, Duration)> + Send + Sync;

pub struct Receiver {
    pub url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Answers 200 to everything at once.
    pub fn ok() -> Receiver {
        Self::with(|_| Some((200, Duration::ZERO)))
    }

    pub fn with(
        behaviour: impl Fn(&Received) -> Option<(u16, Duration)> + Send + Sync + 'static,
    ) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let behaviour: Arc<Behaviour> = Arc::new(behaviour);
        let g = Arc::clone(&got);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (g, b) = (Arc::clone(&g), Arc::clone(&behaviour));
                std::thread::spawn(move || serve(conn, &g, &*b));
            }
        });
        Receiver { url, got }
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().expect("lock").clone()
    }

    pub fn count(&self) -> usize {
        self.got.lock().expect("lock").len()
    }

    /// Waits until at least `n` requests have arrived (or panics after `most`).
    pub fn wait_for(&self, n: usize, most: Duration) -> Vec<Received> {
        let deadline = Instant::now() + most;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "waited {most:?} for {n} webhook calls, got {}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn serve(conn: TcpStream, got: &Mutex<Vec<Received>>, behaviour: &Behaviour) {
    let mut writer = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut req = Received {
            headers,
            body,
            at: Instant::now(),
            status: None,
        };
        let answer = behaviour(&req);
        req.status = answer.map(|(s, _)| s);
        got.lock().expect("lock").push(req);
        let Some((status, delay)) = answer else {
            // Hang: hold the connection without answering.
            std::thread::sleep(Duration::from_secs(3600));
            return;
        };
        std::thread::sleep(delay);
        let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok");
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}
