//! Key names: everything the transport stores lives under one prefix, so several
//! applications (or test runs) share a server without meeting, and `redis-cli --scan
//! --pattern 'prefix:*'` shows all of it.

use uuid::Uuid;

/// The stream field that holds the encoded message. Under catga's reserved `catga-` prefix,
/// so no user header can collide with it, and `Envelope::from_headers` ignores it.
pub(crate) const PAYLOAD_FIELD: &str = "catga-payload";

/// The stream field of a request that names the list its reply goes to.
pub(crate) const REPLY_TO_FIELD: &str = "catga-reply-to";

/// Builds the transport's key names.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// The stream of an event: every service that handles it is a consumer group on it.
    pub fn events(&self, name: &str) -> String {
        format!("{}:events:{name}", self.prefix)
    }

    /// The stream of a command or query: the one service that handles it consumes it.
    pub fn requests(&self, name: &str) -> String {
        format!("{}:requests:{name}", self.prefix)
    }

    /// Whether `key` is a reply list of this prefix: a server answers only there, so an entry
    /// written by someone else cannot make it push to an arbitrary key.
    pub fn is_reply(&self, key: &str) -> bool {
        key.strip_prefix(self.prefix.as_str())
            .is_some_and(|rest| rest.starts_with(":replies:"))
    }

    /// A fresh list for one request's reply, sent on `stream`. A new id per call, so a late
    /// reply to an earlier attempt can never be taken for this one's. Its hash tag is the
    /// request stream's name, `{prefix}:replies:{{prefix}:requests:{name}}:{id}`, so on a
    /// Redis Cluster the list is in the stream's slot: the serving instance pushes the reply
    /// and acknowledges the request in one transaction there. (A stream name holds no
    /// braces: the prefix and wire names cannot.)
    pub fn reply(&self, stream: &str) -> String {
        format!(
            "{}:replies:{{{stream}}}:{}",
            self.prefix,
            Uuid::now_v7().simple()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_under_the_prefix_and_replies_are_unique() {
        let keys = Keys::new("shop");
        assert_eq!(keys.events("OrderPlaced"), "shop:events:OrderPlaced");
        assert_eq!(keys.requests("orders.place"), "shop:requests:orders.place");
        let stream = keys.requests("orders.place");
        let (a, b) = (keys.reply(&stream), keys.reply(&stream));
        assert!(
            a.starts_with("shop:replies:{shop:requests:orders.place}:"),
            "{a}"
        );
        assert_eq!(
            crate::connection::key_slot(a.as_bytes()),
            crate::connection::key_slot(stream.as_bytes()),
            "a reply list is in its request stream's slot"
        );
        assert_ne!(a, b);
        assert!(keys.is_reply(&a));
        assert!(!keys.is_reply("shop:events:OrderPlaced"));
        assert!(!keys.is_reply("other:replies:1"));
        assert!(!keys.is_reply("shopping:replies:1"));
    }
}
