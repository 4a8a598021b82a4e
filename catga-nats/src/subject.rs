//! Naming: how wire names become NATS subjects, durable consumer names and the stream name.
//!
//! Events travel on `{prefix}.events.{wire name}`, requests on `{prefix}.requests.{wire name}`.
//! A wire name is written into the subject as it is when it can be: letters, digits and
//! `_ - : /` are kept, and a `.` is kept as a token separator, so `orders.placed` is the
//! subject `catga.events.orders.placed` and `nats sub 'catga.events.orders.>'` works. What a
//! subject cannot hold is escaped as `%XX` (the hex of each UTF-8 byte): whitespace, the
//! wildcards `*` and `>`, `%` itself, other characters, and a `.` that would leave an empty
//! token (a leading, trailing or doubled dot). The empty name is `%`. Because `%` always starts
//! an escape, two different wire names never share a subject.
//!
//! Durable consumer and stream names cannot contain `.`, wildcards, whitespace or path
//! separators, so they use a stricter form: letters and digits are kept and every other byte
//! is `_XX`; the service and the event are joined with `-`. A name longer than
//! [`MAX_NAME`] keeps its first part and ends with a hash of the whole, so it stays unique.

use crate::subject_cache::SubjectCache;

/// The longest durable consumer or stream name produced (the server stores each as a file
/// name, which is limited to 255 bytes).
pub(crate) const MAX_NAME: usize = 200;

fn is_literal(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '/')
}

fn escape_into(out: &mut String, c: char, marker: char) {
    let mut buf = [0u8; 4];
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in c.encode_utf8(&mut buf).bytes() {
        out.push(marker);
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xF)]));
    }
}

/// A wire name as the last tokens of a subject (see the [module docs](self)).
pub(crate) fn encode_wire_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    push_wire_name(&mut out, name);
    out
}

/// [`encode_wire_name`] appended to `out`: a subject is built with one allocation, which the
/// publish path pays for every message.
fn push_wire_name(out: &mut String, name: &str) {
    // The usual name (`OrderPlaced`, `orders:placed`) has nothing to escape and no dots.
    if !name.is_empty() && name.chars().all(is_literal) {
        out.push_str(name);
        return;
    }
    if name.is_empty() {
        out.push('%');
        return;
    }
    let mut chars = name.chars().peekable();
    let mut first = true;
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        let separator = c == '.' && !first && next.is_some_and(|n| n != '.');
        if is_literal(c) || separator {
            out.push(c);
        } else {
            escape_into(out, c, '%');
        }
        first = false;
    }
}

/// A name made of letters, digits and `_XX` escapes: safe as a durable consumer or stream
/// name, and never containing `-`, which joins such parts.
fn encode_strict(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for c in part.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            escape_into(&mut out, c, '_');
        }
    }
    out
}

/// FNV-1a: a hash every process computes the same way (the instances of a service must agree
/// on their durable consumer's name), unlike std's randomly seeded hasher.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn bounded(name: String) -> String {
    if name.len() <= MAX_NAME {
        return name;
    }
    let hash = format!("-{:016x}", fnv1a(&name));
    // Escapes and letters are ASCII, so any byte index is a character boundary.
    let keep = MAX_NAME - hash.len();
    format!("{}{hash}", &name[..keep])
}

/// The durable consumer a service's instances share for one event.
pub(crate) fn durable_name(service: &str, event: &str) -> String {
    bounded(format!(
        "{}-{}",
        encode_strict(service),
        encode_strict(event)
    ))
}

/// The stream name used when none is configured: derived from the prefix, so two prefixes
/// never share a stream by accident.
pub(crate) fn default_stream_name(prefix: &str) -> String {
    bounded(format!("{}-events", encode_strict(prefix)))
}

/// Checks a subject prefix: dot-separated tokens, each non-empty, without whitespace,
/// control characters or the wildcards `*` and `>` (NATS subject rules).
///
/// # Errors
/// Why the prefix cannot start a subject.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.split('.').any(str::is_empty) {
        return Err(
            "a subject token is empty (a blank prefix, or a leading, trailing or doubled \
             `.`)\nhelp: use dot-separated tokens, such as `catga` or `shop.prod`",
        );
    }
    let bad = |c: char| c.is_whitespace() || c.is_control() || c == '*' || c == '>';
    if prefix.chars().any(bad) {
        return Err(
            "a subject cannot hold whitespace, control characters, `*` or `>`\n\
             help: use dot-separated tokens, such as `catga` or `shop.prod`",
        );
    }
    Ok(())
}

/// Checks a configured stream name: ASCII letters, digits, `_` and `-`, at most [`MAX_NAME`]
/// bytes (the server stores it as a file name).
///
/// # Errors
/// Why the name cannot name a stream.
pub(crate) fn check_stream_name(name: &str) -> Result<(), &'static str> {
    let fine = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if name.is_empty() || !name.chars().all(fine) {
        return Err("a stream name is letters, digits, `_` and `-`\n\
             help: such as `CATGA_EVENTS`, or leave `stream` unset to derive it from the prefix");
    }
    if name.len() > MAX_NAME {
        return Err("longer than 200 bytes (the server stores it as a file name)");
    }
    Ok(())
}

/// The subjects of one prefix.
#[derive(Debug)]
pub(crate) struct Subjects {
    events: String,
    requests: String,
    /// What the publish and request paths built already.
    cached_events: SubjectCache,
    cached_requests: SubjectCache,
}

impl Subjects {
    /// The subjects under `prefix` (checked with [`check_prefix`]).
    pub(crate) fn new(prefix: &str) -> Self {
        Subjects {
            events: format!("{prefix}.events."),
            requests: format!("{prefix}.requests."),
            cached_events: SubjectCache::default(),
            cached_requests: SubjectCache::default(),
        }
    }

    /// [`event`](Self::event), built once per name.
    pub(crate) fn event_subject(&self, name: &str) -> async_nats::Subject {
        self.cached_events.get_or_build(name, || self.event(name))
    }

    /// [`request`](Self::request), built once per name.
    pub(crate) fn request_subject(&self, name: &str) -> async_nats::Subject {
        self.cached_requests
            .get_or_build(name, || self.request(name))
    }

    /// Where events named `name` are published.
    pub(crate) fn event(&self, name: &str) -> String {
        let mut subject = String::with_capacity(self.events.len() + name.len());
        subject.push_str(&self.events);
        push_wire_name(&mut subject, name);
        subject
    }

    /// Where requests named `name` are sent.
    pub(crate) fn request(&self, name: &str) -> String {
        let mut subject = String::with_capacity(self.requests.len() + name.len());
        subject.push_str(&self.requests);
        push_wire_name(&mut subject, name);
        subject
    }

    /// What the events stream captures: every event subject.
    pub(crate) fn all_events(&self) -> String {
        format!("{}>", self.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A NATS subject the server accepts for publishing: non-empty tokens, no whitespace, no
    /// wildcards.
    fn valid_subject(subject: &str) -> bool {
        subject.split('.').all(|token| {
            !token.is_empty()
                && !token
                    .chars()
                    .any(|c| c.is_whitespace() || c == '*' || c == '>')
        })
    }

    #[test]
    fn readable_names_stay_readable() {
        let subjects = Subjects::new("shop");
        assert_eq!(subjects.event("orders.placed"), "shop.events.orders.placed");
        assert_eq!(
            subjects.request("billing:charge/v2_x-y"),
            "shop.requests.billing:charge/v2_x-y"
        );
        assert_eq!(subjects.all_events(), "shop.events.>");
    }

    #[test]
    fn what_a_subject_cannot_hold_is_escaped() {
        assert_eq!(encode_wire_name("a b"), "a%20b");
        assert_eq!(encode_wire_name("a.*"), "a.%2A");
        assert_eq!(encode_wire_name("a.>"), "a.%3E");
        assert_eq!(encode_wire_name("50%"), "50%25");
        assert_eq!(encode_wire_name(".a"), "%2Ea");
        assert_eq!(encode_wire_name("a."), "a%2E");
        assert_eq!(encode_wire_name("a..b"), "a%2E.b");
        assert_eq!(encode_wire_name("é"), "%C3%A9");
        assert_eq!(encode_wire_name(""), "%");
    }

    #[test]
    fn durable_names_hold_no_separator_and_stay_short() {
        assert_eq!(
            durable_name("shipping", "OrderPlaced"),
            "shipping-OrderPlaced"
        );
        assert_eq!(
            durable_name("a-b", "c"),
            "a_2Db-c",
            "a `-` inside a part is escaped, so the join is unambiguous"
        );
        assert_ne!(durable_name("a-b", "c"), durable_name("a", "b-c"));
        assert_eq!(durable_name("s", "orders.placed"), "s-orders_2Eplaced");
        let long = "x".repeat(400);
        let a = durable_name(&long, "a");
        let b = durable_name(&long, "b");
        assert!(a.len() <= MAX_NAME && b.len() <= MAX_NAME);
        assert_ne!(a, b, "the hash keeps truncated names apart");
        assert_eq!(default_stream_name("shop.prod"), "shop_2Eprod-events");
    }

    #[test]
    fn bad_prefixes_and_stream_names_are_refused() {
        for bad in ["", "a..b", ".a", "a.", "a b", "a.*", "a.>"] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
        assert!(check_prefix("shop.prod-1").is_ok());
        for bad in ["", "a.b", "a b", "a/b", "a*"] {
            assert!(check_stream_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_stream_name("CATGA_EVENTS-1").is_ok());
    }

    proptest! {
        #[test]
        fn every_wire_name_makes_a_valid_subject(name in "\\PC{0,24}|[a-z.]{0,12}") {
            let subject = Subjects::new("p").event(&name);
            prop_assert!(valid_subject(&subject), "{subject}");
        }

        #[test]
        fn different_wire_names_never_share_a_subject(
            a in "[a-z.%*> :/_-]{0,8}|\\PC{0,6}",
            b in "[a-z.%*> :/_-]{0,8}|\\PC{0,6}",
        ) {
            prop_assume!(a != b);
            prop_assert_ne!(encode_wire_name(&a), encode_wire_name(&b));
        }

        #[test]
        fn durable_names_are_safe_and_distinct(
            s1 in "[a-z._-]{1,8}", e1 in "[a-z._:/-]{1,8}",
            s2 in "[a-z._-]{1,8}", e2 in "[a-z._:/-]{1,8}",
        ) {
            let one = durable_name(&s1, &e1);
            prop_assert!(one.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
            prop_assume!((s1.as_str(), e1.as_str()) != (s2.as_str(), e2.as_str()));
            prop_assert_ne!(one, durable_name(&s2, &e2));
        }
    }
}
