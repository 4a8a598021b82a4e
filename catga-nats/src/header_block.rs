//! Header blocks the NATS client cannot read.
//!
//! async-nats reads a message's header block (`NATS/1.0\r\nName: value\r\n…\r\n\r\n`) while it
//! reads the connection, and a block it cannot parse is an I/O error to it: it drops the whole
//! connection, shared by every consumer, responder and publisher of the process, and
//! reconnects. Any NATS client can publish such a block (the server does not check headers),
//! so one stored event could cost a reconnection at each of its deliveries. The consumers find
//! such events in the stream instead, where the server returns them base64-encoded inside JSON
//! and the client's parser is never involved, and set them aside ([`refused`] says which).
//!
//! The rules are async-nats 0.51's (`Connection::try_read_op`, the `HMSG` branch), with its own
//! parsers for status codes and header names, so the check refuses exactly what the client
//! refuses: a block that is not UTF-8, a first line that does not start with `NATS/1.0` or
//! carries a status that is not three digits, a non-empty line without `:` that does not
//! continue the previous value, or a header name the client's `HeaderName` refuses.

use std::str::FromStr;

use async_nats::{HeaderName, StatusCode};

/// Why async-nats would drop its connection on receiving a message with this header block, or
/// `None` when it reads the block.
pub(crate) fn refused(block: &[u8]) -> Option<&'static str> {
    let Ok(text) = std::str::from_utf8(block) else {
        return Some("the header block is not UTF-8");
    };
    let mut lines = text.lines().peekable();
    let Some(version) = lines.next() else {
        return Some("the header block has no version line");
    };
    let Some(rest) = version.strip_prefix("NATS/1.0").map(str::trim) else {
        return Some("the header block does not start with `NATS/1.0`");
    };
    let status = rest
        .split_once(' ')
        .map_or(rest, |(status, _)| status.trim());
    if !status.is_empty() && StatusCode::from_str(status).is_err() {
        return Some("the header block's status is not a three-digit code");
    }
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let Some((name, _)) = line.split_once(':') else {
            return Some("a header line has no `:`");
        };
        if HeaderName::from_str(name).is_err() {
            return Some("a header name is not a valid NATS header name");
        }
        // A value may continue on lines that start with whitespace.
        while lines
            .next_if(|next| next.starts_with(char::is_whitespace))
            .is_some()
        {}
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_are_judged_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = refused(&bytes);
        }

        /// What any client writes through a header API (printable names without `:`, values
        /// without line breaks) is read.
        #[test]
        fn blocks_of_valid_headers_are_read(
            headers in proptest::collection::vec(("[!-9;-~]{1,16}", "[ -~]{0,32}"), 0..8)
        ) {
            let mut block = "NATS/1.0\r\n".to_string();
            for (name, value) in &headers {
                block.push_str(&format!("{name}: {value}\r\n"));
            }
            block.push_str("\r\n");
            prop_assert_eq!(refused(block.as_bytes()), None);
        }

        #[test]
        fn a_value_with_a_byte_that_is_not_utf8_is_refused(
            name in "[a-z]{1,8}",
            value in "[a-z]{0,8}",
            bad in 0x80u8..=0xff,
        ) {
            let mut block = format!("NATS/1.0\r\n{name}: {value}").into_bytes();
            block.push(bad);
            block.extend_from_slice(b"\r\n\r\n");
            prop_assert!(refused(&block).is_some());
        }
    }

    #[test]
    fn blocks_the_client_reads_are_not_refused() {
        for block in [
            &b"NATS/1.0\r\n\r\n"[..],
            b"NATS/1.0\r\nNats-Msg-Id: 1\r\n\r\n",
            b"NATS/1.0\r\nA: b\r\nA: c\r\n\r\n",
            b"NATS/1.0\r\nA:\r\n\r\n",
            b"NATS/1.0\r\nA: folded\r\n  value\r\n\r\n",
            b"NATS/1.0 503\r\n\r\n",
            b"NATS/1.0 408 Request Timeout\r\n\r\n",
            "NATS/1.0\r\nA: caf\u{e9}\r\n\r\n".as_bytes(),
        ] {
            assert_eq!(refused(block), None, "{:?}", String::from_utf8_lossy(block));
        }
    }

    #[test]
    fn blocks_the_client_drops_its_connection_on_are_refused() {
        for block in [
            &b"NATS/1.0\r\nx-bin: \xc3\x28\r\n\r\n"[..],
            b"NATS/1.0\r\nno colon here\r\n\r\n",
            b"HTTP/1.1\r\n\r\n",
            b"",
            b"NATS/1.0 20x\r\n\r\n",
            b"NATS/1.0\r\nbad name: x\r\n\r\n",
        ] {
            assert!(
                refused(block).is_some(),
                "{:?}",
                String::from_utf8_lossy(block)
            );
        }
    }
}
