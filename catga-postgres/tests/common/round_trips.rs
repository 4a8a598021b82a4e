//! Counts the round trips a client makes to Postgres: a proxy on a free loopback port that
//! passes bytes through both ways and, reading the client's side of the wire protocol, counts
//! every exchange the server answers: a simple `Query`, or a `Sync` that ends extended-protocol
//! messages (`Parse`, `Bind`, `Execute`, …).
//!
//! A `Sync` alone is not counted: it is sqlx's ping, which its pool sends when a connection
//! is returned to it, in a task of its own, after the caller got its answer (sqlx-core 0.9,
//! `pool/connection.rs`); it is the pool's health check, not a round trip on the caller's path.
//!
//! Frontend messages are a type byte and a big-endian length that counts itself (PostgreSQL
//! docs, "Message Formats"); the first ones (`SSLRequest`, `StartupMessage`) have no type byte.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `StartupMessage`'s protocol version 3.0: after it, every message has a type byte.
const PROTOCOL_3: u32 = 196_608;

/// A running proxy; connect to [`url`](Self::url). Stops when dropped.
pub struct RoundTrips {
    url: String,
    count: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RoundTrips {
    /// Proxies to the server of `url` (`postgres://user@host:port/db`).
    pub async fn start(url: &str) -> RoundTrips {
        let rest = url.split_once('@').map_or(url, |(_, rest)| rest);
        let (upstream, db) = rest.split_once('/').expect("url has a database");
        let user = url
            .split_once("://")
            .and_then(|(_, r)| r.split_once('@'))
            .map(|(user, _)| user)
            .expect("url has a user");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        let count = Arc::new(AtomicUsize::new(0));
        let upstream = upstream.to_string();
        let counted = Arc::clone(&count);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                tokio::spawn(pipe(client, server, Arc::clone(&counted)));
            }
        });
        RoundTrips {
            url: format!("postgres://{user}@127.0.0.1:{port}/{db}?sslmode=disable"),
            count,
            task,
        }
    }

    /// Where clients connect.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Round trips since the last call (or since the start).
    pub fn take(&self) -> usize {
        self.count.swap(0, Ordering::SeqCst)
    }
}

impl Drop for RoundTrips {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(client: TcpStream, server: TcpStream, count: Arc<AtomicUsize>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async move {
        let mut typed = false;
        let mut extended = false;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            // Whole messages only; a partial one waits for its rest.
            let mut at = 0;
            loop {
                let header = if typed { 5 } else { 4 };
                if buf.len() < at + header {
                    break;
                }
                let len_at = if typed { at + 1 } else { at };
                let len = u32::from_be_bytes(buf[len_at..len_at + 4].try_into().expect("4 bytes"))
                    as usize;
                let total = if typed { 1 + len } else { len };
                if buf.len() < at + total {
                    break;
                }
                if typed {
                    match buf[at] {
                        b'Q' => {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        b'S' => {
                            if extended {
                                count.fetch_add(1, Ordering::SeqCst);
                            }
                            extended = false;
                        }
                        _ => extended = true,
                    }
                } else if total >= 8
                    && u32::from_be_bytes(buf[at + 4..at + 8].try_into().expect("4 bytes"))
                        == PROTOCOL_3
                {
                    typed = true;
                }
                at += total;
            }
            if server_write.write_all(&buf[..at]).await.is_err() {
                return;
            }
            buf.drain(..at);
        }
    };
    let downstream = async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    };
    tokio::join!(upstream, downstream);
}
