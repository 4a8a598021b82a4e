//! What the store tests expect of a store's error: the `RedisStoreError` behind the error a
//! store trait returns, and the kinds a wrong value or a wrong option is refused with.

use catga_core::error::BoxError;
use catga_redis::store::RedisStoreError;

/// The `RedisStoreError` behind `error` (a store trait's `BoxError`, or the source of a
/// backend error).
pub fn redis_error(error: &BoxError) -> &RedisStoreError {
    error
        .downcast_ref::<RedisStoreError>()
        .unwrap_or_else(|| panic!("not a RedisStoreError: {error}"))
}

/// A typed error for a value the store did not write: `Malformed`, or the server's `WRONGTYPE`.
pub fn assert_not_ours(what: &str, error: &RedisStoreError) {
    let typed = match error {
        RedisStoreError::Malformed { .. } => true,
        RedisStoreError::Command { source, .. } => source.code() == Some("WRONGTYPE"),
        _ => false,
    };
    assert!(
        typed,
        "{what}: expected Malformed or WRONGTYPE, got {error:?}"
    );
}

/// A value over `limit` bytes, refused as `TooLarge`.
pub fn assert_too_large(error: &RedisStoreError, limit: usize) {
    assert!(
        matches!(
            error,
            RedisStoreError::TooLarge { size, limit: l, .. } if *l == limit && *size > limit
        ),
        "{error:?}"
    );
}

/// A builder method's value refused as `InvalidOption`, naming the method (`option`).
pub fn assert_invalid_option(error: &RedisStoreError, option: &str) {
    assert!(
        matches!(error, RedisStoreError::InvalidOption { option: o, .. } if *o == option),
        "{error:?}"
    );
}
