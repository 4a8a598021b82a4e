//! The Redis key of a [`ReplyKey`], and the escaping that keeps user text from changing the
//! shape or the slot of a key.
//!
//! `<prefix>:idempotency:<message>:<handler>:<kind>:<id>`, each part escaped by [`escape`]:
//!
//! * `<handler>` is `-` for a command or query (a handler named `-` is written `%2D`);
//! * `<kind>` is `id` for a message id (`<id>` its hyphenated UUID) or `key` for a declared
//!   key (`<id>` the key as declared).
//!
//! Escaping makes the parts' boundaries unambiguous (no part holds a `:` once escaped, so two
//! different keys never meet in one Redis key) and leaves no `{` or `}` in the key (the prefix
//! has none either), so no user text can make a hash tag that would pin keys to one Cluster
//! slot: a key's slot is that of the whole key.

use catga_core::store::idempotency::{KeyId, ReplyKey};

/// `text` with `%`, `:`, `{`, `}`, space and ASCII control characters written as `%XX`
/// (upper-case hex), every other byte as it is: `orders.place` stays readable,
/// `shop::mail` becomes `shop%3A%3Amail`. The dead-letter store's scripts escape message names
/// the same way in Lua (`[%%:{}%c ]`), so both must change together.
pub(crate) fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    let special = |b: u8| matches!(b, b'%' | b':' | b'{' | b'}' | b' ') || b.is_ascii_control();
    if !text.bytes().any(special) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match u8::try_from(c) {
            Ok(b) if special(b) => {
                out.push('%');
                out.push(hex(b >> 4));
                out.push(hex(b & 0xf));
            }
            _ => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

fn hex(nibble: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(nibble & 0xf)])
}

/// The Redis key of `key` under `prefix` (see the [module docs](self)).
pub(crate) fn redis_key(prefix: &str, key: &ReplyKey) -> String {
    let handler = match key.handler {
        None => std::borrow::Cow::Borrowed("-"),
        Some("-") => std::borrow::Cow::Borrowed("%2D"),
        Some(handler) => escape(handler),
    };
    let message = escape(key.message);
    match &key.id {
        KeyId::MessageId(id) => format!("{prefix}:idempotency:{message}:{handler}:id:{id}"),
        KeyId::Declared(text) => {
            format!(
                "{prefix}:idempotency:{message}:{handler}:key:{}",
                escape(text)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn key(message: &'static str, handler: Option<&'static str>, id: KeyId) -> ReplyKey {
        ReplyKey {
            message,
            handler,
            id,
        }
    }

    #[test]
    fn keys_are_readable() {
        let id = Uuid::nil();
        assert_eq!(
            redis_key("shop", &key("orders.place", None, KeyId::MessageId(id))),
            "shop:idempotency:orders.place:-:id:00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(
            redis_key(
                "shop",
                &key(
                    "orders.placed",
                    Some("shop::mail"),
                    KeyId::Declared("checkout-7".into())
                )
            ),
            "shop:idempotency:orders.placed:shop%3A%3Amail:key:checkout-7"
        );
    }

    #[test]
    fn user_text_cannot_make_two_keys_meet_or_add_a_hash_tag() {
        let declared = |handler, text: &str| {
            redis_key("p", &key("m", handler, KeyId::Declared(text.to_string())))
        };
        // Unescaped, both would be `p:idempotency:m:h:key:x:key:y`.
        assert_ne!(
            declared(Some("h:key:x"), "y"),
            declared(Some("h"), "x:key:y")
        );
        assert_ne!(declared(None, "a"), declared(Some("-"), "a"));
        // A declared key equal to a message id's text is another key.
        let id = Uuid::now_v7();
        assert_ne!(
            redis_key("p", &key("m", None, KeyId::MessageId(id))),
            declared(None, &id.to_string())
        );
        let braced = declared(Some("{h}"), "{tag}:%20 \u{7f}é");
        assert!(!braced.contains('{') && !braced.contains('}'), "{braced}");
        assert!(
            braced.ends_with(":key:%7Btag%7D%3A%2520%20%7Fé"),
            "{braced}"
        );
    }
}
