//! Pull requests on a durable consumer, on a subscription the consumer owns.
//!
//! async-nats' own batch reads a pull's messages on an inbox it creates and unsubscribes when
//! the batch is dropped: messages the server sent just before are then lost until their
//! acknowledgement wait ends, a status the batch does not know (the consumer was deleted) ends
//! it as an error, and an idle heartbeat stalls it. Here one inbox serves every pull of the
//! consumer: [`Puller::request`] asks for a batch, [`Puller::next`] says what arrived (a
//! delivery, or the end of the pull and why), and [`Puller::drain`] stops the subscription so
//! that the server sends nothing more and every message it already sent is still received
//! (to be handed back).

use std::time::Duration;

use async_nats::jetstream;
use async_nats::{Client, StatusCode, Subject, Subscriber};
use bytes::Bytes;
use futures::StreamExt;

/// What arrived on a consumer's inbox.
#[derive(Debug)]
// Moved once, into the event's task; boxing would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Arrival {
    /// One delivery of an event, with its acknowledgement subject.
    Delivery(jetstream::Message),
    /// The pull request is over.
    End(End),
}

/// Why a pull request ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Its time ran out (or there was nothing to deliver).
    Expired,
    /// The server deleted the consumer.
    ConsumerGone,
    /// The server refused the pull (too many waiting, a batch too large, …): its words.
    Refused(String),
}

/// A consumer's pull requests and the inbox their messages arrive on.
#[derive(Debug)]
pub(crate) struct Puller {
    client: Client,
    /// `$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}`.
    next_subject: Subject,
    inbox: Subject,
    subscriber: Subscriber,
    context: jetstream::Context,
}

impl Puller {
    /// Subscribes the inbox of `durable`'s pulls.
    pub async fn new(
        context: &jetstream::Context,
        stream: &str,
        durable: &str,
    ) -> Result<Puller, async_nats::SubscribeError> {
        let client = context.client();
        let inbox = Subject::from(client.new_inbox());
        let subscriber = client.subscribe(inbox.clone()).await?;
        Ok(Puller {
            next_subject: Subject::from(format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}")),
            client,
            inbox,
            subscriber,
            context: context.clone(),
        })
    }

    /// Asks the server for up to `batch` events, waiting up to `expires` for them.
    pub async fn request(
        &self,
        batch: usize,
        expires: Duration,
    ) -> Result<(), async_nats::PublishError> {
        let expires = u64::try_from(expires.as_nanos()).unwrap_or(u64::MAX);
        let body = format!("{{\"batch\":{batch},\"expires\":{expires}}}");
        self.client
            .publish_with_reply(
                self.next_subject.clone(),
                self.inbox.clone(),
                Bytes::from(body),
            )
            .await
    }

    /// The next delivery or end of pull; `None` once the subscription is closed (the client
    /// was closed, or after [`drain`](Puller::drain)).
    pub async fn next(&mut self) -> Option<Arrival> {
        loop {
            let message = self.subscriber.next().await?;
            if let Some(arrival) = classify(message, &self.context) {
                return Some(arrival);
            }
        }
    }

    /// Stops the subscription: the server sends nothing more, and what it sent before is
    /// handed to `give_back`, until the server confirmed (bounded by `limit`, as the server
    /// may be gone).
    pub async fn drain(
        mut self,
        limit: Duration,
        mut give_back: impl AsyncFnMut(jetstream::Message),
    ) {
        if let Err(e) = self.subscriber.drain().await {
            tracing::debug!(target: "catga::nats", error = %e, "could not stop a pull subscription");
            return;
        }
        let rest = async {
            while let Some(arrival) = self.next().await {
                if let Arrival::Delivery(message) = arrival {
                    give_back(message).await;
                }
            }
        };
        if tokio::time::timeout(limit, rest).await.is_err() {
            tracing::debug!(target: "catga::nats",
                "the server did not confirm the end of a pull subscription; stopped waiting");
        }
    }
}

/// What a message on a pull inbox is. A stored event is recognised by its acknowledgement
/// subject, whatever its header block says (a stored message may carry a status line of its
/// own); anything else is the server speaking about the pull.
fn classify(message: async_nats::Message, context: &jetstream::Context) -> Option<Arrival> {
    if message
        .reply
        .as_ref()
        .is_some_and(|reply| reply.starts_with("$JS.ACK."))
    {
        return Some(Arrival::Delivery(jetstream::Message {
            message,
            context: context.clone(),
        }));
    }
    let Some(status) = message.status else {
        tracing::debug!(target: "catga::nats", subject = %message.subject,
            "a message without an acknowledgement subject on a pull inbox; ignored");
        return None;
    };
    let end = match status {
        StatusCode::IDLE_HEARTBEAT => return None,
        StatusCode::NOT_FOUND | StatusCode::TIMEOUT => End::Expired,
        _ => {
            let description = message.description.unwrap_or_default();
            if description
                .to_ascii_lowercase()
                .contains("consumer deleted")
            {
                End::ConsumerGone
            } else {
                End::Refused(format!("{status} {description}"))
            }
        }
    };
    Some(Arrival::End(end))
}
