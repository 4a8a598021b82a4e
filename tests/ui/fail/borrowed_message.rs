use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

#[event(local)]
#[derive(Debug, Clone)]
pub struct Named<'a> {
    pub name: &'a str,
}

fn main() {}
