//! Counts what a client sends to Redis: a proxy on a free loopback port that passes bytes
//! through both ways and reads the client's side of the protocol (RESP: every command is an
//! array of bulk strings, `*N\r\n$len\r\n…\r\n`).
//!
//! * [`commands`](RoundTrips::commands): commands sent, as `INFO commandstats` would count
//!   them for this client alone (a script's own `redis.call`s are not commands sent).
//! * [`round_trips`](RoundTrips::round_trips): exchanges, a burst the client sends before the
//!   server answers (a pipeline, `MULTI … EXEC` sent at once, or one command) counts once.
//!   Exact for operations awaited one after another, which is how the tests use it.
//!
//! The test's own connection goes to the server directly; only the store under test goes
//! through the proxy, so other tests on the same server are not counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Counts {
    commands: AtomicUsize,
    round_trips: AtomicUsize,
    names: std::sync::Mutex<Vec<String>>,
}

/// A running proxy; connect to [`url`](Self::url). Stops when dropped.
pub struct RoundTrips {
    url: String,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl RoundTrips {
    /// Proxies to the server of `url` (`redis://host:port[/db]`).
    pub async fn start(url: &str) -> RoundTrips {
        let rest = url.trim_start_matches("redis://");
        let rest = rest.split_once('@').map_or(rest, |(_, r)| r);
        let (upstream, db) = rest.split_once('/').unwrap_or((rest, "0"));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        let counts = Arc::new(Counts::default());
        let upstream = upstream.to_string();
        let counted = Arc::clone(&counts);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                // A server that is down (a restart test) refuses this client only: the next
                // one is tried again, so the proxy follows the server back.
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                // Small writes go at once both ways, as they would without the proxy.
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                tokio::spawn(pipe(client, server, Arc::clone(&counted)));
            }
        });
        RoundTrips {
            url: format!("redis://127.0.0.1:{port}/{db}"),
            counts,
            task,
        }
    }

    /// Where clients connect.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Commands sent since the last [`reset`](Self::reset).
    pub fn commands(&self) -> usize {
        self.counts.commands.load(Ordering::SeqCst)
    }

    /// Round trips since the last [`reset`](Self::reset).
    pub fn round_trips(&self) -> usize {
        self.counts.round_trips.load(Ordering::SeqCst)
    }

    /// The names of the commands sent since the last reset, upper-cased (`EVALSHA`, `GET`).
    pub fn names(&self) -> Vec<String> {
        self.counts.names.lock().expect("names").clone()
    }

    /// Starts counting from zero.
    pub fn reset(&self) {
        self.counts.commands.store(0, Ordering::SeqCst);
        self.counts.round_trips.store(0, Ordering::SeqCst);
        self.counts.names.lock().expect("names").clear();
    }
}

impl Drop for RoundTrips {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(client: TcpStream, server: TcpStream, counts: Arc<Counts>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Set when the server has answered: the client's next bytes start a new round trip.
    let answered = Arc::new(AtomicBool::new(true));
    let answered_up = Arc::clone(&answered);
    let upstream = async move {
        let mut parser = Parser::default();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if answered_up.swap(false, Ordering::SeqCst) {
                counts.round_trips.fetch_add(1, Ordering::SeqCst);
            }
            for name in parser.feed(&chunk[..n]) {
                counts.commands.fetch_add(1, Ordering::SeqCst);
                counts.names.lock().expect("names").push(name);
            }
            if server_write.write_all(&chunk[..n]).await.is_err() {
                return;
            }
        }
    };
    let downstream = async move {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = match server_read.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            answered.store(true, Ordering::SeqCst);
            if client_write.write_all(&chunk[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(upstream, downstream);
}

/// Splits the client's bytes into commands (arrays of bulk strings), across reads.
#[derive(Default)]
struct Parser {
    buf: Vec<u8>,
}

impl Parser {
    /// The names of the commands completed by `bytes`.
    fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut names = Vec::new();
        loop {
            match command(&self.buf) {
                Some((len, name)) => {
                    names.push(name);
                    self.buf.drain(..len);
                }
                None => return names,
            }
        }
    }
}

/// One whole command at the start of `buf`: its length in bytes and its name.
fn command(buf: &[u8]) -> Option<(usize, String)> {
    let (count, mut at) = line_number(buf, 0, b'*')?;
    let mut name = String::new();
    for i in 0..count {
        let (len, start) = line_number(buf, at, b'$')?;
        let end = start + len;
        if buf.len() < end + 2 {
            return None;
        }
        if i == 0 {
            name = String::from_utf8_lossy(&buf[start..end]).to_ascii_uppercase();
        }
        at = end + 2;
    }
    Some((at, name))
}

/// `<marker><digits>\r\n` at `at`: the number and where the next byte is.
fn line_number(buf: &[u8], at: usize, marker: u8) -> Option<(usize, usize)> {
    if buf.len() <= at {
        return None;
    }
    assert_eq!(
        buf[at], marker,
        "the client sent something that is not RESP"
    );
    let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
    let digits = std::str::from_utf8(&buf[at + 1..end]).ok()?;
    Some((digits.parse().ok()?, end + 2))
}
