use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Wrap<T> {
    pub inner: T,
}

fn main() {}
