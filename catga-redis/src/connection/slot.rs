//! Redis Cluster slots: which of the 16384 slots a key is in (CRC16-XMODEM of the key, or of
//! its hash tag: the text between the first `{` and the next `}`, when not empty), as the
//! server's `CLUSTER KEYSLOT` computes it. Keys of one slot may meet in one command, script,
//! transaction or pipeline; a cluster refuses anything else with `CROSSSLOT`.

use redis::Cmd;

/// How many slots a cluster has.
const SLOTS: u16 = 16384;

/// The slot of `key`.
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key).unwrap_or(key)) % SLOTS
}

/// The slot of the first key of `cmd`, for a command whose first key is its first argument
/// (`XACK`, `RPUSH`, …) or a script call (`EVALSHA sha numkeys key …`); `None` for a command
/// without a key.
pub(crate) fn slot_of_command(cmd: &Cmd) -> Option<u16> {
    let mut args = cmd.args_iter().filter_map(|arg| match arg {
        redis::Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let name = args.next()?;
    if name.eq_ignore_ascii_case(b"EVALSHA") || name.eq_ignore_ascii_case(b"EVAL") {
        let _script = args.next()?;
        if args.next()? == b"0" {
            return None;
        }
    }
    args.next().map(key_slot)
}

/// The hash tag of `key`, if it has a non-empty one.
fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let rest = &key[open + 1..];
    let close = rest.iter().position(|&b| b == b'}')?;
    (close > 0).then(|| &rest[..close])
}

/// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as Redis uses.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_those_the_server_computes() {
        // `CLUSTER KEYSLOT` on Redis 7.0.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{p:events}:a"), 14657);
        assert_eq!(key_slot(b"{p:sagas}:a"), 6601);
        assert_eq!(key_slot(b"p:idempotency:x"), 15619);
        assert_eq!(key_slot(b"{p:events2}:b"), 12395);
    }

    #[test]
    fn a_hash_tag_decides_the_slot_and_an_empty_one_does_not() {
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"no}tag{"), crc16(b"no}tag{") % SLOTS);
    }

    #[test]
    fn a_command_is_in_its_first_key_s_slot() {
        let mut xack = redis::cmd("XACK");
        xack.arg("{s}:1").arg("group").arg("1-0");
        assert_eq!(slot_of_command(&xack), Some(key_slot(b"s")));
        let mut eval = redis::cmd("EVALSHA");
        eval.arg("abc").arg(2).arg("k1").arg("k2").arg("v");
        assert_eq!(slot_of_command(&eval), Some(key_slot(b"k1")));
        let mut keyless = redis::cmd("EVALSHA");
        keyless.arg("abc").arg(0).arg("v");
        assert_eq!(slot_of_command(&keyless), None);
        assert_eq!(slot_of_command(&redis::cmd("PING")), None);
    }
}
