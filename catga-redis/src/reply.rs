//! A reply as it travels back through the reply list: one value, a tag byte then the body.
//!
//! `K` + the encoded reply for success; `E` + `code`, `\n`, `1`/`0` (retryable), `\n`, then the
//! message for a failure, so a handler error reaches the caller as the typed
//! [`RemoteFailure`] it was, not as a timeout. The error code is a stable identifier without
//! newlines, and the message comes last, so it may contain anything.

use catga_core::transport::{RemoteFailure, Reply};

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
            let mut out = Vec::with_capacity(failure.code.len() + failure.message.len() + 5);
            out.push(ERR);
            // A code is a stable identifier; should one ever hold a newline, it must not be
            // able to shift the fields.
            out.extend(failure.code.bytes().filter(|b| *b != b'\n'));
            out.push(b'\n');
            out.push(if failure.retryable { b'1' } else { b'0' });
            out.push(b'\n');
            out.extend_from_slice(failure.message.as_bytes());
            out
        }
    }
}

/// Reads a list value back as a reply; `None` if it is not one (not written by a catga
/// server).
pub(crate) fn decode(frame: &[u8]) -> Option<Reply> {
    let (&tag, body) = frame.split_first()?;
    match tag {
        OK => Some(Reply::Ok(body.to_vec())),
        ERR => {
            let mut parts = body.splitn(3, |b| *b == b'\n');
            let code = std::str::from_utf8(parts.next()?).ok()?;
            let retryable = match parts.next()? {
                b"1" => true,
                b"0" => false,
                _ => return None,
            };
            let message = String::from_utf8_lossy(parts.next()?).into_owned();
            Some(Reply::Err(RemoteFailure {
                code: code.to_string(),
                message,
                retryable,
            }))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_round_trip() {
        let cases = [
            Reply::Ok(Vec::new()),
            Reply::Ok(b"{\"id\":4}\n\xff".to_vec()),
            Reply::Err(RemoteFailure {
                code: "handler".into(),
                message: "no courier\nfor order 9".into(),
                retryable: false,
            }),
            Reply::Err(RemoteFailure {
                code: "timeout".into(),
                message: String::new(),
                retryable: true,
            }),
        ];
        for reply in cases {
            assert_eq!(decode(&encode(&reply)), Some(reply.clone()), "{reply:?}");
        }
    }

    #[test]
    fn what_is_not_a_reply_is_refused() {
        for frame in [
            &b""[..],
            b"X",
            b"E",
            b"Ehandler",
            b"Ehandler\n",
            b"Ehandler\nyes\nmsg",
            b"E\xff\n1\nmsg",
        ] {
            assert_eq!(decode(frame), None, "{frame:?}");
        }
    }
}
