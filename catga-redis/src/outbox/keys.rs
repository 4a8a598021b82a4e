//! The outbox's key layout. Every key starts with one Redis Cluster hash tag, `{P:outbox}`,
//! so the commit script and the relay's scripts each touch a single slot:
//!
//! | key | what |
//! |---|---|
//! | `{P:outbox}:stream` | the committed, unpublished events, one stream entry each |
//! | `{P:outbox}:key:<ordering key>` | per ordering key, the entry ids in commit order |
//! | `{P:outbox}:claims` | entry id → lease expiry (Unix ms), while a relay publishes it |
//! | `{P:outbox}:inbox:<handler>:<message id>` | a handled message's record and reply |
//! | `{P:outbox}:<anything else>` | the handlers' own keys ([`RedisWrites::key`](super::RedisWrites::key)) |
//!
//! The wake-up channel is `{P:outbox}:notify` (a channel, not a key).

use uuid::Uuid;

/// The stream field that holds an entry's escaped ordering key (the suffix of its key list).
/// Under catga's reserved `catga-` prefix, so `Envelope::from_headers` ignores it.
pub(crate) const ORDERING_FIELD: &str = "catga-outbox-key";

/// The names of one outbox's keys.
#[derive(Clone, Debug)]
pub(crate) struct OutboxKeys {
    /// `{P:outbox}`.
    tag: String,
    pub(crate) stream: String,
    pub(crate) claims: String,
    pub(crate) notify: String,
    /// `{P:outbox}:key:`, what an ordering key's list starts with.
    pub(crate) list_prefix: String,
    /// `{P:outbox}:inbox:`.
    inbox_prefix: String,
}

impl OutboxKeys {
    /// The keys of the outbox under `tag` (`{P:outbox}`, from `StoreConn::tag`).
    pub(crate) fn new(tag: String) -> OutboxKeys {
        OutboxKeys {
            stream: format!("{tag}:stream"),
            claims: format!("{tag}:claims"),
            notify: format!("{tag}:notify"),
            list_prefix: format!("{tag}:key:"),
            inbox_prefix: format!("{tag}:inbox:"),
            tag,
        }
    }

    /// A handler's own key: `{P:outbox}:<suffix>`.
    pub(crate) fn user(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.tag)
    }

    /// The list of the entries of an ordering key.
    pub(crate) fn list(&self, escaped_key: &str) -> String {
        format!("{}{escaped_key}", self.list_prefix)
    }

    /// The inbox record of `message_id` for `handler`.
    pub(crate) fn inbox(&self, handler: &str, message_id: Uuid) -> String {
        format!("{}{handler}:{}", self.inbox_prefix, message_id.simple())
    }

    /// Whether `key` is one the outbox itself writes: a handler's write there would corrupt it.
    pub(crate) fn is_reserved(&self, key: &str) -> bool {
        key == self.stream
            || key == self.claims
            || key.starts_with(&self.list_prefix)
            || key.starts_with(&self.inbox_prefix)
    }
}

/// An ordering key as a key suffix: letters, digits and `-_.:` stay, every other byte is
/// `%XX`, so a key shows readably in `redis-cli` and never holds spaces, braces or newlines.
pub(crate) fn escape(ordering_key: &str) -> String {
    let mut out = String::with_capacity(ordering_key.len());
    for byte in ordering_key.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_shares_the_tag_and_reserved_keys_are_recognised() {
        let keys = OutboxKeys::new("{shop:outbox}".to_string());
        assert_eq!(keys.stream, "{shop:outbox}:stream");
        assert_eq!(keys.list("abc"), "{shop:outbox}:key:abc");
        assert_eq!(keys.user("orders:7"), "{shop:outbox}:orders:7");
        let id = Uuid::nil();
        assert!(keys.inbox("h", id).starts_with("{shop:outbox}:inbox:h:"));
        assert!(keys.is_reserved(&keys.stream));
        assert!(keys.is_reserved(&keys.claims));
        assert!(keys.is_reserved(&keys.list("x")));
        assert!(keys.is_reserved(&keys.inbox("h", id)));
        assert!(!keys.is_reserved(&keys.user("orders:7")));
        assert!(!keys.is_reserved("{shop:outbox}:streams"));
    }

    #[test]
    fn escaping_keeps_readable_keys_and_encodes_the_rest() {
        assert_eq!(escape("order-7_a.b:c"), "order-7_a.b:c");
        assert_eq!(escape("a b{c}%"), "a%20b%7Bc%7D%25");
        assert_eq!(escape("é"), "%C3%A9");
        assert_ne!(escape("a%20"), escape("a "));
    }
}
