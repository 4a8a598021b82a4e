//! Finding the stored events the client cannot read, and setting them aside.
//!
//! An event whose header block async-nats refuses (see [`header_block`](crate::header_block))
//! never reaches catga: the client drops its connection when the server delivers it, and
//! reconnects. The server then counts it as delivered and unacknowledged, and would deliver it
//! again after the acknowledgement wait, costing a reconnection each time. So after a
//! reconnection to the same server (a restarted server has a new id, and did not drop the
//! connection over a message), each consumer reads the events its durable delivered but that
//! were not acknowledged (between its acknowledgement floor and its last delivered sequence)
//! through the JetStream JSON API, where the headers travel base64-encoded and the client's
//! parser is never involved. One the client would refuse is kept in the application's
//! dead-letter store, raw headers and body as stored, and terminated for this consumer.

use async_nats::jetstream::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use catga_core::transport::{Disposition, Inbound, Rejected};
use serde::{Deserialize, Serialize};

use super::Shared;
use crate::header_block;

/// The most stored events read in one scan: bounds the work after a reconnection. What is
/// left is read at a later reconnection (the floor moves up as events are acknowledged).
pub(crate) const SCAN_LIMIT: u64 = 1024;

/// `$JS.API.STREAM.MSG.GET`'s request: the first message at or after `seq` on `next_by_subj`.
#[derive(Serialize)]
struct GetNext<'a> {
    seq: u64,
    next_by_subj: &'a str,
}

#[derive(Deserialize)]
struct GetResponse {
    message: Stored,
}

/// A stored message as the JSON API returns it.
#[derive(Deserialize)]
struct Stored {
    subject: String,
    seq: u64,
    /// The header block, base64.
    #[serde(default)]
    hdrs: Option<String>,
    /// The body, base64.
    #[serde(default)]
    data: Option<String>,
}

/// One consumer's view for a scan.
pub(crate) struct Scan<'a> {
    pub shared: &'a Shared,
    pub durable: &'a str,
    /// The subject the durable filters.
    pub subject: &'a str,
    /// The event's wire name.
    pub event: &'a str,
    pub inbound: &'a dyn Inbound,
}

impl Scan<'_> {
    /// Reads the events after `ack_floor` up to `delivered` and sets aside those the client
    /// cannot read; returns how many it set aside.
    pub async fn run(&self, ack_floor: u64, delivered: u64) -> usize {
        let mut next = ack_floor.saturating_add(1);
        let mut read = 0;
        let mut set_aside = 0;
        while next <= delivered {
            if read == SCAN_LIMIT {
                tracing::debug!(target: "catga::nats", consumer = %self.durable, from = next,
                    to = delivered, "stopped reading unacknowledged events at the scan limit");
                break;
            }
            let Some(stored) = self.get(next).await else {
                break;
            };
            if stored.seq > delivered {
                break;
            }
            read += 1;
            next = stored.seq.saturating_add(1);
            let headers = stored.hdrs.as_deref().map(|text| STANDARD.decode(text));
            let Some(Ok(headers)) = headers else { continue };
            if let Some(why) = header_block::refused(&headers)
                && self.set_aside(stored, headers, why).await
            {
                set_aside += 1;
            }
        }
        set_aside
    }

    /// The first stored event at or after `seq` on the consumer's subject.
    async fn get(&self, seq: u64) -> Option<Stored> {
        let subject = format!("STREAM.MSG.GET.{}", self.shared.stream);
        let request = GetNext {
            seq,
            next_by_subj: self.subject,
        };
        match self
            .shared
            .jetstream
            .request::<_, _, Response<GetResponse>>(subject, &request)
            .await
        {
            Ok(Response::Ok(found)) => Some(found.message),
            // 10037: no message at or after `seq`.
            Ok(Response::Err { error }) if error.error_code().0 == 10037 => None,
            Ok(Response::Err { error }) => {
                tracing::debug!(target: "catga::nats", error = %error, seq, "could not read a stored event");
                None
            }
            Err(error) => {
                tracing::debug!(target: "catga::nats", error = %error, seq, "could not read a stored event");
                None
            }
        }
    }

    /// Keeps `stored` in the dead-letter store and terminates it for this consumer; whether
    /// both happened.
    async fn set_aside(&self, stored: Stored, headers: Vec<u8>, why: &str) -> bool {
        let payload = stored
            .data
            .as_deref()
            .and_then(|text| STANDARD.decode(text).ok())
            .unwrap_or_default();
        let source = format!(
            "nats stream {} seq {} ({})",
            self.shared.stream, stored.seq, stored.subject
        );
        tracing::warn!(target: "catga::nats", source = %source, consumer = %self.durable, why,
            "a stored event the NATS client cannot read (it dropped the connection when it was delivered) is set aside");
        let rejected = Rejected {
            source,
            name: Some(self.event.to_string()),
            raw_headers: Some(headers),
            payload,
            reason: format!("{why}: the NATS client drops its connection on receiving it"),
        };
        if self.inbound.reject(rejected).await != Disposition::Terminate {
            // Not kept: it stays with the server, to be found again.
            return false;
        }
        self.terminate(stored.seq).await
    }

    /// `+TERM` for the stream sequence `seq`, published to the consumer's acknowledgement
    /// subject as the server would have written it. The server finds the pending delivery by
    /// its stream sequence (the delivery count and consumer sequence written here are not
    /// read for a pending message).
    async fn terminate(&self, seq: u64) -> bool {
        let subject = format!(
            "$JS.ACK.{}.{}.1.{seq}.1.0.0",
            self.shared.stream, self.durable
        );
        // A request, so the server confirms it processed the termination.
        let confirmed = tokio::time::timeout(
            self.shared.config.response_timeout,
            self.shared.client.request(subject, "+TERM".into()),
        )
        .await;
        match confirmed {
            Ok(Ok(_)) => true,
            Ok(Err(error)) => {
                tracing::warn!(target: "catga::nats", consumer = %self.durable, seq, error = %error,
                    "could not terminate an unreadable event; it is delivered again after the acknowledgement wait");
                false
            }
            Err(_) => {
                tracing::warn!(target: "catga::nats", consumer = %self.durable, seq,
                    "the server did not confirm terminating an unreadable event");
                false
            }
        }
    }
}
