//! The receiver: an HTTP/1.1 server on a loopback port, on a thread and runtime of its own.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tokio::sync::oneshot;

use super::span::{ReceivedSpan, text_attributes};

/// What has been received so far.
#[derive(Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    requests: usize,
}

type Shared = Arc<Mutex<Received>>;

/// An OTLP/HTTP receiver on `127.0.0.1` (a port of its own) that accepts
/// `POST /v1/traces` with a protobuf `ExportTraceServiceRequest` and keeps the spans.
///
/// It runs on a thread and a Tokio runtime of its own, so it outlives any test's runtime and
/// works from synchronous code; dropping it stops the server.
#[derive(Debug)]
pub struct OtlpReceiver {
    address: SocketAddr,
    received: Shared,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("spans", &self.spans.len())
            .field("requests", &self.requests)
            .finish()
    }
}

impl OtlpReceiver {
    /// Binds a free loopback port and starts serving.
    ///
    /// # Errors
    /// When the port, the runtime or the thread cannot be had.
    pub fn start() -> std::io::Result<OtlpReceiver> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let received = Shared::default();
        let (stop, stopped) = oneshot::channel();
        let state = received.clone();
        let thread = std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn(move || runtime.block_on(serve(listener, state, stopped)))?;
        Ok(OtlpReceiver {
            address,
            received,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The base URL to give an exporter (`http://127.0.0.1:<port>`; spans are posted to
    /// `/v1/traces` under it).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every span received so far, in the order received.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.lock().spans.clone()
    }

    /// How many export requests arrived (decodable or not).
    pub fn requests(&self) -> usize {
        self.lock().requests
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Received> {
        self.received.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    received: Shared,
    mut stopped: oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let received = received.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let received = received.clone();
                async move { Ok::<_, Infallible>(answer(request, &received).await) }
            });
            // A connection that breaks off is the exporter's business.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Records one export request and answers it as a collector does.
async fn answer(request: Request<Incoming>, received: &Shared) -> Response<Full<Bytes>> {
    if request.method() != Method::POST || request.uri().path() != "/v1/traces" {
        return status(StatusCode::NOT_FOUND);
    }
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return status(StatusCode::BAD_REQUEST),
    };
    let decoded = ExportTraceServiceRequest::decode(body);
    let mut received = received.lock().unwrap_or_else(PoisonError::into_inner);
    received.requests += 1;
    let Ok(export) = decoded else {
        return status(StatusCode::BAD_REQUEST);
    };
    for resource_spans in export.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| text_attributes(r.attributes))
            .unwrap_or_default();
        let service_name = resource.get("service.name").map(String::as_str);
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_spans.scope.map(|s| s.name).unwrap_or_default();
            for span in scope_spans.spans {
                received
                    .spans
                    .push(ReceivedSpan::from_proto(span, service_name, &scope));
            }
        }
    }
    // An empty `ExportTraceServiceResponse`: everything accepted.
    let mut response = Response::new(Full::new(Bytes::new()));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-protobuf"),
    );
    response
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}
