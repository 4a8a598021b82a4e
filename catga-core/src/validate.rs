//! Validation: a message checks its own fields before its handler runs.
//!
//! Implement [`Validate`] for a message and add the [`Validation`](crate::behavior::Validation)
//! behaviour; a message that fails is rejected with [`ErrorKind::Validation`](crate::ErrorKind::Validation) holding
//! *every* field error at once, so a client can show them all.
//!
//! ```
//! use catga_core::{Validate, ValidationErrors};
//!
//! struct Register { email: String, age: u8 }
//!
//! impl Validate for Register {
//!     fn validate(&self) -> Result<(), ValidationErrors> {
//!         let mut errors = ValidationErrors::new();
//!         if !self.email.contains('@') {
//!             errors.add("email", "must contain `@`");
//!         }
//!         if self.age < 18 {
//!             errors.add("age", "must be at least 18");
//!         }
//!         errors.into_result()
//!     }
//! }
//!
//! let err = Register { email: "x".into(), age: 3 }.validate().unwrap_err();
//! assert_eq!(err.len(), 2);
//! ```

use std::borrow::Cow;
use std::fmt;

/// Checks a message's fields. Implement it for messages that carry user input.
pub trait Validate {
    /// Returns every problem found, or `Ok(())`.
    fn validate(&self) -> Result<(), ValidationErrors>;
}

/// One field that failed validation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldError {
    /// The field's name (or a path such as `lines[2].qty`).
    pub field: Cow<'static, str>,
    /// What is wrong, in words a client can show.
    pub message: Cow<'static, str>,
}

/// All the field errors of one message.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ValidationErrors {
    errors: Vec<FieldError>,
}

impl ValidationErrors {
    /// No errors yet.
    pub const fn new() -> Self {
        ValidationErrors { errors: Vec::new() }
    }

    /// Records that `field` is invalid.
    pub fn add(
        &mut self,
        field: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> &mut Self {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
        self
    }

    /// `Ok(())` when nothing was recorded, otherwise `Err(self)`.
    pub fn into_result(self) -> Result<(), ValidationErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }

    /// The recorded errors, in the order they were added.
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// How many fields failed.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Whether nothing failed.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}
