//! Two live instances given one name ([`RedisConnect::instance`](crate::RedisConnect::instance))
//! would be one consumer in each group: each would take the other's pending entries for its
//! own, and a restart of either would handle the other's in-flight entries again. Redis cannot
//! refuse the second, and a name still connected may be a process that died a moment ago (the
//! server notices only when the connection drops), so `serve` warns instead of refusing.

use crate::connection::Multiplexed;

/// The reading connection's name in `CLIENT LIST`, as the reader sets it.
pub(crate) fn reader_name(prefix: &str, service: &str, instance: &str) -> String {
    format!("catga:{prefix}:{service}:{instance}:reader")
}

/// Logs a warning if a connection named `reader` is connected now. One `CLIENT LIST`; an
/// answer that does not come (an ACL user without `CLIENT`, a cluster, where the list is per
/// node) is left unchecked.
pub(crate) async fn warn_if_connected(manager: &Multiplexed, reader: &str) {
    if manager.is_cluster() {
        return;
    }
    let mut conn = manager.clone();
    let listed: redis::RedisResult<String> = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("normal")
        .query_async(&mut conn)
        .await;
    match listed {
        Ok(list) if is_listed(&list, reader) => {
            tracing::warn!(target: "catga::redis", connection = reader,
                "another connection reads as this instance: two live instances with one `instance` name share a consumer and take each other's pending entries (give each its own name), unless it is a process that died a moment ago");
        }
        Ok(_) => {}
        Err(error) => {
            tracing::debug!(target: "catga::redis", error = %error,
                "could not list the server's connections to check the instance name");
        }
    }
}

/// Whether `list` (a `CLIENT LIST` reply, a line per connection) has one named `name`.
fn is_listed(list: &str, name: &str) -> bool {
    let field = format!("name={name}");
    list.lines()
        .any(|line| line.split(' ').any(|part| part == field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_found_only_as_a_whole_field() {
        let list = "id=3 addr=127.0.0.1:5 name=catga:p:s:a:reader age=1\n\
                    id=4 addr=127.0.0.1:6 name=catga:p:s:ab:reader age=1\n";
        assert!(is_listed(list, "catga:p:s:a:reader"));
        assert!(!is_listed(list, "catga:p:s:b:reader"));
        assert!(!is_listed(list, "catga:p:s:a"));
    }
}
