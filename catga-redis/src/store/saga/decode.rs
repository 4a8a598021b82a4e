//! Saga instances as the saga store keeps them, back into [`StoredSaga`]s.
//!
//! An instance is a hash with the fields `saga`, `status` ([`SagaStatus::as_str`]), `data`,
//! `state` (bytes as saved), `version` and `updated_at` (µs since the Unix epoch, the server's
//! clock), all decimal where numbers.

use std::time::SystemTime;

use catga_core::saga::SagaStatus;
use catga_core::store::saga::{SagaRecord, StoredSaga};
use redis::Value;
use uuid::Uuid;

use crate::store::RedisStoreError;
use crate::store::event::outcome::{bytes, decimal};

/// The fields an instance is read with, in this order.
pub(super) const FIELDS: [&str; 6] = ["saga", "status", "data", "state", "version", "updated_at"];

/// The instance `id` from its six [`FIELDS`] (`None` each for a field the hash lacks); `None`
/// if none is there (the instance is not stored).
pub(super) fn instance(
    operation: &'static str,
    key: &str,
    id: Uuid,
    fields: Vec<Value>,
) -> Result<Option<StoredSaga>, RedisStoreError> {
    let malformed = |reason: String| RedisStoreError::malformed(operation, key, reason);
    let Ok(fields) = <[Value; 6]>::try_from(fields) else {
        return Err(malformed(
            "the server answered another number of fields".to_owned(),
        ));
    };
    if fields.iter().all(|f| matches!(f, Value::Nil)) {
        return Ok(None);
    }
    let [saga, status, data, state, version, updated_at] = fields.map(bytes);
    let field = |name: &str, value: Option<Vec<u8>>| {
        value.ok_or_else(|| malformed(format!("the instance has no field `{name}`")))
    };
    let saga = String::from_utf8(field("saga", saga)?)
        .map_err(|_| malformed("its `saga` is not UTF-8".to_owned()))?;
    let status = field("status", status)?;
    let status = std::str::from_utf8(&status)
        .ok()
        .and_then(SagaStatus::from_name)
        .ok_or_else(|| {
            malformed(format!(
                "its status `{}` is none of catga's",
                String::from_utf8_lossy(&status)
            ))
        })?;
    let version = decimal(&field("version", version)?)
        .filter(|v| *v > 0)
        .ok_or_else(|| malformed("its `version` is no version".to_owned()))?;
    let updated_at = decimal(&field("updated_at", updated_at)?)
        .ok_or_else(|| malformed("its `updated_at` is no time in microseconds".to_owned()))?;
    Ok(Some(StoredSaga {
        record: SagaRecord {
            id,
            saga,
            status,
            data: field("data", data)?,
            state: field("state", state)?,
        },
        version,
        updated_at: crate::store::event::micros(updated_at),
    }))
}

/// What `UNFINISHED` answers after its tag: an id and its six [`FIELDS`], seven at a time; each
/// must be an unfinished instance of `saga`, as the index `index` says.
pub(super) fn unfinished(
    operation: &'static str,
    index: &str,
    saga: &str,
    instance_key: impl Fn(Uuid) -> String,
    values: Vec<Value>,
) -> Result<Vec<StoredSaga>, RedisStoreError> {
    let malformed = |reason: String| RedisStoreError::malformed(operation, index, reason);
    if !values.len().is_multiple_of(7) {
        return Err(malformed(
            "the script answered a partial instance".to_owned(),
        ));
    }
    let mut listed = Vec::with_capacity(values.len() / 7);
    let mut values = values.into_iter();
    while let Some(id) = values.next() {
        let id = bytes(id)
            .and_then(|id| Uuid::try_parse_ascii(&id).ok())
            .ok_or_else(|| malformed("it lists a member that is no UUID".to_owned()))?;
        let key = instance_key(id);
        let fields = values.by_ref().take(6).collect();
        let stored = instance(operation, &key, id, fields)?
            .ok_or_else(|| malformed(format!("it lists {id}, which is not stored")))?;
        if stored.record.saga != saga || stored.record.status.is_finished() {
            return Err(malformed(format!(
                "it lists {id}, which is a {:?} instance of `{}`",
                stored.record.status, stored.record.saga
            )));
        }
        listed.push(stored);
    }
    Ok(listed)
}

/// The score bound of [`SagaStore::unfinished`](catga_core::store::saga::SagaStore::unfinished)'s
/// cutoff: instances saved strictly before `before`. Saves are stamped in whole microseconds,
/// so "before `t`" is "at most the microsecond before `t` rounded up".
pub(super) fn cutoff(before: Option<SystemTime>) -> String {
    let Some(before) = before else {
        return "+inf".to_owned();
    };
    let micros = match before.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => since.as_nanos().div_ceil(1000),
        // Nothing was saved before 1970.
        Err(_) => 0,
    };
    format!("({micros}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn good() -> Vec<Value> {
        [
            "checkout",
            "Running",
            "\u{0}d",
            "{}",
            "3",
            "1700000000000001",
        ]
        .map(bulk)
        .to_vec()
    }

    #[test]
    fn an_instance_decodes_and_an_absent_one_is_none() {
        let id = Uuid::now_v7();
        let stored = instance("op", "k", id, good())
            .expect("good")
            .expect("stored");
        assert_eq!(
            (stored.version, stored.record.status),
            (3, SagaStatus::Running)
        );
        assert_eq!(
            stored.updated_at,
            SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_001)
        );
        assert_eq!(
            instance("op", "k", id, vec![Value::Nil; 6]).expect("ok"),
            None
        );
    }

    #[test]
    fn a_bad_instance_is_malformed_never_a_panic() {
        let id = Uuid::now_v7();
        let mut cases = vec![vec![], vec![Value::Nil; 5], vec![Value::Int(1); 6]];
        for broken in 0..6 {
            let mut missing = good();
            missing[broken] = Value::Nil;
            cases.push(missing);
            if broken != 2 && broken != 3 {
                let mut bad = good();
                bad[broken] = Value::BulkString(b"\xff-1".to_vec());
                cases.push(bad);
            }
        }
        let mut zero = good();
        zero[4] = bulk("0");
        cases.push(zero);
        for case in cases {
            assert!(
                matches!(
                    instance("op", "k", id, case.clone()),
                    Err(RedisStoreError::Malformed { .. })
                ),
                "{case:?}"
            );
        }
    }

    #[test]
    fn the_cutoff_rounds_up_to_the_microsecond() {
        let at = |nanos: u64| Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos));
        assert_eq!(cutoff(None), "+inf");
        assert_eq!(cutoff(at(5_000)), "(5");
        assert_eq!(cutoff(at(5_001)), "(6");
        assert_eq!(
            cutoff(Some(SystemTime::UNIX_EPOCH - Duration::from_secs(1))),
            "(0"
        );
    }
}
