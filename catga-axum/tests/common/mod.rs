//! A real server on loopback and a client that speaks to it, for the tests of every file.

#![allow(dead_code, reason = "each test binary uses a part")]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A server running `router` on 127.0.0.1, on a port of its own, until the test ends.
pub struct Server {
    addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Server {
    pub async fn start(router: Router) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("the bound address");
        tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve");
        });
        let client = Client::builder(TokioExecutor::new()).build_http();
        Server { addr, client }
    }

    /// Sends `method path` with `headers` and `body`, and reads the whole response.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body.into()))
            .expect("a well-formed request");
        let response = self.client.request(request).await.expect("a response");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("the body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// `POST path` with a JSON body and `headers`.
    pub async fn post_json(&self, path: &str, json: &str, headers: &[(&str, &str)]) -> Reply {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.send(Method::POST, path, &all, json.to_string()).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    /// Writes `head` (the request line and headers, each line ending in CRLF, without the
    /// blank line that ends them) and then `body` as they are, on a connection of its own,
    /// and reads what the server answers within `wait`: until it closes the connection, or
    /// until `wait` passes with no more bytes (what came by then is returned). For what a
    /// client library will not send: a `Content-Length` the body does not have, `Expect:
    /// 100-continue`, chunks written by hand.
    pub async fn raw(&self, head: &str, body: &[u8], wait: Duration) -> String {
        let mut stream = TcpStream::connect(self.addr).await.expect("connect");
        let head = format!("{head}Host: {}\r\n\r\n", self.addr);
        stream
            .write_all(head.as_bytes())
            .await
            .expect("write the head");
        stream.write_all(body).await.expect("write the body");
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(Ok(read)) = tokio::time::timeout(wait, stream.read(&mut buffer)).await {
            if read == 0 {
                break;
            }
            received.extend_from_slice(&buffer[..read]);
        }
        String::from_utf8_lossy(&received).into_owned()
    }
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// The body as JSON, after checking the status and that the body is `application/json`.
    pub fn json(&self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.content_type(), Some("application/json"));
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// The body as a problem, after checking the status, the media type, and the members
    /// every problem has: `type`, `title`, `status` (equal to the response's) and `code`.
    pub fn problem(&self, status: StatusCode, code: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.content_type(), Some("application/problem+json"));
        let problem: Value = serde_json::from_slice(&self.body).expect("a JSON problem");
        assert_eq!(problem["type"], "about:blank", "{problem}");
        assert_eq!(
            problem["title"].as_str(),
            status.canonical_reason(),
            "{problem}"
        );
        assert_eq!(problem["status"], status.as_u16(), "{problem}");
        assert_eq!(problem["code"], code, "{problem}");
        problem
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}
