//! The schema catga's tables live in, and their qualified names.

use crate::error::PostgresError;

/// The longest name Postgres keeps whole (`NAMEDATALEN - 1`).
pub(crate) const MAX_IDENTIFIER: usize = 63;

/// A validated Postgres schema name: every table of this crate lives in it, so several
/// applications (or tests) can share one database without sharing rows.
///
/// The name is checked, not escaped: 1 to 63 characters (Postgres's `NAMEDATALEN - 1`),
/// lowercase ASCII letters, digits and `_`, not starting with a digit. That keeps it usable
/// unquoted in hand-written SQL and `psql`, and rules out injection through configuration.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Schema(String);

impl Schema {
    /// The schema `catga`.
    pub fn catga() -> Schema {
        Schema("catga".to_string())
    }

    /// Checks `name`.
    ///
    /// # Errors
    /// [`PostgresError::InvalidSchema`] for a name that is not a plain identifier.
    pub fn new(name: impl Into<String>) -> Result<Schema, PostgresError> {
        let name = name.into();
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if first_ok && rest_ok && name.len() <= MAX_IDENTIFIER && !name.starts_with("pg_") {
            Ok(Schema(name))
        } else {
            Err(PostgresError::InvalidSchema(name))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `schema.table`, for SQL text.
    pub(crate) fn table(&self, table: &str) -> String {
        format!("{}.{table}", self.0)
    }

    /// The `LISTEN`/`NOTIFY` channel the outbox announces new rows on.
    pub(crate) fn outbox_channel(&self) -> String {
        self.channel("outbox")
    }

    /// The `LISTEN`/`NOTIFY` channel for `purpose` in this schema: `<schema>_<purpose>`, or,
    /// when that is longer than a Postgres name may be, `catga_<purpose>_<hash of the schema>`
    /// (`pg_notify` refuses a longer name, and `LISTEN` would silently truncate it).
    pub(crate) fn channel(&self, purpose: &str) -> String {
        let plain = format!("{}_{purpose}", self.0);
        if plain.len() <= MAX_IDENTIFIER {
            return plain;
        }
        let mut hash = crate::fnv::Fnv::default();
        hash.write(self.0.as_bytes());
        format!("catga_{purpose}_{:016x}", hash.0)
    }
}

/// SQL text of this crate's: fixed text around a [`Schema`] name, which is checked to be a
/// plain identifier, so it is safe to splice; values always go in as bind parameters.
pub(crate) fn sql(text: &std::sync::Arc<str>) -> sqlx::AssertSqlSafe<std::sync::Arc<str>> {
    sqlx::AssertSqlSafe(std::sync::Arc::clone(text))
}

impl std::fmt::Display for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Schema;

    #[test]
    fn plain_identifiers_pass_and_anything_else_is_refused() {
        for ok in ["catga", "orders_2", "_x", "a"] {
            assert!(Schema::new(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(64);
        let longest = Schema::new("a".repeat(63)).unwrap_or_else(|e| panic!("{e}"));
        assert!(longest.outbox_channel().len() <= super::MAX_IDENTIFIER);
        assert_eq!(Schema::catga().outbox_channel(), "catga_outbox");
        for bad in [
            "",
            "1abc",
            "Orders",
            "a-b",
            "a;drop",
            "pg_catalog",
            "a b",
            long.as_str(),
        ] {
            assert!(Schema::new(bad).is_err(), "{bad}");
        }
    }
}
