//! A lease's name as a key of the lease bucket.
//!
//! KV keys are NATS subject tokens (`$KV.{bucket}.{key}`) and may only hold
//! `[-/_=.a-zA-Z0-9]`, and never start or end with a dot. A lease name may hold anything
//! (`"outbox:{orders}. é"`), so it is escaped, reversibly: ASCII letters, digits, `-` and `_`
//! stay as they are, every other byte of the name's UTF-8 becomes `=` followed by two
//! upper-case hex digits (`:` → `=3A`, `é` → `=C3=A9`, `=` itself → `=3D`, `.` → `=2E`). The
//! empty name, which no escape produces otherwise, is the key `=`. Distinct names thus get
//! distinct keys, and a key is read back by undoing the escapes.

use std::fmt::Write as _;

/// The KV key of the lease `name` (see the module docs for the escape).
pub(crate) fn key(name: &str) -> String {
    if name.is_empty() {
        return "=".to_string();
    }
    let mut key = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            key.push(char::from(byte));
        } else {
            // Writing to a `String` cannot fail.
            let _ = write!(key, "={byte:02X}");
        }
    }
    key
}

/// The lease name `key` was made from, or `None` when no name gives it.
#[cfg(test)]
pub(crate) fn name(key: &str) -> Option<String> {
    if key == "=" {
        return Some(String::new());
    }
    let mut bytes = Vec::with_capacity(key.len());
    let mut rest = key.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'=' {
            let hex = tail.get(..2)?;
            let text = std::str::from_utf8(hex).ok()?;
            if text.to_ascii_uppercase() != text {
                return None;
            }
            bytes.push(u8::from_str_radix(text, 16).ok()?);
            rest = &tail[2..];
        } else if first.is_ascii_alphanumeric() || first == b'-' || first == b'_' {
            bytes.push(first);
            rest = tail;
        } else {
            return None;
        }
    }
    let name = String::from_utf8(bytes).ok()?;
    (!name.is_empty() && key == self::key(&name)).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What NATS accepts as a KV key (async-nats' own rule).
    fn valid_kv_key(key: &str) -> bool {
        !key.is_empty()
            && !key.starts_with('.')
            && !key.ends_with('.')
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
    }

    #[test]
    fn plain_names_stay_readable_and_the_rest_is_escaped() {
        assert_eq!(key("scheduler"), "scheduler");
        assert_eq!(key("outbox-recovery_2"), "outbox-recovery_2");
        assert_eq!(key("a.b"), "a=2Eb");
        assert_eq!(key("x:{y} é="), "x=3A=7By=7D=20=C3=A9=3D");
        assert_eq!(key(""), "=");
    }

    #[test]
    fn keys_that_no_name_gives_are_refused() {
        for key in ["a=2", "a=zz", "a=2e", "a.b", "", "=C3"] {
            assert_eq!(name(key), None, "{key}");
        }
    }

    proptest! {
        #[test]
        fn every_name_gives_a_valid_key_that_reads_back(name_in in any::<String>()) {
            let made = key(&name_in);
            prop_assert!(valid_kv_key(&made), "{made:?}");
            prop_assert_eq!(name(&made), Some(name_in));
        }

        #[test]
        fn two_names_never_share_a_key(a in any::<String>(), b in any::<String>()) {
            prop_assume!(a != b);
            prop_assert_ne!(key(&a), key(&b));
        }
    }
}
