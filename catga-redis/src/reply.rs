//! A reply as it travels back through the reply list: one value, a tag byte then the body.
//!
//! `K` + the encoded reply for success; `E` + the [`RemoteFailure`] document for a failure,
//! so a handler error reaches the caller as the typed failure it was (its code, validation
//! field errors, details, retryability and doubt), not as a timeout.

use catga_core::transport::{RemoteFailure, Reply, TransportError};

const OK: u8 = b'K';
const ERR: u8 = b'E';

/// The reply as one list value.
pub(crate) fn encode(reply: &Reply) -> Vec<u8> {
    match reply {
        Reply::Ok(bytes) => {
            let mut out = Vec::with_capacity(bytes.len() + 1);
            out.push(OK);
            out.extend_from_slice(bytes);
            out
        }
        Reply::Err(failure) => {
            let document = failure.encode();
            let mut out = Vec::with_capacity(document.len() + 1);
            out.push(ERR);
            out.extend_from_slice(&document);
            out
        }
    }
}

/// Reads a list value back as a reply: [`TransportError::Protocol`] if it is not one (not
/// written by a catga server), [`TransportError::UnreadableReply`] for a failure that cannot
/// be read.
pub(crate) fn decode(key: &str, frame: &[u8]) -> Result<Reply, TransportError> {
    match frame.split_first() {
        Some((&OK, body)) => Ok(Reply::Ok(body.to_vec())),
        Some((&ERR, body)) => RemoteFailure::decode(body)
            .map(Reply::Err)
            .map_err(TransportError::UnreadableReply),
        _ => Err(TransportError::Protocol(format!(
            "the reply in `{key}` is not a catga reply"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_round_trip() {
        let mut coded = RemoteFailure::new("orders.out_of_stock", "no courier\nfor order 9");
        coded.details = Some(serde_json::json!({ "order": 9 }));
        let cases = [
            Reply::Ok(Vec::new()),
            Reply::Ok(b"{\"id\":4}\n\xff".to_vec()),
            Reply::Err(coded),
            Reply::Err(RemoteFailure::new("timeout", "").with_in_doubt(true)),
        ];
        for reply in cases {
            assert_eq!(decode("k", &encode(&reply)).unwrap(), reply, "{reply:?}");
        }
    }

    #[test]
    fn what_is_not_a_reply_is_refused() {
        for frame in [
            &b""[..],
            b"X",
            b"E",
            b"Ehandler\n0\nmsg",
            b"E\xff\n1\nmsg",
            b"E{}",
        ] {
            assert!(decode("k", frame).is_err(), "{frame:?}");
        }
    }
}
