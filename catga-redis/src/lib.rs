//! Redis transport for catga (in progress).
